"""Curation without copying: ``DIR/curation.json`` says which episodes of DIR to leave out and which steps
of the others to keep. The episode files are never rewritten.

``rdt-dataset-edit`` writes the file; ``index_episodes`` (so ``rdt-train`` and ``rdt-dataset-stats``) and
``rdt-dataset-info`` honour it; ``rdt-dataset-review`` shows it. The file sits in the episode folder the user
passes (for an episode file passed alone, in that file's folder) and names episodes by their path relative
to that folder::

    {"version": 1,
     "episodes": {"episode_3.hdf5": {"excluded": true, "reason": "missed grasp"},
                  "episode_5.hdf5": {"trim": {"start_step": 12, "end_step": 140, "start_s": 0.48,
                                              "end_s": 5.56, "by": "trim-idle", "tolerance": 0.01}}},
     "history": [{"time": "...", "action": "exclude", "episode": "episode_3.hdf5", ...}, ...]}

A trim keeps steps ``start_step <= i < end_step``; the steps are what counts (the seconds, from the
episode's first step, say where they came from). Everything after the trim (the still-frame rule,
per-episode statistics, padding of the last action chunk) sees the kept steps as the whole episode.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

CURATION_FILE = "curation.json"
VERSION = 1
MIN_KEPT_STEPS = 2


class CurationError(ValueError):
    """The curation file or an edit of it cannot be used as given; the message says how to fix it."""


@dataclass
class Trim:
    start_step: int                  # first step kept
    end_step: int                    # one past the last step kept
    start_s: float                   # time of the first kept step, from the episode's first step
    end_s: float                     # time of the last kept step
    by: str = "trim"                 # "trim" (by hand) or "trim-idle"
    tolerance: float | None = None   # trim-idle's still-frame threshold

    @property
    def steps(self) -> int:
        return self.end_step - self.start_step


@dataclass
class EpisodeCuration:
    excluded: bool = False
    reason: str = ""
    trim: Trim | None = None

    @property
    def is_default(self) -> bool:
        return not self.excluded and self.trim is None

    def window(self, num_steps: int) -> tuple[int, int]:
        """(first, end) steps kept of an episode of ``num_steps`` steps."""
        if self.trim is None:
            return 0, int(num_steps)
        t = self.trim
        if not 0 <= t.start_step < t.end_step <= num_steps:
            raise CurationError(f"the trim keeps steps {t.start_step}..{t.end_step} but the episode has {num_steps} "
                                f"steps (was the file replaced?)")
        return t.start_step, t.end_step

    def describe(self) -> str:
        """One line for tables: 'excluded: <reason>', 'trim 0.48-5.56 s (trim-idle)' or ''."""
        parts = []
        if self.excluded:
            parts.append(f"excluded: {self.reason}" if self.reason else "excluded")
        if self.trim is not None:
            t = self.trim
            parts.append(f"trim {t.start_s:.2f}-{t.end_s:.2f} s" + (" (trim-idle)" if t.by == "trim-idle" else ""))
        return "; ".join(parts)


def trim_from_steps(timestamps_ns, start_step: int, end_step: int, *, by: str = "trim",
                    tolerance: float | None = None) -> Trim:
    """A trim keeping steps [start_step, end_step) of an episode with these step stamps."""
    ts = np.asarray(timestamps_ns, dtype=np.int64)
    n = len(ts)
    start_step, end_step = int(start_step), int(end_step)
    if not 0 <= start_step < end_step <= n:
        raise CurationError(f"a trim must keep steps within 0..{n} (start < end), got {start_step}..{end_step}")
    if end_step - start_step < MIN_KEPT_STEPS:
        raise CurationError(f"the trim keeps {end_step - start_step} step(s) of {n}; keep at least {MIN_KEPT_STEPS}, "
                            f"or exclude the episode instead")
    rel = (ts - ts[0]) / 1e9
    return Trim(start_step, end_step, round(float(rel[start_step]), 6), round(float(rel[end_step - 1]), 6),
                by=by, tolerance=tolerance)


def trim_from_seconds(timestamps_ns, start_s: float | None, end_s: float | None) -> Trim:
    """A trim keeping the steps whose time from the first step lies within [start_s, end_s] (None: the
    episode's own start / end)."""
    ts = np.asarray(timestamps_ns, dtype=np.int64)
    rel = (ts - ts[0]) / 1e9
    duration = float(rel[-1]) if len(rel) else 0.0
    lo_s = 0.0 if start_s is None else float(start_s)
    hi_s = duration if end_s is None else float(end_s)
    if np.isfinite(lo_s) and lo_s > duration:
        raise CurationError(f"--start {lo_s:g} s is past the episode's last step ({duration:.2f} s)")
    if not np.isfinite(lo_s) or not np.isfinite(hi_s) or lo_s < 0 or hi_s <= lo_s:
        raise CurationError(f"--start {start_s} / --end {end_s}: need 0 <= start < end (seconds from the "
                            f"episode's first step; it lasts {duration:.2f} s)")
    eps = 1e-6
    start = int(np.searchsorted(rel, lo_s - eps, side="left"))
    end = int(np.searchsorted(rel, hi_s + eps, side="right"))
    return trim_from_steps(ts, start, end)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Curation:
    """The curation state of one episode folder (see the module docstring)."""

    def __init__(self, folder, episodes: dict[str, EpisodeCuration] | None = None,
                 history: list[dict] | None = None):
        self.folder = Path(folder)
        self.episodes: dict[str, EpisodeCuration] = dict(episodes or {})
        self.history: list[dict] = list(history or [])

    @property
    def path(self) -> Path:
        return self.folder / CURATION_FILE

    # ------------------------------------------------------------------ file
    @classmethod
    def load(cls, folder) -> "Curation":
        """The folder's curation (empty when it has no curation.json)."""
        folder = Path(folder)
        path = folder / CURATION_FILE
        if not path.is_file():
            return cls(folder)
        fix = f"fix it by hand or move it away (every episode of {folder} is then used whole)"
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CurationError(f"{path} cannot be read as JSON ({exc}); {fix}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("episodes", {}), dict):
            raise CurationError(f"{path} is not a curation file (an object with an 'episodes' object); {fix}")
        if int(data.get("version", VERSION)) > VERSION:
            raise CurationError(f"{path} has version {data['version']}, newer than this rdt_training reads "
                                f"({VERSION}); update rdt_training")
        episodes = {}
        for key, entry in data.get("episodes", {}).items():
            try:
                trim = entry.get("trim")
                episodes[key] = EpisodeCuration(
                    excluded=bool(entry.get("excluded", False)), reason=str(entry.get("reason", "")),
                    trim=None if trim is None else Trim(**trim))
            except (AttributeError, TypeError) as exc:
                raise CurationError(f"{path}: the entry of {key!r} is malformed ({exc}); {fix}") from exc
        return cls(folder, episodes, data.get("history", []))

    def save(self) -> Path:
        """Write atomically (a crash leaves the old file or the new one, never half of one)."""
        entries = {}
        for key in sorted(self.episodes):
            c = self.episodes[key]
            if c.is_default:
                continue
            entry: dict = {}
            if c.excluded:
                entry.update(excluded=True, reason=c.reason)
            if c.trim is not None:
                entry["trim"] = asdict(c.trim)
            entries[key] = entry
        text = json.dumps({"version": VERSION, "episodes": entries, "history": self.history}, indent=2)
        tmp = self.path.with_name(f".{CURATION_FILE}.tmp")
        tmp.write_text(text + "\n")
        os.replace(tmp, self.path)
        return self.path

    # ------------------------------------------------------------------ queries
    def key_for(self, episode_path) -> str:
        """The episode's name in the file: its path relative to the folder."""
        p = Path(episode_path)
        try:
            return p.resolve().relative_to(self.folder.resolve()).as_posix()
        except ValueError:
            return p.name

    def get(self, episode_path) -> EpisodeCuration:
        return self.episodes.get(self.key_for(episode_path), EpisodeCuration())

    def window(self, episode_path, num_steps: int) -> tuple[int, int]:
        """(first, end) steps kept of an episode of ``num_steps`` steps; the error names the file and the fix."""
        try:
            return self.get(episode_path).window(num_steps)
        except CurationError as exc:
            key = self.key_for(episode_path)
            raise CurationError(f"{self.path}: {key}: {exc}; redo it with `rdt-dataset-edit {self.folder} trim "
                                f"{key} --clear` and trim again") from exc

    # ------------------------------------------------------------------ edits
    def _log(self, action: str, key: str, **details) -> None:
        self.history.append({"time": _now(), "action": action, "episode": key, **details})

    def exclude(self, episode_path, reason: str) -> EpisodeCuration:
        if not reason.strip():
            raise CurationError("say why the episode is excluded: --reason 'missed grasp'")
        key = self.key_for(episode_path)
        c = self.episodes.setdefault(key, EpisodeCuration())
        c.excluded, c.reason = True, reason.strip()
        self._log("exclude", key, reason=c.reason)
        return c

    def include(self, episode_path) -> EpisodeCuration:
        key = self.key_for(episode_path)
        c = self.episodes.setdefault(key, EpisodeCuration())
        c.excluded, c.reason = False, ""
        self._log("include", key)
        return c

    def set_trim(self, episode_path, trim: Trim | None) -> EpisodeCuration:
        key = self.key_for(episode_path)
        c = self.episodes.setdefault(key, EpisodeCuration())
        c.trim = trim
        if trim is None:
            self._log("trim-clear", key)
        else:
            self._log(trim.by, key, **{k: v for k, v in asdict(trim).items() if k != "by" and v is not None})
        return c


class CurationCache:
    """Loads each folder's curation once, for the (source, episode file) pairs of ``find_episode_files``."""

    def __init__(self):
        self._by_folder: dict[Path, Curation] = {}

    def curation(self, source, episode_path) -> Curation:
        source = Path(source)
        folder = source if source.is_dir() else Path(episode_path).parent
        key = folder.resolve()
        if key not in self._by_folder:
            self._by_folder[key] = Curation.load(folder)
        return self._by_folder[key]

    def lookup(self, source, episode_path) -> EpisodeCuration:
        return self.curation(source, episode_path).get(episode_path)
