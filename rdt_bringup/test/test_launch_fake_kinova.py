"""Launch test (needs a sourced ROS 2 with launch_testing, e.g. in the runtime Docker image): start
kinova.launch.py with the fake robot and the tiny policy, and see JointTrajectory commands flow, inside
the profile's limits, the policy report its state on /rdt_policy_node/status, and the fake arm move.

Collected by launch_testing's pytest plugin (the launch_test mark on generate_test_description), so
`colcon test` runs it with the package's other tests. The launch runs on its own ROS_DOMAIN_ID
(domain_coordinator, as launch_testing_ros does): it publishes arm commands, which must never reach a
robot on the developer's domain or another test run in parallel."""
import os
import time
import unittest

import pytest

launch_testing = pytest.importorskip("launch_testing")
rclpy = pytest.importorskip("rclpy")

import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import numpy as np  # noqa: E402
from ament_index_python.packages import get_package_share_directory  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from rdt_core.robots import load_profile  # noqa: E402

WAIT_S = 180.0  # the tiny model warms up on CPU first


_DOMAIN_LEASE = []


def _own_ros_domain() -> None:
    """Set ROS_DOMAIN_ID for the launched nodes and this test's listener (held while this module lives)."""
    try:
        from domain_coordinator import get_coordinated_domain_id
        _DOMAIN_LEASE.append(get_coordinated_domain_id())
        os.environ["ROS_DOMAIN_ID"] = str(_DOMAIN_LEASE[-1])
    except ImportError:
        os.environ["ROS_DOMAIN_ID"] = "90"


@pytest.mark.launch_test
def generate_test_description():
    _own_ros_domain()
    launch_file = os.path.join(get_package_share_directory("rdt_bringup"), "launch", "kinova.launch.py")
    return launch.LaunchDescription([
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(launch_file),
            launch_arguments={"use_fake_hardware": "true", "dry_run": "false", "checkpoint": "tiny",
                              "device": "cpu"}.items()),
        launch_testing.actions.ReadyToTest(),
    ])


class TestCommandsFlow(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("rdt_launch_test_listener")

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def test_trajectories_flow_within_limits_and_the_fake_arm_moves(self):
        profile = load_profile("kinova_gen3")
        from rdt_msgs.msg import PolicyStatus
        trajectories, states, statuses = [], [], []
        self.node.create_subscription(
            JointTrajectory, profile.command["topic"], trajectories.append, 10)
        self.node.create_subscription(JointState, "/joint_states", states.append, 50)
        self.node.create_subscription(PolicyStatus, "/rdt_policy_node/status", statuses.append, 50)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and (len(trajectories) < 3 or not states):
            rclpy.spin_once(self.node, timeout_sec=0.1)
        self.assertGreaterEqual(len(trajectories), 3, "no JointTrajectory commands from the policy node")
        self.assertTrue({s.state for s in statuses} & {"MOVING_TO_START", "RUNNING"},
                        f"policy states seen: {[s.state for s in statuses[-5:]]}")
        first_state = np.array(states[0].position)
        end = time.monotonic() + 5.0
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.1)

        index = {n: i for i, n in enumerate(profile.joint_names)}
        for traj in trajectories:
            self.assertTrue(set(traj.joint_names) <= set(index), traj.joint_names)
            cols = [index[n] for n in traj.joint_names]
            for point in traj.points:
                positions = np.array(point.positions)
                self.assertTrue(np.all(np.isfinite(positions)))
                self.assertTrue(np.all(positions >= profile.lower[cols] - 1e-6))
                self.assertTrue(np.all(positions <= profile.upper[cols] + 1e-6))
        last_state = np.array(states[-1].position)
        self.assertEqual(list(states[-1].name), profile.stream("joints").msg_joint_names)
        self.assertGreater(np.abs(last_state - first_state).max(), 1e-4, "the fake arm did not move")


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_processes_exit_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
