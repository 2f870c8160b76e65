"""Record -> train -> deploy in the sim: the whole suite on the physics ALOHA, one command.

    python -m rdt_sim.pipeline [--task transfer_cube] [--episodes 6] [--out out/sim_pipeline]

1. record: the scripted expert's demonstrations are executed on the sim and streamed, in sim time, into the
   recorder's live writer (rdt_recorder.writer.EpisodeRecorder): the follower arms' joint states, the
   leader arms' (the expert's commands, in the leader gripper's units, as teleoperation would give them)
   and the three cameras, exactly the streams of the real ALOHA; it writes episode_<n>.hdf5;
2. train: ``rdt-train`` on those episodes (on CPU the tiny RDT with random SigLIP / T5 stand-ins for a few
   minutes; ``--init 170m|1b --vision SIGLIP_DIR --device cuda`` on a GPU machine);
3. deploy: the export runs through our runtime on unseen seeds (rdt_sim.evaluate), success rate reported;
4. report: DIR/report.html (episodes, loss curve, the evaluation's report).

A few CPU minutes of training on ten episodes does not make a policy that succeeds; the report says so and
gives the GPU command that reproduces a real fine-tune.
"""
from __future__ import annotations

import argparse
import html
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

STAMP_OFFSET_NS = 1_000_000_000  # stamps start at 1 s: a zero header stamp means "none" to the recorder


def _log(msg: str) -> None:
    print(f"[sim pipeline] {msg}", flush=True)


def leader_gripper(profile, follower_gripper: np.ndarray, role: str) -> np.ndarray:
    """Follower gripper joint positions -> the leader arm's gripper joint (what teleoperation publishes):
    the inverse of the profile's leader-gripper range map."""
    spec = profile.stream(role)
    closed, opened = spec.gripper_ranges["gripper"]
    joint = next(j for j in profile.joints if j.name == spec.joints[spec.msg_joint_names.index("gripper")])
    openness = (np.asarray(follower_gripper) - joint.offset) / joint.scale
    return closed + openness * (opened - closed)


def demonstration_messages(sim, demo, *, camera_rate_hz: float, lead_in: int = 10, after_success_s: float = 0.5):
    """The streams of the real ALOHA while the sim replays ``demo``, in time order: ``(recording, topic,
    role, stamp_ns, payload)`` with payload ``(names, positions)`` for a JointState (follower arms: measured;
    leader arms: the expert's commands, in the leader gripper's units, as teleoperation gives them) or an RGB
    frame. ``recording`` is False for the ``lead_in`` ticks before the episode (the drivers run first)."""
    profile = sim.profile
    names = profile.joint_names
    state = [(s.role, s.topic, s.msg_joint_names, [names.index(j) for j in s.joints]) for s in profile.state_streams]
    action = [(s.role, s.topic, s.msg_joint_names, [names.index(j) for j in s.joints]) for s in profile.action_streams]
    cameras = [(c.role, c.topic) for c in profile.cameras]
    period = 1.0 / camera_rate_hz
    sim.reset(demo.seed)
    end = len(demo.actions) if demo.time_to_success is None else min(
        len(demo.actions), int((demo.time_to_success + after_success_s) / sim.control_period))
    next_frame = 0.0
    for k in range(-lead_in, end):
        command = demo.actions[max(k, 0)]
        if k >= 0:
            sim.command(command)
        stamp = STAMP_OFFSET_NS + int(round(sim.time * 1e9))
        q = sim.qpos()
        for role, topic, msg_names, idx in state:
            yield k >= 0, topic, role, stamp, (msg_names, q[idx])
        for role, topic, msg_names, idx in action:
            values = np.asarray(command, dtype=np.float64)[idx].copy()
            g = msg_names.index("gripper")
            values[g] = leader_gripper(profile, values[g], role)
            yield k >= 0, topic, role, stamp, (msg_names, values)
        if sim.time >= next_frame - 1e-9:
            for role, topic in cameras:
                yield k >= 0, topic, role, stamp, sim.render(role)
            next_frame += period
        sim.step()


