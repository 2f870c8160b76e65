"""Lock-step episodes in simulated time: the sim, its sensors, the policy and (simulated) inference latency.

One loop advances physics a control period at a time and hands everything the same clock, the sim's:
joint states every tick, camera frames at their rate as ``LazyFrame`` (rendered only if a policy reads
them), the runtime's ``tick(now)`` and its arrival clock. Inference latency is simulated in sim time: a
chunk requested at t is delivered at t + latency (``SimLatencyInference``), so the result of an episode
does not depend on how fast this machine is. The sim runs as fast as physics (and whatever rendering a
policy asks for) allow, faster or slower than real time.

Three ways to drive the robot (``mode``):
  expert   the scripted demonstration's joint commands, one per tick (no runtime, no latency);
  ours     rdt_policy_node's runtime (PolicyController: window, scheduler, blending, safety) around a chunk
           predictor;
  sync     the official synchronous loop (scripts/agilex_inference.py): infer, the robot waits for the
           inference, then executes the chunk's actions one per tick.
"""
from __future__ import annotations

import math
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from .aloha import AlohaSim
from .rendering import LazyFrame, materialize

MODES = ("expert", "ours", "sync")


class SimLatencyInference:
    """The predictor runs at once (in the caller's thread), but its chunk is handed over only when the
    sim's clock reaches request time + ``latency_s``: inference latency in simulated time."""

    def __init__(self, predict, latency_s: float, clock):
        from rdt_policy_node.runtime.scheduler import call_predictor

        if not (math.isfinite(latency_s) and latency_s >= 0):
            raise ValueError(f"latency must be a finite number of seconds >= 0, got {latency_s}")
        self._call = call_predictor
        self.predict, self.latency_s, self.clock = predict, float(latency_s), clock
        self._pending: list[tuple[float, Future, object, BaseException | None]] = []

    def submit(self, images, qpos, stamp, inpaint) -> Future:
        future: Future = Future()
        future.set_running_or_notify_cancel()
        try:
            result, error = self._call(self.predict, images, qpos, stamp, inpaint), None
        except Exception as e:  # noqa: BLE001 - delivered through the future, as a worker thread would
            result, error = None, e
        self._pending.append((self.clock() + self.latency_s, future, result, error))
        return future

    def advance(self, now: float) -> None:
        """Deliver every chunk whose (simulated) inference has finished by ``now``."""
        keep = []
        for ready, future, result, error in self._pending:
            if ready <= now + 1e-9:
                future.set_exception(error) if error is not None else future.set_result(result)
            else:
                keep.append((ready, future, result, error))
        self._pending = keep

    def close(self, timeout: float = 0.0) -> bool:
        """Cancels the chunks not yet handed over; nothing runs in the background (True: ended)."""
        for _, future, _, _ in self._pending:
            future.cancel()
        self._pending = []
        return True


class ImagePredictor:
    """A predictor that reads camera frames (a trained RDT): renders the window's LazyFrames and, like the
    policy node's ``jpeg_roundtrip``, passes them through the JPEG compression the recorded episodes had."""

    reads_images = True

    def __init__(self, predict, jpeg_quality: int | None = 95):
        self.predict, self.jpeg_quality = predict, jpeg_quality
        self._seen: dict[int, tuple] = {}  # id(frame) -> (frame, its image): a frame seen last step is reused

    def _image(self, frame):
        if frame is None:
            return None
        hit = self._seen.get(id(frame))
        if hit is not None and hit[0] is frame:
            return hit[1]
        from rdt_policy_node.runtime import jpeg_roundtrip

        image = materialize([frame])[0]
        return jpeg_roundtrip(image, self.jpeg_quality) if self.jpeg_quality else image

    def __call__(self, images, qpos, stamp, inpaint_actions=None):
        frames = [self._image(f) for f in images]
        # the same array for the same frame: the policy's history cache encodes each frame once
        self._seen = {id(f): (f, a) for f, a in zip(images, frames) if f is not None}
        if inpaint_actions is None:
            return self.predict(frames, qpos, stamp)
        return self.predict(frames, qpos, stamp, inpaint_actions=inpaint_actions)


