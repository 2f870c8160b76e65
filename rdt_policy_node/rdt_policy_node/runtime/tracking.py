"""Tracking-error watchdog: do the measured joints follow the commands?

A joint that stays away from what we command is blocked by a collision, has a stopped or faulted
controller, or listens to another topic than the one we publish on. Streaming further commands then
pushes harder into the obstacle, or moves the arm with a jump once its controller wakes up, so the
controller holds at the measured position and waits for the operator (``PolicyController.resume``).

A real arm follows its commands with a lag (the controller's tracking, the joint state's transport), so a
joint counts as off track only when its measured position is further than its tolerance from every
command in effect during the last ``lag_s`` seconds (plus the measurement's age): the envelope of the
recent commands. That is as lenient as "``max_velocity * lag_s`` behind the current command" for a joint
moving at its velocity limit and much tighter for a slow one, so a slowly pushed obstacle is found as
quickly as a fast one. The tolerance adds to a per-joint floor (tracking errors of a healthy controller,
gravity sag) one publish tick of motion (a trajectory controller may run one tick ahead of our last
command). Only when the joint stays off track for ``timeout_s`` does the watchdog trip.

Grippers are left out by default: a gripper closing on an object stops short of its command by design.
"""
from __future__ import annotations

import collections
import math

import numpy as np


class TrackingWatchdog:
    def __init__(self, joint_names, tolerance, *, lag_s: float = 0.3, timeout_s: float = 0.5, monitored=None,
                 lead=0.0, enabled: bool = True, units=None):
        """``tolerance``: one value for every joint or one per joint (robot units); ``monitored``: joint mask
        (default all); ``lead``: per-joint motion of one publish tick, added to the tolerance; ``units``: per
        joint, for the reason (default rad). Settings are checked by rdt_policy_node.config."""
        self.joint_names = list(joint_names)
        n = len(self.joint_names)
        tol = np.asarray(tolerance, dtype=np.float64).reshape(-1)
        if tol.size == 1:
            tol = np.full(n, float(tol[0]))
        self.floor = tol
        self.tolerance = tol + np.broadcast_to(np.asarray(lead, dtype=np.float64), (n,))
        self.lag_s, self.timeout_s = float(lag_s), float(timeout_s)
        self.monitored = np.ones(n, bool) if monitored is None else np.asarray(monitored, bool).reshape(n)
        self.enabled = bool(enabled) and bool(self.monitored.any())
        self.units = [" rad"] * n if units is None else [f" {u}" if u else "" for u in units]
        self._history: collections.deque = collections.deque()  # (time, command), oldest first
        self._since: float | None = None  # first tick of the current off-track spell

    def record(self, t: float, command) -> None:
        """A command sent at ``t`` (monotonic in t; call clear() when the clock steps back)."""
        self._history.append((float(t), np.asarray(command, dtype=np.float64).copy()))

    def clear(self) -> None:
        self._history.clear()
        self._since = None

    def reset_timer(self) -> None:
        """Not watching this tick (holding, paused, stale, dry run): an off-track spell starts over."""
        self._since = None

    def _envelope(self, t_from: float) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-joint min and max of the commands in effect during [t_from, now]: the ones sent since
        t_from and the last one before it. Older ones are dropped."""
        h = self._history
        while len(h) > 1 and h[1][0] <= t_from:
            h.popleft()
        if not h:
            return None
        cmds = np.stack([c for _, c in h])
        return cmds.min(axis=0), cmds.max(axis=0)

    def check(self, now: float, measured, measured_age: float = 0.0) -> str | None:
        """Why to stop (the watchdog trips), or None. Call once per tick while the arm should follow."""
        if not self.enabled or measured is None:
            self._since = None
            return None
        age = measured_age if math.isfinite(measured_age) else 0.0
        env = self._envelope(now - self.lag_s - max(age, 0.0))
        if env is None:
            self._since = None
            return None
        lo, hi = env
        q = np.asarray(measured, dtype=np.float64)
        off = np.maximum(lo - q, q - hi) - self.tolerance
        off = np.where(self.monitored & np.isfinite(q), off, -np.inf)
        if not np.any(off > 0):
            self._since = None
            return None
        if self._since is None:
            self._since = now
        spell = now - self._since
        if spell < self.timeout_s:
            return None
        last = self._history[-1][1]
        error = np.abs(last - q)
        bad = np.flatnonzero(off > 0)
        worst = int(bad[np.argmax(error[bad])])
        others = f" (+{', '.join(self.joint_names[i] for i in bad if i != worst)})" if bad.size > 1 else ""
        unit = self.units[worst]
        return (f"{self.joint_names[worst]} is {error[worst]:.2f}{unit} behind its command for {spell:.1f} s"
                f"{others} (tolerance {self.floor[worst]:.2f}{unit} after {self.lag_s:g} s of lag): collision, a "
                f"stopped controller or a wrong command topic? Holding where it is; check the arm, then resume")