def record_demonstrations(task: str, out_dir: Path, *, episodes: int, seed: int, render, camera_rate_hz: float,
                          bag_dir: Path | None = None) -> list[dict]:
    """Each demonstration replayed on the sim and recorded through the live recorder, in sim time (and, with
    ``bag_dir``, also written as a rosbag2 of the same topics, as ``ros2 bag record`` would)."""
    from rdt_recorder.streams import StreamPlan
    from rdt_recorder.writer import EpisodeRecorder

    from .aloha import AlohaSim
    from .experts import demonstrate

    sim = AlohaSim(task, render=render)
    # the sim may run faster than real time: a deep queue instead of the live recorder's 512 messages
    recorder = EpisodeRecorder(StreamPlan.from_profile(sim.profile), out_dir, instruction=sim.task.instruction,
                               clock=lambda: STAMP_OFFSET_NS + int(round(sim.time * 1e9)), queue_size=100_000)
    out = []
    try:
        for i in range(episodes):
            s = seed + i
            demo = demonstrate(task, s)
            bag = BagWriter(bag_dir / f"episode_{i}_bag") if bag_dir is not None else None
            for recording, topic, role, stamp, payload in demonstration_messages(sim, demo,
                                                                                 camera_rate_hz=camera_rate_hz):
                if not recording:
                    continue  # the recorder refuses messages before start(); the drivers ran all along
                if recorder.state.value == "IDLE":
                    recorder.start()
                if isinstance(payload, tuple):
                    recorder.on_joints(role, stamp, *payload)
                else:
                    recorder.on_image(role, stamp, payload)
                if bag is not None:
                    bag.write(topic, stamp, payload)
            result = recorder.stop()
            if bag is not None:
                bag.close()
            _log(f"episode {i} (seed {s}, expert {'succeeded' if demo.success else 'FAILED'}): "
                 f"{result.summary().splitlines()[0]}")
            if not result.kept or sum(result.dropped_frames.values()):
                raise RuntimeError(f"episode {i} was not recorded whole: {result.summary()}")
            out.append({"seed": s, "path": str(result.path), "steps": result.steps, "expert_success": demo.success,
                        "bag": str(bag.path) if bag is not None else None})
    finally:
        recorder.close()
        sim.close()
    return out


