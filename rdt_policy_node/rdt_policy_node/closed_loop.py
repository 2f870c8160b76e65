"""Closed loop without ROS: the policy runtime drives rdt_core's FakeRobot in real time.

Real threads and clocks: a sensor thread steps the fake robot and feeds joint states and camera frames
into the ObservationWindow (like a driver publishing topics); the control loop calls the controller's
``tick`` at the publish rate and sends its commands to the robot; inference runs in the scheduler's
worker. ``--mode sync`` is the official synchronous baseline instead (scripts/agilex_inference.py: infer,
then execute the 64 actions, the robot waiting during inference).

Raw logs in DIR (times in seconds since the start of the run, one monotonic clock):
  commands.csv  time_s, then every commanded joint (header: joint names)   one row per published command
  joints.csv    time_s, then every measured joint                          sensor samples
  chunks.csv    request_time, obs_stamp, ready_time, first_action_index, latency_s, status
  ticks.csv     time_s, state, hold_reason                                  one row per control tick
"""
from __future__ import annotations

import argparse
import collections
import csv
import json
import math
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import PolicyConfig
from .runtime import ObservationWindow, Safety, interpolate_action, make_controller, materialize
from .runtime.pacing import Pacer
from .scripted import ScriptedPolicy


class DelayedPredictor:
    """Adds ``latency`` seconds of sleep to every inference (simulates a slower model or GPU)."""

    def __init__(self, predict, latency: float):
        self.predict, self.latency = predict, float(latency)

    def __call__(self, images, qpos, stamp, inpaint_actions=None):
        time.sleep(self.latency)
        if inpaint_actions is None:
            return self.predict(images, qpos, stamp)
        return self.predict(images, qpos, stamp, inpaint_actions=inpaint_actions)


def build_predictor(profile, checkpoint: str, vision_encoder=None, instruction=None, seed: int = 0):
    """``tiny`` = random tiny RDT (UNTRAINED), ``scripted`` = ScriptedPolicy, else a checkpoint path."""
    if checkpoint == "scripted":
        return ScriptedPolicy(profile, seed=seed)
    from rdt_core.policy import RDTPolicy

    if checkpoint == "tiny":
        policy = RDTPolicy.tiny(profile, seed=seed)
    else:
        policy = RDTPolicy.from_paths(checkpoint, vision_encoder, profile, instruction)
    return policy.predict


class SimulatedSensors(threading.Thread):
    """Steps the FakeRobot in real time and publishes its joints and camera frames into the window; it is
    also the arm's controller: commands take effect ``command_delay_s`` after they are sent (a controller's
    lag), and tests can mute a stream, block a joint (a collision) or stop the controller."""

    def __init__(self, robot, window: ObservationWindow, clock, t0: float, lock: threading.Lock, *,
                 joint_rate_hz: float = 100.0, camera_rate_hz: float = 30.0, command_delay_s: float = 0.0):
        super().__init__(name="fake-robot-sensors", daemon=True)
        self.robot, self.window, self.clock, self.t0, self.lock = robot, window, clock, t0, lock
        self.joint_period, self.camera_period = 1.0 / joint_rate_hz, 1.0 / camera_rate_hz
        self.command_delay_s = float(command_delay_s)
        self.muted: set[str] = set()
        self.joint_log: list = []
        self.blocked: dict[int, float] = {}  # joint index -> where an obstacle holds it
        self.controller_stopped = False  # the arm's controller stopped: nothing moves, joints still published
        self._queue: collections.deque = collections.deque()  # (sent time, command) not yet in effect
        self._command = None  # the command in effect
        self._halt = threading.Event()

    # ------------------------------------------------------------------ the arm's controller
    def command(self, t: float, positions) -> None:
        """A command sent at ``t``; in effect from t + command_delay_s."""
        with self.lock:
            self._queue.append((t, np.asarray(positions, dtype=np.float64).copy()))
            if self.command_delay_s <= 0:
                self._apply_due(t)

    def _apply_due(self, now: float) -> None:  # under self.lock
        while self._queue and self._queue[0][0] <= now - self.command_delay_s:
            self._command = self._queue.popleft()[1]
        if self._command is not None:
            cmd = self._command.copy()
            for j, q in self.blocked.items():
                cmd[j] = q
            self.robot.command(cmd)

    def block(self, joint) -> None:
        """An obstacle stops ``joint`` (name or index) where it is now: it follows no command until unblock()."""
        names = self.robot.profile.joint_names
        if isinstance(joint, str) and joint not in names:
            raise ValueError(f"block: no joint {joint!r} in profile {self.robot.profile.name!r} ({names})")
        j = names.index(joint) if isinstance(joint, str) else int(joint)
        with self.lock:
            self.blocked[j] = float(self.robot.joint_positions()[j])
            self._apply_due(self.clock())

    def unblock(self) -> None:
        with self.lock:
            self.blocked.clear()
            self._apply_due(self.clock())

    def run(self) -> None:
        last = self.clock()
        next_cam = last
        while not self._halt.is_set():
            now = self.clock()
            with self.lock:
                self._apply_due(now)
                if not self.controller_stopped and now > last:
                    self.robot.step(now - last)
                q = np.array(self.robot.joint_positions(), dtype=np.float64)
                frames = self.robot.render() if now >= next_cam else None
            last = now
            self.joint_log.append((now - self.t0, q))
            for stream, idx in self.window.joint_streams.items():
                if stream not in self.muted:
                    self.window.add_joints(stream, q[idx], now)
            if frames is not None:
                next_cam += self.camera_period * max(1, math.ceil((now - next_cam) / self.camera_period))
                for role in self.window.cameras:
                    if role not in self.muted:
                        self.window.add_image(role, frames[role], now)
            self._halt.wait(max(0.0, self.joint_period - (self.clock() - now)))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=2.0)


