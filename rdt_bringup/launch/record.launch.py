"""Record demonstrations as HDF5 episodes.

    ros2 launch rdt_bringup record.launch.py robot:=kinova output_dir:=~/data/pick_cube instruction:="pick up the cube"
    ros2 launch rdt_bringup record.launch.py robot:=aloha use_fake_hardware:=true episode_seconds:=10

Start / stop / discard with the recorder's services (ros2 service call /rdt_recorder/start_episode ...);
keyboard control needs a terminal: `ros2 run rdt_recorder record --ros-args --params-file ...`.
With use_fake_hardware:=true the fake robot's scripted expert performs the task.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from rdt_bringup.launch_utils import FAKE_ROBOT_NODE, RECORDER_NODE, SIM_NODE, node_parameters, plan_record_launch

# (name, default, description): the documented interface of this launch file.
ARGUMENTS = [
    ("robot", "kinova", "kinova | aloha | agilex: picks the profile and config/<profile>.yaml"),
    ("use_fake_hardware", "false", "true: record the fake robot (its scripted expert moves it)"),
    ("output_dir", "", "folder of episode_<n>.hdf5 files; '' = params file"),
    ("instruction", "", "language instruction stored with each episode; '' = params file"),
    ("episode_seconds", "", "episode length in seconds, 0 = open-ended; '' = params file"),
    ("params_file", "", "ROS 2 parameter file; '' = rdt_bringup/config/<profile>.yaml"),
    ("use_sim", "false", "true: rdt_sim's MuJoCo ALOHA instead of the robot (publishes /clock; use_sim_time)"),
    ("sim_task", "", "use_sim: transfer_cube | insertion ('' = transfer_cube)"),
    ("sim_seed", "", "use_sim: seed of the first episode ('' = 0; ~/reset takes another)"),
    ("sim_resolution", "", "use_sim: camera HEIGHTxWIDTH ('' = 480x640)"),
]


def launch_setup(context, *args, **kwargs):
    share = get_package_share_directory("rdt_bringup")
    values = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    plan = plan_record_launch(values, os.path.join(share, "config"))
    actions = []
    if plan.sim is not None:
        actions.append(Node(package="rdt_sim", executable="sim_node", name=SIM_NODE, output="screen",
                            parameters=[plan.sim]))
    if plan.fake_robot is not None:
        actions.append(Node(package="rdt_bringup", executable="fake_robot_node", name=FAKE_ROBOT_NODE,
                            output="screen", parameters=node_parameters(plan.params_file, plan.fake_robot)))
    actions.append(Node(package="rdt_recorder", executable="record", name=RECORDER_NODE,
                        output="screen", emulate_tty=True, parameters=node_parameters(plan.params_file, plan.recorder)))
    return actions


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in ARGUMENTS]
        + [OpaqueFunction(function=launch_setup)])
