"""What is in a folder of episodes (console script ``rdt-dataset-info``).

Prints one row per episode (length, duration, measured rate, cameras, instruction, still frames at the
start, the recorder's timing-skew summary, the folder's curation (curation.json: excluded, trimmed; the
numbers are of the kept steps), problems), then every problem in full: a non-finite joint value or a frame
that does not decode is named with its step (every frame is checked with an eighth-size decode unless
``--no-frame-check``). With ``--plot``, draws one episode's joints
(qpos and action over time) and a strip of camera frames into a PNG, to check a recording by eye before
training on it.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rdt_core.episode import EpisodeReader, validate_episode

from .curation import CurationCache, CurationError, EpisodeCuration
from .dataset import DatasetError, find_episode_files, first_moving_step


@dataclass
class EpisodeInfo:
    path: Path
    ok: bool
    robot: str = ""
    steps: int = 0
    duration_s: float = 0.0
    rate_hz: float = 0.0
    control_frequency: float = 0.0
    cameras: list = field(default_factory=list)
    instruction: str = ""
    still_steps: int = 0
    skew: str = ""
    problem: str = ""
    problems: list = field(default_factory=list)      # every problem found, in full
    curation: str = ""               # EpisodeCuration.describe(): excluded (why), trimmed (where)
    excluded: bool = False


def _find_alignment(extra) -> dict | None:
    """The recorder's alignment statistics (a dict with skew_max_ms) wherever it sits in ``extra``."""
    if isinstance(extra, dict):
        if "skew_max_ms" in extra:
            return extra
        for v in extra.values():
            found = _find_alignment(v)
            if found is not None:
                return found
    return None


def skew_summary(extra) -> str:
    stats = _find_alignment(extra or {})
    if not stats:
        return "-"
    worst = max((float(v) for v in stats.get("skew_max_ms", {}).values()), default=0.0)
    misses = sum(int(v) for v in stats.get("misses", {}).values())
    return f"max {worst:.1f} ms, {misses} misses"


def episode_info(path, still_threshold: float = 1e-2, check_frames: bool = True,
                 curation: EpisodeCuration | None = None) -> EpisodeInfo:
    """The table row of one episode; with ``curation``, of its kept steps (an excluded one is not usable;
    a bad frame or value in a part that a trim removed is not a problem)."""
    path = Path(path)
    cur = curation or EpisodeCuration()
    try:
        with EpisodeReader(path) as r:
            meta = r.meta
            stamps = np.asarray(r.timestamps, dtype=np.int64)
            qpos = np.asarray(r.qpos)
    except Exception as exc:
        return EpisodeInfo(path, ok=False, problem=f"unreadable: {exc}", curation=cur.describe(),
                           excluded=cur.excluded)
    try:
        lo, hi = cur.window(len(stamps))
    except CurationError as exc:
        return EpisodeInfo(path, ok=False, problem=f"curation: {exc}", curation=cur.describe())
    stamps, qpos = stamps[lo:hi], qpos[lo:hi]
    n = len(stamps)
    duration = (stamps[-1] - stamps[0]) / 1e9 if n > 1 else 0.0
    first = first_moving_step(qpos, still_threshold) if n else None
    problems = validate_episode(path, frames="all" if check_frames else "ends", steps=(lo, hi)).problems
    if first is None:
        problems.append("robot never moves")
    return EpisodeInfo(
        path, ok=not problems and not cur.excluded, robot=meta.robot, steps=n, duration_s=float(duration),
        rate_hz=float((n - 1) / duration) if duration > 0 else 0.0,
        control_frequency=float(meta.control_frequency), cameras=list(meta.camera_names),
        instruction=meta.instruction or "", still_steps=max((first or n) - 1, 0),
        skew=skew_summary(meta.extra), problem=problems[0] if problems else "", problems=problems,
        curation=cur.describe(), excluded=cur.excluded)


