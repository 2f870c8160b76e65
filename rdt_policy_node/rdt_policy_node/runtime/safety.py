"""Safety: the last stage before any command leaves the node.

Whatever the model or the stitching produced, a command is finite, inside the profile's position limits,
and within the profile's velocity limit from the previous command for the time that really passed since it
(at most one publish period: a tick after a stall moves no further than an on-time one, a tick that comes
early or with the clock gone backwards moves less or not at all). It also decides when to hold (stale
observations, pause), rejects chunks far outside the limits (a checkpoint/profile mismatch, not something
to clip and drive into the joint stops), and plans the slow move to the first action at start.

For a trajectory controller it also plans the multi-point trajectories (``trajectory``): knots with
positions and velocities whose spline, as the controller draws it, stays inside the position, velocity
and acceleration limits and ends at rest.
"""
from __future__ import annotations

import math

import numpy as np

from .interpolation import Plan


class Safety:
    def __init__(self, lower, upper, max_velocity, *, publish_rate: float, velocity_scale: float = 1.0,
                 max_observation_age_s: float = 0.5, dry_run: bool = False, start_move_duration_s: float = 3.0,
                 start_velocity_scale: float = 0.25, joint_names=None, grippers=None,
                 chunk_range_margin: float = 0.25, resync_tolerance_s: float = 0.1, max_acceleration=None):
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        self.max_velocity = np.asarray(max_velocity, dtype=np.float64)
        if not (self.lower.shape == self.upper.shape == self.max_velocity.shape) or np.any(self.lower > self.upper):
            raise ValueError("safety limits need lower <= upper and one max_velocity per joint")
        if not np.all(self.max_velocity > 0) or not np.all(np.isfinite(self.max_velocity)):
            raise ValueError("every joint needs a finite max_velocity > 0 in the profile")
        self.publish_rate = float(publish_rate)
        self.velocity_scale = float(velocity_scale)
        self.max_observation_age_s = float(max_observation_age_s)
        self.start_move_duration_s = float(start_move_duration_s)
        self.start_velocity_scale = float(start_velocity_scale)
        self.dry_run = bool(dry_run)
        self.paused = False
        self.joint_names = list(joint_names) if joint_names is not None else [f"joint {i}" for i in
                                                                               range(len(self.lower))]
        # grippers are never re-synced to their measured position: a gripper holding an object is short of
        # its command on purpose, and commanding where it is would loosen the grasp
        self.grippers = (np.zeros(len(self.lower), bool) if grippers is None
                         else np.asarray(grippers, dtype=bool).reshape(len(self.lower)))
        # a chunk row may exceed a limit by this fraction of the joint's range before the chunk is rejected
        self.chunk_range_margin = float(chunk_range_margin)
        # after a hold, a joint measured further than max_velocity * this from the last command has been moved
        # by something else: the slow move starts from where it is, not from the stale command
        self.resync_tolerance_s = float(resync_tolerance_s)
        self.resync_tolerance = self.max_velocity * self.resync_tolerance_s
        # trajectories only (the per-tick commands are limited in velocity): default full speed in 0.1 s
        self.max_acceleration = (self.max_velocity / 0.1 if max_acceleration is None
                                 else np.broadcast_to(np.asarray(max_acceleration, dtype=np.float64),
                                                      self.lower.shape).copy())

    @classmethod
    def from_profile(cls, profile, **kw) -> "Safety":
        kw.setdefault("joint_names", profile.joint_names)
        kw.setdefault("grippers", profile.gripper_mask)
        kw.setdefault("max_acceleration", profile.max_acceleration)
        return cls(profile.lower, profile.upper, profile.max_velocity, **kw)

    @property
    def period(self) -> float:
        return 1.0 / self.publish_rate

    @property
    def max_step(self) -> np.ndarray:
        """Largest allowed change per publish tick, per joint."""
        return self.max_velocity * self.velocity_scale / self.publish_rate

    def step_for(self, dt: float | None) -> np.ndarray:
        """Largest allowed change after ``dt`` seconds: dt clamped to [0, one publish period] (None = a period)."""
        if dt is None:
            return self.max_step
        dt = min(max(float(dt), 0.0), self.period) if math.isfinite(dt) else 0.0
        return self.max_velocity * self.velocity_scale * dt

    def outside_limits(self, position, tolerance=0.0) -> str | None:
        """Which joints of ``position`` lie outside the limits (by more than ``tolerance``), or None."""
        q = np.asarray(position, dtype=np.float64)
        bad = np.flatnonzero((q < self.lower - tolerance) | (q > self.upper + tolerance) | ~np.isfinite(q))
        if not bad.size:
            return None
        return ", ".join(f"{self.joint_names[i]} at {q[i]:.3f} outside [{self.lower[i]:.3f}, {self.upper[i]:.3f}]"
                         for i in bad[:3]) + (f" (+{bad.size - 3} more)" if bad.size > 3 else "")

    def chunk_problem(self, actions) -> str | None:
        """Why a (finite) chunk is too far outside the limits to be a real prediction for this robot, or None."""
        a = np.asarray(actions, dtype=np.float64)
        margin = self.chunk_range_margin * (self.upper - self.lower)
        low, high = a.min(axis=0), a.max(axis=0)
        worst = np.where(low < self.lower - margin, low, high)
        what = self.outside_limits(worst, margin)
        if what is None:
            return None
        return (f"chunk outside the joint limits ({what}, margin {self.chunk_range_margin:g} of the range): "
                f"the checkpoint's action normalisation does not match the robot profile")

    def stale_reason(self, ages: dict) -> str | None:
        """Why the observations are too old to act on (None when all are fresh)."""
        bad = [(name, age) for name, age in ages.items() if not age <= self.max_observation_age_s]
        if not bad:
            return None
        name, age = max(bad, key=lambda x: x[1])
        what = "no message yet" if math.isinf(age) else f"{age:.2f} s > {self.max_observation_age_s:.2f} s"
        return f"stream {name} stale: {what}" + (f" (+{len(bad) - 1} more)" if len(bad) > 1 else "")

    def clip(self, position) -> np.ndarray:
        return np.clip(np.asarray(position, dtype=np.float64), self.lower, self.upper)

    def limit(self, desired, previous, dt: float | None = None) -> tuple[np.ndarray, str | None]:
        """The command to send instead of ``desired`` and, when it had to hold, why.

        ``previous`` is the last command sent (or the measured position before the first one); ``dt`` the
        seconds since it was sent (None = one publish period)."""
        prev = self.clip(previous)
        desired = np.asarray(desired, dtype=np.float64)
        if desired.shape != prev.shape:
            return prev, f"command has shape {desired.shape}, expected {prev.shape}"
        if not np.all(np.isfinite(desired)):
            return prev, "non-finite command"
        max_step = self.step_for(dt)
        step = np.clip(self.clip(desired) - prev, -max_step, max_step)
        return self.clip(prev + step), None

    def start_move(self, start, target, now: float) -> Plan:
        """Slow straight-line move from ``start`` to ``target``: at least start_move_duration_s, and no joint
        faster than start_velocity_scale of its limit."""
        start, target = self.clip(start), self.clip(target)
        dist = np.abs(target - start)
        slow = self.max_velocity * self.velocity_scale * self.start_velocity_scale
        duration = max(self.start_move_duration_s, float(np.max(dist / slow)) if dist.size else 0.0, 1e-3)
        return Plan([now, now + duration], np.stack([start, target]))

    # ------------------------------------------------------------------ trajectories
    #: the tracking law of ``trajectory``: errors close with this time constant (in steps), and the
    #: approach to a target brakes at this fraction of the acceleration limit (the rest is left for the
    #: target's own acceleration)
    TRACKING_STEPS, BRAKING_FRACTION = 3.0, 0.5

    def trajectory(self, start_positions, start_velocities, targets, step_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Knots for a trajectory controller that splines through positions and velocities: (positions,
        velocities), each (K, D), ``step_s`` apart after the start state (the knot at time 0), following
        ``targets`` (K, D: where the plan wants each knot) as closely as the limits allow.

        Between two knots the acceleration is constant, and velocities and positions agree with it
        exactly (``q[k+1] - q[k] == (v[k] + v[k+1]) / 2 * step_s``): the cubic a joint_trajectory_controller
        draws through such knots is that piecewise-quadratic motion itself. So the controller's reference is
        C1, its velocity never above velocity_scale x max_velocity (a knot's velocity bounds the segments
        beside it), its acceleration never above max_acceleration, it never leaves the position limits (it
        always keeps the room to brake before them) and it ends at rest (velocity 0 at the last knot, which
        a stock controller requires, and the safe stop when no new trajectory comes). The start state is
        one the same limits allow (a knot of the running trajectory, or at rest)."""
        p = self.clip(start_positions)
        v = np.asarray(start_velocities, dtype=np.float64).copy()
        targets = np.asarray(targets, dtype=np.float64)
        h = float(step_s)
        vmax = self.max_velocity * self.velocity_scale
        amax = self.max_acceleration
        positions, velocities = np.empty_like(targets), np.empty_like(targets)
        previous = self.clip(targets[0])
        for k, target in enumerate(targets):
            goal = self.clip(target)
            goal_velocity = np.clip((goal - previous) / h, -vmax, vmax)
            previous = goal
            # the error left after this step at the goal's own speed, closed smoothly: linearly near the goal,
            # on the braking curve further away
            e = goal - (p + 0.5 * (v + goal_velocity) * h)
            closing = np.minimum(np.abs(e) / (self.TRACKING_STEPS * h),
                                 np.sqrt(2.0 * self.BRAKING_FRACTION * amax * np.abs(e)))
            wanted = goal_velocity + np.sign(e) * closing
            stop = amax * h * (len(targets) - 1 - k)  # still able to stop by the last knot
            high = np.minimum.reduce([v + amax * h, vmax, stop, self._braking_speed(self.upper - p, v, h)])
            low = np.maximum.reduce([v - amax * h, -vmax, -stop, -self._braking_speed(p - self.lower, -v, h)])
            v_next = np.clip(wanted, low, np.maximum(low, high)) if k < len(targets) - 1 else np.zeros_like(v)
            p = np.clip(p + 0.5 * (v + v_next) * h, self.lower, self.upper)
            v = v_next
            positions[k], velocities[k] = p, v
        return positions, velocities

    def _braking_speed(self, room, v, h) -> np.ndarray:
        """The largest speed towards a limit ``room`` away (moving at ``v`` towards it now) after one step of
        ``h`` that still leaves the room to brake at max_acceleration: (v + v') h/2 + v'^2/(2a) + v' h/2 <= room."""
        a = self.max_acceleration
        disc = h * h - 2.0 * (v * h / 2.0 - room) / a
        return np.where(disc > 0, a * (np.sqrt(np.maximum(disc, 0.0)) - h), 0.0)
