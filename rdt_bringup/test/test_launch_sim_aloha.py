"""Launch test: ``aloha.launch.py use_sim:=true`` runs the policy node against rdt_sim's MuJoCo ALOHA on sim
time (the sim publishes /clock): the sim's joint states and three cameras reach the policy, it predicts chunks
stamped with the sim's observation times. The tiny model is UNTRAINED, so it runs in dry run (its chunks are
outside the gripper's range: safety would hold the arm anyway). Needs a sourced ROS 2 with launch_testing;
own ROS_DOMAIN_ID (robot topics)."""
import tempfile
import time
import unittest
from pathlib import Path

import pytest

from rdt_core.testing import skip_module_without_ros

skip_module_without_ros("launch_testing", "rosgraph_msgs", "sensor_msgs")
pytest.importorskip("mujoco")

import rclpy  # noqa: E402

import launch_testing.asserts  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402

from launch_helpers import hold_ros_domain, launched  # noqa: E402
from rdt_core.robots import load_profile  # noqa: E402

WAIT_S = 240.0  # the tiny model warms up on CPU, the sim renders three cameras
OUT = Path(tempfile.mkdtemp(prefix="rdt_sim_record_"))
@pytest.mark.launch_test
def generate_test_description():
    hold_ros_domain(fallback=95)
    sim_args = {"use_sim": "true", "sim_resolution": "48x64"}
    return launched("aloha.launch.py", {**sim_args, "checkpoint": "tiny", "device": "cpu", "dry_run": "true"})


class TestPolicyAgainstTheSim(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("rdt_sim_launch_test_listener")

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def test_the_policy_predicts_from_the_sim_on_sim_time(self):
        from rdt_msgs.msg import ActionChunk, PolicyStatus
        profile = load_profile("aloha")
        clocks, chunks, statuses, states = [], [], [], []
        self.node.create_subscription(Clock, "/clock", clocks.append, 10)
        self.node.create_subscription(ActionChunk, "/rdt_policy_node/action_chunk", chunks.append, 10)
        self.node.create_subscription(JointState, "/follower_left/joint_states", states.append, 10)
        self.node.create_subscription(PolicyStatus, "/rdt_policy_node/status", statuses.append, 10)
        deadline = time.monotonic() + WAIT_S
        # until 3 chunks, and a status that counts them (it comes on its own topic, maybe after them)
        while time.monotonic() < deadline and (len(chunks) < 3 or not clocks
                                               or not any(s.chunks_received > 0 for s in statuses)):
            rclpy.spin_once(self.node, timeout_sec=0.1)
        self.assertGreaterEqual(len(chunks), 3, f"no chunks from the policy node; states "
                                                f"{[s.state + ': ' + s.hold_reason for s in statuses[-3:]]}")
        sim_now = clocks[-1].clock.sec + clocks[-1].clock.nanosec * 1e-9
        stamps = [c.header.stamp.sec + c.header.stamp.nanosec * 1e-9 for c in chunks]
        # observation stamps are the sim's (seconds since the episode began), not wall time: every chunk's
        self.assertTrue(all(0.0 < t <= sim_now for t in stamps), (stamps, sim_now))
        self.assertEqual(list(chunks[-1].joint_names), profile.joint_names)
        self.assertEqual((chunks[-1].horizon, chunks[-1].dof), (64, 14))
        self.assertEqual(list(states[-1].name), profile.stream("follower_left").msg_joint_names)
        fresh = [s for s in statuses if s.chunks_received > 0]
        self.assertTrue(fresh and max(fresh[-1].observation_ages) < 0.5, "the sim's streams reach the policy fresh")


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_processes_exit_cleanly(self, proc_info):
        """On launch's SIGINT, with an inference running: exit 0 within launch's grace (no SIGTERM: -15; no
        abort from torch under the interpreter's finalisation: -6)."""
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0])
