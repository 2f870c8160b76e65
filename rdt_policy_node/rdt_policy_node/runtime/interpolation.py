"""Time-stamped action plans and the interpolation from the model's control rate to the publish rate.

A ``Plan`` is a piecewise-linear joint trajectory over absolute times (the stitched chunks). The
``Interpolator`` samples it at each publish tick, either linearly in time or, in ``max_step`` mode, the
way the official deployment's ``arm_steps_length`` works: each joint moves at most its step length per
tick along the straight line to the target (the official code inserts ceil(max |diff| / step) equal
sub-steps between consecutive actions).
"""
from __future__ import annotations

import numpy as np

INTERPOLATION_MODES = ("linear", "max_step")


class Plan:
    """Joint targets ``values`` (N, D) at increasing absolute ``times`` (N,); held constant outside."""

    def __init__(self, times, values):
        self.times = np.asarray(times, dtype=np.float64).reshape(-1)
        self.values = np.asarray(values, dtype=np.float64)
        if self.values.ndim != 2 or self.values.shape[0] != self.times.shape[0] or self.times.shape[0] == 0:
            raise ValueError(f"Plan needs times (N,) and values (N, D) with N >= 1, got {self.times.shape} and "
                             f"{self.values.shape}")
        if np.any(np.diff(self.times) <= 0):
            raise ValueError("Plan times must increase strictly")

    @classmethod
    def hold(cls, position, t: float) -> "Plan":
        return cls([t], np.asarray(position, dtype=np.float64)[None])

    @property
    def start_time(self) -> float:
        return float(self.times[0])

    @property
    def end_time(self) -> float:
        return float(self.times[-1])

    def sample(self, t) -> np.ndarray:
        """Linear interpolation at time(s) t: (D,) for a scalar, (K, D) for an array."""
        ts = np.atleast_1d(np.asarray(t, dtype=np.float64))
        if len(self.times) == 1:
            out = np.repeat(self.values, len(ts), axis=0)
        else:
            i = np.clip(np.searchsorted(self.times, ts, side="right") - 1, 0, len(self.times) - 2)
            t0, t1 = self.times[i], self.times[i + 1]
            w = np.clip((ts - t0) / (t1 - t0), 0.0, 1.0)[:, None]
            out = self.values[i] * (1 - w) + self.values[i + 1] * w
        return out[0] if np.ndim(t) == 0 else out


def interpolate_action(prev: np.ndarray, cur: np.ndarray, steps_length: np.ndarray) -> np.ndarray:
    """Official ``arm_steps_length`` interpolation: (K, D) equal sub-steps from prev to cur (excluding prev)
    so that no joint moves more than its step length per sub-step; K = max_j ceil(|cur-prev|_j / step_j)."""
    diff = np.abs(np.asarray(cur, float) - np.asarray(prev, float))
    k = int(np.max(np.ceil(diff / steps_length))) if diff.size else 0
    if k <= 1:
        return np.asarray(cur, dtype=np.float64)[None]
    return np.linspace(prev, cur, k + 1)[1:]


def expand_steps_length(steps_length, dof: int) -> np.ndarray:
    """Per-joint step lengths: (D,) as given, or a per-arm list (e.g. the official 7 values) tiled to D."""
    s = np.asarray(steps_length, dtype=np.float64).reshape(-1)
    if s.size == dof:
        out = s
    elif s.size and dof % s.size == 0:
        out = np.tile(s, dof // s.size)
    else:
        raise ValueError(f"arm_steps_length has {s.size} values; give one per joint ({dof}) or one per arm joint "
                         f"(a divisor of {dof})")
    if np.any(out <= 0):
        raise ValueError("arm_steps_length values must be > 0")
    return out


class Interpolator:
    """Publish-tick command from the plan: ``linear`` (sample the plan at now) or ``max_step``."""

    MODES = INTERPOLATION_MODES

    def __init__(self, mode: str = "linear", steps_length=None, dof: int | None = None):
        """Settings are checked by rdt_policy_node.config; ``steps_length`` is needed for max_step."""
        self.mode = mode
        self.steps_length = expand_steps_length(steps_length, dof) if mode == "max_step" else None

    def command(self, plan: Plan, now: float, previous: np.ndarray | None) -> np.ndarray:
        target = plan.sample(now)
        if self.mode == "linear" or previous is None:
            return target
        sub = interpolate_action(previous, target, self.steps_length)
        return sub[0]