def format_table(infos: list[EpisodeInfo]) -> str:
    header = ["episode", "robot", "steps", "dur s", "Hz", "still", "cameras", "skew", "curation",
              "instruction / problem"]
    rows = [[i.path.name, i.robot, str(i.steps), f"{i.duration_s:.1f}", f"{i.rate_hz:.1f}", str(i.still_steps),
             ",".join(i.cameras), i.skew, i.curation[:40] or "-", (i.problem or i.instruction)[:60]] for i in infos]
    widths = [max(len(h), *(len(r[k]) for r in rows)) if rows else len(h) for k, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    out = [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]
    ok = [i for i in infos if i.ok]
    total = sum(i.steps for i in ok)
    excluded = sum(i.excluded for i in infos)
    out.append(f"{len(infos)} episodes ({len(ok)} usable" + (f", {excluded} excluded by curation" if excluded else "")
               + f"), {total} steps, {sum(i.duration_s for i in ok) / 60:.1f} min")
    bad = [f"  {i.path}: {p}" for i in infos for p in (i.problems or ([i.problem] if i.problem else []))]
    if bad:
        out += ["problems:"] + bad
    return "\n".join(out)


def plot_episode(path, out_png, *, num_frames: int = 6) -> Path:
    """PNG with the episode's joints (qpos solid, action dashed) and a strip of frames of every camera."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with EpisodeReader(path) as r:
        meta = r.meta
        t = (np.asarray(r.timestamps) - r.timestamps[0]) / 1e9
        qpos, action = np.asarray(r.qpos), np.asarray(r.action)
        cams = list(meta.camera_names)
        idx = np.linspace(0, r.num_steps - 1, num=min(num_frames, r.num_steps)).astype(int)
        frames = {c: [r.image(c, int(i)) for i in idx] for c in cams}
    rows = 1 + len(cams)
    fig = plt.figure(figsize=(2.2 * max(len(idx), 4), 3.2 + 1.8 * len(cams)))
    grid = fig.add_gridspec(rows, len(idx), height_ratios=[2.0] + [1.0] * len(cams))
    ax = fig.add_subplot(grid[0, :])
    for j, name in enumerate(meta.joint_names):
        line, = ax.plot(t, qpos[:, j], label=name, lw=1.2)
        ax.plot(t, action[:, j], ls="--", lw=0.8, color=line.get_color())
    ax.set_xlabel("time (s)")
    ax.set_ylabel("position (robot units)")
    ax.set_title(f"{Path(path).name}: {meta.robot}, {len(t)} steps - {meta.instruction}")
    ax.legend(fontsize=6, ncol=max(1, len(meta.joint_names) // 4), loc="upper right")
    for c_i, cam in enumerate(cams):
        for k, i in enumerate(idx):
            a = fig.add_subplot(grid[1 + c_i, k])
            a.imshow(frames[cam][k])
            a.set_xticks([])
            a.set_yticks([])
            if k == 0:
                a.set_ylabel(cam, fontsize=7)
            if c_i == 0:
                a.set_title(f"t={t[i]:.1f}s", fontsize=7)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return out_png


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="rdt-dataset-info", description=__doc__.splitlines()[0])
    ap.add_argument("episodes", nargs="+", help="episode folders or .hdf5 files")
    ap.add_argument("--plot", metavar="EPISODE", default=None,
                    help="episode (file, or its index in the table) to plot to --plot-out")
    ap.add_argument("--plot-out", default="episode.png", help="PNG path for --plot")
    ap.add_argument("--frames", type=int, default=6, help="frames per camera in the plot's strip")
    ap.add_argument("--no-frame-check", action="store_true",
                    help="decode only the first and last frame of each camera (faster on large datasets)")
    args = ap.parse_args(argv)
    try:
        pairs = find_episode_files(args.episodes)
        curations = CurationCache()
        infos = [episode_info(f, check_frames=not args.no_frame_check, curation=curations.lookup(src, f))
                 for src, f in pairs]
    except (DatasetError, CurationError) as exc:
        print(f"rdt-dataset-info: {exc}", file=sys.stderr)
        return 2
    files = [f for _, f in pairs]
    print(format_table(infos))
    if args.plot is not None:
        target = Path(args.plot)
        if not target.is_file():
            if args.plot.isdigit() and int(args.plot) < len(files):
                target = files[int(args.plot)]
            else:
                print(f"rdt-dataset-info: --plot {args.plot}: not an episode file nor an index < {len(files)}",
                      file=sys.stderr)
                return 2
        print(f"plot -> {plot_episode(target, args.plot_out, num_frames=args.frames)}")
    return 0 if files else 1


if __name__ == "__main__":
    sys.exit(main())
