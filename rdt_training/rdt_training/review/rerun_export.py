"""``--rerun FILE.rrd``: one episode as a rerun recording (cameras, joints, actions and gripper openness on
one ``time`` timeline, seconds from the first step), for the rerun viewer (``rerun FILE.rrd``).
Optional: needs ``pip install rerun-sdk``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rdt_core.episode import EpisodeReader
from .metrics import gripper_openness, profile_for

INSTALL_HINT = "pip install rerun-sdk"


class RerunUnavailable(RuntimeError):
    """rerun-sdk is not installed."""


def _rerun():
    try:
        import rerun as rr
    except ImportError as exc:
        raise RerunUnavailable(f"--rerun needs the rerun SDK, which is not installed ({exc}); install it with "
                               f"`{INSTALL_HINT}` and open the file with `rerun FILE.rrd`") from exc
    return rr


def write_rerun(episode_path, rrd_path, *, name: str | None = None) -> Path:
    rr = _rerun()
    episode_path, rrd_path = Path(episode_path), Path(rrd_path)
    rrd_path.parent.mkdir(parents=True, exist_ok=True)
    rec = rr.RecordingStream(application_id="rdt_dataset_review", recording_id=name or episode_path.stem)
    rec.save(str(rrd_path))
    with EpisodeReader(episode_path) as r:
        meta = r.meta
        t = (np.asarray(r.timestamps, dtype=np.int64) - int(r.timestamps[0])) / 1e9
        qpos, action = np.asarray(r.qpos, dtype=np.float64), np.asarray(r.action, dtype=np.float64)
        times = [rr.TimeColumn("time", duration=t)]
        for k, joint in enumerate(meta.joint_names):
            rec.send_columns(f"joints/qpos/{joint}", indexes=times, columns=rr.Scalars.columns(scalars=qpos[:, k]))
            rec.send_columns(f"joints/action/{joint}", indexes=times,
                             columns=rr.Scalars.columns(scalars=action[:, k]))
        profile = profile_for(meta)
        if profile is not None and profile.gripper_mask.any():
            openness, _ = gripper_openness(profile, qpos, action)
            for g, name in enumerate(n for n, is_grip in zip(profile.joint_names, profile.gripper_mask) if is_grip):
                rec.send_columns(f"gripper/openness/{name}", indexes=times,
                                 columns=rr.Scalars.columns(scalars=openness[:, g]))
        for i in range(r.num_steps):
            rec.set_time("time", duration=float(t[i]))
            for cam in meta.camera_names:
                try:
                    rgb = r.image(cam, i)
                except ValueError:
                    continue              # an undecodable frame: the viewer keeps the last one
                rec.log(f"cameras/{cam}", rr.Image(rgb, color_model="RGB").compress(jpeg_quality=85))
    rec.flush()
    rec.disconnect()
    return rrd_path
