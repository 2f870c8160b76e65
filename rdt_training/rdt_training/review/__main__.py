"""``rdt-dataset-review``: the review page of a folder of episodes (see rdt_training.review)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..curation import CurationError
from ..dataset import DatasetError
from .build import ReviewError, build_review, plan_jobs
from .rerun_export import RerunUnavailable, write_rerun


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rdt-dataset-review",
                                 description="A static web page to review recorded episodes before training.")
    ap.add_argument("episodes", nargs="+", metavar="DIR", help="episode folders or .hdf5 files")
    ap.add_argument("--out", metavar="REVIEW_DIR", help="folder to write the page into (index.html)")
    ap.add_argument("--episode", action="append", default=None, metavar="NAME",
                    help="review only this episode (file name, stem or path; repeatable)")
    ap.add_argument("--jobs", type=int, default=None, help="worker processes (default: one per core)")
    ap.add_argument("--video-height", type=int, default=240, help="height of the side-by-side video (pixels)")
    ap.add_argument("--no-video", action="store_true", help="skip the videos (thumbnails and plots only)")
    ap.add_argument("--still-threshold", type=float, default=1e-2,
                    help="still-frame threshold of the idle times (the official 1e-2 by default)")
    ap.add_argument("--frozen-s", type=float, default=1.0,
                    help="flag a camera whose frame stays identical this long while the arm moves")
    ap.add_argument("--rerun", metavar="FILE.rrd", default=None,
                    help="also write the episode (one: name it with --episode) as a rerun recording "
                         "(needs `pip install rerun-sdk`)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if not args.out and not args.rerun:
        print("rdt-dataset-review: give --out REVIEW_DIR (the page) and/or --rerun FILE.rrd", file=sys.stderr)
        return 2
    if args.video_height < 16:
        print(f"rdt-dataset-review: --video-height must be at least 16, got {args.video_height}", file=sys.stderr)
        return 2
    try:
        if args.rerun:
            jobs = plan_jobs(args.episodes, Path(args.out or "."), select=args.episode)
            if len(jobs) != 1:
                raise ReviewError(f"--rerun writes one episode; {len(jobs)} are selected: name one with --episode")
            print(f"rerun recording -> {write_rerun(jobs[0].path, args.rerun, name=jobs[0].key)}")
        if args.out:
            t0 = time.monotonic()
            index = build_review(args.episodes, args.out, jobs=args.jobs, select=args.episode,
                                 video=not args.no_video, video_height=args.video_height,
                                 still_threshold=args.still_threshold, progress=not args.quiet,
                                 frozen_s=args.frozen_s)
            print(f"review ({time.monotonic() - t0:.0f} s) -> {index.resolve()}")
    except (ReviewError, DatasetError, CurationError, RerunUnavailable) as exc:
        print(f"rdt-dataset-review: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
