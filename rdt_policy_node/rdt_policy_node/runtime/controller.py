"""PolicyController: one non-blocking ``tick(now)`` per publish period ties the runtime together.

    sensors -> ObservationWindow -> ChunkScheduler (worker) -> Plan -> Interpolator -> Safety -> command

States (rdt_msgs/PolicyStatus): WARMING_UP (no chunk yet, nothing commanded), MOVING_TO_START (slow move
to the first action), RUNNING (DRY_RUN when commands are computed but not sent), HOLDING (stale
observations, rejected chunk, inference error: the last command is repeated), PAUSED. After any hold or
pause the next good chunk starts with a slow move again.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from .interpolation import Interpolator, Plan
from .observation import ObservationWindow
from .safety import Safety
from .scheduler import Chunk, ChunkScheduler

WARMING_UP, MOVING_TO_START, RUNNING, HOLDING, PAUSED, DRY_RUN = (
    "WARMING_UP", "MOVING_TO_START", "RUNNING", "HOLDING", "PAUSED", "DRY_RUN")


@dataclass
class TickResult:
    command: np.ndarray | None  # the safe command of this tick (None: nothing to command yet)
    publish: bool  # False before the first command and in dry-run
    state: str
    hold_reason: str
    chunk: Chunk | None  # the chunk that arrived this tick (accepted or rejected), for ~/action_chunk
    plan_changed: bool  # a new trajectory starts this tick (chunk switch, start move, hold)


class PolicyController:
    def __init__(self, window: ObservationWindow, scheduler: ChunkScheduler, interpolator: Interpolator,
                 safety: Safety, *, control_frequency: float, clock=time.monotonic):
        self.window, self.scheduler, self.interpolator, self.safety = window, scheduler, interpolator, safety
        self.step_period = 1.0 / float(control_frequency)
        self.clock = clock
        self._lock = threading.RLock()
        self.phase = WARMING_UP
        self.hold_reason = ""
        self.last_command: np.ndarray | None = None
        self._start_plan: Plan | None = None
        self._need_start = True
        self._last_step_time = -np.inf
        self._last_request_step = -1
        self.last_latency = float("nan")

    # ------------------------------------------------------------------ services
    def pause(self) -> None:
        with self._lock:
            self.safety.paused = True

    def resume(self) -> None:
        with self._lock:
            self.safety.paused = False

    def close(self) -> None:
        self.scheduler.close()

    # ------------------------------------------------------------------ the control tick
    def tick(self, now: float | None = None) -> TickResult:
        with self._lock:
            return self._tick(self.clock() if now is None else float(now))

    def _hold(self, reason: str, phase: str = HOLDING) -> None:
        if self.phase != phase or self.hold_reason != reason:
            self._changed = True
        self.phase, self.hold_reason = phase, reason
        self._need_start = True
        self._start_plan = None
        self.scheduler.reset()

    def _tick(self, now: float) -> TickResult:
        self._changed = False
        if now - self._last_step_time >= self.step_period * 0.999 and self.window.step():
            self._last_step_time = now
        chunk = self.scheduler.poll(now)
        if chunk is not None and chunk.error is None:
            self.last_latency = chunk.latency
        stale = self.safety.stale_reason(self.window.ages(now))
        if self.safety.paused:
            self._hold("paused", PAUSED)
        elif stale:
            self._hold(stale)
        else:
            if self.phase == PAUSED:
                self.phase, self.hold_reason = HOLDING, "resumed: waiting for a fresh chunk"
            if chunk is not None:
                self._use_chunk(chunk, now)
            if self.phase == MOVING_TO_START and now >= self._start_plan.end_time:
                target = self._start_plan.values[-1]
                self._start_plan = None
                self.phase, self.hold_reason = HOLDING, "at start pose: waiting for a fresh chunk"
                self.scheduler.reset(Plan.hold(target, now))
            self._maybe_request(now)
        return self._command(now, chunk)

    def _use_chunk(self, chunk: Chunk, now: float) -> None:
        if chunk.error is not None:
            self._hold(chunk.error)
            return
        if self.phase == MOVING_TO_START:
            chunk.error = "dropped: arrived during the move to the start pose"
            return
        if self._need_start:
            start = self.last_command if self.last_command is not None else self.window.latest_qpos()
            if start is None:
                chunk.error = "dropped: no joint state yet"
                return
            first = int(np.clip(np.ceil((now - chunk.obs_stamp) / self.scheduler.dt - 1e-9), 0, len(chunk.actions) - 1))
            chunk.first_index = first
            self._start_plan = self.safety.start_move(start, chunk.actions[first], now)
            self.phase, self.hold_reason = MOVING_TO_START, ""
            self._need_start = False
            self._changed = True
            self.scheduler.reset()
            return
        if self.scheduler.accept(chunk, now):
            self.phase, self.hold_reason = RUNNING, ""
            self._changed = True
        else:
            self._hold(chunk.error)

    def _maybe_request(self, now: float) -> None:
        if self.phase == MOVING_TO_START or not self.scheduler.should_request(now):
            return
        obs = self.window.observation()
        if obs is None or obs.step == self._last_request_step:
            return
        if now - obs.stamp > self.safety.max_observation_age_s:
            return
        self.scheduler.request(obs, now)
        self._last_request_step = obs.step

    def _command(self, now: float, chunk: Chunk | None) -> TickResult:
        previous = self.last_command if self.last_command is not None else self.window.latest_qpos()
        if previous is None:
            return TickResult(None, False, self.phase, self.hold_reason or "no joint state yet", chunk, False)
        if self.phase in (HOLDING, PAUSED):
            desired = self.last_command
        elif self.phase == MOVING_TO_START:
            desired = self._start_plan.sample(now)
        elif self.phase == RUNNING and self.scheduler.plan is not None:
            desired = self.interpolator.command(self.scheduler.plan, now, previous)
        else:
            desired = None
        if desired is None:
            return TickResult(None, False, self.phase, self.hold_reason, chunk, False)
        command, why = self.safety.limit(desired, previous)
        if why:
            self._hold(why)
        self.last_command = command
        state = DRY_RUN if (self.safety.dry_run and self.phase == RUNNING) else self.phase
        return TickResult(command, not self.safety.dry_run, state, self.hold_reason, chunk, self._changed)

    # ------------------------------------------------------------------ trajectories and status
    def trajectory(self, now: float, duration_s: float, step_s: float) -> tuple[np.ndarray, np.ndarray]:
        """The safe future of the current plan from ``now``: times (K,) since now and positions (K, D).

        Every point is inside the position limits and each step within the velocity limit for step_s, so a
        trajectory controller can be given a whole multi-point trajectory."""
        with self._lock:
            if self.phase == MOVING_TO_START:
                plan = self._start_plan
            elif self.phase == RUNNING and self.scheduler.plan is not None:
                plan = self.scheduler.plan
            else:
                plan = None
            start = self.last_command
        if start is None:
            raise RuntimeError("no command yet: call trajectory() after a tick that produced a command")
        n = max(1, int(round(duration_s / step_s)))
        times = np.arange(1, n + 1) * step_s
        if plan is None:
            return times[:1], np.asarray(start)[None].copy()
        targets = plan.sample(now + times)
        out = np.empty_like(targets)
        prev = np.asarray(start, dtype=np.float64)
        max_step = self.safety.max_velocity * self.safety.velocity_scale * step_s
        for i, target in enumerate(targets):
            prev = self.safety.clip(prev + np.clip(self.safety.clip(target) - prev, -max_step, max_step))
            out[i] = prev
        return times, out

    def status(self, now: float | None = None) -> dict:
        """Plain values for rdt_msgs/PolicyStatus."""
        now = self.clock() if now is None else now
        with self._lock:
            ages = self.window.ages(now)
            obs = self.window.observation()
            lat = list(self.scheduler._latencies) if self.scheduler._measured else []
            state = DRY_RUN if (self.safety.dry_run and self.phase == RUNNING) else self.phase
            return {
                "state": state,
                "hold_reason": self.hold_reason,
                "inference_latency_ms": 1000.0 * self.last_latency,
                "inference_latency_p50_ms": 1000.0 * float(np.percentile(lat, 50)) if lat else float("nan"),
                "inference_latency_p99_ms": 1000.0 * float(np.percentile(lat, 99)) if lat else float("nan"),
                "observation_names": list(ages),
                "observation_ages": [float(a) for a in ages.values()],
                "max_camera_skew": obs.camera_skew if obs is not None else 0.0,
                "chunks_received": self.scheduler.chunks_received,
                "chunk_index": self.scheduler.chunk_index(now),
                "dry_run": self.safety.dry_run,
            }
