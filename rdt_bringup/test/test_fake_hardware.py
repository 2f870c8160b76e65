"""The fake robot's ROS-free logic: trajectory following as joint_trajectory_controller does it (through
rdt_core.joint_trajectory), and the
JointState / Float64MultiArray / Interbotix command and state conversions, on the shipped profiles."""
import numpy as np
import pytest

from rdt_bringup.fake_hardware import (
    TrajectoryFollower, command_from_array, command_from_interbotix, command_from_joint_state, gripper_goal_done,
    joint_state_command_topics, stream_positions, trajectory_from_arrays)
from rdt_core.robots import RobotProfile, load_profile

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


def test_positions_only_trajectory_is_linear_from_the_state_on_receipt_and_holds_the_last_point():
    follower = TrajectoryFollower(np.zeros(2), update_period=0.0)
    follower.submit(trajectory_from_arrays(["a", "b"], ["a", "b"], [0.5, 1.0], [[1.0, 2.0], [2.0, 0.0]],
                                           start_time=10.0), now=10.0)
    np.testing.assert_allclose(follower.command_at(10.25), [0.5, 1.0])  # from the state on receipt
    np.testing.assert_allclose(follower.command_at(10.75), [1.5, 1.0])
    np.testing.assert_allclose(follower.command_at(15.0), [2.0, 0.0])  # the last point held


def test_follower_replaces_the_running_trajectory_on_receipt_from_the_desired_state():
    follower = TrajectoryFollower(np.zeros(3), update_period=0.0)
    first = trajectory_from_arrays(NAMES, ["j1", "j2"], [1.0, 2.0], [[1.0, 1.0], [2.0, 2.0]], start_time=10.0)
    follower.submit(first, now=9.0)
    np.testing.assert_allclose(follower.command_at(10.5), [0.75, 0.75, 0])  # from 0 at 9.0 to 1 at 11.0
    # the controller takes a new trajectory when it arrives, even one stamped in the future, and goes from
    # where the running one has brought it to the new first point
    second = trajectory_from_arrays(NAMES, ["j1", "j2"], [1.0], [[-1.0, 1.0]], start_time=11.5)
    follower.submit(second, now=11.0)
    np.testing.assert_allclose(follower.command_at(11.0), [1.0, 1.0, 0])
    np.testing.assert_allclose(follower.command_at(11.75), [0.0, 1.0, 0])  # halfway from (1, 1) at 11.0
    np.testing.assert_allclose(follower.command_at(20.0), [-1.0, 1.0, 0])
    # another set of joints starts from the commanded positions (j2 keeps its last command)
    follower.submit(trajectory_from_arrays(NAMES, ["j1"], [1.0], [[0.0]], start_time=20.0), now=20.0)
    np.testing.assert_allclose(follower.command_at(20.5), [-0.5, 1.0, 0])


def test_follower_splines_through_points_with_velocities():
    follower = TrajectoryFollower(np.zeros(1), update_period=0.0)
    # from rest at 0 to 1 with zero end velocity in 1 s: the cubic 3t^2 - 2t^3
    follower.submit(trajectory_from_arrays(["a"], ["a"], [0.0, 1.0], [[0.0], [1.0]], start_time=5.0,
                                           velocities=[[0.0], [0.0]]), now=5.0)
    for t in (0.25, 0.5, 0.8):
        np.testing.assert_allclose(follower.command_at(5.0 + t), [3 * t ** 2 - 2 * t ** 3])


def test_set_joint_takes_the_joint_out_of_the_running_trajectory():
    follower = TrajectoryFollower(np.zeros(2), update_period=0.0)
    follower.submit(trajectory_from_arrays(["a", "g"], ["a", "g"], [1.0], [[1.0, 1.0]], start_time=0.5), now=0.5)
    follower.command_at(1.0)
    follower.set_joint(1, 0.3)
    np.testing.assert_allclose(follower.command_at(1.5), [1.0, 0.3])


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


def test_a_last_point_still_moving_is_rejected_as_the_stock_controller_does():
    with pytest.raises(ValueError, match="Velocity of last trajectory point of joint j2 is not zero"):
        trajectory_from_arrays(NAMES, ["j1", "j2"], [0.1, 0.2], [[0, 0], [0, 0.1]], 0.0,
                               velocities=[[0.0, 0.5], [0.0, 0.2]])
    with pytest.raises(ValueError, match="needs 2 velocities"):
        trajectory_from_arrays(NAMES, ["j1", "j2"], [0.1], [[0, 0]], 0.0, velocities=[[0.0]])
    ok = trajectory_from_arrays(NAMES, ["j1", "j2"], [0.1, 0.2], [[0, 0], [0, 0.1]], 0.0,
                                velocities=[[0.0, 0.5], [0.0, 0.0]])
    assert ok.velocities.shape == (2, 2)


