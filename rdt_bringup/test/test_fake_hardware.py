"""The fake robot's ROS-free logic: trajectory following as joint_trajectory_controller does it, and the
JointState / Float64MultiArray command and state conversions, on a real RobotProfile."""
import numpy as np
import pytest

from rdt_bringup.fake_hardware import (
    TrajectoryFollower, command_from_array, command_from_joint_state, gripper_goal_done, sample_trajectory,
    stream_positions, trajectory_from_arrays)
from rdt_core.robots import RobotProfile

NAMES = ["j1", "j2", "j3"]


def two_arm_profile():
    """A small bimanual profile: one joint + gripper per side, leader gripper in other units."""
    def joint(name, slot, grip=False):
        return {"name": name, "unified": slot, "lower": -1.0 if not grip else 0.0, "upper": 1.0 if not grip else 0.08,
                "max_velocity": 2.0, "is_gripper": grip, **({"offset": 0.0, "scale": 0.08} if grip else {})}
    return RobotProfile.from_dict({
        "name": "two_arm_test", "control_frequency": 50.0, "command": {"backend": "joint_state"},
        "joints": [joint("left_waist", "left_arm_joint_0_pos"), joint("left_gripper", "left_gripper_open", True),
                   joint("right_waist", "right_arm_joint_0_pos"),
                   joint("right_gripper", "right_gripper_open", True)],
        "cameras": [{"role": "cam_high", "slot": "exterior", "topic": "/cam_high/image"}],
        "state_streams": [
            {"role": "puppet_left", "topic": "/puppet/joint_left", "msg_joint_names": ["joint0", "joint6"],
             "joints": ["left_waist", "left_gripper"]},
            {"role": "puppet_right", "topic": "/puppet/joint_right", "msg_joint_names": ["joint0", "joint6"],
             "joints": ["right_waist", "right_gripper"], "gripper_ranges": {"joint6": [0.0, 4.0]}}],
        "action_streams": [],
    })


def test_sample_interpolates_from_start_state_then_between_points_and_holds_the_last():
    times = [0.5, 1.0]
    points = [[1.0, 2.0], [2.0, 0.0]]
    start = np.array([0.0, 0.0])
    np.testing.assert_allclose(sample_trajectory(times, points, -0.1, start), [0.0, 0.0])
    np.testing.assert_allclose(sample_trajectory(times, points, 0.25, start), [0.5, 1.0])
    np.testing.assert_allclose(sample_trajectory(times, points, 0.75, start), [1.5, 1.0])
    np.testing.assert_allclose(sample_trajectory(times, points, 5.0, start), [2.0, 0.0])
    # A first point at time 0 is taken as is (no ramp from the start state).
    np.testing.assert_allclose(sample_trajectory([0.0, 1.0], points, 0.0, start), [0.0, 0.0])
    np.testing.assert_allclose(sample_trajectory([0.0, 1.0], points, 1e-9, start), [1.0, 2.0], atol=1e-6)


def test_follower_splices_a_new_trajectory_at_its_start_time_from_the_commanded_state():
    follower = TrajectoryFollower(np.zeros(3))
    first = trajectory_from_arrays(NAMES, ["j1", "j2"], [1.0, 2.0], [[1.0, 1.0], [2.0, 2.0]], start_time=10.0)
    follower.submit(first)
    np.testing.assert_allclose(follower.command_at(9.0), [0, 0, 0])
    np.testing.assert_allclose(follower.command_at(10.5), [0.5, 0.5, 0])
    # The next chunk is stamped in the near future: the old one runs until then.
    second = trajectory_from_arrays(NAMES, ["j1"], [1.0], [[-1.0]], start_time=11.5)
    follower.submit(second)
    np.testing.assert_allclose(follower.command_at(11.0), [1.0, 1.0, 0])
    at_switch = follower.command_at(11.5)  # the first trajectory's state at 11.5 is the new start
    np.testing.assert_allclose(at_switch, [1.5, 1.5, 0])
    np.testing.assert_allclose(follower.command_at(12.0), [0.25, 1.5, 0])  # j2 keeps its last command
    np.testing.assert_allclose(follower.command_at(20.0), [-1.0, 1.5, 0])


