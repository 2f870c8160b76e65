"""Bimanual ALOHA (Interbotix; AgileX with profile:=agilex) + RDT policy.

    ros2 launch rdt_bringup aloha.launch.py checkpoint:=/models/export vision_encoder:=... instruction:=...
    ros2 launch rdt_bringup aloha.launch.py profile:=agilex checkpoint:=...
    ros2 launch rdt_bringup aloha.launch.py use_fake_hardware:=true checkpoint:=tiny device:=cpu

Expects the arms' driver running (Interbotix xs_sdk / AgileX nodes). Parameters come from params_file
(default: config/<profile>.yaml); the arguments override it only when given.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from rdt_bringup.launch_utils import FAKE_ROBOT_NODE, POLICY_NODE, SIM_NODE, node_parameters, plan_robot_launch

# (name, default, description): the documented interface of this launch file.
ARGUMENTS = [
    ("profile", "aloha", "robot profile: aloha (Interbotix topics) or agilex (official AgileX topics)"),
    ("use_fake_hardware", "false", "true: start rdt_bringup's fake robot instead of the real arms"),
    ("checkpoint", "", "RDT checkpoint (HF dir, DeepSpeed .pt, rdt-train export) or 'tiny'; '' = params file"),
    ("vision_encoder", "", "local SigLIP directory; '' = params file"),
    ("instruction", "", "instruction embedding .pt or a name in instruction_dir; '' = params file"),
    ("camera_exterior_topic", "", "high / front camera topic; '' = params file"),
    ("camera_right_wrist_topic", "", "right wrist camera topic; '' = params file"),
    ("camera_left_wrist_topic", "", "left wrist camera topic; '' = params file"),
    ("dry_run", "", "true: predict and publish chunks, command nothing; '' = params file"),
    ("device", "", "torch device (cuda, cpu); '' = params file"),
    ("params_file", "", "ROS 2 parameter file; '' = rdt_bringup/config/<profile>.yaml"),
    ("use_sim", "false", "true: rdt_sim's MuJoCo ALOHA instead of the robot (publishes /clock; use_sim_time)"),
    ("sim_task", "", "use_sim: transfer_cube | insertion ('' = transfer_cube)"),
    ("sim_seed", "", "use_sim: seed of the first episode ('' = 0; ~/reset takes another)"),
    ("sim_resolution", "", "use_sim: camera HEIGHTxWIDTH ('' = 480x640)"),
]


def launch_setup(context, *args, **kwargs):
    share = get_package_share_directory("rdt_bringup")
    values = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    plan = plan_robot_launch(values, os.path.join(share, "config"), "aloha")
    actions = [LogInfo(msg=note) for note in plan.notes]
    if plan.sim is not None:
        actions.append(Node(package="rdt_sim", executable="sim_node", name=SIM_NODE, output="screen",
                            parameters=[plan.sim]))
    if plan.fake_robot is not None:
        actions.append(Node(package="rdt_bringup", executable="fake_robot_node", name=FAKE_ROBOT_NODE,
                            output="screen", parameters=node_parameters(plan.params_file, plan.fake_robot)))
    actions.append(Node(package="rdt_policy_node", executable="policy_node", name=POLICY_NODE,
                        output="screen", emulate_tty=True, parameters=node_parameters(plan.params_file, plan.policy)))
    return actions


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in ARGUMENTS]
        + [OpaqueFunction(function=launch_setup)])
