"""The episode page's figures (matplotlib, PNG). The time figure's axes share the video's time axis; its
geometry (where t = 0 and t = end fall in the picture) lets the page draw a cursor that follows playback."""
from __future__ import annotations

from pathlib import Path

import numpy as np

# fixed margins (no tight_layout): every axis of the time figure spans the same horizontal extent
_LEFT, _RIGHT, _TOP, _BOTTOM = 0.08, 0.80, 0.95, 0.08


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def time_figure(path: Path, t: np.ndarray, qpos: np.ndarray, action: np.ndarray, joint_names: list[str],
                gripper_mask: np.ndarray, openness, period_s: float, duration_s: float, cameras: dict,
                idle_window: tuple[int, int] | None, trim: tuple[int, int] | None) -> dict:
    """Arm joints, grippers and step timing over the episode's time; returns the cursor geometry.

    ``openness``: (T, G) gripper openness (None: in joint units); ``cameras``: {camera: CameraReport}."""
    plt = pyplot()
    grip = np.asarray(gripper_mask, bool)
    rows = ["arm"] + (["gripper"] if grip.any() else []) + ["timing"]
    heights = {"arm": 3.0, "gripper": 1.3, "timing": 1.6}
    fig, axes = plt.subplots(len(rows), 1, sharex=True, figsize=(11, 1.1 + sum(heights[r] for r in rows)),
                             gridspec_kw={"height_ratios": [heights[r] for r in rows]})
    fig.subplots_adjust(left=_LEFT, right=_RIGHT, top=_TOP, bottom=_BOTTOM, hspace=0.12)
    ax = dict(zip(rows, np.atleast_1d(axes)))
    arm = [k for k in range(len(joint_names)) if not grip[k]]
    for k in arm:
        line, = ax["arm"].plot(t, qpos[:, k], lw=1.1, label=joint_names[k])
        ax["arm"].plot(t, action[:, k], lw=0.7, ls="--", color=line.get_color())
    ax["arm"].set_ylabel("arm joints")
    ax["arm"].set_title("qpos solid, action dashed", fontsize=8, loc="left")
    ax["arm"].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if "gripper" in ax:
        q_open, a_open = openness if openness is not None else (qpos[:, grip], action[:, grip])
        names = [n for n, g in zip(joint_names, grip) if g]
        for g, name in enumerate(names):
            line, = ax["gripper"].plot(t, q_open[:, g], lw=1.1, label=name)
            ax["gripper"].plot(t, a_open[:, g], lw=0.7, ls="--", color=line.get_color())
        ax["gripper"].set_ylabel("gripper\nopenness" if openness is not None else "gripper")
        ax["gripper"].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    tim = ax["timing"]
    if len(t) > 1:
        tim.step(t[1:], np.diff(t) * 1e3, where="pre", lw=0.9, color="0.2", label="step interval")
    tim.axhline(period_s * 1e3, color="tab:green", ls=":", lw=1, label=f"{1 / period_s:g} Hz period")
    for j, (cam, rep) in enumerate(cameras.items()):
        y = period_s * 1e3 * (0.15 + 0.12 * j)
        if rep.repeated_steps:
            tim.plot(t[rep.repeated_steps], np.full(len(rep.repeated_steps), y), "|", ms=5,
                     label=f"{cam}: frame repeated")
        if rep.bad_frames:
            tim.plot(t[rep.bad_frames], np.full(len(rep.bad_frames), y), "x", color="red", ms=6,
                     label=f"{cam}: frame does not decode")
        if rep.frozen_run_steps:
            a, b = rep.frozen_run_steps
            for name in rows:
                ax[name].axvspan(t[a], t[b], color="red", alpha=0.12, lw=0)
    tim.set_ylabel("timing [ms]")
    tim.set_ylim(bottom=0)
    tim.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    tim.set_xlabel("time from the first step [s] (the video's clock)")
    shade = []
    if idle_window is not None:
        shade += [(0.0, t[idle_window[0]]), (t[idle_window[1] - 1], duration_s)]
    for name in rows:
        for a, b in shade:
            if b > a:
                ax[name].axvspan(a, b, color="0.85", lw=0, zorder=0)
        if trim is not None:
            for x in (t[trim[0]], t[trim[1] - 1]):
                ax[name].axvline(x, color="tab:purple", lw=1.2)
        ax[name].grid(alpha=0.3)
    tim.set_xlim(0.0, duration_s)
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    first, last = ax[rows[0]].get_position(), ax[rows[-1]].get_position()
    return {"image": path.name, "x0": first.x0, "x1": first.x1, "y0": 1.0 - first.y1, "y1": 1.0 - last.y0,
            "t0": 0.0, "t1": float(duration_s)}


def skew_figure(path: Path, quality) -> str | None:
    """Per-stream alignment skew (mean and max, ms) and misses of the recorder's report; None without one."""
    if not quality.skew_max_ms:
        return None
    plt = pyplot()
    names = sorted(quality.skew_max_ms)
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.35 * len(names)))
    ax.barh(y - 0.2, [quality.skew_mean_ms.get(n, 0.0) for n in names], height=0.4, label="mean")
    ax.barh(y + 0.2, [quality.skew_max_ms[n] for n in names], height=0.4, label="max")
    labels = []
    for n in names:
        extra = [f"{quality.misses[n]} misses" if quality.misses.get(n) else "",
                 f"{quality.dropped_by_stream[n]} dropped" if quality.dropped_by_stream.get(n) else "",
                 f"{quality.late_messages[n]} late" if quality.late_messages.get(n) else ""]
        labels.append(n + "".join(f"\n{e}" for e in extra if e))
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel("skew: step time - message stamp [ms]")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return Path(path).name
