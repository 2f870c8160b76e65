"""Safety: the last stage before any command leaves the node.

Whatever the model or the stitching produced, a command is finite, inside the profile's position limits,
and within one tick's worth of the profile's velocity limit from the previous command. It also decides
when to hold (stale observations, pause) and plans the slow move to the first action at start.
"""
from __future__ import annotations

import math

import numpy as np

from .interpolation import Plan


class Safety:
    def __init__(self, lower, upper, max_velocity, *, publish_rate: float, velocity_scale: float = 1.0,
                 max_observation_age_s: float = 0.5, dry_run: bool = False, start_move_duration_s: float = 3.0,
                 start_velocity_scale: float = 0.25):
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        self.max_velocity = np.asarray(max_velocity, dtype=np.float64)
        if not (self.lower.shape == self.upper.shape == self.max_velocity.shape) or np.any(self.lower > self.upper):
            raise ValueError("safety limits need lower <= upper and one max_velocity per joint")
        if not np.all(self.max_velocity > 0) or not np.all(np.isfinite(self.max_velocity)):
            raise ValueError("every joint needs a finite max_velocity > 0 in the profile")
        if publish_rate <= 0 or not (0 < velocity_scale <= 1) or not (0 < start_velocity_scale <= 1):
            raise ValueError("publish_rate must be > 0 and velocity scales in (0, 1]")
        self.publish_rate = float(publish_rate)
        self.velocity_scale = float(velocity_scale)
        self.max_observation_age_s = float(max_observation_age_s)
        self.start_move_duration_s = float(start_move_duration_s)
        self.start_velocity_scale = float(start_velocity_scale)
        self.dry_run = bool(dry_run)
        self.paused = False

    @classmethod
    def from_profile(cls, profile, **kw) -> "Safety":
        return cls(profile.lower, profile.upper, profile.max_velocity, **kw)

    @property
    def max_step(self) -> np.ndarray:
        """Largest allowed change per publish tick, per joint."""
        return self.max_velocity * self.velocity_scale / self.publish_rate

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

    def limit(self, desired, previous) -> tuple[np.ndarray, str | None]:
        """The command to send instead of ``desired`` and, when it had to hold, why.

        ``previous`` is the last command sent (or the measured position before the first one)."""
        prev = self.clip(previous)
        desired = np.asarray(desired, dtype=np.float64)
        if desired.shape != prev.shape:
            return prev, f"command has shape {desired.shape}, expected {prev.shape}"
        if not np.all(np.isfinite(desired)):
            return prev, "non-finite command"
        step = np.clip(self.clip(desired) - prev, -self.max_step, self.max_step)
        return self.clip(prev + step), None

    def start_move(self, start, target, now: float) -> Plan:
        """Slow straight-line move from ``start`` to ``target``: at least start_move_duration_s, and no joint
        faster than start_velocity_scale of its limit."""
        start, target = self.clip(start), self.clip(target)
        dist = np.abs(target - start)
        slow = self.max_velocity * self.velocity_scale * self.start_velocity_scale
        duration = max(self.start_move_duration_s, float(np.max(dist / slow)) if dist.size else 0.0, 1e-3)
        return Plan([now, now + duration], np.stack([start, target]))
