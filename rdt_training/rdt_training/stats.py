"""Per-dimension dataset statistics of the unified state (console script ``rdt-dataset-stats``).

The equivalent of the official ``data/compute_dataset_stat_hdf5.py``: states from each episode's start
(one step before the robot first moves) mapped into the 128-dim unified vector; mean over all steps;
the official std formula, which counts only non-zero entries for the second moment (dimensions a robot
does not fill stay zero); min and max. The result record is the official ``dataset_stat.json`` entry,
plus a few extras (robot, joint names, per-joint qpos/action statistics in robot units, counts).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .dataset import EXCLUDED_BY_CURATION, DatasetError, IndexedEpisode, index_episodes

EPS = 1e-8


def compute_stats(episodes: list[IndexedEpisode], dataset_name: str | None = None) -> dict:
    """The official statistics record of the given indexed episodes (+ extras)."""
    if not episodes:
        raise DatasetError("no episodes to compute statistics of")
    state_sum = state_sq = z_sum = z_sq = 0.0
    nz_cnt = np.zeros(128)
    cnt = 0
    smax = smin = None
    for ep in episodes:
        states = ep.unified_states().astype(np.float64)
        z = np.where(np.abs(states) <= EPS, 0.0, states)
        nz_cnt += np.sum(np.abs(states) > EPS, axis=0)
        state_sum = state_sum + states.sum(0)
        state_sq = state_sq + (states ** 2).sum(0)
        z_sum = z_sum + z.sum(0)
        z_sq = z_sq + (z ** 2).sum(0)
        cnt += states.shape[0]
        smax = states.max(0) if smax is None else np.maximum(smax, states.max(0))
        smin = states.min(0) if smin is None else np.minimum(smin, states.min(0))
    nz_cnt = np.maximum(nz_cnt, 1.0)
    std = np.sqrt(np.maximum(z_sq / nz_cnt - (z_sum / cnt) ** 2 * (cnt / nz_cnt), 0.0))
    robots = sorted({e.robot for e in episodes})
    name = dataset_name or "+".join(robots)
    record = {
        "dataset_name": name,
        "state_mean": (state_sum / cnt).tolist(),
        "state_std": std.tolist(),
        "state_min": smin.tolist(),
        "state_max": smax.tolist(),
        # extras (not in the official record)
        "robots": robots,
        "num_episodes": len(episodes),
        "num_steps": int(cnt),
        "control_frequency": sorted({e.ctrl_freq for e in episodes}),
    }
    if len(robots) == 1:
        qpos = np.concatenate([e.qpos[e.start:] for e in episodes]).astype(np.float64)
        action = np.concatenate([e.action[e.start:] for e in episodes]).astype(np.float64)
        record["joint_names"] = episodes[0].profile.joint_names
        record["qpos_mean"], record["qpos_std"] = qpos.mean(0).tolist(), qpos.std(0).tolist()
        record["qpos_min"], record["qpos_max"] = qpos.min(0).tolist(), qpos.max(0).tolist()
        record["action_mean"], record["action_std"] = action.mean(0).tolist(), action.std(0).tolist()
    for key, value in record.items():       # index_episodes leaves non-finite episodes out; overflow remains
        if isinstance(value, list) and value and isinstance(value[0], float) and not np.isfinite(value).all():
            raise DatasetError(f"the statistic {key} is not finite: some joint values are too large for float64; "
                               "find them with rdt-dataset-info")
    return record


def dataset_stats(sources, *, profiles=None, dataset_name: str | None = None, skip_still: bool = True,
                  still_threshold: float = 1e-2, min_steps: int = 2, skipped: list | None = None) -> dict:
    """Index the episodes under ``sources`` (honouring their curation.json) and compute their statistics
    record, which names the episodes curation excluded or trimmed; the episodes left out ((path, reason),
    e.g. a non-finite joint value) are appended to ``skipped``."""
    episodes, left_out = index_episodes(sources, profiles=profiles, skip_still=skip_still,
                                        still_threshold=still_threshold, min_steps=min_steps)
    if skipped is not None:
        skipped.extend(left_out)
    record = compute_stats(episodes, dataset_name)
    excluded = [str(p) for p, why in left_out if why.startswith(EXCLUDED_BY_CURATION)]
    trimmed = [str(e.path) for e in episodes if e.curation is not None and e.curation.trim is not None]
    if excluded or trimmed:
        record["curation"] = {"excluded": excluded, "trimmed": trimmed}
    return record


def write_stats(record: dict, path, *, skip_exist: bool = False) -> bool:
    """Merge ``record`` into the official {dataset_name: record} JSON file; False when skipped."""
    path = Path(path)
    table = {}
    if path.is_file():
        try:
            table = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON ({exc}); move it away or pick another --out") from exc
    if skip_exist and record["dataset_name"] in table:
        return False
    table[record["dataset_name"]] = record
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(json.dumps(table, indent=2, allow_nan=False))     # never a bare NaN in the official file
    tmp.replace(path)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="rdt-dataset-stats", description=__doc__.splitlines()[0])
    ap.add_argument("episodes", nargs="+", help="episode folders or .hdf5 files")
    ap.add_argument("--out", default="dataset_stat.json", help="JSON file to merge the record into (official format)")
    ap.add_argument("--name", default=None, help="dataset name (default: the robot profile name)")
    ap.add_argument("--profile", default=None, help="robot profile name or YAML for every episode "
                                                     "(default: the robot named in each episode)")
    ap.add_argument("--keep-still", action="store_true", help="do not skip the still frames at the start")
    ap.add_argument("--still-threshold", type=float, default=1e-2)
    ap.add_argument("--skip-exist", action="store_true", help="leave an existing record of this name untouched")
    args = ap.parse_args(argv)
    skipped: list = []
    try:
        record = dataset_stats(args.episodes, profiles=args.profile, dataset_name=args.name,
                               skip_still=not args.keep_still, still_threshold=args.still_threshold, skipped=skipped)
    except (DatasetError, FileNotFoundError, ValueError) as exc:
        print(f"rdt-dataset-stats: {exc}", file=sys.stderr)
        return 2
    for path, reason in skipped:
        print(f"rdt-dataset-stats: left out {path}: {reason}", file=sys.stderr)
    if write_stats(record, args.out, skip_exist=args.skip_exist):
        cur = record.get("curation", {})
        note = (f" (curation.json: {len(cur['excluded'])} excluded, {len(cur['trimmed'])} trimmed)" if cur else "")
        print(f"{record['dataset_name']}: {record['num_episodes']} episodes, {record['num_steps']} steps{note} "
              f"-> {args.out}")
    else:
        print(f"{record['dataset_name']} already in {args.out}; left untouched (--skip-exist)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
