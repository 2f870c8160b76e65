"""Builds the review folder: per episode (in worker processes) the media, plots and numbers; then, over the
dataset, the outlier flags and the pages."""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rdt_core.episode import EpisodeReader

from ..curation import CurationCache
from ..dataset import find_episode_files
from ..info import episode_info
from . import metrics, plots
from .media import render_media

MARKER = "review.json"          # what makes a folder a review folder (and lets a rebuild overwrite it)


class ReviewError(ValueError):
    """The review cannot be built as asked; the message says what to do."""


@dataclass
class EpisodeJob:
    source: str
    path: str
    key: str                    # the episode's name in its folder's curation.json
    folder: str                 # the folder rdt-dataset-edit takes (where curation.json is)
    slug: str                   # file-system name of its page and media folder
    media_dir: str
    video: bool = True
    video_height: int = 240
    threads: int = 1
    still_threshold: float = 1e-2
    trim: tuple | None = None   # the curation trim's [start_step, end_step), drawn on the time plot


@dataclass
class EpisodeReview:
    key: str
    folder: str
    slug: str
    path: str
    ok: bool = True
    error: str = ""
    info: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)        # rdt_core.episode.validate_episode
    quality: dict = field(default_factory=dict)
    motion: dict = field(default_factory=dict)
    media: dict = field(default_factory=dict)
    plots: dict = field(default_factory=dict)
    curation: dict = field(default_factory=dict)        # its entry of curation.json (EpisodeCuration)
    curation_text: str = ""                              # EpisodeCuration.describe()
    nan_steps: int | None = None                         # left out by the writer + non-finite in the file
    outliers: dict = field(default_factory=dict)         # metric -> the dataset's median it is far from
    flags: list = field(default_factory=list)           # filled over the dataset


def _slug(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key.replace("/", "__"))


def review_episode(job: EpisodeJob, progress=None) -> EpisodeReview:
    """Everything the pages need about one episode (runs in a worker process)."""
    out = EpisodeReview(job.key, job.folder, job.slug, job.path)
    path = Path(job.path)
    try:
        with EpisodeReader(path) as r:
            meta = r.meta
            stamps = np.asarray(r.timestamps, dtype=np.int64)
            qpos = np.asarray(r.qpos, dtype=np.float64)
            action = np.asarray(r.action, dtype=np.float64)
    except Exception as exc:   # not an episode at all: listed with why, no page
        out.ok, out.error = False, f"cannot be read: {exc}"
        return out
    # the schema check of rdt-dataset-info; frames: only the ends, the media pass below decodes every one
    info = episode_info(path, job.still_threshold, check_frames=False)
    out.problems = [p for p in info.problems if p != "robot never moves"]      # flagged from the motion
    if len(stamps) == 0 or qpos.shape != action.shape or qpos.ndim != 2 or qpos.shape[1] != len(meta.joint_names):
        out.ok, out.error = False, f"no usable steps ({'; '.join(out.problems) or 'empty'})"
        return out
    out.meta = {"robot": meta.robot, "joint_names": meta.joint_names, "camera_names": meta.camera_names,
                "control_frequency": meta.control_frequency, "instruction": meta.instruction,
                "color_order": {c: meta.color_order(c) for c in meta.camera_names}, "extra": meta.extra}
    out.info = asdict(info)
    out.info["path"] = str(out.info["path"])
    profile = metrics.profile_for(meta)
    t = (stamps - stamps[0]) / 1e9
    quality = metrics.quality_report(meta.extra)
    mo = metrics.motion(t, qpos, action, profile, list(meta.joint_names), job.still_threshold)
    out.quality = asdict(quality)
    out.motion = asdict(mo)
    out.nan_steps = (quality.nan_steps_reported or 0) + mo.nonfinite_steps
    media_dir = Path(job.media_dir)
    try:
        media = render_media(path, media_dir, video_height=job.video_height, video=job.video, threads=job.threads,
                             still_threshold=job.still_threshold, progress=progress)
        out.media = asdict(media)
        grip = profile.gripper_mask if profile is not None else np.zeros(len(meta.joint_names), bool)
        openness = metrics.gripper_openness(profile, qpos, action) if grip.any() else None
        trim = job.trim if job.trim and job.trim[1] <= len(t) else None
        out.plots = {
            "time": plots.time_figure(media_dir / "timeline.png", t, qpos, action, list(meta.joint_names), grip,
                                      openness, 1.0 / meta.control_frequency, media.video_duration_s,
                                      media.cameras, mo.idle_window, trim),
            "skew": plots.skew_figure(media_dir / "skew.png", quality),
        }
    except Exception as exc:    # one episode's media must not stop the review of the others
        out.ok, out.error = False, f"its video / plots could not be made ({type(exc).__name__}: {exc})"
    return out


