"""The scripted experts' demonstrations: run on the joint-controlled robot, reproduced by their commands alone."""
import numpy as np
import pytest

from rdt_core.robots import load_profile
from rdt_sim.experts import demonstrate, interpolate, replay, Waypoint


def test_waypoints_interpolate_and_hold():
    a = Waypoint(0.0, np.zeros(3), np.array([1.0, 0, 0, 0]), 1.0)
    b = Waypoint(1.0, np.ones(3), np.array([0.0, 0, 0, 1.0]), 0.0)
    pos, quat, g = interpolate([a, b], 0.5)
    assert np.allclose(pos, 0.5) and g == 0.5 and np.linalg.norm(quat) == pytest.approx(1.0)
    assert np.allclose(interpolate([a, b], 7.0)[0], 1.0) and interpolate([a, b], -1.0)[2] == 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_transfer_cube_demonstration_succeeds_in_the_replay(seed):
    demo = demonstrate("transfer_cube", seed)
    profile = load_profile("aloha")
    assert demo.actions.shape == demo.qpos.shape == (400, 14)
    assert demo.success and 3.0 < demo.time_to_success < 7.0
    # the commands are the robot's: inside the profile's limits, and never faster than its velocity limit
    assert np.all(demo.actions >= profile.lower - 1e-9) and np.all(demo.actions <= profile.upper + 1e-9)
    assert np.all(np.abs(np.diff(demo.actions, axis=0)) <= profile.max_velocity * demo.control_period + 1e-9)
    # the rewards climb in the task's order: right grasp and lift (2) before the handover (4)
    assert np.flatnonzero(demo.rewards >= 2)[0] < np.flatnonzero(demo.rewards >= 4)[0]


def test_insertion_demonstration_succeeds_and_its_commands_alone_reproduce_it():
    """The Insertion expert closes its loop on the robot's own measured poses; what it recorded is only
    joint commands, and those replayed from the same seed give the same episode (the sim is deterministic)."""
    demo = demonstrate("insertion", 0)
    profile = load_profile("aloha")
    assert demo.success and demo.time_to_success < 8.0
    assert np.all(demo.actions >= profile.lower - 1e-9) and np.all(demo.actions <= profile.upper + 1e-9)
    assert np.all(np.abs(np.diff(demo.actions, axis=0)) <= profile.max_velocity * demo.control_period + 1e-9)
    # both grasped (2) before the peg touches the socket's pin (4)
    assert np.flatnonzero(demo.rewards >= 2)[0] < np.flatnonzero(demo.rewards >= 4)[0]
    qpos, rewards = replay("insertion", 0, demo.actions)
    assert np.array_equal(qpos, demo.qpos) and np.array_equal(rewards, demo.rewards)