def test_agilex_joint_state_commands_map_by_topic_and_convert_gripper_action_units():
    profile = load_profile("agilex")
    left, right = joint_state_command_topics(profile.command)
    assert (left["topic"], right["topic"]) == ("/master/joint_left", "/master/joint_right")
    names = [f"joint{i}" for i in range(7)]
    cmd = command_from_joint_state(profile, right, names, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 2.0])
    index = profile.joint_names.index
    assert cmd[index("right_joint0")] == pytest.approx(0.1)
    assert index("left_joint0") not in cmd  # same message names, other topic
    grip = profile.joints[index("right_joint6")]
    # master gripper units (action_scale) -> puppet units (scale): same openness.
    assert (cmd[index("right_joint6")] - grip.offset) / grip.scale == pytest.approx(
        (2.0 - grip.act_offset) / grip.act_scale)
    assert command_from_joint_state(profile, left, [], list(range(7)))[index("left_joint3")] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="in the order"):
        command_from_joint_state(profile, left, [], [0.1])
    with pytest.raises(ValueError, match="unknown joint"):
        command_from_joint_state(profile, left, ["joint9"], [0.1])


def test_aloha_interbotix_and_fallback_commands():
    profile = load_profile("aloha")
    index = profile.joint_names.index
    arm_left = profile.command["arms"][0]
    cmd = command_from_interbotix(profile, arm_left, "arm", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert cmd == {index(n): pytest.approx(v) for n, v in zip(arm_left["joints"], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])}
    assert command_from_interbotix(profile, arm_left, "gripper", [0.9]) == {index("left_gripper"): pytest.approx(0.9)}
    with pytest.raises(ValueError, match="JointGroupCommand .* expects 6"):
        command_from_interbotix(profile, arm_left, "arm", [0.1])
    with pytest.raises(ValueError, match="not understood"):
        command_from_interbotix(profile, arm_left, "wrist", [0.1])
    fallback = joint_state_command_topics(profile.command)
    assert [t["topic"] for t in fallback] == ["/follower_left/commands/joint_states",
                                             "/follower_right/commands/joint_states"]
    assert joint_state_command_topics(load_profile("kinova_gen3").command) == []


def test_array_commands_follow_the_given_joint_order():
    profile = two_arm_profile()
    assert command_from_array(profile, ["right_waist", "right_gripper"], [0.5, 0.01]) == {2: 0.5, 3: 0.01}
    with pytest.raises(ValueError, match="expects 2"):
        command_from_array(profile, ["right_waist", "right_gripper"], [0.5])
    with pytest.raises(ValueError, match="lacks"):
        command_from_array(profile, ["nope"], [0.5])


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


@pytest.mark.parametrize("name", ["kinova_gen3", "aloha", "agilex"])
def test_the_fake_robot_tracks_a_trajectory_under_its_velocity_limits(name):
    """What the node's step timer does, without ROS: follower -> FakeRobot.command -> step -> streams."""
    from rdt_core.fake_robot import FakeRobot
    profile = load_profile(name)
    robot = FakeRobot(profile, seed=0, image_size=(48, 64))
    start = robot.joint_positions()
    follower = TrajectoryFollower(start)
    arm = [i for i in range(profile.dof) if not profile.gripper_mask[i]]
    goal = np.clip(start[arm] + 0.3, profile.lower[arm], profile.upper[arm])
    follower.submit(trajectory_from_arrays(profile.joint_names, [profile.joint_names[i] for i in arm],
                                           [0.5], [goal], start_time=0.0), now=0.0)
    dt, previous = 0.01, start
    for k in range(1, 151):
        robot.command(follower.command_at(k * dt))
        robot.step(dt)
        qpos = robot.joint_positions()
        assert np.all(np.abs(qpos - previous) <= profile.max_velocity * dt + 1e-9)
        previous = qpos
    np.testing.assert_allclose(robot.joint_positions()[arm], goal, atol=1e-6)
    for stream in profile.state_streams:
        names, values = stream_positions(profile, stream.role, robot.joint_positions())
        assert names == stream.msg_joint_names and len(values) == len(names)
    images = robot.render()
    assert set(images) == set(profile.camera_names)
    assert all(img.shape == (48, 64, 3) and img.dtype == np.uint8 for img in images.values())
