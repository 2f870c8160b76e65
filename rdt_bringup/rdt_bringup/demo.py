"""`make demo`: the whole suite on the built-in fake robot, in one process, without ROS, GPU or downloads.

1. record: a scripted expert drives the fake Kinova Gen3 to a target pose; its joint states and camera
   frames stream, in real time, into the recorder's live writer (rdt_recorder.writer.EpisodeRecorder),
   which aligns them and writes episode_<n>.hdf5 files; rdt-dataset-review builds their review page
   (out/demo/review/index.html: videos, plots, quality flags, curation commands);
2. train: the tiny RDT (random SigLIP tower and T5 built from configs: nothing is downloaded) is fine-tuned
   on those episodes for about a minute with rdt_training, which exports a checkpoint;
3. deploy: the policy runtime (inference in a worker, chunk blending, safety) runs that checkpoint
   closed-loop on the fake robot, in real time;
4. report: out/demo/report.html with the episodes (a link to their review page), the loss curve, commanded
   vs measured joints, chunk switches, latencies, and how close the policy came to the expert's target.

The tiny model is a plumbing check, not a skill demonstration: a 1-minute CPU fine-tune of a randomly
initialised network. The report says so next to the numbers.
"""
from __future__ import annotations

import argparse
import html
import json
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

PROFILE = "kinova_gen3"
INSTRUCTION = "move the arm to the red target"
IMAGE_SIZE = (96, 128)          # (height, width) of the fake cameras; the tiny SigLIP resizes to 32x32
SCENE_SEED = 7                  # fixes the target pose: the same in every episode and in the closed loop