@dataclass
class EpisodeLog:
    """What one episode did, in sim time (seconds since its start)."""

    task: str
    seed: int
    mode: str
    latency_s: float
    duration_s: float  # the time limit
    success: bool = False
    time_to_success: float | None = None
    max_reward: int = 0
    command_times: list = field(default_factory=list)
    commands: list = field(default_factory=list)
    switch_times: list = field(default_factory=list)  # a new chunk starts being executed
    rewards: list = field(default_factory=list)  # (time, reward) per tick
    states: list = field(default_factory=list)  # (time, ticks state) per tick, ours only
    snapshots: list = field(default_factory=list)  # (time, sim state) for the report's frame strip

    def metrics(self, control_period: float) -> dict:
        """Success, time to success, the longest gap between commands, and jerk at chunk switches."""
        t = np.asarray(self.command_times, dtype=np.float64)
        q = np.asarray(self.commands, dtype=np.float64).reshape(len(t), -1)
        gap = float(np.diff(t).max()) if len(t) > 1 else float("nan")
        jerk_switch = jerk_all = jerk_max = float("nan")
        if len(t) > 4:
            # jerk of the commanded arm joints on the command stream (rad/s^3), per command interval
            v = np.diff(q, axis=0) / np.maximum(np.diff(t), 1e-9)[:, None]
            a = np.diff(v, axis=0) / np.maximum(np.diff(t[1:]), 1e-9)[:, None]
            j = np.abs(np.diff(a, axis=0) / np.maximum(np.diff(t[2:]), 1e-9)[:, None])
            arm = np.array([c % 7 != 6 for c in range(q.shape[1])])
            jmax = j[:, arm].max(axis=1)
            jt = t[3:]
            jerk_all, jerk_max = float(np.median(jmax)), float(jmax.max())
            near = [jmax[(jt >= s - 1.5 * control_period) & (jt <= s + 2.5 * control_period)] for s in self.switch_times]
            near = [n.max() for n in near if n.size]
            jerk_switch = float(np.max(near)) if near else float("nan")
        return {"task": self.task, "seed": self.seed, "mode": self.mode, "latency_s": self.latency_s,
                "success": self.success, "time_to_success_s": self.time_to_success, "max_reward": self.max_reward,
                "max_command_gap_s": gap, "jerk_at_switches": jerk_switch, "jerk_median": jerk_all,
                "jerk_max": jerk_max,
                "chunk_switches": len(self.switch_times), "commands": len(t)}


class SimSensors:
    """The robot's drivers in the loop: joint states every tick, camera frames at ``camera_rate_hz``."""

    def __init__(self, sim: AlohaSim, window, camera_rate_hz: float):
        self.sim, self.window = sim, window
        self.camera_period = 1.0 / float(camera_rate_hz)
        self.next_frame = 0.0
        names = sim.profile.joint_names
        self.streams = {s.role: [names.index(j) for j in s.joints] for s in sim.profile.state_streams}

    def publish(self, now: float) -> None:
        q = self.sim.qpos()
        for role, idx in self.streams.items():
            self.window.add_joints(role, q[idx], now)
        if now >= self.next_frame - 1e-9:
            for role, frame in self.sim.frames().items():
                self.window.add_image(role, frame, now)
            self.next_frame += self.camera_period * max(1, math.ceil((now - self.next_frame) / self.camera_period + 1e-9))


