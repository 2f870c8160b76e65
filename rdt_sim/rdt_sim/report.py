"""report.html of an evaluation: the summary table, success and time to success against latency per mode,
and a frame strip (the scene camera) of every episode."""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np


def _plots(out: Path, summary: list[dict], task: str) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = sorted({s["mode"] for s in summary})
    figs = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for mode in modes:
        sel = sorted((s for s in summary if s["mode"] == mode), key=lambda s: s["latency_s"])
        lat = [s["latency_s"] for s in sel]
        rate = np.array([s["success_rate"] for s in sel])
        lo = rate - np.array([s["ci95"][0] for s in sel])
        hi = np.array([s["ci95"][1] for s in sel]) - rate
        axes[0].errorbar(lat, rate, yerr=[lo, hi], marker="o", capsize=3, label=mode)
        tts = [np.nan if s["time_to_success_mean_s"] is None else s["time_to_success_mean_s"] for s in sel]
        axes[1].plot(lat, tts, marker="o", label=mode)
    axes[0].set_ylim(-0.05, 1.05)
    axes[0].set_xlabel("inference latency [s]")
    axes[0].set_ylabel("success rate (95 % CI)")
    axes[1].set_xlabel("inference latency [s]")
    axes[1].set_ylabel("mean time to success [s]")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{task}: success and time to success vs inference latency (sim time)")
    fig.tight_layout()
    fig.savefig(out / "success_vs_latency.png", dpi=100)
    plt.close(fig)
    figs.append(("Success rate and time to success vs latency", "success_vs_latency.png"))
    return figs


def _strip(out: Path, name: str, frames) -> str | None:
    if not frames:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (out / "strips").mkdir(exist_ok=True)
    path = out / "strips" / f"{name}.png"
    plt.imsave(path, np.concatenate([img for _, img in frames], axis=1))
    return f"strips/{name}.png"


def write_report(out: Path, result: dict, strips: dict) -> Path:
    summary, task = result["summary"], result["task"]
    figs = _plots(out, summary, task)
    head = ["mode", "latency [s]", "success", "95 % CI", "time to success [s]", "longest command gap [s]",
            "jerk at chunk switches (median of episodes) [rad/s^3]", "max jerk (median) [rad/s^3]"]

    def fmt(v, spec):
        return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)

    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
            s["mode"], fmt(s["latency_s"], ".2f"), f"{s['successes']}/{s['episodes']} ({s['success_rate']:.0%})",
            f"[{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]", fmt(s["time_to_success_mean_s"], ".2f"),
            fmt(s["max_command_gap_s"], ".2f"), fmt(s["jerk_at_switches_median"], ".0f"),
            fmt(s["jerk_max_median"], ".0f"))) + "</tr>" for s in summary)
    plots = "".join(f"<h2>{html.escape(t)}</h2><img src='{p}' style='max-width:100%'>" for t, p in figs)
    strip_rows = []
    by_episode = {(r["mode"], r["latency_s"], r["seed"]): r for r in result["episodes"]}
    for (mode, lat, seed), frames in sorted(strips.items()):
        link = _strip(out, f"{mode}_{lat:g}s_seed{seed}", frames)
        if link is None:
            continue
        r = by_episode.get((mode, lat, seed), {})
        verdict = (f"success at {r['time_to_success_s']:.2f} s" if r.get("success") else
                   f"no success (max reward {r.get('max_reward', '?')}/4)")
        times = ", ".join(f"{t:.1f}" for t, _ in frames)
        strip_rows.append(f"<tr><td>{mode} {lat:g} s, seed {seed}<br><small>{verdict}<br>t = {times} s</small></td>"
                          f"<td><img src='{link}' style='max-width:100%'></td></tr>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>rdt_sim evaluation: {task}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} td,th{{padding:2px 8px;text-align:left}}
.note{{background:#eef4ff;padding:.6em 1em}}</style></head><body>
<h1>rdt_sim: {html.escape(task)}, policy {html.escape(str(result['policy']))}</h1>
<p class="note">MuJoCo ALOHA (gym-aloha's model), seeded episodes from seed {result['seed']}; everything in sim time:
inference latency is simulated (a chunk requested at t arrives at t + latency), so the numbers do not depend on the
machine. <b>ours</b>: rdt_policy_node's runtime; <b>sync</b>: the official loop (infer, the robot waits, execute the
chunk); <b>expert</b>: the scripted demonstration executed directly. Success = reward 4 of 4.</p>
<table border=1 style="border-collapse:collapse"><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{rows}</table>
{plots}<h2>Episodes (scene camera)</h2><table>{''.join(strip_rows)}</table>
<p>Raw data: episodes.csv, summary.json.</p></body></html>"""
    path = out / "report.html"
    path.write_text(page)
    return path
