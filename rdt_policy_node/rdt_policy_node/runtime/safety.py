"""Safety: the last stage before any command leaves the node.

Whatever the model or the stitching produced, a command is finite, inside the profile's position limits,
and within the profile's velocity limit from the previous command for the time that really passed since it
(at most one publish period: a tick after a stall moves no further than an on-time one, a tick that comes
early or with the clock gone backwards moves less or not at all). It also decides when to hold (stale
observations, pause), rejects chunks far outside the limits (a checkpoint/profile mismatch, not something
to clip and drive into the joint stops), and plans the slow move to the first action at start.
"""
from __future__ import annotations

import math

import numpy as np

from .interpolation import Plan


class Safety:
    def __init__(self, lower, upper, max_velocity, *, publish_rate: float, velocity_scale: float = 1.0,
                 max_observation_age_s: float = 0.5, dry_run: bool = False, start_move_duration_s: float = 3.0,
                 start_velocity_scale: float = 0.25, joint_names=None, grippers=None,
                 chunk_range_margin: float = 0.25, resync_tolerance_s: float = 0.1):
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

    @classmethod
    def from_profile(cls, profile, **kw) -> "Safety":
        kw.setdefault("joint_names", profile.joint_names)
        kw.setdefault("grippers", profile.gripper_mask)
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