@dataclass
class ClosedLoopResult:
    out_dir: Path | None
    joint_names: list
    commands: np.ndarray  # (N, 1 + D): time_s, command
    joints: np.ndarray  # (M, 1 + D): time_s, measured
    chunks: list  # dicts: request_time, obs_stamp, ready_time, first_action_index, latency_s, status
    ticks: list  # (time_s, state, hold_reason)
    late_ticks: int = 0
    summary: dict = field(default_factory=dict)


#: the closed loop's defaults: a shorter start move than on a robot (the fake arm starts near its first action)
CLOSED_LOOP_CONFIG = PolicyConfig(start_move_duration_s=1.0)


def run_closed_loop(profile="kinova_gen3", checkpoint="tiny", latency: float = 0.0, duration: float = 10.0,
                    out=None, mode: str = "async", vision_encoder=None, instruction=None, *, predictor=None,
                    config: PolicyConfig | None = None, image_size=(96, 128), camera_rate_hz: float = 30.0,
                    joint_rate_hz: float = 100.0, seed: int = 0, events=(), plot: bool = False,
                    use_actions_interpolation: bool = False, command_delay_s: float = 0.0,
                    stop_when=None, **settings) -> ClosedLoopResult:
    """Run the policy against a FakeRobot for ``duration`` seconds of wall time and write the logs to ``out``.

    config: the runtime's PolicyConfig (default CLOSED_LOOP_CONFIG); ``settings``: PolicyConfig fields
    that override it (``execute_horizon=16``, ``publish_rate_hz=50``; an unknown name is a ConfigError).
    predictor: a callable (images, qpos, stamp[, inpaint_actions=]) -> (H, D); default built from
    ``checkpoint``. events: (time_s, fn(loop_state: dict)) pairs run once from the control loop (tests use
    them to mute a sensor, block a joint with ``loop_state["sensors"].block(name)`` or pause). mode:
    "async" (this runtime) or "sync" (the official baseline; ``use_actions_interpolation`` applies the
    config's arm_steps_length there). command_delay_s: the simulated arm's controller lag. stop_when:
    fn(loop_state) -> bool checked after every async tick (loop_state also holds the "chunks" and
    "commands" rows so far): the run ends as soon as it is True, ``duration`` being then only the upper
    bound, so a test waits for behaviour (e.g. four chunks used) rather than for a time a loaded machine
    may not meet."""
    from rdt_core.fake_robot import FakeRobot
    from rdt_core.robots import load_profile

    if mode not in ("async", "sync"):
        raise ValueError(f"mode {mode!r} unknown; use async (this runtime) or sync (the official baseline)")
    profile = load_profile(profile)  # a name, a YAML path or a RobotProfile
    config = (config or CLOSED_LOOP_CONFIG).replace(**settings).for_profile(profile)
    predict = predictor or build_predictor(profile, checkpoint, vision_encoder, instruction, seed)
    if latency > 0:
        predict = DelayedPredictor(predict, latency)
    publish_rate = config.publish_rate_hz
    clock = time.monotonic
    robot = FakeRobot(profile, seed=seed, image_size=tuple(image_size))
    lock = threading.Lock()
    command_rows, tick_rows, chunk_rows = [], [], []

    def send(now, cmd):
        sensors.command(now, cmd)
        command_rows.append((now - t0, *map(float, cmd)))

    if mode == "async":
        controller = make_controller(profile, predict, config, arrival_clock=clock)
        window = controller.window
    else:
        controller = None
        window = ObservationWindow.from_profile(profile, arrival_clock=clock)
    t0 = clock()
    sensors = SimulatedSensors(robot, window, clock, t0, lock, joint_rate_hz=joint_rate_hz,
                               camera_rate_hz=camera_rate_hz, command_delay_s=command_delay_s)
    state = {"sensors": sensors, "controller": controller, "robot": robot, "window": window,
             "chunks": chunk_rows, "commands": command_rows}
    pending = sorted(events, key=lambda e: e[0])
    sensors.start()
    late = 0
    try:
        if mode == "async":
            late = _run_async(controller, state, pending, send, tick_rows, chunk_rows, publish_rate, duration,
                              clock, t0, stop_when)
        else:
            _run_sync(profile, predict, window, state, pending, send, chunk_rows, publish_rate, duration, clock, t0,
                      config.arm_steps_length if use_actions_interpolation else None)
    finally:
        sensors.stop()
        if controller is not None:
            controller.close()
    joints = np.array([(t, *q) for t, q in sensors.joint_log]) if sensors.joint_log else np.zeros((0, profile.dof + 1))
    result = ClosedLoopResult(Path(out) if out else None, profile.joint_names,
                              np.array(command_rows).reshape(-1, profile.dof + 1), joints, chunk_rows, tick_rows,
                              late)
    result.summary = {"profile": profile.name, "checkpoint": checkpoint, "mode": mode, "latency_s": latency,
                      "duration_s": duration, "publish_rate_hz": publish_rate, "command_delay_s": command_delay_s,
                      "commands": len(command_rows), "chunks": len(chunk_rows), "late_ticks": late,
                      "untrained": checkpoint == "tiny", "scripted": checkpoint == "scripted",
                      "settings": {f.name: config.as_parameters()[f.name] for f in PolicyConfig.fields(("runtime",))}}
    if out is not None:
        write_logs(result)
        if plot:
            plot_closed_loop(result.out_dir)
    return result


