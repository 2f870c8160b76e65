"""rdt_core.joint_trajectory: the model of ros2_controllers' joint_trajectory_controller (Jazzy) that the
policy node plans with and the fake robot follows with. Its segments against their defining conditions,
and what the controller does with a new trajectory."""
import numpy as np
import pytest

from rdt_core.joint_trajectory import SplineTrajectory, TrajectoryController, TrajectoryState, hermite


def state(p, v=0.0, a=0.0):
    return TrajectoryState(np.atleast_1d(np.float64(p)), np.atleast_1d(np.float64(v)), np.atleast_1d(np.float64(a)))


def test_segments_meet_their_end_conditions():
    a, b = state(0.3, -1.0, 4.0), state(1.1, 0.5, -2.0)
    for use_v, use_a in ((True, False), (True, True)):
        s0 = hermite(2.0, a, 2.5, b, 2.0, use_velocity=use_v, use_acceleration=use_a)
        s1 = hermite(2.0, a, 2.5, b, 2.5, use_velocity=use_v, use_acceleration=use_a)
        np.testing.assert_allclose([s0.positions, s0.velocities, s1.positions, s1.velocities],
                                   [a.positions, a.velocities, b.positions, b.velocities], atol=1e-12)
        if use_a:
            np.testing.assert_allclose([s0.accelerations, s1.accelerations], [a.accelerations, b.accelerations],
                                       atol=1e-9)
    lin = hermite(2.0, a, 2.5, b, [2.0, 2.25, 2.5], use_velocity=False, use_acceleration=False)
    np.testing.assert_allclose(lin.positions[:, 0], [0.3, 0.7, 1.1])
    np.testing.assert_allclose(lin.velocities[:, 0], 1.6)  # the chord: a velocity step at every point


def test_the_velocities_are_the_derivative_of_the_positions():
    a, b = state(-0.2, 0.8, 1.0), state(0.4, -0.3, 3.0)
    t = np.linspace(1.0, 1.3, 3001)
    for use_a in (False, True):
        s = hermite(1.0, a, 1.3, b, t, use_velocity=True, use_acceleration=use_a)
        inner = slice(1, -1)  # central differences
        np.testing.assert_allclose(np.gradient(s.positions[:, 0], t)[inner], s.velocities[inner, 0], atol=1e-5)
        np.testing.assert_allclose(np.gradient(s.velocities[:, 0], t)[inner], s.accelerations[inner, 0], atol=1e-3)


def test_a_cubic_through_a_quadratics_positions_and_velocities_is_that_quadratic():
    # what the policy's planner relies on: knots of a constant-acceleration motion are splined exactly
    p0, v0, acc, T = 0.1, 0.7, -5.0, 0.04
    t = np.linspace(0.0, T, 41)
    s = hermite(0.0, state(p0, v0), T, state(p0 + v0 * T + acc * T ** 2 / 2, v0 + acc * T), t,
                use_velocity=True, use_acceleration=False)
    np.testing.assert_allclose(s.positions[:, 0], p0 + v0 * t + acc * t ** 2 / 2, atol=1e-12)
    np.testing.assert_allclose(s.velocities[:, 0], v0 + acc * t, atol=1e-10)


def test_a_new_trajectory_starts_from_the_desired_state_on_receipt():
    c = TrajectoryController([0.0], update_period=0.0)
    c.receive(SplineTrajectory(10.0, [1.0, 2.0], [[1.0], [1.0]], [[1.0], [0.0]]), now=9.5)
    mid = c.desired(10.2)  # the segment from rest at 0 (on receipt, 9.5) to the first point at 11.0
    expected = hermite(9.5, state(0.0), 11.0, state(1.0, 1.0), 10.2, use_velocity=True, use_acceleration=False)
    np.testing.assert_allclose(mid.positions, expected.positions)
    on_old = c.desired(11.3)
    # a new trajectory at 11.3 starts from there: position and velocity continue (C1)
    c.receive(SplineTrajectory(11.3, [0.5], [[0.0]], [[0.0]]), now=11.3)
    after = c.desired(11.3)
    np.testing.assert_allclose([after.positions, after.velocities], [on_old.positions, on_old.velocities])
    np.testing.assert_allclose(c.desired(12.0).positions, [0.0])
    np.testing.assert_allclose(c.desired(99.0).velocities, [0.0])  # holds the last point


def test_measured_state_and_zero_stamp_and_the_one_period_offset():
    c = TrajectoryController([0.0], from_desired_state=False)
    c.receive(SplineTrajectory(0.0, [1.0], [[2.0]]), now=5.0, measured=state(1.0))  # stamp 0: from receipt
    np.testing.assert_allclose(c.desired(5.5).positions, [1.5])  # linear from the measured 1.0
    # interpolate_from_desired_state keeps the last command (sampled a period ahead) with the previous
    # update's time: the new trajectory starts one period late along the old one, ahead by ~ v x period
    c = TrajectoryController([0.0], update_period=0.01)
    c.receive(SplineTrajectory(1.0, [1.0], [[1.0]], [[0.0]]), now=1.0)  # from rest at 0 to 1 at 2.0
    at = c.desired(1.5)
    c.receive(SplineTrajectory(1.5, [0.5], [[1.0]], [[0.0]]), now=1.5)  # the same end state
    jumped = c.desired(1.5).positions[0] - at.positions[0]
    assert jumped == pytest.approx(at.velocities[0] * 0.01, rel=0.05)