# ---------------------------------------------------------------------------------------- worker plumbing
_progress_queue = None


def _init_worker(queue) -> None:
    global _progress_queue
    _progress_queue = queue
    import torch  # rdt_training imports it; one thread per worker, as the review runs one worker per core
    torch.set_num_threads(1)


def _context():
    """fork where there is one: a worker starts at once with what the parent imported (torch and transformers
    take seconds to import); spawn elsewhere. The pool is started before any thread of ours (progress bar)."""
    import multiprocessing as mp
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def _run_job(job: EpisodeJob) -> EpisodeReview:
    pending = [0]

    def progress(k: int) -> None:
        pending[0] += k
        if pending[0] >= 32:
            _progress_queue.put(pending[0])
            pending[0] = 0

    try:
        return review_episode(job, progress)
    finally:
        if pending[0]:
            _progress_queue.put(pending[0])


def _run_all(jobs: list[EpisodeJob], workers: int, make_bar) -> list[EpisodeReview]:
    if workers <= 1 or len(jobs) <= 1:
        with make_bar() as bar:
            return [review_episode(j, bar.update) for j in jobs]
    ctx = _context()
    plots.pyplot()                          # imported once here, not in every forked worker
    queue = ctx.Queue()
    results: dict[int, EpisodeReview] = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(queue,)) as pool:
        futures = {pool.submit(_run_job, j): k for k, j in enumerate(jobs)}
        with make_bar() as bar:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(queue, bar)
                for f in done:
                    results[futures[f]] = f.result()
            _drain(queue, bar)
    return [results[k] for k in range(len(jobs))]


def _drain(queue, bar) -> None:
    import queue as q
    while True:
        try:
            bar.update(queue.get_nowait())
        except q.Empty:
            return


# ---------------------------------------------------------------------------------------- the dataset
OUTLIER_METRICS = {   # metric -> (label, unit, smallest difference that counts)
    "duration_s": ("duration", "s", 1.0),
    "max_speed": ("max joint speed", "rad/s", 0.05),
    "idle_start_s": ("idle at start", "s", 0.5),
    "idle_end_s": ("idle at end", "s", 0.5),
}


def _metric(ep: EpisodeReview, name: str):
    return ep.info.get(name) if name == "duration_s" else ep.motion.get(name)


def flag_episodes(episodes: list[EpisodeReview], frozen_s: float = 1.0) -> None:
    """Fill each episode's ``flags``: outliers against the dataset's median, and quality problems."""
    usable = [e for e in episodes if e.ok]
    for name, (label, unit, min_abs) in OUTLIER_METRICS.items():
        far = metrics.robust_outliers({e.key: _metric(e, name) for e in usable}, min_abs=min_abs)
        for e in usable:
            if e.key in far:
                e.outliers[name] = far[e.key]
                e.flags.append(f"{label} {_metric(e, name):.2f} {unit} is far from the median {far[e.key]:.2f} {unit}")
    for e in episodes:
        if not e.ok:
            e.flags.append(e.error)
            continue
        q, mo = e.quality, e.motion
        if e.problems:
            e.flags.append("validation: " + "; ".join(e.problems))
        if q.get("dropped_frames"):
            e.flags.append(f"{q['dropped_frames']} dropped frames")
        if q.get("skipped_steps"):
            e.flags.append(f"{q['skipped_steps']} skipped steps")
        if e.nan_steps:
            e.flags.append(f"{e.nan_steps} NaN steps")
        other = {r: n for r, n in q.get("rejected_steps", {}).items() if not r.startswith("non-finite")}
        if other:
            e.flags.append("steps left out by the writer: " + ", ".join(f"{n} x {r}" for r, n in other.items()))
        if mo.get("idle_window") is None:
            e.flags.append("the arm never moves")
        if (mo.get("max_speed_limit_frac") or 0) > 1.0:
            e.flags.append(f"{mo['max_speed_joint']} at {mo['max_speed_limit_frac']:.0%} of its velocity limit")
        for cam, rep in e.media.get("cameras", {}).items():
            if rep["bad_frames"]:
                e.flags.append(f"{cam}: {len(rep['bad_frames'])} frames do not decode")
            if rep["frozen_run_s"] >= frozen_s:
                e.flags.append(f"{cam}: frozen for {rep['frozen_run_s']:.1f} s while the arm moved")