def _log(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


# ------------------------------------------------------------------------------------------ 1. record
def record_episodes(out_dir: Path, *, episodes: int, seconds: float, seed: int = 0) -> list[Path]:
    """Real-time expert demonstrations through the live recorder (sensor threads at 100 Hz joints, 30 Hz
    cameras, like a driver publishing topics). Each episode starts from a different pose, same target."""
    from rdt_core.fake_robot import FakeRobot
    from rdt_core.robots import load_profile
    from rdt_recorder.streams import StreamPlan
    from rdt_recorder.writer import EpisodeRecorder

    profile = load_profile(PROFILE)
    target = FakeRobot(profile, seed=SCENE_SEED, image_size=IMAGE_SIZE).target
    joint_stream = profile.state_streams[0]
    rng = np.random.default_rng(seed)
    recorder = EpisodeRecorder(StreamPlan.from_profile(profile), out_dir, instruction=INSTRUCTION,
                               clock=time.time_ns)
    paths = []
    try:
        for i in range(episodes):
            robot = FakeRobot(profile, seed=SCENE_SEED, image_size=IMAGE_SIZE)
            span = profile.upper - profile.lower
            start = np.clip(robot.home + rng.uniform(-0.4, 0.4, profile.dof) * (i > 0),
                            profile.lower + 0.05 * span, profile.upper - 0.05 * span)
            robot.reset(qpos=start, target=target)
            stop = threading.Event()
            lock = threading.Lock()

            def expert(robot=robot):                       # the operator: 25 Hz position commands
                period = 1.0 / profile.control_frequency
                while not stop.wait(period):
                    with lock:
                        robot.command(robot.expert_action())

            def sensors(robot=robot):                      # the driver: joints 100 Hz, cameras 30 Hz
                t_prev = time.monotonic()
                next_cam = t_prev
                while not stop.is_set():
                    now = time.monotonic()
                    stamp = time.time_ns()
                    with lock:
                        robot.step(max(now - t_prev, 1e-4))
                        q = robot.joint_positions()
                        frames = robot.render() if now >= next_cam else None
                    t_prev = now
                    recorder.on_joints(joint_stream.role, stamp, joint_stream.msg_joint_names, q)
                    if frames is not None:
                        for role, img in frames.items():
                            recorder.on_image(role, stamp, img)
                        next_cam += 1.0 / 30.0
                    time.sleep(0.01)

            threads = [threading.Thread(target=f, daemon=True) for f in (expert, sensors)]
            for t in threads:
                t.start()
            time.sleep(0.3)                                # streams up before the episode starts
            recorder.start()
            time.sleep(seconds)
            result = recorder.stop()
            stop.set()
            for t in threads:
                t.join()
            _log(f"episode {i}: {result.summary()}")
            if not result.kept:
                raise RuntimeError(f"episode {i} was not written: {result.summary()}")
            paths.append(result.path)
    finally:
        recorder.close()
    return paths


# ------------------------------------------------------------------------------- instruction embedding
def encode_instruction(out_dir: Path) -> Path:
    """The instruction through the real T5 encoding path, with a tiny random T5 built from a config (the
    robot uses T5-v1.1-XXL from a local folder: rdt-encode-instruction); the empty instruction too."""
    from rdt_core.encoders.language import encode_with_tiny_t5

    return encode_with_tiny_t5([INSTRUCTION], out_dir)[INSTRUCTION]


# ------------------------------------------------------------------------------------------- 2. train
def train_tiny(episode_dir: Path, instructions: Path, run_dir: Path, minutes: float, steps: int | None = None):
    """About ``minutes`` of training, or exactly ``steps`` optimizer steps when given."""
    from rdt_training.train import TrainConfig, train

    cfg = TrainConfig(data=[str(episode_dir)], output_dir=str(run_dir), instructions=str(instructions),
                      init="tiny", vision="tiny", max_steps=steps or 100_000,
                      max_minutes=None if steps else minutes, batch_size=16,
                      lr=3e-4, checkpoint_every=100_000, sample_every=0, heldout_episodes=1,
                      sample_batches=1, log_every=20, progress=False, log_with=None, skip_still=False,
                      cache_features=True, cpu_threads=2)
    return train(cfg)


# ------------------------------------------------------------------------------------------ 3. deploy
def run_policy(export_dir: Path, instruction_file: str, out_dir: Path, seconds: float):
    from rdt_policy_node.closed_loop import plot_closed_loop, run_closed_loop

    result = run_closed_loop(PROFILE, checkpoint=str(export_dir), duration=seconds, out=out_dir,
                             vision_encoder=str(export_dir / "vision"),
                             instruction=str(export_dir / "instructions" / instruction_file),
                             image_size=IMAGE_SIZE, seed=SCENE_SEED)
    plot = plot_closed_loop(out_dir, out_dir / "policy.png")
    return result, plot


# ------------------------------------------------------------------------------------------ 4. report
def plot_distance(times, dist, expert_dist, ticks, path: Path) -> Path:
    """Distance curves; the ticks the safety layer spent on its slow move to the first action are shaded."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    start_move = [t for t, state, _ in ticks if state == "MOVING_TO_START"]
    if start_move:
        ax.axvspan(min(start_move), max(start_move), color="0.9", label="safety: slow move to the first action")
    ax.plot(times, dist, label="tiny RDT policy (closed loop)")
    ax.plot(expert_dist[:, 0], expert_dist[:, 1], "--", label="scripted expert from the same start")
    ax.set_xlabel("time [s]")
    ax.set_ylabel("distance to target [rad]")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def expert_reference(profile, seconds: float) -> np.ndarray:
    """The scripted expert's distance-to-target curve from the closed loop's start pose (simulated)."""
    from rdt_core.fake_robot import FakeRobot

    robot = FakeRobot(profile, seed=SCENE_SEED, image_size=IMAGE_SIZE)
    dt = 1.0 / profile.control_frequency
    rows = []
    for k in range(int(seconds / dt)):
        rows.append((k * dt, robot.distance_to_target()))
        robot.command(robot.expert_action())
        robot.step(dt)
    return np.array(rows)


def write_report(out: Path, summary: dict, images: dict[str, Path]) -> Path:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in summary["table"].items())
    figs = "".join(f"<h2>{html.escape(title)}</h2><img src='{p.name}' style='max-width:100%'>"
                   for title, p in images.items())
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>RDT ROS 2 demo</title>
<style>body{{font-family:sans-serif;max-width:980px;margin:2em auto}} th{{text-align:left;padding-right:2em}}
.note{{background:#fff4d6;padding:.6em 1em}}</style></head><body>
<h1>RDT on the fake Kinova Gen3: record, train, deploy</h1>
<p class="note">The model is the <b>tiny</b> RDT (random init, random SigLIP and T5 stand-ins) fine-tuned for
about a minute on a CPU. This run checks the whole pipeline; it does not show what RDT-1B can do.</p>
<p><a href="{html.escape(summary["review"])}">Review the recorded episodes</a>: the cameras' video, joints and
timing per episode, the recorder's quality report, outliers, and the rdt-dataset-edit commands to curate them.</p>
<table>{rows}</table>{figs}
<p>Raw logs: commands.csv, joints.csv, chunks.csv, ticks.csv in policy/; summary.json.</p></body></html>"""
    path = out / "report.html"
    path.write_text(page)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="out/demo", help="output folder (replaced)")
    ap.add_argument("--episodes", type=int, default=6)
    ap.add_argument("--episode-seconds", type=float, default=5.0)
    ap.add_argument("--train-minutes", type=float, default=1.0)
    ap.add_argument("--train-steps", type=int, default=None,
                    help="train exactly this many steps instead of --train-minutes (repeatable runs)")
    ap.add_argument("--policy-seconds", type=float, default=12.0)
    args = ap.parse_args(argv)

    from rdt_core.fake_robot import FakeRobot
    from rdt_core.robots import load_profile

    t_start = time.monotonic()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    profile = load_profile(PROFILE)

    _log(f"1/4 recording {args.episodes} expert episodes of {args.episode_seconds:.0f} s on the fake "
         f"{PROFILE} (real time, live recorder)")
    episodes = record_episodes(out / "episodes", episodes=args.episodes, seconds=args.episode_seconds)
    from rdt_training.plots import plot_loss
    from rdt_training.review import build_review
    review = build_review(out / "episodes", out / "review", jobs=1, progress=False)
    _log(f"    review of the episodes: {review.resolve()}")
    lang = encode_instruction(out / "instructions")

    budget = f"{args.train_steps} steps" if args.train_steps else f"{args.train_minutes:g} min"
    _log(f"2/4 training the tiny RDT for {budget} on {len(episodes)} episodes (CPU)")
    trained = train_tiny(out / "episodes", out / "instructions", out / "run", args.train_minutes,
                         args.train_steps)
    losses = trained.losses
    _log(f"    {trained.steps} steps, loss {np.mean(losses[:10]):.2e} (first 10) -> "
         f"{np.mean(losses[-10:]):.2e} (last 10); export: {trained.export_dir}")

    _log(f"3/4 running the trained policy closed-loop for {args.policy_seconds:.0f} s (real time)")
    result, policy_png = run_policy(trained.export_dir, lang.name, out / "policy", args.policy_seconds)
    shutil.copy(policy_png, out / "policy.png")
    latencies = np.array([c["latency_s"] for c in result.chunks if c.get("latency_s") is not None], float)
    if latencies.size:
        _log(f"    {len(latencies)} chunks, inference latency p50 {np.median(latencies) * 1e3:.0f} ms, "
             f"max {latencies.max() * 1e3:.0f} ms; {result.late_ticks} late control ticks")

    _log("4/4 writing the report")
    dist = FakeRobot(profile, seed=SCENE_SEED, image_size=IMAGE_SIZE).distance_to_target(result.joints[:, 1:])
    expert = expert_reference(profile, args.policy_seconds)
    periods = np.diff(result.commands[:, 0]) if len(result.commands) > 1 else np.zeros(1)
    table = {
        "episodes recorded": f"{len(episodes)} x {args.episode_seconds:g} s, "
                             f"{sum(_steps(p) for p in episodes)} steps in all",
        "training": f"{trained.steps} steps in {trained.elapsed_s:.0f} s; loss "
                    f"{np.mean(losses[:10]):.2e} -> {np.mean(losses[-10:]):.2e}",
        "chunks predicted": len(result.chunks),
        "inference latency p50 / max [ms]": (f"{np.median(latencies) * 1e3:.0f} / {latencies.max() * 1e3:.0f}"
                                             if latencies.size else "n/a"),
        "command period p50 / max [ms]": f"{np.median(periods) * 1e3:.1f} / {periods.max() * 1e3:.1f}",
        "late control ticks": result.late_ticks,
        "distance to target: start -> end [rad]": f"{dist[0]:.3f} -> {dist[-1]:.3f} (min {dist.min():.3f})",
        "expert from the same start, end [rad]": f"{expert[-1, 1]:.3f}",
    }
    images = {
        "Training loss": plot_loss(trained.loss_history, out / "loss.png",
                                   "tiny RDT fine-tuning on the demo episodes"),
        "Closed loop: commanded vs measured joints, chunk switches, inference latency": out / "policy.png",
        "Distance to the expert's target": plot_distance(result.joints[:, 0], dist, expert, result.ticks,
                                                          out / "distance.png"),
    }
    summary = {
        "profile": PROFILE, "instruction": INSTRUCTION, "untrained_model": False, "tiny_model": True,
        "episodes": [str(p) for p in episodes], "review": str(review.relative_to(out)),
        "instruction_embedding": str(lang),
        "train_steps": trained.steps, "loss_first10": float(np.mean(losses[:10])),
        "loss_last10": float(np.mean(losses[-10:])), "export_dir": str(trained.export_dir),
        "chunks": len(result.chunks), "late_ticks": result.late_ticks,
        "inference_latency_ms": {"p50": float(np.median(latencies) * 1e3) if latencies.size else None,
                                 "max": float(latencies.max() * 1e3) if latencies.size else None},
        "distance_to_target": {"start": float(dist[0]), "end": float(dist[-1]), "min": float(dist.min()),
                               "expert_end": float(expert[-1, 1])},
        "table": table,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    report = write_report(out, summary, images)
    for k, v in table.items():
        _log(f"    {k}: {v}")
    _log(f"done in {time.monotonic() - t_start:.0f} s. Report: {report.resolve()}")
    return 0


def _steps(path: Path) -> int:
    from rdt_core.episode import EpisodeReader

    with EpisodeReader(path) as r:
        return r.num_steps


if __name__ == "__main__":
    sys.exit(main())
