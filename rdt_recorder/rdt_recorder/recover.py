"""recover PATH...: turn interrupted recordings (hidden ``.episode_<n>.steps.sqlite`` step logs, and the
``.episode_<n>.hdf5.partial`` files of earlier versions) into valid episodes.

A PATH may be a temporary file or a folder (every temporary episode in it). Each becomes ``episode_<n>.hdf5``
holding every step it had committed (``rdt_core.episode.recover``); one that holds no step is removed and
reported, and a full disk is reported with the space to free. Exit status 0 only if nothing failed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rdt_core.episode import EmptyEpisodeError, find_temporary_episodes
from rdt_core.episode import recover as recover_episode
from rdt_core.episode import validate_episode


def find_partials(paths: list[str | Path]) -> list[Path]:
    """The temporary episode files named by ``paths`` (files as given, folders searched one level)."""
    found: list[Path] = []
    for p in map(Path, paths):
        found += find_temporary_episodes(p) if p.is_dir() else [p]
    return found


def recover_all(paths: list[str | Path]) -> tuple[list[Path], list[str], list[str]]:
    """(recovered episode paths, notes on temporary files that held nothing, error messages)."""
    done, empty, errors = [], [], []
    for temp in find_partials(paths):
        try:
            done.append(recover_episode(temp))
        except EmptyEpisodeError as exc:
            empty.append(f"{temp}: {exc}")
        except (OSError, ValueError, RuntimeError) as exc:     # DiskFullError, EpisodeBuildError included
            errors.append(f"{temp}: {exc}")
    return done, empty, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recover", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", metavar="PATH", help="temporary episode file or a folder")
    args = parser.parse_args(argv)
    partials = find_partials(args.paths)
    if not partials:
        print(f"recover: no temporary episodes (.episode_<n>.steps.sqlite) in {args.paths}", file=sys.stderr)
        return 1
    done, empty, errors = recover_all(partials)
    for out in done:
        report = validate_episode(out, frames="ends")     # every frame was checked when it was written
        print(f"recovered {out} ({report.num_steps} steps{'' if report.ok else ', INVALID: ' + '; '.join(report.problems)})")
    for note in empty:
        print(f"nothing to recover: {note}")
    for err in errors:
        print(f"recover: error: {err}", file=sys.stderr)
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
