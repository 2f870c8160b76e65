"""Kinova Gen3 + RDT policy.

    ros2 launch rdt_bringup kinova.launch.py checkpoint:=/models/export vision_encoder:=/models/siglip \
        instruction:=/models/instructions/pick_cube.pt            # driver already running
    ros2 launch rdt_bringup kinova.launch.py launch_driver:=true robot_ip:=192.168.1.10 checkpoint:=...
    ros2 launch rdt_bringup kinova.launch.py use_fake_hardware:=true checkpoint:=tiny device:=cpu

Parameters come from params_file (default: this package's config/kinova_gen3.yaml); the arguments
below override it only when given. The decisions are in rdt_bringup.launch_utils.plan_robot_launch.
"""
import os

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, LogInfo, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from rdt_bringup.launch_utils import FAKE_ROBOT_NODE, POLICY_NODE, node_parameters, plan_robot_launch

# (name, default, description): the documented interface of this launch file.
ARGUMENTS = [
    ("robot_ip", "", "IP address of the arm (needed with launch_driver:=true)"),
    ("use_fake_hardware", "false", "true: start rdt_bringup's fake robot instead of a real arm"),
    ("launch_driver", "false", "true: also start ros2_kortex (kortex_bringup gen3.launch.py) when installed"),
    ("gripper", "robotiq_2f_85", "gripper argument passed to the ros2_kortex driver"),
    ("checkpoint", "", "RDT checkpoint (HF dir, DeepSpeed .pt, rdt-train export) or 'tiny'; '' = params file"),
    ("vision_encoder", "", "local SigLIP directory; '' = params file"),
    ("instruction", "", "instruction embedding .pt or a name in instruction_dir; '' = params file"),
    ("camera_exterior_topic", "", "exterior camera topic; '' = params file"),
    ("camera_right_wrist_topic", "", "wrist camera topic; '' = params file"),
    ("camera_left_wrist_topic", "", "left wrist camera topic (the Gen3 profile has none: leave empty)"),
    ("dry_run", "", "true: predict and publish chunks, command nothing; '' = params file"),
    ("device", "", "torch device (cuda, cpu); '' = params file"),
    ("params_file", "", "ROS 2 parameter file; '' = rdt_bringup/config/kinova_gen3.yaml"),
]


def launch_setup(context, *args, **kwargs):
    share = get_package_share_directory("rdt_bringup")
    try:
        kortex_share = get_package_share_directory("kortex_bringup")
    except PackageNotFoundError:
        kortex_share = None
    values = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    plan = plan_robot_launch(values, os.path.join(share, "config"), "kinova_gen3",
                             driver_available=kortex_share is not None)
    actions = [LogInfo(msg=note) for note in plan.notes]
    if plan.driver is not None:
        actions.append(IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(kortex_share, "launch", "gen3.launch.py")),
            launch_arguments=plan.driver.items()))
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