def _run_events(pending, now_rel, state):
    while pending and pending[0][0] <= now_rel:
        pending.pop(0)[1](state)


def _chunk_row(chunk, t0):
    return {"request_time": chunk.request_time - t0, "obs_stamp": chunk.obs_stamp - t0,
            "ready_time": chunk.ready_time - t0,
            "first_action_index": -1 if chunk.first_index is None else chunk.first_index,
            "latency_s": chunk.latency, "status": chunk.error or "used"}


def _run_async(controller, state, pending, send, tick_rows, chunk_rows, publish_rate, duration, clock, t0,
               stop_when=None) -> int:
    """The node's control loop without ROS, paced like its control thread (runtime.pacing); returns the
    deadlines missed by more than a period."""
    pacer = Pacer(1.0 / publish_rate, clock)
    while True:
        time.sleep(pacer.delay())
        now = clock()
        if now - t0 >= duration:
            return pacer.skipped
        _run_events(pending, now - t0, state)
        res = controller.tick(now)
        tick_rows.append((now - t0, res.state, res.hold_reason))
        if res.chunk is not None:
            chunk_rows.append(_chunk_row(res.chunk, t0))
        if res.command is not None and res.publish:
            send(now, res.command)
        if stop_when is not None and stop_when(state):
            return pacer.skipped


def _run_sync(profile, predict, window, state, pending, send, chunk_rows, publish_rate, duration, clock, t0,
              steps):
    """The official loop: each step waits for a synchronised frame; every 64 steps it infers (blocking);
    ``steps``: per-joint arm_steps_length sub-steps between actions (None: one command per action)."""
    steps = np.asarray(steps, dtype=np.float64) if steps else None
    pacer = Pacer(1.0 / publish_rate, clock)
    safety = Safety.from_profile(profile, publish_rate=publish_rate)
    buffer, t, pre_action = None, 0, None
    while clock() - t0 < duration:
        _run_events(pending, clock() - t0, state)
        while not window.step():  # get_ros_observation: wait for a synchronised frame
            if clock() - t0 >= duration:
                return
            time.sleep(0.001)
        if pre_action is None:
            pre_action = window.observation().qpos.copy()
        if buffer is None or t % len(buffer) == 0:
            obs = window.observation()
            req = clock()
            buffer = np.asarray(predict(materialize(obs.images), obs.qpos.astype(np.float32), obs.stamp), dtype=np.float64)
            ready = clock()
            chunk_rows.append({"request_time": req - t0, "obs_stamp": obs.stamp - t0, "ready_time": ready - t0,
                               "first_action_index": 0, "latency_s": ready - req, "status": "used"})
            t = 0
        action = buffer[t % len(buffer)]
        subs = interpolate_action(pre_action, action, steps) if steps is not None else action[None]
        for act in subs:
            if np.all(np.isfinite(act)):
                send(clock(), safety.clip(act))  # the official script clips nothing; the robot would
            time.sleep(pacer.delay())      # rospy.Rate.sleep, as the official loop
        t += 1
        pre_action = action.copy()


