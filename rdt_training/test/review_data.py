"""A small dataset with the faults a review must show: real fake-robot episodes, one of each kind."""
from __future__ import annotations

from pathlib import Path

from conftest import idle_episode

#: the recorder's quality report as rdt_recorder's recording_summary writes it into ``extra``, and the steps
#: the episode writer left out (rdt_core.episode's rejected_steps)
RECORDER_REPORT = {
    "rejected_steps": {"count": 3, "by_reason": {"non-finite qpos": 2, "cam_high frame": 1},
                       "first": [{"stamp_ns": 80_000_000, "reason": "non-finite qpos", "detail": "joint_2 = nan"}]},
    "alignment": {"steps": 40, "skipped_steps": 2, "misses": {"cam_high": 1, "joint_states": 0},
                  "skew_mean_ms": {"cam_high": 6.5, "joint_states": 2.0},
                  "skew_max_ms": {"cam_high": 31.0, "joint_states": 9.0}, "late_messages": {"cam_high": 0}},
    "dropped_frames": {"cam_high": 3, "joint_states": 0}, "queue_high_water": 12,
}


def _freeze(camera: str, first: int, last: int):
    def hook(frames):
        for i in range(first, last + 1):
            frames[camera][i] = frames[camera][first]
    return hook


def _corrupt(camera: str, step: int):
    def hook(frames):
        frames[camera][step] = b"\xff\xd8 this is not a JPEG"
    return hook


def make_review_set(folder: Path, profile) -> dict[str, Path]:
    """Five normal episodes (about 1.6 s), one recorded by the live recorder with drops and skipped steps, one
    long with a long idle start, one whose exterior camera froze while the arm moved, one with a frame that does
    not decode."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for k in range(5):
        made[f"normal_{k}"] = idle_episode(folder / f"episode_{k}.hdf5", profile, still_start=2, moving=38,
                                           still_end=0, seed=k)
    made["recorded"] = idle_episode(folder / "episode_5.hdf5", profile, still_start=2, moving=38, still_end=0,
                                    seed=5, extra=RECORDER_REPORT)
    made["long_idle"] = idle_episode(folder / "episode_6.hdf5", profile, still_start=60, moving=40, still_end=25,
                                     seed=6)
    made["frozen"] = idle_episode(folder / "episode_7.hdf5", profile, still_start=2, moving=38, still_end=0, seed=7,
                                  frames_hook=_freeze("cam_high", 5, 34))
    made["bad_jpeg"] = idle_episode(folder / "episode_8.hdf5", profile, still_start=2, moving=38, still_end=0,
                                    seed=8, frames_hook=_corrupt("cam_right_wrist", 20))
    return made