class BagWriter:
    """A rosbag2 (sqlite3) of sensor_msgs JointState / Image messages, written with rosbags (no ROS needed),
    received at their header stamps."""

    def __init__(self, path: Path):
        from rosbags.rosbag2 import Writer
        from rosbags.typesys import Stores, get_typestore

        self.path = Path(path)
        self.ts = get_typestore(Stores.ROS2_JAZZY)
        self.writer = Writer(self.path, version=9)
        self.writer.open()
        self.conns = {}

    def _header(self, stamp_ns: int):
        t = self.ts.types["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
        return self.ts.types["std_msgs/msg/Header"](stamp=t, frame_id="")

    def write(self, topic: str, stamp_ns: int, payload) -> None:
        if isinstance(payload, tuple):
            names, positions = payload
            kind = "sensor_msgs/msg/JointState"
            msg = self.ts.types[kind](header=self._header(stamp_ns), name=list(names),
                                      position=np.asarray(positions, np.float64), velocity=np.zeros(0),
                                      effort=np.zeros(0))
        else:
            rgb = np.ascontiguousarray(payload, dtype=np.uint8)
            h, w = rgb.shape[:2]
            kind = "sensor_msgs/msg/Image"
            msg = self.ts.types[kind](header=self._header(stamp_ns), height=h, width=w, encoding="rgb8",
                                      is_bigendian=0, step=w * 3, data=rgb.reshape(-1))
        if topic not in self.conns:
            self.conns[topic] = self.writer.add_connection(topic, kind, typestore=self.ts)
        self.writer.write(self.conns[topic], stamp_ns, self.ts.serialize_cdr(msg, kind))

    def close(self) -> None:
        self.writer.close()


def train(episode_dir: Path, instructions: Path, run_dir: Path, *, init: str, vision: str, minutes: float,
          steps: int | None, batch_size: int):
    """rdt-train on the recorded episodes (its TrainConfig; the equivalent command line is logged)."""
    from rdt_training.train import TrainConfig, train as rdt_train

    cfg = TrainConfig(data=[str(episode_dir)], output_dir=str(run_dir), instructions=str(instructions), init=init,
                      vision=vision, max_steps=steps or 1_000_000, max_minutes=None if steps else minutes,
                      batch_size=batch_size, lr=3e-4, checkpoint_every=0, sample_every=0, heldout_episodes=1,
                      log_with=None, progress=False, log_every=20, cache_features=True, cpu_threads=2)
    budget = f"--max-steps {steps}" if steps else f"--max-minutes {minutes:g}"
    _log(f"rdt-train {episode_dir} --instructions {instructions} --init {init} --vision {vision} --output-dir "
         f"{run_dir} {budget} --batch-size {batch_size} --lr 3e-4 --cache-features")
    return rdt_train(cfg)


GPU_COMMAND = ("python -m rdt_sim.pipeline --task {task} --episodes 50 --init 1b --vision "
               "/models/siglip-so400m-patch14-384 --train-minutes 240 --batch-size 32 --device cuda "
               "--resolution 480x640 --out out/sim_pipeline_gpu")


def write_report(out: Path, summary: dict) -> Path:
    ev = summary["evaluation"]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in summary["table"].items())
    loss = "<h2>Training loss</h2><img src='loss.png' style='max-width:100%'>" if (out / "loss.png").is_file() else ""
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>rdt_sim pipeline: {summary['task']}</title>
<style>body{{font-family:sans-serif;max-width:980px;margin:2em auto}} th{{text-align:left;padding-right:2em}}
.note{{background:#fff4d6;padding:.6em 1em}}</style></head><body>
<h1>Record, train, deploy on the MuJoCo ALOHA: {html.escape(summary['task'])}</h1>
<p class="note">{html.escape(summary['note'])}</p>
<table>{rows}</table>{loss}
<h2>Deployment</h2><p><a href="{html.escape(ev['report'])}">evaluation report</a> (success rate with its 95 % interval,
frame strips).</p>
<h2>Reproducing a real fine-tune on a GPU machine</h2><pre>{html.escape(summary['gpu_command'])}</pre>
</body></html>"""
    path = out / "report.html"
    path.write_text(page)
    return path


def main(argv=None) -> int:
    from rdt_training.plots import plot_loss

    from .evaluate import evaluate, format_summary
    from .rendering import RenderSettings

    ap = argparse.ArgumentParser(prog="python -m rdt_sim.pipeline", description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="transfer_cube", choices=["transfer_cube", "insertion"])
    ap.add_argument("--episodes", type=int, default=6, help="expert episodes to record")
    ap.add_argument("--eval-episodes", type=int, default=10, help="deployment episodes (unseen seeds)")
    ap.add_argument("--latency", type=float, default=0.2, help="simulated inference latency when deployed (s)")
    ap.add_argument("--eval-seconds", type=float, default=None, help="deployment episode length (default: the task's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="out/sim_pipeline", help="output folder (replaced)")
    ap.add_argument("--resolution", default="96x128", help="camera HEIGHTxWIDTH (the tiny SigLIP sees 32x32)")
    ap.add_argument("--camera-rate", type=float, default=25.0)
    ap.add_argument("--init", default="tiny", help="tiny | 170m | 1b | a checkpoint (rdt-train --init)")
    ap.add_argument("--vision", default="tiny", help="tiny | a local SigLIP folder (rdt-train --vision)")
    ap.add_argument("--train-minutes", type=float, default=3.0)
    ap.add_argument("--train-steps", type=int, default=None, help="exactly this many steps instead of minutes")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="cpu", help="where the deployed policy runs (cuda on a GPU machine)")
    a = ap.parse_args(argv)
    from .tasks import get_task

    t0 = time.monotonic()
    out = Path(a.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    render = RenderSettings.parse(a.resolution, shadows=False)
    task = get_task(a.task)
    try:
        _log(f"1/4 recording {a.episodes} expert episodes of {a.task} through the live recorder (sim time)")
        recorded = record_demonstrations(a.task, out / "episodes", episodes=a.episodes, seed=a.seed, render=render,
                                         camera_rate_hz=a.camera_rate)
        from rdt_core.encoders.language import encode_with_tiny_t5

        instruction = encode_with_tiny_t5([task.instruction], out / "instructions")[task.instruction]
        t_rec = time.monotonic() - t0
        _log(f"2/4 training ({a.init}, {a.train_steps or a.train_minutes} {'steps' if a.train_steps else 'min'})")
        trained = train(out / "episodes", out / "instructions", out / "run", init=a.init, vision=a.vision,
                        minutes=a.train_minutes, steps=a.train_steps, batch_size=a.batch_size)
        t_train = time.monotonic() - t0 - t_rec
        _log(f"3/4 deploying the export through our runtime on {a.eval_episodes} unseen seeds, "
             f"{a.latency:g} s simulated inference latency")
        ev = evaluate(a.task, str(trained.export_dir), latencies=[a.latency], modes=("ours",), episodes=a.eval_episodes,
                      seed=a.seed + 10_000, out=out / "eval", render=render, camera_rate_hz=a.camera_rate,
                      instruction=instruction, device=a.device, strip_frames=4, duration_s=a.eval_seconds, log=_log)
    except (RuntimeError, ValueError, FileNotFoundError) as e:
        print(f"rdt_sim.pipeline: {e}", file=sys.stderr)
        return 2
    _log("4/4 report")
    print(format_summary(ev["summary"]))
    s = ev["summary"][0]
    plot_loss(trained.loss_history, out / "loss.png", "RDT fine-tuning on the recorded sim episodes")
    untrained = a.init == "tiny"
    note = ("The policy is the TINY RDT (random init, random SigLIP and T5 stand-ins) trained for a few minutes on a "
            "CPU: this run checks that recording, training and deployment work on the physics sim through the "
            "real code paths; nobody expects it to succeed. The success rate below is measured, not assumed."
            if untrained else f"RDT initialised from {a.init}, fine-tuned on the recorded episodes.")
    summary = {
        "task": a.task, "note": note, "episodes": recorded, "export": str(trained.export_dir),
        "instruction": str(instruction), "evaluation": {"summary": ev["summary"], "report": "eval/report.html"},
        "gpu_command": GPU_COMMAND.format(task=a.task),
        "table": {
            "expert episodes recorded": f"{len(recorded)} ({sum(r['expert_success'] for r in recorded)} successful "
                                        f"demonstrations), {sum(r['steps'] for r in recorded)} steps",
            "training": f"{a.init} RDT, vision {a.vision}: {trained.steps} steps in {trained.elapsed_s:.0f} s, loss "
                        f"{np.mean(trained.losses[:10]):.3g} -> {np.mean(trained.losses[-10:]):.3g}",
            "deployed success rate": f"{s['successes']}/{s['episodes']} ({s['success_rate']:.0%}), 95 % CI "
                                     f"[{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}] at {a.latency:g} s latency",
            "wall time": f"record {t_rec:.0f} s, train {t_train:.0f} s, total {time.monotonic() - t0:.0f} s",
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    report = write_report(out, summary)
    _log(f"done in {time.monotonic() - t0:.0f} s. Report: {report.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