# ---------------------------------------------------------------------- logs and plots
def write_logs(result: ClosedLoopResult) -> Path:
    out = result.out_dir
    out.mkdir(parents=True, exist_ok=True)
    header = ["time_s", *result.joint_names]
    for name, rows in (("commands.csv", result.commands), ("joints.csv", result.joints)):
        with open(out / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows([[f"{v:.6f}" for v in row] for row in rows])
    with open(out / "chunks.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["request_time", "obs_stamp", "ready_time", "first_action_index", "latency_s", "status"])
        w.writeheader()
        for row in result.chunks:
            w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    with open(out / "ticks.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time_s", "state", "hold_reason"])
        w.writerows([[f"{t:.6f}", s, r] for t, s, r in result.ticks])
    (out / "summary.json").write_text(json.dumps(result.summary, indent=2))
    return out


def read_csv_table(path) -> tuple[list[str], np.ndarray]:
    """A numeric CSV log -> (header, (N, C) float array)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array(rows[1:], dtype=np.float64).reshape(-1, len(rows[0]))


def read_chunks(path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: (v if k == "status" else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]


def plot_closed_loop(out_dir, path=None, max_joints: int = 4) -> Path:
    """policy.png: commanded vs measured joints with chunk switches marked, and the inference timeline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    names, cmd = read_csv_table(out_dir / "commands.csv")
    _, meas = read_csv_table(out_dir / "joints.csv")
    chunks = read_chunks(out_dir / "chunks.csv")
    n = min(max_joints, len(names) - 1)
    fig, axes = plt.subplots(n + 1, 1, figsize=(10, 2.0 * (n + 1)), sharex=True)
    switches = [c["ready_time"] for c in chunks if c["status"] == "used"]
    for j in range(n):
        ax = axes[j]
        ax.plot(meas[:, 0], meas[:, j + 1], color="tab:gray", lw=1.5, label="measured")
        ax.plot(cmd[:, 0], cmd[:, j + 1], color="tab:blue", lw=1.0, label="commanded")
        for s in switches:
            ax.axvline(s, color="tab:orange", lw=0.6, alpha=0.6)
        ax.set_ylabel(names[j + 1], fontsize=8)
    axes[0].legend(loc="upper right", fontsize=7)
    axes[0].set_title("commanded vs measured joints (orange: chunk switches)", fontsize=9)
    ax = axes[-1]
    for i, c in enumerate(chunks):
        color = "tab:green" if c["status"] == "used" else "tab:red"
        ax.plot([c["request_time"], c["ready_time"]], [c["latency_s"] * 1000] * 2, color=color, lw=3)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("inference ms\n(red: rejected)", fontsize=8)
    ax.set_xlabel("time since start [s]")
    fig.tight_layout()
    path = Path(path) if path else out_dir / "policy.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="rdt-closed-loop", description=__doc__.split("\n\n")[0],
                                epilog="--checkpoint also takes scripted (a smooth scripted predictor, no model)")
    p.add_argument("--latency", type=float, default=0.0, help="seconds of sleep added to every inference")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of wall time")
    p.add_argument("--out", required=True, help="folder for commands.csv, chunks.csv, joints.csv, ticks.csv")
    p.add_argument("--mode", choices=["async", "sync"], default="async",
                   help="async = this runtime; sync = the official baseline (infer, then execute 64 actions)")
    p.add_argument("--command-delay", type=float, default=0.0,
                   help="seconds before the fake arm's controller acts on a command (a real controller's lag)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", action="store_true", help="also write policy.png")
    PolicyConfig.add_arguments(p, defaults=CLOSED_LOOP_CONFIG)
    a = p.parse_args(argv)
    try:
        config = PolicyConfig.from_arguments(a, CLOSED_LOOP_CONFIG)
        res = run_closed_loop(config.profile, config.checkpoint, a.latency, a.duration, a.out, a.mode,
                              config.vision_encoder or None, config.instruction or None, config=config,
                              seed=a.seed, plot=a.plot, command_delay_s=a.command_delay)
    except (ValueError, FileNotFoundError) as e:
        print(f"rdt-closed-loop: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res.summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
