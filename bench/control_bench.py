"""Control benchmark: our asynchronous runtime vs the official synchronous loop, on the FakeRobot.

For simulated inference latencies of 50, 150 and 300 ms at 25 Hz, runs ``rdt_policy_node.closed_loop`` in
both modes (async = this runtime; sync = scripts/agilex_inference.py: infer, then execute the 64 actions),
then reads the raw CSV logs and prints, for each: p50 / p99 command period, longest stall (longest time
without a published command), max per-tick joint jump at chunk switches, and the ratio ours / baseline.

The predictor is the smooth scripted one by default (an untrained tiny RDT predicts noise, which would
drown the chunk-switch effect); ``--checkpoint tiny`` uses the tiny RDT instead.

    python bench/control_bench.py [--duration 8] [--out out/bench/control] [--checkpoint scripted|tiny]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from rdt_policy_node.closed_loop import read_chunks, read_csv_table, run_closed_loop

LATENCIES = (0.05, 0.15, 0.30)
RATE_HZ = 25.0


def running_before(log_dir: Path, t: float) -> bool:
    """Was the runtime already RUNNING (streaming a previous chunk) just before time t (ticks.csv)?"""
    import csv

    prev = None
    with open(log_dir / "ticks.csv", newline="") as f:
        for row in csv.DictReader(f):
            if float(row["time_s"]) >= t - 1e-9:
                break
            prev = row["state"]
    return prev in ("RUNNING", "DRY_RUN")


def tracking_faults(log_dir: Path) -> int:
    """Ticks the tracking-error watchdog held on (ticks.csv): a run with any is not a fair comparison."""
    import csv

    path = log_dir / "ticks.csv"
    if not path.exists():
        return 0
    with open(path, newline="") as f:
        return sum("behind its command" in row["hold_reason"] for row in csv.DictReader(f))


def metrics(log_dir: Path) -> dict:
    """Timing and smoothness from commands.csv and chunks.csv. Only real switches count: from one chunk
    to the next while moving (not the first chunk, which starts the motion from standstill)."""
    _, cmd = read_csv_table(log_dir / "commands.csv")
    chunks = [c for c in read_chunks(log_dir / "chunks.csv") if c["status"] == "used"]
    t, q = cmd[:, 0], cmd[:, 1:]
    periods = np.diff(t)
    steps = np.abs(np.diff(q, axis=0)).max(axis=1)  # steps[i]: largest joint change from command i to i+1
    has_ticks = (log_dir / "ticks.csv").exists() and (log_dir / "ticks.csv").stat().st_size > 30
    jumps = []
    for n, c in enumerate(chunks):
        if n == 0 or (has_ticks and not running_before(log_dir, c["ready_time"])):
            continue
        i = int(np.searchsorted(t, c["ready_time"] - 1e-9))
        if 1 <= i < len(t):
            jumps.append(steps[i - 1:i + 2].max())
    return {"p50_period_ms": 1000 * float(np.percentile(periods, 50)),
            "p99_period_ms": 1000 * float(np.percentile(periods, 99)),
            "longest_stall_ms": 1000 * float(periods.max()),
            "max_switch_jump_rad": float(max(jumps)) if jumps else float("nan"),
            "switches": len(jumps), "tracking_faults": tracking_faults(log_dir)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=10.0, help="seconds per run (6 runs)")
    p.add_argument("--out", default="out/bench/control")
    p.add_argument("--checkpoint", default="scripted", help="scripted (default) or tiny")
    p.add_argument("--profile", default="kinova_gen3")
    a = p.parse_args(argv)
    keys = ("p50_period_ms", "p99_period_ms", "longest_stall_ms", "max_switch_jump_rad")
    print(f"control bench: profile {a.profile}, predictor {a.checkpoint}, {RATE_HZ:.0f} Hz, "
          f"{a.duration:.0f} s per run; ours = async runtime, baseline = official sync loop")
    print(f"{'latency':>8} {'metric':>20} {'ours':>10} {'baseline':>10} {'ours/base':>10}")
    for lat in LATENCIES:
        res = {}
        for mode in ("async", "sync"):
            out = Path(a.out) / f"{int(lat * 1000)}ms" / mode
            run_closed_loop(a.profile, a.checkpoint, latency=lat, duration=a.duration, out=out, mode=mode,
                            publish_rate_hz=RATE_HZ, start_move_duration_s=0.5)
            res[mode] = metrics(out)
        for k in keys:
            ours, base = res["async"][k], res["sync"][k]
            ratio = ours / base if base else float("nan")
            print(f"{int(lat * 1000):>6}ms {k:>20} {ours:>10.4f} {base:>10.4f} {ratio:>10.3f}")
        print(f"{'':>8} {'switches':>20} {res['async']['switches']:>10d} {res['sync']['switches']:>10d}")
        if res["async"]["tracking_faults"]:
            print(f"{'':>8} WARNING: the tracking watchdog held the async run for {res['async']['tracking_faults']} "
                  f"ticks (see ticks.csv); its numbers are not comparable")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
