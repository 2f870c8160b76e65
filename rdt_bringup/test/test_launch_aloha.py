"""aloha.launch.py through the real launch machinery with the fake robot and the tiny policy: with the Interbotix
topics (profile aloha, every documented argument given) and with profile:=agilex, commands arrive on the
profile's topics for both arms and both grippers, inside the limits, and ~/status reports RUNNING.

The aloha profile commands through interbotix_xs_msgs (JointGroupCommand per arm, JointSingleCommand per
gripper) where that package is installed, else through its JointState fallback topics: the test checks the
topics of whichever the policy node uses on this machine."""
import importlib.util
import tempfile
import unittest
from pathlib import Path

import pytest
from rdt_core.testing import skip_module_without_ros, wait_for

skip_module_without_ros("launch_testing", "sensor_msgs")

import launch_testing.asserts  # noqa: E402
import numpy as np  # noqa: E402

from launch_helpers import (Probe, documented_arguments, hold_ros_domain, launched, policy_params,  # noqa: E402
                            write_instruction)
from rdt_core.robots import load_profile  # noqa: E402

WAIT_S = 300.0   # the tiny model warms up on CPU first; CI's two cores are shared
INTERBOTIX = importlib.util.find_spec("interbotix_xs_msgs") is not None


def untrained_params(profile: str, work: Path) -> Path:
    """config/<profile>.yaml for a loaded test machine, but rows of the untrained tiny model's chunks are clipped
    to the joint limits instead of the whole chunk being rejected (its random grippers fall anywhere): the
    commands the test checks are then the clipped, limited ones."""
    return policy_params(f"{profile}.yaml", work, chunk_range_margin=100.0)


def launch_arguments(profile: str) -> dict[str, str]:
    work = Path(tempfile.mkdtemp(prefix="rdt_launch_aloha_"))
    if profile == "agilex":
        return {"profile": "agilex", "use_fake_hardware": "true", "checkpoint": "tiny", "device": "cpu",
                "params_file": str(untrained_params("agilex", work))}
    (work / "siglip").mkdir()
    args = {"profile": "aloha", "use_fake_hardware": "true", "checkpoint": "tiny",
            "vision_encoder": str(work / "siglip"),   # the tiny checkpoint brings its own encoder
            "instruction": str(write_instruction(work, "fold_towel")),
            "camera_exterior_topic": "/test/cam_high", "camera_right_wrist_topic": "/test/cam_right_wrist",
            "camera_left_wrist_topic": "/test/cam_left_wrist",
            "dry_run": "false", "device": "cpu", "params_file": str(untrained_params("aloha", work)),
            # rdt_sim's arguments, accepted and unused without use_sim:=true (rdt_sim's tests run the sim)
            "use_sim": "false", "sim_task": "insertion", "sim_seed": "3", "sim_resolution": "240x320"}
    assert set(args) == set(documented_arguments("aloha.launch.py")), "cover every documented argument"
    return args


def command_topics(profile):
    """[(topic, message type, {message joint name: profile column})] the policy node commands on."""
    cmd = profile.command
    if cmd["backend"] == "interbotix" and INTERBOTIX:
        from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
        out = []
        for arm in cmd["arms"]:
            out.append((arm["group_topic"], JointGroupCommand, [profile.joint_names.index(j) for j in arm["joints"]]))
            out.append((arm["single_topic"], JointSingleCommand, [profile.joint_names.index(arm["gripper_joint"])]))
        return out
    from sensor_msgs.msg import JointState
    section = cmd if cmd["backend"] == "joint_state" else cmd["fallback"]
    return [(t["topic"], JointState, {n: profile.joint_names.index(j) for n, j in zip(t["msg_joint_names"], t["joints"])})
            for t in section["topics"]]


def commanded(msg, columns):
    """(profile columns, values) of one command message of either kind."""
    if hasattr(msg, "position"):   # sensor_msgs/JointState
        return [columns[n] for n in msg.name], list(msg.position)
    values = list(msg.cmd) if hasattr(msg.cmd, "__len__") else [msg.cmd]
    return list(columns), values


@pytest.mark.launch_test
@launch_testing.parametrize("profile_name", ["aloha", "agilex"])
def generate_test_description(profile_name):
    hold_ros_domain(fallback=91)
    return launched("aloha.launch.py", launch_arguments(profile_name))


class TestBimanualCommands(unittest.TestCase):
    def test_both_arms_and_grippers_are_commanded(self, profile_name):
        from rdt_msgs.msg import PolicyStatus

        profile = load_profile(profile_name)
        probe = Probe("rdt_launch_test_probe")
        try:
            statuses = probe.listen(PolicyStatus, "/rdt_policy_node/status")
            topics = command_topics(profile)
            received = {topic: probe.listen(kind, topic) for topic, kind, _ in topics}
            self.assertTrue(wait_for(lambda: statuses and statuses[-1][0].state == "RUNNING"
                                     and all(len(r) >= 10 for r in received.values()), WAIT_S),
                            f"states {[s.state + ': ' + s.hold_reason for s, _ in statuses[-5:]]}, "
                            f"messages {({t: len(r) for t, r in received.items()})}")
            grippers = {profile.joint_names.index(j.name) for j in profile.joints if j.is_gripper}
            covered = set()
            for topic, _, columns in topics:
                for msg, _sent in list(received[topic]):
                    cols, values = commanded(msg, columns)
                    self.assertEqual(len(cols), len(values), topic)
                    q = np.array(values)
                    self.assertTrue(np.all(np.isfinite(q)), topic)
                    # float32 fields (Interbotix) round the limits
                    self.assertTrue(np.all(q >= profile.lower[cols] - 1e-6) and np.all(q <= profile.upper[cols] + 1e-6),
                                    (topic, values))
                    covered.update(cols)
            self.assertEqual(covered, set(range(profile.dof)), "every joint of both arms, grippers included")
            self.assertTrue(grippers and grippers <= covered)
        finally:
            probe.close()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_processes_exit_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
