"""Sim benchmark: success rates of the scripted experts, and of the chunked expert through our runtime vs
the official synchronous loop under inference latency, on the MuJoCo ALOHA (rdt_sim), in sim time.

1. the scripted expert executed directly: success rate over N seeded episodes per task (its own measure);
2. the expert as a 64-step chunk predictor at 0 / 0.1 / 0.3 / 0.5 s of (simulated) inference latency,
   through ``ours`` (rdt_policy_node's runtime) and ``sync`` (infer, the robot waits, execute the chunk):
   success rate, time to success, ours / sync.

Latency is simulated in sim time, so the numbers are the same on any machine; the wall time only says how
long the benchmark took. Run it at low priority on a shared machine:

    nice -n 10 python bench/sim_bench.py [--episodes 50] [--tasks transfer_cube,insertion] [--out out/bench/sim]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rdt_sim.evaluate import evaluate, format_summary

LATENCIES = (0.0, 0.1, 0.3, 0.5)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--tasks", default="transfer_cube,insertion")
    p.add_argument("--seed", type=int, default=1000, help="first seed (the tests use small seeds)")
    p.add_argument("--out", default="out/bench/sim")
    p.add_argument("--strip-frames", type=int, default=0, help="frame strips in the reports (slow on CPU)")
    a = p.parse_args()
    results = {}
    for task in [t for t in a.tasks.split(",") if t]:
        t0 = time.monotonic()
        expert = evaluate(task, "expert", episodes=a.episodes, seed=a.seed, out=Path(a.out) / task / "expert",
                          strip_frames=a.strip_frames, log=lambda m: None)
        chunked = evaluate(task, "chunked-expert", latencies=LATENCIES, modes=("ours", "sync"),
                           episodes=a.episodes, seed=a.seed, out=Path(a.out) / task / "chunked",
                           strip_frames=a.strip_frames, log=lambda m: None)
        e = expert["summary"][0]
        print(f"== {task}: scripted expert {e['successes']}/{e['episodes']} = {e['success_rate']:.0%} "
              f"(95 % CI {e['ci95'][0]:.2f}-{e['ci95'][1]:.2f}), mean time to success "
              f"{e['time_to_success_mean_s'] or float('nan'):.2f} s  [{time.monotonic() - t0:.0f} s wall]")
        print(format_summary(chunked["summary"]))
        by = {(s["mode"], s["latency_s"]): s for s in chunked["summary"]}
        print(f"{'latency':>8s} {'ours/sync success':>18s} {'ours/sync time to success':>26s}")
        for lat in LATENCIES:
            o, s = by[("ours", lat)], by[("sync", lat)]
            rate = o["success_rate"] / s["success_rate"] if s["success_rate"] else float("inf")
            tts = (o["time_to_success_mean_s"] / s["time_to_success_mean_s"]
                   if o["time_to_success_mean_s"] and s["time_to_success_mean_s"] else float("nan"))
            print(f"{lat:>7.1f}s {rate:>18.2f} {tts:>26.2f}")
        results[task] = {"expert": expert["summary"], "chunked": chunked["summary"]}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sim_bench.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"reports: {out}/<task>/{{expert,chunked}}/report.html")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
