"""Curate a folder of episodes without copying them (console script ``rdt-dataset-edit``).

    rdt-dataset-edit DIR exclude EPISODE --reason "missed grasp"
    rdt-dataset-edit DIR include EPISODE
    rdt-dataset-edit DIR trim EPISODE --start 1.2 --end 20.5      # seconds from the episode's first step
    rdt-dataset-edit DIR trim EPISODE --clear
    rdt-dataset-edit DIR trim-idle [EPISODE ...] [--tolerance 0.01]

Every action is recorded in DIR/curation.json (see rdt_training.curation); the episode files are never
rewritten. ``rdt-train``, ``rdt-dataset-stats`` and ``rdt-dataset-info`` honour it. EPISODE is a file name
(``episode_3.hdf5``), its stem (``episode_3``) or its path.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from rdt_core.episode import EpisodeReader

from .curation import Curation, CurationError, trim_from_seconds, trim_from_steps
from .dataset import DatasetError, find_episode_files, idle_window

DEFAULT_TOLERANCE = 1e-2    # the official still-frame threshold (EPS of the RDT HDF5 loader)


def resolve_episode(folder: Path, name: str, files: list[Path]) -> Path:
    """The episode file of ``folder`` that ``name`` names (relative path, file name, stem or a path)."""
    given = Path(name).expanduser()
    if given.is_file():
        hits = [f for f in files if f.resolve() == given.resolve()]
    else:
        hits = [f for f in files if name in (f.relative_to(folder).as_posix(), f.name, f.stem)]
    if len(hits) == 1:
        return hits[0]
    names = [f.relative_to(folder).as_posix() for f in files]
    if not hits:
        shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
        raise CurationError(f"no episode {name!r} in {folder}; episodes: {shown or 'none'}")
    raise CurationError(f"{name!r} names several episodes of {folder} ({[str(h) for h in hits]}); "
                        f"give the path relative to {folder}")


def _read_steps(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with EpisodeReader(path) as r:
        return np.asarray(r.timestamps, dtype=np.int64), np.asarray(r.qpos, dtype=np.float64)


def trim_idle(curation: Curation, path: Path, tolerance: float) -> str:
    """Cut the still steps at both ends of what the episode keeps (the official still-frame rule, with
    ``tolerance``); returns what happened, for the terminal."""
    key = curation.key_for(path)
    stamps, qpos = _read_steps(path)
    lo, hi = curation.window(path, len(stamps))
    window = idle_window(qpos[lo:hi], tolerance)
    if window is None:
        return (f"{key}: the arm never moves more than {tolerance:g}; left as it is (exclude it with "
                f"`rdt-dataset-edit {shlex.quote(str(curation.folder))} exclude {shlex.quote(key)} --reason 'never moves'`)")
    start, end = lo + window[0], lo + window[1]
    if (start, end) == (lo, hi):
        return f"{key}: no idle steps at either end; unchanged"
    trim = trim_from_steps(stamps, start, end, by="trim-idle", tolerance=tolerance)
    curation.set_trim(path, trim)
    return f"{key}: {curation.get(path).describe()}, keeps {trim.steps} of {len(stamps)} steps"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rdt-dataset-edit", description=__doc__.splitlines()[0],
                                 epilog="The state is in DIR/curation.json; rdt-dataset-info shows it.")
    ap.add_argument("folder", metavar="DIR", help="the episode folder (curation.json is written there)")
    sub = ap.add_subparsers(dest="action", required=True)
    p = sub.add_parser("exclude", help="leave an episode out of training, statistics and info totals")
    p.add_argument("episode")
    p.add_argument("--reason", required=True, help="why (shown by rdt-dataset-info and the review page)")
    p = sub.add_parser("include", help="undo exclude")
    p.add_argument("episode")
    p = sub.add_parser("trim", help="keep only the steps between --start and --end seconds")
    p.add_argument("episode")
    p.add_argument("--start", type=float, default=None, help="seconds from the first step (default: 0)")
    p.add_argument("--end", type=float, default=None, help="seconds from the first step (default: the last step)")
    p.add_argument("--clear", action="store_true", help="remove the episode's trim (keep every step)")
    p = sub.add_parser("trim-idle", help="cut the still steps at the start and the end (official still-frame rule)")
    p.add_argument("episodes", nargs="*", help="episodes (default: every episode of DIR)")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help=f"a joint moving less than this from the first / last step is still (default {DEFAULT_TOLERANCE:g}, "
                        "the official threshold)")
    return ap


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    folder = Path(args.folder).expanduser()
    try:
        if not folder.is_dir():
            raise CurationError(f"{folder} is not a folder of episodes (curation.json lives in the episode folder)")
        files = [f for _, f in find_episode_files(folder)]
        curation = Curation.load(folder)
        if args.action == "trim-idle":
            if not args.tolerance >= 0:
                raise CurationError(f"--tolerance must be >= 0, got {args.tolerance}")
            targets = [resolve_episode(folder, e, files) for e in args.episodes] if args.episodes else files
            messages = [trim_idle(curation, f, args.tolerance) for f in targets]
        else:
            path = resolve_episode(folder, args.episode, files)
            if args.action == "exclude":
                curation.exclude(path, args.reason)
            elif args.action == "include":
                curation.include(path)
            elif args.clear:
                if args.start is not None or args.end is not None:
                    raise CurationError("trim --clear takes no --start / --end")
                curation.set_trim(path, None)
            else:
                if args.start is None and args.end is None:
                    raise CurationError("trim needs --start and/or --end (seconds), or --clear")
                stamps, _ = _read_steps(path)
                curation.set_trim(path, trim_from_seconds(stamps, args.start, args.end))
            state = curation.get(path).describe() or "included, every step kept"
            messages = [f"{curation.key_for(path)}: {state}"]
        saved = curation.save()
    except (CurationError, DatasetError, OSError) as exc:
        print(f"rdt-dataset-edit: {exc}", file=sys.stderr)
        return 2
    for m in messages:
        print(m)
    print(f"-> {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
