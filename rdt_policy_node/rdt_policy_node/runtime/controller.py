"""PolicyController: one non-blocking ``tick(now)`` per publish period ties the runtime together.

    sensors -> ObservationWindow -> ChunkScheduler (worker) -> Plan -> Interpolator -> Safety -> command

States (rdt_msgs/PolicyStatus): WARMING_UP (no chunk yet, nothing commanded), MOVING_TO_START (slow move
to the first action), RUNNING (DRY_RUN when commands are computed but not sent), HOLDING (stale
observations, rejected chunk, inference error, the running chunk used up with no new one, the clock gone
backwards: the last command is repeated), PAUSED. Every hold says why (``hold_reason``).

A tracking fault (runtime.tracking: a joint that does not follow the commands while RUNNING or moving to
the start, e.g. blocked by a collision) holds every arm joint at its measured position, not at the
command it failed to reach, and latches: nothing moves again until ``resume()`` (an operator action).

After any hold or pause the next good chunk starts with a slow move again, and only a chunk requested
after the hold began may start it (one in flight from before a pause was computed from the world the
operator paused on). A hold keeps the last command, except for arm joints that something else moved
while we held (measured, fresh, further than the resync tolerance from the command: a controller that
was stopped or faulted, an arm moved by hand): those hold where they are measured, so that neither the
hold nor the slow move after it snaps them back once the controller follows commands again. Grippers
always keep their command (one holding an object is short of it on purpose). Nothing is commanded while the measured
position is outside the limits (Kinova's continuous joints report angles up to pi; the profile stops at
3.0): moving into the limits would need a first step larger than the velocity limit.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from .interpolation import Interpolator, Plan
from .observation import ObservationWindow
from .safety import Safety
from .scheduler import Chunk, ChunkScheduler
from .tracking import TrackingWatchdog

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
                 safety: Safety, *, control_frequency: float, tracking: TrackingWatchdog | None = None):
        self.window, self.scheduler, self.interpolator, self.safety = window, scheduler, interpolator, safety
        self.tracking = tracking if tracking is not None else TrackingWatchdog(
            safety.joint_names, 1.0, enabled=False)
        self.fault = ""  # a latched tracking fault: holds until resume()
        self.step_period = 1.0 / float(control_frequency)
        self._lock = threading.RLock()
        self.phase = WARMING_UP
        self.hold_reason = ""
        self.last_command: np.ndarray | None = None
        self._last_command_time: float | None = None
        self._last_tick: float | None = None
        self._start_plan: Plan | None = None
        self._need_start = True
        self._hung_context = ""
        self._min_start_seq = 0  # chunks requested before the latest hold may not start a move
        self._last_step_time = -np.inf
        self._last_request_step = -1
        self.last_latency = float("nan")

    # ------------------------------------------------------------------ services
    def pause(self) -> None:
        with self._lock:
            self.safety.paused = True

    def resume(self) -> str:
        """Leave a pause and clear a latched tracking fault (the operator checked the arm); the next fresh
        chunk starts with a slow move. Returns the fault that was cleared ("" when none)."""
        with self._lock:
            self.safety.paused = False
            cleared, self.fault = self.fault, ""
            if cleared and self.phase == HOLDING:
                self.hold_reason = "resumed after a tracking fault: waiting for a fresh chunk"
            return cleared

    def close(self, timeout: float = 3.0) -> bool:
        """Ends the inference worker, waiting up to ``timeout`` s for a running inference; True when ended."""
        return self.scheduler.close(timeout)

    # ------------------------------------------------------------------ the control tick
    def tick(self, now: float) -> TickResult:
        """One control period at the caller's time ``now`` (seconds; wall, ROS or simulated time: the runtime
        reads no clock of its own)."""
        with self._lock:
            return self._tick(float(now))

    def _hold(self, reason: str, phase: str = HOLDING) -> None:
        if self.phase != phase or self.hold_reason != reason:
            self._changed = True
        self.phase, self.hold_reason = phase, reason
        self._need_start = True
        self._start_plan = None
        self._min_start_seq = self.scheduler.next_seq
        self.scheduler.reset()
        self.tracking.reset_timer()

    def _check_tracking(self, now: float) -> str | None:
        """The watchdog's trip reason, looked at while the arm should be following our commands."""
        if self.safety.dry_run or self.phase not in (RUNNING, MOVING_TO_START):
            self.tracking.reset_timer()
            return None
        ages = self.window.ages(now)
        age = max(ages[s] for s in self.window.joint_streams)
        return self.tracking.check(now, self.window.latest_qpos(), age)

    def _trip(self, reason: str) -> None:
        """Latch a tracking fault and hold every arm joint where it is measured (pushing on towards the
        command would press into whatever stopped it); grippers keep their command (a grasp)."""
        self.fault = reason
        self._hold(reason)
        measured = self.window.latest_qpos()
        if measured is not None and self.last_command is not None:
            self.last_command = np.where(self.safety.grippers, self.last_command, self.safety.clip(measured))

    def _stale_reason(self, now: float) -> str | None:
        ahead = {s: -a for s, a in self.window.stamp_ages(now).items() if a < -self.safety.max_observation_age_s}
        if ahead:  # alignment and ages are meaningless when the sensors' clock runs ahead of ours
            name = max(ahead, key=ahead.get)
            return (f"stream {name} is stamped {ahead[name]:.2f} s in the future: synchronise the clocks of the "
                    f"sensor and policy computers (e.g. chrony)" + (f" (+{len(ahead) - 1} more)" if len(ahead) > 1 else ""))
        reason = self.safety.stale_reason(self.window.ages(now))
        if reason:
            notes = "; ".join(f"{k}: {v}" for k, v in self.window.problems().items())
            reason = f"{reason} ({notes})" if notes else reason
        return reason

    def _tick(self, now: float) -> TickResult:
        self._changed = False
        went_back = self._last_tick is not None and now < self._last_tick
        back_by = (self._last_tick - now) if went_back else 0.0
        self._last_tick = now
        if went_back:  # plans, stamps and ages are all in the old time base: start over from a hold
            self._last_step_time = -np.inf
            self._last_request_step = -1
            self.window.clear()
            self.tracking.clear()
        if now - self._last_step_time >= self.step_period * 0.999 and self.window.step():
            self._last_step_time = now
        chunk = self.scheduler.poll(now)
        if chunk is not None and chunk.error is None:
            self.last_latency = chunk.latency
        stale = self._stale_reason(now)
        if self.safety.paused:
            self._hold(f"paused; {self.fault}" if self.fault else "paused", PAUSED)
        elif self.fault:
            self._hold(self.fault)
        elif went_back:
            self._hold(f"clock went backwards by {back_by:.3f} s: holding until a fresh chunk")
        elif stale:
            self._hold(stale)
        else:
            if self.phase == PAUSED:
                self.phase, self.hold_reason = HOLDING, "resumed: waiting for a fresh chunk"
            fault = self._check_tracking(now)
            if fault:
                self._trip(fault)
            else:
                self._follow_plan(chunk, now)
        if chunk is not None and chunk.error is None and chunk.first_index is None:
            chunk.error = f"dropped: {self.hold_reason or self.phase}"  # polled while holding: never used
        return self._command(now, chunk)

    def _follow_plan(self, chunk: Chunk | None, now: float) -> None:
        if chunk is not None:
            self._use_chunk(chunk, now)
        if self.phase == MOVING_TO_START and now >= self._start_plan.end_time:
            target = self._start_plan.values[-1]
            self._start_plan = None
            self.phase, self.hold_reason = HOLDING, "at start pose: waiting for a fresh chunk"
            self.scheduler.reset(Plan.hold(target, now))
        if self.phase == RUNNING and self.scheduler.plan is not None and now > self.scheduler.plan.end_time:
            self._hold(self._exhausted_reason(now))
        if self.phase == HOLDING:
            self._note_slow_inference(now)
        self._maybe_request(now)

    def inference_timeout(self) -> float:
        """How long an inference may run before the status calls it hung."""
        return max(1.0, 4.0 * self.scheduler.latency_estimate)

    def _exhausted_reason(self, now: float) -> str:
        why = "the running chunk ended with no new chunk ready"
        if self.scheduler.busy:
            return f"{why}: inference running for {self.scheduler.pending_for(now):.2f} s " \
                   f"(expected {self.scheduler.latency_estimate:.2f} s)"
        return why

    def _note_slow_inference(self, now: float) -> None:
        pending = self.scheduler.pending_for(now)
        if self.scheduler.busy and pending > self.inference_timeout():
            reason = f"inference has not returned for {pending:.1f} s (timeout {self.inference_timeout():.1f} s)"
            if not self.hold_reason.startswith("inference has not returned"):
                self._changed = True
                self._hung_context = self.hold_reason
            self.hold_reason = f"{reason}; {self._hung_context}" if self._hung_context else reason

    def _start_point(self) -> tuple[np.ndarray | None, str | None]:
        """Where a slow move starts, and why it cannot (None, reason)."""
        measured = self.window.latest_qpos()
        if self.last_command is None:
            if measured is None:
                return None, "no joint state yet"
            outside = self.safety.outside_limits(measured, self.safety.max_step)
            if outside:
                return None, f"measured position outside the profile limits ({outside}): move the arm inside " \
                             f"them (e.g. with the vendor's tools) before starting the policy"
            return measured, None
        return self.last_command.copy(), None

    def _resync_hold(self, now: float) -> None:
        """Hold arm joints that something else moved away from the last command where they are measured."""
        measured = self.window.latest_qpos()
        if measured is None or self.last_command is None:
            return
        ages = self.window.ages(now)
        age = max(ages[s] for s in self.window.joint_streams)
        if not age <= self.safety.max_observation_age_s:
            return  # no fresh measurement: keep the command
        # the measurement is ``age`` old: following our commands the arm may have moved that much since
        tolerance = self.safety.resync_tolerance + self.safety.max_velocity * max(age, 0.0)
        moved = (np.abs(measured - self.last_command) > tolerance) & ~self.safety.grippers
        if not moved.any():
            return
        target = np.where(moved, measured, self.last_command)
        if self.safety.outside_limits(target):
            return  # never command outside the limits; keep holding the last command
        names = ", ".join(self.safety.joint_names[i] for i in np.flatnonzero(moved))
        self.last_command = target
        self._changed = True
        note = f"re-synced {names} to the measured position (moved while holding)"
        self.hold_reason = f"{self.hold_reason}; {note}" if self.hold_reason else note

    def _use_chunk(self, chunk: Chunk, now: float) -> None:
        if chunk.error is not None:
            self._hold(chunk.error)
            return
        problem = self.safety.chunk_problem(chunk.actions)
        if problem:
            chunk.error = problem
            self._hold(problem)
            return
        if self.phase == MOVING_TO_START:
            chunk.error = "dropped: arrived during the move to the start pose"
            return
        if self._need_start:
            if chunk.seq < self._min_start_seq:
                chunk.error = "dropped: requested before the hold; waiting for a fresh chunk"
                return
            first = int(np.ceil((now - chunk.obs_stamp) / self.scheduler.dt - 1e-9))
            if first >= len(chunk.actions):
                chunk.error = (f"dropped: arrived {now - chunk.obs_stamp:.3f} s after its observation, past its "
                               f"last action")
                self.hold_reason = chunk.error
                return
            start, why = self._start_point()
            if start is None:
                chunk.error = f"dropped: {why}"
                self.hold_reason = why
                return
            chunk.first_index = max(first, 0)
            self._start_plan = self.safety.start_move(start, chunk.actions[chunk.first_index], now)
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
        if self.phase in (HOLDING, PAUSED) and not self.safety.dry_run:  # dry run: the arm never follows
            self._resync_hold(now)
        if self.last_command is not None:
            previous, dt = self.last_command, now - self._last_command_time
        else:
            previous, dt = self.window.latest_qpos(), None
            if previous is not None and self.safety.outside_limits(previous, self.safety.max_step):
                previous = None  # never command a first step larger than the limits allow
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
        command, why = self.safety.limit(desired, previous, dt)
        if why:
            self._hold(why)
        self.last_command = command
        self._last_command_time = now
        self.tracking.record(now, command)
        state = DRY_RUN if (self.safety.dry_run and self.phase == RUNNING) else self.phase
        return TickResult(command, not self.safety.dry_run, state, self.hold_reason, chunk, self._changed)

    # ------------------------------------------------------------------ trajectories and status
    def follow_reference(self, joints, positions) -> None:
        """The arm's controller is commanded ``positions`` for the profile columns ``joints`` now: a
        trajectory controller's reference, which lags the ticks' commands by the acceleration limit. The
        runtime continues from there (the next tick's step, a hold's position, the re-sync check), so that
        a hold does not take that lag for a joint moved by something else."""
        with self._lock:
            if self.last_command is None:
                return
            command = self.last_command.copy()
            command[np.asarray(joints)] = np.asarray(positions, dtype=np.float64)
            self.last_command = self.safety.clip(command)

    def targets(self, times) -> np.ndarray:
        """Where the current plan wants the joints at absolute ``times`` (K,): (K, D), inside the position
        limits; the last command while holding or paused. For trajectories planned ahead (Safety.trajectory)."""
        with self._lock:
            if self.phase == MOVING_TO_START:
                plan = self._start_plan
            elif self.phase == RUNNING and self.scheduler.plan is not None:
                plan = self.scheduler.plan
            else:
                plan = None
            hold = self.last_command
        if hold is None:
            raise RuntimeError("no command yet: call targets() after a tick that produced a command")
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        if plan is None:
            return np.repeat(np.asarray(hold, dtype=np.float64)[None], len(times), axis=0)
        return self.safety.clip(plan.sample(times))

    def status(self, now: float) -> dict:
        """Plain values for rdt_msgs/PolicyStatus at the caller's time ``now``."""
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