def _names(key: str, path) -> set[str]:
    """What --episode may call an episode: its curation key, file name, stem or path."""
    return {key, Path(path).name, Path(path).stem, str(path)}


def plan_jobs(sources, out: Path, *, select=None, video=True, video_height=240, workers=1,
              still_threshold=1e-2) -> list[EpisodeJob]:
    pairs = find_episode_files(sources)
    curations = CurationCache()
    jobs, slugs = [], set()
    for src, path in pairs:
        cur = curations.curation(src, path)
        key = cur.key_for(path)
        if select and not (_names(key, path) & set(select)):
            continue
        slug = _slug(key)
        while slug in slugs:        # two folders with the same episode names
            slug += "_"
        slugs.add(slug)
        trim = cur.get(path).trim
        jobs.append(EpisodeJob(str(src), str(path), key, str(cur.folder), slug, str(out / "media" / slug),
                               video, video_height, max(1, (os.cpu_count() or 1) // max(workers, 1)),
                               still_threshold, None if trim is None else (trim.start_step, trim.end_step)))
    if select:
        missing = [s for s in select if not any(s in _names(j.key, j.path) for j in jobs)]
        if missing:
            raise ReviewError(f"--episode {missing}: no such episode under {[str(s) for s in sources]}")
    if not jobs:
        raise ReviewError(f"no episodes (*.hdf5) under {[str(s) for s in sources]}")
    return jobs


def prepare_out(out: Path) -> None:
    """An empty or new folder, or an earlier review (replaced); never someone's other files."""
    if out.exists():
        if not out.is_dir():
            raise ReviewError(f"--out {out} is a file; give a folder")
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise ReviewError(f"--out {out} holds other files and no {MARKER} (not a review folder); "
                              f"give an empty or new folder")
        for sub in ("media", "episodes"):
            shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(json.dumps({"building": True}))     # an interrupted build stays rebuildable


def build_review(sources, out, *, jobs: int | None = None, select=None, video: bool = True,
                 video_height: int = 240, still_threshold: float = 1e-2, progress: bool = True,
                 frozen_s: float = 1.0) -> Path:
    """Build the review folder ``out`` for the episodes under ``sources``; returns index.html's path."""
    from tqdm.auto import tqdm

    from .page import write_pages

    out = Path(out).expanduser()
    sources = [sources] if isinstance(sources, (str, Path)) else list(sources)
    t_start = time.monotonic()
    workers = max(1, int(jobs or os.cpu_count() or 1))
    planned = plan_jobs(sources, out, select=select, video=video, video_height=video_height,
                        workers=workers, still_threshold=still_threshold)
    prepare_out(out)
    total = 0
    for j in planned:
        try:
            with EpisodeReader(j.path) as r:
                total += r.num_steps
        except Exception:
            pass
    episodes = _run_all(planned, min(workers, len(planned)),
                        lambda: tqdm(total=total, unit="step", desc=f"reviewing {len(planned)} episodes",
                                     disable=not progress, dynamic_ncols=True))
    flag_episodes(episodes, frozen_s=frozen_s)
    curations = CurationCache()
    for e in episodes:
        cur = curations.curation(e.folder, e.path).get(e.path)
        e.curation, e.curation_text = asdict(cur), cur.describe()
    index = write_pages(out, episodes, sources=[str(s) for s in sources])
    (out / MARKER).write_text(json.dumps({
        "sources": [str(s) for s in sources], "built_s": round(time.monotonic() - t_start, 2),
        "episodes": [asdict(e) for e in episodes]}, indent=1, default=_jsonable))
    return index


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (np.ndarray, tuple)):
        return list(v)
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"{type(v)} is not JSON-serialisable")
