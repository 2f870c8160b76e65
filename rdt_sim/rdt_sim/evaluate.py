"""Success rates in the sim under inference latency: the scripted expert, the chunked expert through our
runtime and through the official synchronous loop, or a trained checkpoint.

    python -m rdt_sim.evaluate --task transfer_cube --policy chunked-expert --latency 0,0.1,0.3,0.5 \\
        --mode ours,sync --episodes 50 --seed 0 --out out/sim_eval

``--policy expert`` runs the demonstrations directly (no runtime, no latency); ``chunked-expert`` wraps each
episode's demonstration as a 64-step chunk predictor; a PATH is an rdt_training export (its vision tower
and profile beside it; ``--instruction`` the embedding .pt). Episodes are seeded (seed S, S+1, ...): every
mode and latency sees the same object poses. Everything is in sim time, so the numbers do not depend on
this machine. Writes DIR/episodes.csv, DIR/summary.json and DIR/report.html (plots, a frame strip per
episode).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from .loop import ImagePredictor, run_episode


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize(rows: list[dict]) -> list[dict]:
    """One line per (mode, latency): success rate with its 95 % interval, time to success, gaps, jerk."""
    out = []
    keys = sorted({(r["mode"], r["latency_s"]) for r in rows}, key=lambda k: (k[0], k[1]))
    for mode, lat in keys:
        sel = [r for r in rows if r["mode"] == mode and r["latency_s"] == lat]
        k = sum(bool(r["success"]) for r in sel)
        lo, hi = wilson_interval(k, len(sel))
        tts = [r["time_to_success_s"] for r in sel if r["success"]]
        finite = lambda key: [r[key] for r in sel if r[key] is not None and np.isfinite(r[key])]  # noqa: E731
        out.append({"mode": mode, "latency_s": lat, "episodes": len(sel), "successes": k,
                    "success_rate": k / len(sel), "ci95": [lo, hi],
                    "time_to_success_mean_s": float(np.mean(tts)) if tts else None,
                    "time_to_success_median_s": float(np.median(tts)) if tts else None,
                    "max_command_gap_s": max(finite("max_command_gap_s"), default=None),
                    "jerk_at_switches_median": float(np.median(finite("jerk_at_switches")))
                    if finite("jerk_at_switches") else None,
                    "jerk_max_median": float(np.median(finite("jerk_max"))) if finite("jerk_max") else None})
    return out


def make_policy(spec: str, *, vision_encoder=None, instruction=None, device="cpu"):
    """A trained checkpoint as a chunk predictor that reads the cameras."""
    from rdt_core.policy import RDTPolicy

    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"--policy {spec}: no such checkpoint; use expert, chunked-expert or the path "
                                f"of an rdt_training export")
    if instruction is None:
        found = sorted((path / "instructions").glob("*.pt")) if path.is_dir() else []
        found = [f for f in found if f.name != "empty_lang_embed.pt"]
        if len(found) != 1:
            raise ValueError(f"--policy {spec}: pass --instruction (the embedding .pt); the export carries "
                             f"{[f.name for f in found] or 'none'}")
        instruction = found[0]
    policy = RDTPolicy.from_paths(str(path), vision_encoder, "aloha", str(instruction), device=device)
    return ImagePredictor(policy.predict)


def evaluate(task: str, policy: str, *, latencies=(0.0,), modes=("ours",), episodes: int = 10, seed: int = 0,
             out=None, render=None, camera_rate_hz: float = 25.0, strip_frames: int = 6, vision_encoder=None,
             instruction=None, device: str = "cpu", runtime_options=None, duration_s: float | None = None,
             log=print) -> dict:
    """Run the evaluation; returns {"episodes": rows, "summary": lines, "report": path or None}."""
    from .aloha import AlohaSim
    from .experts import ChunkedExpert, demonstrate
    from .rendering import RenderSettings

    if episodes < 1:
        raise ValueError("--episodes must be >= 1")
    expert = policy == "expert"
    predictor_for = None
    if policy not in ("expert", "chunked-expert"):
        trained = make_policy(policy, vision_encoder=vision_encoder, instruction=instruction, device=device)
        predictor_for = lambda demo: trained  # noqa: E731
    elif not expert:
        predictor_for = lambda demo: ChunkedExpert(demo)  # noqa: E731
    runs = [("expert", 0.0)] if expert else [(m, float(lat)) for m in modes for lat in latencies]
    sim = AlohaSim(task, render=render or RenderSettings())
    strip_sim = AlohaSim(task, render=RenderSettings(96, 128, shadows=False)) if out and strip_frames else None
    duration = float(duration_s or sim.task.episode_s)
    snap_times = np.linspace(0.0, duration, strip_frames + 1)[1:] - 1e-6 if strip_frames else ()
    rows, strips, demos = [], {}, {}
    t0 = time.monotonic()
    try:
        for i in range(episodes):
            s = seed + i
            if expert or policy == "chunked-expert":
                demos[s] = demonstrate(task, s)
            for mode, lat in runs:
                ep = run_episode(sim, s, mode, predictor=predictor_for(demos.get(s)) if predictor_for else None,
                                 demo=demos.get(s), latency_s=lat, camera_rate_hz=camera_rate_hz,
                                 runtime_options=runtime_options, snapshot_times=snap_times, duration_s=duration)
                row = ep.metrics(sim.control_period)
                row["policy"] = policy
                rows.append(row)
                if strip_sim is not None:
                    strips[(mode, lat, s)] = [(t, strip_sim.render_state(st, "top")) for t, st in ep.snapshots]
            done = rows[-len(runs):]
            log(f"[{task}] episode {i + 1}/{episodes} (seed {s}): " +
                ", ".join(f"{r['mode']}@{r['latency_s']:g}s {'OK' if r['success'] else 'fail'}" for r in done) +
                f"  [{time.monotonic() - t0:.0f} s]")
    finally:
        sim.close()
        if strip_sim is not None:
            strip_sim.close()
    summary = summarize(rows)
    result = {"task": task, "policy": policy, "episodes": rows, "summary": summary, "report": None,
              "seed": seed, "camera_rate_hz": camera_rate_hz}
    if out is not None:
        from .report import write_report

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "episodes.csv", "w", newline="") as f:
            w = csv.DictWriter(f, list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        (out / "summary.json").write_text(json.dumps({k: v for k, v in result.items() if k != "episodes"},
                                                     indent=2, default=str))
        result["report"] = write_report(out, result, strips)
    return result


def format_summary(summary: list[dict]) -> str:
    lines = [f"{'mode':8s} {'latency':>8s} {'success':>9s} {'95% CI':>13s} {'t_success':>10s} {'max gap':>8s} "
             f"{'jerk@switch':>12s}"]
    for s in summary:
        tts = f"{s['time_to_success_mean_s']:.2f} s" if s["time_to_success_mean_s"] is not None else "-"
        gap = f"{s['max_command_gap_s']:.2f} s" if s["max_command_gap_s"] is not None else "-"
        jerk = f"{s['jerk_at_switches_median']:.0f}" if s["jerk_at_switches_median"] is not None else "-"
        lines.append(f"{s['mode']:8s} {s['latency_s']:>7.2f}s {s['successes']:>3d}/{s['episodes']:<3d}  "
                     f"[{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}] {tts:>10s} {gap:>8s} {jerk:>12s}")
    return "\n".join(lines)


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated seconds, e.g. 0,0.1,0.3, got {text!r}") from None


def main(argv=None) -> int:
    from .rendering import RenderSettings

    p = argparse.ArgumentParser(prog="python -m rdt_sim.evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=["transfer_cube", "insertion"])
    p.add_argument("--policy", required=True, help="expert | chunked-expert | PATH of an rdt_training export")
    p.add_argument("--latency", type=_floats, default=[0.0], help="inference latencies in seconds, e.g. 0,0.1,0.3,0.5")
    p.add_argument("--mode", default="ours", help="ours | sync | ours,sync (ignored for --policy expert)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="first episode's seed (episode i uses seed + i)")
    p.add_argument("--out", required=True, help="folder for episodes.csv, summary.json, report.html")
    p.add_argument("--resolution", default="480x640", help="camera images HEIGHTxWIDTH (what a policy sees)")
    p.add_argument("--no-shadows", action="store_true", help="render without shadows (about 4x faster on CPU)")
    p.add_argument("--camera-rate", type=float, default=25.0, help="camera frames per second of sim time")
    p.add_argument("--strip-frames", type=int, default=6, help="frames in each episode's strip (0: none)")
    p.add_argument("--vision-encoder", default=None, help="SigLIP folder (default: the export's)")
    p.add_argument("--instruction", default=None, help="instruction embedding .pt (default: the export's one)")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    modes = [m.strip() for m in a.mode.split(",") if m.strip()]
    bad = [m for m in modes if m not in ("ours", "sync")]
    if bad:
        p.error(f"--mode {bad}: use ours, sync or ours,sync")
    try:
        res = evaluate(a.task, a.policy, latencies=a.latency, modes=modes, episodes=a.episodes, seed=a.seed,
                       out=a.out, render=RenderSettings.parse(a.resolution, shadows=not a.no_shadows),
                       camera_rate_hz=a.camera_rate, strip_frames=a.strip_frames, vision_encoder=a.vision_encoder,
                       instruction=a.instruction, device=a.device)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"rdt_sim.evaluate: {e}", file=sys.stderr)
        return 2
    print(format_summary(res["summary"]))
    print(f"report: {res['report']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
