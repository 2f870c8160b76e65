"""TrajectoryStream: the multi-point trajectories the JointTrajectory backend sends, spliced C1 (ROS-free).

A joint_trajectory_controller (ros2_controllers, Jazzy) splines through the points it is given: cubic
segments when they carry velocities (rdt_core.joint_trajectory). A new trajectory replaces the running one
at the controller's first update after it arrives, from the state there (with
``interpolate_from_desired_state``: the desired state, on the spline it replaces) to the new first point.

So each trajectory sent here begins with the knots of the running one that lie ahead (the same positions
and velocities at the same times, but for the shift below) up to ``lead_s`` after it is sent, and only after the last of them (the splice) follows
the current plan, planned by Safety.trajectory from the state at the splice. Wherever between now and the
splice the controller takes it, the segment it draws to the next point is the one it was already on
(a cubic is fixed by its two end states), so the switch is C1 and the reference stays inside the limits.
After the splice the new knots continue with the same velocity: C1 too. Knots are ``step_s`` apart.

One detail of the controller (joint_trajectory_controller.cpp, 4.42): the state a new trajectory starts
from is its last command, which it sampled one update period ahead but keeps with the time of that update.
So it starts the new trajectory one period late along the old one. The copied knots are therefore sent one
``controller_period_s`` earlier: the controller then continues on exactly the spline it was on (ahead by
the one period it skips at every switch anyway), instead of squeezing that period into the segment to the
first point, which bends its velocity by up to 1.5 x v x period / (time to that point), a lot when the
first point is close.

Every trajectory ends at rest (velocity 0 at its last point: a stock controller rejects anything else, and
it is the safe stop if the node dies); it is replaced well before it starts braking (``refresh_s``).
A trajectory that ends at rest on a hold target needs no replacing until the plan changes.
"""
from __future__ import annotations

import math

import numpy as np

from rdt_core.joint_trajectory import SplineTrajectory, TrajectoryController

from .controller import HOLDING, PAUSED


def refresh_time(max_velocity, max_acceleration, lead_s: float, step_s: float) -> float:
    """A running trajectory is replaced when less than this is left of it, so that the part the next one
    copies (lead_s) ends before its final braking from full speed (plus a step of margin on each side)."""
    braking = np.asarray(max_velocity, dtype=np.float64) / np.asarray(max_acceleration, dtype=np.float64)
    return float(lead_s + np.max(braking) + 2 * step_s)


class TrajectoryStream:
    def __init__(self, safety, *, step_s: float, horizon_s: float, lead_s: float, controller_period_s: float = 0.0,
                 joints=None):
        """``step_s``: time between knots (a publish period); ``horizon_s``: how far ahead each trajectory
        goes; ``lead_s``: how long a new trajectory keeps the running one (the most a message may take to
        reach the controller for the switch to stay C1); ``controller_period_s``: the trajectory
        controller's update period; ``joints``: the profile columns the controller drives (default all)."""
        self.safety = safety
        self.step_s, self.horizon_s, self.lead_s = float(step_s), float(horizon_s), float(lead_s)
        self.controller_period_s = float(controller_period_s)
        self.joints = np.arange(len(safety.lower)) if joints is None else np.asarray(joints)
        self.refresh_s = refresh_time(safety.max_velocity[self.joints] * safety.velocity_scale,
                                      safety.max_acceleration[self.joints], self.lead_s, self.step_s)
        self.sent: SplineTrajectory | None = None  # the last trajectory sent
        self._model: TrajectoryController | None = None  # the controller's reference, as if taken when sent
        self._hold: np.ndarray | None = None  # the position of the running hold
        self._sent_until = -math.inf
        self._last_now = -math.inf

    def reset(self) -> None:
        """Forget the running trajectory (the next one starts from the last command at rest)."""
        self.sent, self._model, self._sent_until = None, None, -math.inf

    def due(self, now: float, plan_changed: bool) -> bool:
        """A new trajectory on every plan change, and before the running one gets short."""
        return plan_changed or self.sent is None or self._sent_until - now <= self.refresh_s

    def next(self, now: float, result, controller) -> SplineTrajectory | None:
        """The trajectory to send at ``now`` (header.stamp = ``now``, times from it), or None when the
        running one still serves. ``result``: this tick's TickResult; ``controller``: the PolicyController,
        told where the controller's reference is now (PolicyController.follow_reference)."""
        if now < self._last_now:  # the clock went backwards: knot times are in the old time base
            self.reset()
        self._last_now = now
        if result.command is None or not result.publish:
            return None
        sent = self._plan(now, controller, result.plan_changed) if self.due(now, result.plan_changed) else None
        controller.follow_reference(self.joints, self._model.desired(now).positions[self.joints])
        return sent

    def _plan(self, now: float, controller, plan_changed: bool) -> SplineTrajectory:
        times, positions, velocities = self._prefix(now, controller.last_command)
        h = self.step_s
        n = max(1, math.ceil((now + self.horizon_s - times[-1]) / h - 1e-9))
        new_times = times[-1] + h * np.arange(1, n + 1)
        targets = controller.targets(new_times)
        if controller.phase in (HOLDING, PAUSED):  # one hold position from the hold's start to its end
            if plan_changed or self._hold is None:
                self._hold = targets[0].copy()
            targets = np.repeat(self._hold[None], n, axis=0)
        else:
            self._hold = None
        q, v = self.safety.trajectory(positions[-1], velocities[-1], targets, h)
        sent = SplineTrajectory(now, np.concatenate([times, new_times]) - now, np.vstack([positions, q]),
                                np.vstack([velocities, v]))
        if self._model is None:
            self._model = TrajectoryController(positions[0])
        self._model.receive(sent, now)
        self.sent = sent
        j = self.joints
        at_rest_on_target = np.allclose(q[-1, j], targets[-1, j], atol=1e-9) and np.all(targets[:, j] == targets[-1, j])
        self._sent_until = math.inf if at_rest_on_target else sent.end_time
        return sent

    def _prefix(self, now: float, last_command) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The running trajectory's knots after ``now`` up to the splice (now + lead_s), the last of them
        the splice, each one controller period earlier (see ``controller_period_s``); without a running
        trajectory one knot at rest at now + lead_s (where the last one ended, or the last command)."""
        old = self.sent
        t = old.knot_times - self.controller_period_s if old is not None else np.zeros(0)
        ahead = t > now
        if ahead.any():
            keep = ahead & (t <= now + self.lead_s + 1e-9)
            if not keep.any():  # knots sparser than lead_s: keep the next one
                keep = t == t[ahead][0]
            return t[keep], old.positions[keep], old.velocities[keep]
        at = old.positions[-1] if old is not None else np.asarray(last_command, dtype=np.float64)
        return np.array([now + self.lead_s]), at[None].copy(), np.zeros((1, len(at)))
