"""A JointTrajectory as ros2_controllers' joint_trajectory_controller (Jazzy) samples it, ROS-free.

The policy node plans the trajectories it sends with this model of the receiver, the tests check them with
it, and the fake robot follows them with it, so all three agree with the real controller on:

- each segment between two points is a polynomial in time: linear when a point has positions only, cubic
  with velocities, quintic with velocities and accelerations (``interpolate_between_points``);
- a new trajectory replaces the running one at the first controller update after it arrives: from the
  state at that moment (with ``interpolate_from_desired_state`` the desired state, on the old spline) a
  segment of the same kind leads to the first point at ``header.stamp + time_from_start``; a stamp of 0
  means "now"; once the time is past the first point, the segment containing it is sampled directly;
- after the last point the controller holds it (velocity and acceleration zero when not given).

Times are seconds on one clock (the node's ROS time). Facts from joint_trajectory_controller's
trajectory.cpp and joint_trajectory_controller.cpp, release 4.42 (Jazzy).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SplineTrajectory", "TrajectoryState", "hermite", "TrajectoryController"]


@dataclass
class TrajectoryState:
    """Positions, velocities, accelerations (J,) of the joints at one time."""
    positions: np.ndarray
    velocities: np.ndarray
    accelerations: np.ndarray

    @classmethod
    def at_rest(cls, positions) -> "TrajectoryState":
        q = np.asarray(positions, dtype=np.float64).copy()
        return cls(q, np.zeros_like(q), np.zeros_like(q))


@dataclass
class SplineTrajectory:
    """The content of a trajectory_msgs/JointTrajectory: ``start`` = header.stamp (seconds; 0 = on receipt),
    ``times`` (N,) = time_from_start, ``positions`` (N, J), ``velocities`` / ``accelerations`` (N, J) or
    None when the points leave them empty."""
    start: float
    times: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray | None = None
    accelerations: np.ndarray | None = None

    def __post_init__(self):
        self.times = np.asarray(self.times, dtype=np.float64).reshape(-1)
        self.positions = np.asarray(self.positions, dtype=np.float64).reshape(len(self.times), -1)
        for name in ("velocities", "accelerations"):
            v = getattr(self, name)
            if v is not None:
                setattr(self, name, np.asarray(v, dtype=np.float64).reshape(self.positions.shape))

    @property
    def knot_times(self) -> np.ndarray:
        """Absolute times of the points (for a stamp of 0 only after ``start`` was set on receipt)."""
        return self.start + self.times

    @property
    def end_time(self) -> float:
        return float(self.start + self.times[-1])

    def point(self, i: int) -> TrajectoryState:
        """Point ``i`` as a state (missing velocities/accelerations as zeros, as the controller holds them)."""
        q = self.positions[i]
        zero = np.zeros_like(q)
        return TrajectoryState(q.copy(), zero if self.velocities is None else self.velocities[i].copy(),
                               zero if self.accelerations is None else self.accelerations[i].copy())


def hermite(t0: float, a: TrajectoryState, t1: float, b: TrajectoryState, t, *, use_velocity: bool,
            use_acceleration: bool) -> TrajectoryState:
    """The controller's segment from state ``a`` at ``t0`` to ``b`` at ``t1``, sampled at ``t`` (scalar or
    (K,), clamped to [t0, t1]): linear, cubic (``use_velocity``) or quintic (both), with the coefficients
    of interpolate_between_points."""
    ts = np.atleast_1d(np.asarray(t, dtype=np.float64))
    T = float(t1 - t0)
    s = np.clip(ts - t0, 0.0, max(T, 0.0))[:, None]
    p0, p1 = a.positions[None], b.positions[None]
    if T <= 0.0:
        c = [p0]
    elif not use_velocity:
        c = [p0, (p1 - p0) / T]
    elif not use_acceleration:
        v0, v1 = a.velocities[None], b.velocities[None]
        c = [p0, v0, (-3 * p0 + 3 * p1 - 2 * v0 * T - v1 * T) / T ** 2,
             (2 * p0 - 2 * p1 + v0 * T + v1 * T) / T ** 3]
    else:
        v0, v1, a0, a1 = a.velocities[None], b.velocities[None], a.accelerations[None], b.accelerations[None]
        c = [p0, v0, 0.5 * a0,
             (-20 * p0 + 20 * p1 - 3 * a0 * T ** 2 + a1 * T ** 2 - 12 * v0 * T - 8 * v1 * T) / (2 * T ** 3),
             (30 * p0 - 30 * p1 + 3 * a0 * T ** 2 - 2 * a1 * T ** 2 + 16 * v0 * T + 14 * v1 * T) / (2 * T ** 4),
             (-12 * p0 + 12 * p1 - a0 * T ** 2 + a1 * T ** 2 - 6 * v0 * T - 6 * v1 * T) / (2 * T ** 5)]
    zero = np.zeros((len(ts), p0.shape[1]))
    pos = zero + sum(ci * s ** i for i, ci in enumerate(c))
    vel = zero + sum(i * ci * s ** (i - 1) for i, ci in enumerate(c) if i >= 1)
    acc = zero + sum(i * (i - 1) * ci * s ** (i - 2) for i, ci in enumerate(c) if i >= 2)
    if np.ndim(t) == 0:
        return TrajectoryState(pos[0], vel[0], acc[0])
    return TrajectoryState(pos, vel, acc)


class TrajectoryController:
    """The desired state of a joint_trajectory_controller over time, for the trajectories it receives.

    ``from_desired_state`` (the controller's ``interpolate_from_desired_state``): a new trajectory starts
    from the desired state at its arrival, on the spline it replaces; otherwise from ``measured`` given to
    ``receive``. ``update_period``: the controller's period; its last command is sampled one period ahead
    and stored with the update's time, the state a new trajectory starts from (joint_trajectory_controller
    .cpp: ``last_commanded_state_ = command_next_``, sampled at ``traj_time_ + update_period_``)."""

    def __init__(self, initial_positions, *, from_desired_state: bool = True, update_period: float = 0.0):
        self.from_desired_state = bool(from_desired_state)
        self.update_period = float(update_period)
        self._hold = TrajectoryState.at_rest(initial_positions)
        self._trajectory: SplineTrajectory | None = None
        self._before: tuple[float, TrajectoryState] | None = None

    @property
    def trajectory(self) -> SplineTrajectory | None:
        return self._trajectory

    def receive(self, trajectory: SplineTrajectory, now: float, measured: TrajectoryState | None = None) -> None:
        """The controller takes ``trajectory`` in its update at ``now`` (the first after the message arrived)."""
        if self.from_desired_state or measured is None:
            # the last command: sampled one period ahead in the previous update, stored with that update's time
            before = (float(now) - self.update_period, self.desired(now))
        else:
            before = (float(now), measured)
        if trajectory.start == 0.0:  # header.stamp 0: start on receipt
            trajectory = SplineTrajectory(now, trajectory.times, trajectory.positions, trajectory.velocities,
                                          trajectory.accelerations)
        self._trajectory, self._before = trajectory, before

    def desired(self, t: float) -> TrajectoryState:
        """The desired state at time ``t`` (not before the running trajectory was received)."""
        traj = self._trajectory
        if traj is None:
            return TrajectoryState.at_rest(self._hold.positions)
        use_v = traj.velocities is not None
        use_a = use_v and traj.accelerations is not None
        knots = traj.knot_times
        if t < knots[0]:  # from the state the trajectory started from to its first point
            t_before, before = self._before
            return hermite(t_before, before, knots[0], traj.point(0), t, use_velocity=use_v, use_acceleration=use_a)
        if t >= knots[-1]:
            return traj.point(len(knots) - 1)
        i = int(np.searchsorted(knots, t, side="right") - 1)
        return hermite(knots[i], traj.point(i), knots[i + 1], traj.point(i + 1), t, use_velocity=use_v,
                       use_acceleration=use_a)

    def sample(self, times) -> TrajectoryState:
        """The desired states at increasing ``times`` (K,) as (K, J) arrays."""
        states = [self.desired(float(t)) for t in np.asarray(times, dtype=np.float64)]
        return TrajectoryState(np.stack([s.positions for s in states]), np.stack([s.velocities for s in states]),
                               np.stack([s.accelerations for s in states]))