def run_episode(sim: AlohaSim, seed: int, mode: str, *, predictor=None, demo=None, latency_s: float = 0.0,
                duration_s: float | None = None, camera_rate_hz: float = 25.0, runtime_options: dict | None = None,
                snapshot_times=(), stop_at_success: bool = True) -> EpisodeLog:
    """One seeded episode on ``sim``. ``expert`` needs ``demo`` (experts.Demonstration); ``ours`` and
    ``sync`` a chunk ``predictor`` (images, qpos, stamp[, inpaint_actions]) -> (H, 14)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} unknown; use one of {MODES}")
    if mode == "expert" and demo is None or mode != "expert" and predictor is None:
        raise ValueError("mode 'expert' runs a demonstration (demo=); 'ours' and 'sync' a chunk predictor")
    sim.reset(seed)
    duration = float(duration_s or sim.task.episode_s)
    log = EpisodeLog(sim.task.name, int(seed), mode, float(latency_s), duration)
    dt = sim.control_period
    steps = int(round(duration / dt))
    pending_snaps = sorted(snapshot_times)
    clock = lambda: sim.time  # noqa: E731 - the one clock of the episode

    def send(command):
        log.command_times.append(sim.time)
        log.commands.append(np.asarray(command, dtype=np.float64).copy())
        sim.command(command)

    def after_step() -> bool:
        while pending_snaps and sim.time >= pending_snaps[0] - 1e-9:
            pending_snaps.pop(0)
            log.snapshots.append((sim.time, sim.state()))
        r = sim.reward()
        log.rewards.append((sim.time, r))
        log.max_reward = max(log.max_reward, r)
        if r >= sim.task.max_reward and not log.success:
            log.success, log.time_to_success = True, sim.time
        return log.success and stop_at_success

    if mode == "expert":
        for k in range(min(steps, len(demo.actions))):
            send(demo.actions[k])
            sim.step()
            if after_step():
                break
        return log
    if mode == "sync":
        _run_sync(sim, predictor, latency_s, steps, send, after_step, log)
        return log
    _run_ours(sim, predictor, latency_s, steps, camera_rate_hz, runtime_options or {}, clock, send, after_step, log)
    return log


def runtime_config(sim: AlohaSim, latency_s: float, options: dict | None = None):
    """The PolicyConfig an episode runs with: the defaults, but a short move to the first action (the expert
    starts where the robot is) and the frames' JPEG round trip left to ImagePredictor (it renders lazily)."""
    from rdt_policy_node.config import PolicyConfig

    base = PolicyConfig(profile=sim.profile.name, start_move_duration_s=0.1, start_velocity_scale=1.0,
                        initial_latency_s=max(latency_s, 0.02), jpeg_roundtrip=False)
    return base.replace(**(options or {}))


def _run_ours(sim, predictor, latency_s, steps, camera_rate_hz, options, clock, send, after_step, log):
    from rdt_policy_node.runtime import make_controller

    inference = SimLatencyInference(predictor, latency_s, clock)
    controller = make_controller(sim.profile, inference, runtime_config(sim, latency_s, options),
                                 arrival_clock=clock)
    sensors = SimSensors(sim, controller.window, camera_rate_hz)
    current = None
    try:
        for _ in range(steps):
            now = sim.time
            sensors.publish(now)
            inference.advance(now)
            res = controller.tick(now)
            log.states.append((now, res.state))
            chunk = controller.scheduler.current
            if chunk is not None and chunk is not current and res.state == "RUNNING":
                log.switch_times.append(now)
            current = chunk
            if res.command is not None and res.publish:
                send(res.command)
            sim.step()
            if after_step():
                break
    finally:
        controller.close()


def _run_sync(sim, predictor, latency_s, steps, send, after_step, log):
    """The official loop: observe, infer (the robot waits ``latency_s`` with its last command), execute the
    chunk's actions one per control period, repeat. Positions are clipped to the profile's limits."""
    from rdt_policy_node.runtime import Safety

    safety = Safety.from_profile(sim.profile, publish_rate=sim.profile.control_frequency)
    history: list = [None] * len(sim.profile.slot_order)  # the previous step's frames (none at the start)
    slots = [sim.profile.camera_for_slot(s) for s in sim.profile.slot_order]
    wait = int(round(latency_s / sim.control_period))
    k = 0
    while k < steps:
        frames = sim.frames()
        now_frames = [frames[c.role] if c is not None else None for c in slots]
        chunk = np.asarray(predictor(history + now_frames, sim.qpos().astype(np.float32), sim.time), np.float64)
        history = now_frames
        for _ in range(wait):  # waiting for the model: nothing is commanded
            sim.step()
            k += 1
            if after_step() or k >= steps:
                return
        log.switch_times.append(sim.time)
        for action in chunk:
            if np.all(np.isfinite(action)):
                send(safety.clip(action))
            sim.step()
            k += 1
            if after_step() or k >= steps:
                return


def strip_frames(sim: AlohaSim, log: EpisodeLog, role: str = "cam_high") -> list[tuple[float, np.ndarray]]:
    """The episode's snapshots rendered from one camera (for the report)."""
    return [(t, np.asarray(LazyFrame(sim, state, sim._camera(role)))) for t, state in log.snapshots]
