"""Message <-> plain value conversions for the rclpy shell, as pure functions (importable and tested without ROS).

The shell copies these values into messages field by field; nothing here imports rclpy or message packages.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

BACKENDS = ("joint_trajectory", "kortex_api", "interbotix", "joint_state", "float64_array")
GRIPPER_ACTION_TYPES = ("GripperCommand", "ParallelGripperCommand")


def seconds_to_stamp(t: float) -> tuple[int, int]:
    """Seconds -> (sec, nanosec) of builtin_interfaces/Time or Duration."""
    ns = int(round(float(t) * 1e9))
    return ns // 1_000_000_000, ns % 1_000_000_000


def stamp_to_seconds(sec: int, nanosec: int) -> float:
    return float(sec) + float(nanosec) * 1e-9


def chunk_fields(chunk, joint_names: Sequence[str], control_frequency: float) -> dict:
    """Field values of rdt_msgs/ActionChunk for a scheduler Chunk (the raw model output)."""
    a = np.asarray(chunk.actions, dtype=np.float64)
    return {
        "stamp": seconds_to_stamp(chunk.obs_stamp),
        "joint_names": list(joint_names),
        "horizon": int(a.shape[0]) if a.ndim == 2 else 0,
        "dof": int(a.shape[1]) if a.ndim == 2 else 0,
        "actions": a.reshape(-1).tolist(),
        "control_frequency": float(control_frequency),
        "ready_stamp": seconds_to_stamp(chunk.ready_time),
        "inference_latency": float(chunk.latency),
        "first_action_index": int(chunk.first_index or 0),
    }


def status_fields(status: dict) -> dict:
    """Controller.status() -> rdt_msgs/PolicyStatus field values (NaN latencies become 0: not measured yet)."""
    def f(x):
        return 0.0 if x is None or not math.isfinite(x) else float(x)

    return {
        "state": status["state"], "hold_reason": status["hold_reason"],
        "inference_latency_ms": f(status["inference_latency_ms"]),
        "inference_latency_p50_ms": f(status["inference_latency_p50_ms"]),
        "inference_latency_p99_ms": f(status["inference_latency_p99_ms"]),
        "observation_names": list(status["observation_names"]),
        "observation_ages": [min(f(a) if math.isfinite(a) else 1e9, 1e9) for a in status["observation_ages"]],
        "max_camera_skew": f(status["max_camera_skew"]),
        "chunks_received": int(status["chunks_received"]),
        "chunk_index": int(status["chunk_index"]),
        "instruction": status.get("instruction", ""),
        "dry_run": bool(status["dry_run"]),
    }


def joint_indices(profile, names: Sequence[str]) -> np.ndarray:
    """Profile column of each joint name (clear error naming unknown joints)."""
    all_names = profile.joint_names
    bad = [n for n in names if n not in all_names]
    if bad:
        raise ValueError(f"joints {bad} of the command section are not in profile {profile.name!r} ({all_names})")
    return np.array([all_names.index(n) for n in names], dtype=np.int64)


def trajectory_points(trajectory, columns) -> list[tuple[list, list, tuple[int, int]]]:
    """A planned trajectory (rdt_core.joint_trajectory.SplineTrajectory, times from its stamp) ->
    JointTrajectoryPoint fields for the joints ``columns``: [(positions, velocities, time_from_start)]."""
    q, v = trajectory.positions[:, columns], trajectory.velocities[:, columns]
    return [([float(x) for x in q[i]], [float(x) for x in v[i]], seconds_to_stamp(t))
            for i, t in enumerate(trajectory.times)]


def joint_state_groups(profile, command: dict) -> list[dict]:
    """sensor_msgs/JointState command topics: [{topic, index (profile columns), names (message names)}]."""
    section = command if command.get("backend") == "joint_state" else command.get("fallback", {})
    topics = section.get("topics")
    if not topics:  # one topic with every joint (AgileX-style /master/joint_*)
        topics = [{"topic": section.get("topic", "/joint_commands"), "joints": profile.joint_names}]
    return [{"topic": t["topic"], "index": joint_indices(profile, t["joints"]),
             "names": list(t.get("msg_joint_names", t["joints"]))} for t in topics]


def interbotix_groups(profile, command: dict) -> list[dict]:
    """Interbotix arms: [{group_topic, group_name, index, single_topic, gripper_name, gripper_index}]."""
    arms = command.get("arms")
    if not arms:
        raise ValueError(f"profile {profile.name!r}: the interbotix backend needs command.arms (group_topic, "
                         f"group_name, joints, single_topic, gripper_name, gripper_joint)")
    out = []
    for a in arms:
        g = a.get("gripper_joint")
        out.append({"group_topic": a["group_topic"], "group_name": a.get("group_name", "arm"),
                    "index": joint_indices(profile, a["joints"]), "single_topic": a.get("single_topic"),
                    "gripper_name": a.get("gripper_name", "gripper"),
                    "gripper_index": int(joint_indices(profile, [g])[0]) if g else None})
    return out


def resolve_instruction(path_or_name: str, instruction_dir: str | None) -> Path:
    """A .pt path, or a name (with or without .pt) in instruction_dir; FileNotFoundError lists the choices."""
    p = Path(path_or_name).expanduser()
    if p.is_file():
        return p
    if instruction_dir:
        d = Path(instruction_dir).expanduser()
        for cand in (d / path_or_name, d / f"{path_or_name}.pt"):
            if cand.is_file():
                return cand
        have = sorted(x.stem for x in d.glob("*.pt")) if d.is_dir() else []
        raise FileNotFoundError(f"no instruction {path_or_name!r}: not a file, and not in {d} (has: {have or 'nothing'}); "
                                f"encode one with rdt-encode-instruction")
    raise FileNotFoundError(f"no instruction file {path_or_name!r}; give a .pt path or set the instruction_dir parameter")
