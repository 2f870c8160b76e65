"""A smooth scripted chunk predictor: a labelled stand-in for a trained RDT in control benchmarks.

An untrained tiny RDT predicts noise, which hides what the control runtime does at chunk switches. This
predictor behaves like a competent policy whose chunks disagree a little: each chunk heads from the
measured joints toward a slowly moving goal, plus a random per-chunk offset. It only uses numpy, so it is
picklable for the separate-process inference option.
"""
from __future__ import annotations

import numpy as np


class ScriptedPolicy:
    untrained = False
    scripted = True

    def __init__(self, profile, *, seed: int = 0, horizon: int = 64, offset_std: float = 0.02,
                 goal_period_s: float = 6.0, amplitude: float = 0.3, approach_steps: float = 8.0):
        self.profile = profile
        self.horizon = horizon
        self.dt = 1.0 / profile.control_frequency
        lo, hi = profile.lower, profile.upper
        self.center = (lo + hi) / 2
        self.amplitude = np.minimum(amplitude, 0.4 * (hi - lo))
        self.phase = np.linspace(0, np.pi, profile.dof)
        self.period = goal_period_s
        self.offset_std = offset_std
        self.approach = approach_steps
        self._rng = np.random.default_rng(seed)

    def goal(self, t) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)[..., None]
        return self.center + self.amplitude * np.sin(2 * np.pi * t / self.period + self.phase)

    def __call__(self, images, qpos, stamp, inpaint_actions=None) -> np.ndarray:
        return self.predict(images, qpos, stamp, inpaint_actions=inpaint_actions)

    def predict(self, images, qpos, stamp, *, inpaint_actions=None) -> np.ndarray:
        qpos = np.asarray(qpos, dtype=np.float64)
        rows = np.arange(self.horizon)
        ramp = (1 - np.exp(-(rows + 1) / self.approach))[:, None]
        goal = self.goal(float(stamp) + rows * self.dt)
        chunk = qpos + (goal - qpos) * ramp + self._rng.normal(0, self.offset_std, self.profile.dof)
        if inpaint_actions is not None and len(inpaint_actions):
            known = np.asarray(inpaint_actions, dtype=np.float64)
            k = min(len(known), self.horizon)
            # follow the committed rows exactly; the disagreement at row k decays smoothly afterwards
            delta = known[k - 1] - chunk[k - 1]
            chunk[:k] = known[:k]
            chunk[k:] += delta * np.exp(-(rows[k:] - k + 1) / self.approach)[:, None]
        return np.clip(chunk, self.profile.lower, self.profile.upper).astype(np.float32)


def make_scripted_policy(profile_name: str, seed: int = 0) -> ScriptedPolicy:
    """Picklable factory (for ProcessInference)."""
    from rdt_core.robots import load_profile

    return ScriptedPolicy(load_profile(profile_name), seed=seed)
