"""A small dataset with the faults a review must show: real fake-robot episodes, one of each kind."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from conftest import idle_episode

#: the recorder's quality report as rdt_recorder's recording_summary writes it into ``extra``
RECORDER_REPORT = {
    "alignment": {"steps": 40, "skipped_steps": 2, "misses": {"cam_high": 1, "joint_states": 0},
                  "skew_mean_ms": {"cam_high": 6.5, "joint_states": 2.0},
                  "skew_max_ms": {"cam_high": 31.0, "joint_states": 9.0}, "late_messages": {"cam_high": 0}},
    "dropped_frames": {"cam_high": 3, "joint_states": 0}, "queue_high_water": 12,
}


def _freeze(camera: str, first: int, last: int):
    def damage(qpos, action, frames):
        for i in range(first, last + 1):
            frames[camera][i] = frames[camera][first]
    return damage


def _bad_steps(qpos, action, frames):
    """Two steps with a NaN joint and one with a frame that does not decode: the episode writer leaves them
    out and counts them in the episode's rejected_steps."""
    qpos[10] = qpos[10].copy()
    qpos[10][1] = np.nan
    qpos[11] = qpos[11].copy()
    qpos[11][2] = np.nan
    frames["cam_high"][15] = b"\xff\xd8 not a JPEG"


def _corrupt(path: Path, camera: str, step: int) -> Path:
    """Overwrite one stored frame with bytes that do not decode, as a file from another tool may hold (our
    writer refuses such a frame, so the file is patched afterwards)."""
    with h5py.File(path, "r+") as f:
        f[f"observations/images/{camera}"][step] = np.frombuffer(b"\xff\xd8 this is not a JPEG", np.uint8)
    return path


def make_review_set(folder: Path, profile) -> dict[str, Path]:
    """Five normal episodes (about 1.6 s), one with the live recorder's report of drops and skipped steps and
    three steps the writer left out (NaN joints, a bad frame), one long with a long idle start, one whose
    exterior camera froze while the arm moved, one with a stored frame that does not decode."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for k in range(5):
        made[f"normal_{k}"] = idle_episode(folder / f"episode_{k}.hdf5", profile, still_start=2, moving=38,
                                           still_end=0, seed=k)
    made["recorded"] = idle_episode(folder / "episode_5.hdf5", profile, still_start=2, moving=38, still_end=0,
                                    seed=5, extra=RECORDER_REPORT, damage=_bad_steps)
    made["long_idle"] = idle_episode(folder / "episode_6.hdf5", profile, still_start=60, moving=40, still_end=25,
                                     seed=6)
    made["frozen"] = idle_episode(folder / "episode_7.hdf5", profile, still_start=2, moving=38, still_end=0, seed=7,
                                  damage=_freeze("cam_high", 5, 34))
    made["bad_jpeg"] = _corrupt(idle_episode(folder / "episode_8.hdf5", profile, still_start=2, moving=38,
                                             still_end=0, seed=8), "cam_right_wrist", 20)
    return made