def test_follower_trajectories_queued_later_are_dropped_by_an_earlier_one():
    follower = TrajectoryFollower(np.zeros(1))
    follower.submit(trajectory_from_arrays(["a"], ["a"], [0.1], [[5.0]], start_time=3.0))
    follower.submit(trajectory_from_arrays(["a"], ["a"], [0.1], [[1.0]], start_time=2.0))
    np.testing.assert_allclose(follower.command_at(10.0), [1.0])


def test_set_joint_takes_the_joint_out_of_the_running_trajectory():
    follower = TrajectoryFollower(np.zeros(2))
    follower.submit(trajectory_from_arrays(["a", "g"], ["a", "g"], [1.0], [[1.0, 1.0]], start_time=0.0))
    follower.command_at(0.5)
    follower.set_joint(1, 0.3)
    np.testing.assert_allclose(follower.command_at(1.0), [1.0, 0.3])


@pytest.mark.parametrize("names,times,points,needle", [
    (["j1", "nope"], [1.0], [[0.0, 0.0]], "unknown joint"),
    (["j1", "j1"], [1.0], [[0.0, 0.0]], "twice"),
    (["j1"], [1.0, 0.5], [[0.0], [0.0]], "strictly increasing"),
    (["j1"], [1.0], [[0.0, 1.0]], "needs 1 positions"),
    (["j1"], [1.0], [[np.nan]], "NaN"),
    (["j1"], [], [], "no points"),
    (["j1"], [1.0], [[3.0]], "outside its limits"),
])
def test_bad_trajectories_are_rejected_with_the_reason(names, times, points, needle):
    with pytest.raises(ValueError, match=needle):
        trajectory_from_arrays(NAMES, names, times, points, 0.0, lower=-np.ones(3), upper=np.ones(3))


def test_joint_state_commands_use_the_state_streams_names_and_gripper_ranges():
    profile = two_arm_profile()
    assert command_from_joint_state(profile, "puppet_left", ["joint0", "joint6"], [0.3, 0.04]) == {0: 0.3, 1: 0.04}
    # The right stream's gripper is published in 0..4 units: 2.0 is half open = 0.04 m.
    cmd = command_from_joint_state(profile, "puppet_right", ["joint6", "joint0"], [2.0, -0.2])
    assert cmd[2] == pytest.approx(-0.2) and cmd[3] == pytest.approx(0.04)
    assert command_from_joint_state(profile, "puppet_left", [], [0.1, 0.02]) == {0: 0.1, 1: 0.02}
    with pytest.raises(ValueError, match="send 2 in the order"):
        command_from_joint_state(profile, "puppet_left", [], [0.1])
    with pytest.raises(ValueError, match="lacks joint"):
        command_from_joint_state(profile, "puppet_left", ["joint0"], [0.1])


def test_array_commands_follow_the_streams_joint_order():
    profile = two_arm_profile()
    assert command_from_array(profile, "puppet_right", [0.5, 0.01]) == {2: 0.5, 3: 0.01}
    with pytest.raises(ValueError, match="expects 2"):
        command_from_array(profile, "puppet_right", [0.5])


def test_stream_positions_invert_map_stream():
    profile = two_arm_profile()
    qpos = np.array([0.1, 0.02, -0.3, 0.06])
    for role in ("puppet_left", "puppet_right"):
        names, values = stream_positions(profile, role, qpos)
        back = profile.map_stream(role, names, values)
        for i, name in enumerate(profile.joint_names):
            if name in back:
                assert back[name] == pytest.approx(qpos[i])
    assert stream_positions(profile, "puppet_right", qpos)[1][1] == pytest.approx(3.0)


def test_gripper_goal_reached_or_stalled():
    assert gripper_goal_done(0.5, 0.5005, 0.49) == (True, False)
    assert gripper_goal_done(0.3, 0.5, 0.3) == (False, True)
    assert gripper_goal_done(0.31, 0.5, 0.3) == (False, False)
