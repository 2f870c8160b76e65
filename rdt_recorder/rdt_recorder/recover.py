"""recover PATH...: turn crashed recordings (hidden ``.episode_<n>.hdf5.partial`` files) into valid episodes.

A PATH may be a temporary file or a folder (every temporary episode in it). Each becomes ``episode_<n>.hdf5``
holding all complete steps it had flushed (``rdt_core.episode.recover``); exit status 0 only if all succeeded.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rdt_core.episode import recover as recover_episode
from rdt_core.episode import validate_episode


def find_partials(paths: list[str | Path]) -> list[Path]:
    """The temporary episode files named by ``paths`` (files as given, folders searched one level)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(q for q in p.iterdir() if q.name.startswith(".") and q.name.endswith(".hdf5.partial"))
        else:
            found.append(p)
    return found


def recover_all(paths: list[str | Path]) -> tuple[list[Path], list[str]]:
    """(recovered episode paths, error messages)."""
    done, errors = [], []
    for temp in find_partials(paths):
        try:
            out = recover_episode(temp)
            done.append(out)
        except (OSError, ValueError) as exc:
            errors.append(f"{temp}: {exc}")
    return done, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recover", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", metavar="PATH", help="temporary episode file or a folder")
    args = parser.parse_args(argv)
    partials = find_partials(args.paths)
    if not partials:
        print(f"recover: no temporary episodes (.episode_<n>.hdf5.partial) in {args.paths}", file=sys.stderr)
        return 1
    done, errors = recover_all(partials)
    for out in done:
        report = validate_episode(out)
        print(f"recovered {out} ({report.num_steps} steps{'' if report.ok else ', INVALID: ' + '; '.join(report.problems)})")
    for err in errors:
        print(f"recover: error: {err}", file=sys.stderr)
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
