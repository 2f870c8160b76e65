"""What the review page says about an episode, from its arrays and attributes (no images, no I/O here).

The numbers reuse the project's own definitions: the episode table row of ``rdt-dataset-info``
(:func:`rdt_training.info.episode_info`), the recorder's quality report (``extra``: alignment statistics,
dropped frames), the official still-frame rule the dataset applies (:func:`rdt_training.dataset.idle_window`)
and the robot profile (gripper joints, velocity limits). Outliers are judged against the dataset's median.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..dataset import idle_window
from ..info import _find_alignment

GRIPPER_CLOSED_BELOW = 0.3      # openness thresholds (hysteresis) for counting gripper open / close events
GRIPPER_OPEN_ABOVE = 0.7
OUTLIER_Z = 3.5                 # robust z-score (median / MAD) above which a value is flagged
OUTLIER_MIN_EPISODES = 3


@dataclass
class QualityReport:
    """The recorder's (or converter's) report stored in the episode's ``extra`` attribute; None where the
    source recorded nothing (an episode written by other tools)."""
    dropped_frames: int | None = None
    dropped_by_stream: dict = field(default_factory=dict)
    skipped_steps: int | None = None
    misses: dict = field(default_factory=dict)
    skew_mean_ms: dict = field(default_factory=dict)
    skew_max_ms: dict = field(default_factory=dict)
    late_messages: dict = field(default_factory=dict)
    nan_steps_reported: int | None = None      # steps the writer left out for a non-finite joint value
    rejected_steps: dict = field(default_factory=dict)   # the writer's {reason: count} of steps left out

    @property
    def worst_skew_ms(self) -> float | None:
        return max(self.skew_max_ms.values()) if self.skew_max_ms else None


def quality_report(extra: dict) -> QualityReport:
    """The report from the attributes the recorder and the converter write: ``alignment`` (AlignmentStats),
    ``dropped_frames`` ({stream: count}) and the writer's ``rejected_steps`` ({"count", "by_reason", ...})."""
    extra = extra or {}
    align = _find_alignment(extra) or {}
    dropped = extra.get("dropped_frames")
    rejected = extra.get("rejected_steps")
    by_reason = {str(k): int(v) for k, v in rejected.get("by_reason", {}).items()} if isinstance(rejected, dict) else {}
    return QualityReport(
        dropped_frames=sum(int(v) for v in dropped.values()) if isinstance(dropped, dict) else None,
        dropped_by_stream={k: int(v) for k, v in dropped.items()} if isinstance(dropped, dict) else {},
        skipped_steps=int(align["skipped_steps"]) if "skipped_steps" in align else None,
        misses={k: int(v) for k, v in align.get("misses", {}).items()},
        skew_mean_ms={k: float(v) for k, v in align.get("skew_mean_ms", {}).items()},
        skew_max_ms={k: float(v) for k, v in align.get("skew_max_ms", {}).items()},
        late_messages={k: int(v) for k, v in align.get("late_messages", {}).items()},
        nan_steps_reported=(sum(v for r, v in by_reason.items() if r.startswith("non-finite"))
                            if isinstance(rejected, dict) else None),
        rejected_steps=by_reason)


def profile_for(meta):
    """The episode's robot profile when it is known here and lists the episode's joints in its order (what
    the gripper and limit numbers assume); None otherwise."""
    from rdt_core.robots import load_profile
    try:
        profile = load_profile(meta.robot)
    except (ValueError, KeyError, FileNotFoundError, OSError):
        return None
    return profile if list(meta.joint_names) == profile.joint_names else None


def gripper_openness(profile, qpos: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, G) openness of the profile's grippers in qpos and in the actions (1 open, 0 closed), through the
    profile's own unified-vector mapping."""
    idx = profile.unified_indices[profile.gripper_mask]
    return (profile.qpos_to_unified(qpos, np.float64)[:, idx], profile.action_to_unified(action, np.float64)[:, idx])


@dataclass
class Motion:
    idle_start_s: float | None         # still time the still-frame rule cuts at the start (None: never moves)
    idle_end_s: float | None
    idle_window: tuple[int, int] | None
    max_speed: float                   # rad/s (the profile's units) of the fastest arm joint
    max_speed_joint: str
    max_speed_limit_frac: float | None  # of that joint's velocity limit in the profile
    gripper_events: int                # open <-> closed changes, all grippers
    nonfinite_steps: int               # steps with a NaN / inf joint value or action


def gripper_events(openness: np.ndarray) -> int:
    """Open <-> closed changes of one gripper's openness trace (hysteresis between the two thresholds)."""
    state, events = None, 0
    for x in openness:
        if not np.isfinite(x):
            continue
        new = "closed" if x < GRIPPER_CLOSED_BELOW else "open" if x > GRIPPER_OPEN_ABOVE else state
        if state is not None and new != state:
            events += 1
        state = new
    return events


def motion(t_s: np.ndarray, qpos: np.ndarray, action: np.ndarray, profile, joint_names: list[str],
           still_threshold: float) -> Motion:
    """Idle time, speed and gripper use of one episode. ``profile`` may be None (a robot without a
    profile here): every joint then counts as an arm joint and no limit is known."""
    finite = np.isfinite(qpos).all(1) & np.isfinite(action).all(1)
    q = qpos[finite]
    t = t_s[finite]
    window = idle_window(q, still_threshold) if len(q) else None
    idle_start = idle_end = None
    if window is not None:
        idle_start = float(t[window[0]] - t[0])
        idle_end = float(t[-1] - t[window[1] - 1])
    grip = profile.gripper_mask if profile is not None else np.zeros(len(joint_names), bool)
    max_speed, joint, frac = 0.0, "", None
    if len(q) > 1 and (~grip).any():
        dt = np.diff(t)
        speed = np.abs(np.diff(q[:, ~grip], axis=0)) / np.maximum(dt, 1e-9)[:, None]
        k = np.unravel_index(int(np.argmax(speed)), speed.shape)
        max_speed = float(speed[k])
        joint = [n for n, g in zip(joint_names, grip) if not g][k[1]]
        if profile is not None:
            frac = max_speed / float(profile.max_velocity[~grip][k[1]])
    events = 0
    if profile is not None and grip.any():
        openness, _ = gripper_openness(profile, q, action[finite])
        events = sum(gripper_events(openness[:, g]) for g in range(openness.shape[1]))
    return Motion(idle_start, idle_end, window, max_speed, joint, frac, events, int((~finite).sum()))


def robust_outliers(values: dict[str, float | None], *, min_abs: float = 0.0, z: float = OUTLIER_Z) -> dict[str, float]:
    """{episode: value} -> {episode: median} for those far from the dataset's median: a robust z-score (median
    absolute deviation) above ``z`` or, when most values are equal (MAD 0), 25 % off the median; a difference
    under ``min_abs`` (the metric's unit) never counts."""
    xs = {k: float(v) for k, v in values.items() if v is not None and np.isfinite(v)}
    if len(xs) < OUTLIER_MIN_EPISODES:
        return {}
    arr = np.array(list(xs.values()))
    med = float(np.median(arr))
    mad = float(np.median(np.abs(arr - med)))
    out = {}
    for k, v in xs.items():
        d = abs(v - med)
        far = 0.6745 * d / mad > z if mad > 0 else d > 0.25 * abs(med)
        if far and d > min_abs:
            out[k] = med
    return out
