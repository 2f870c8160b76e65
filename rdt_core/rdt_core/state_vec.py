"""The unified 128-dim state/action vector of RDT (layout: data/state_vec.json, from the official repo).

Every robot is mapped into this one vector so one model serves many embodiments: a robot fills the
slots it has, the 0/1 mask says which, the rest stay zero. A single arm fills the right-arm slots.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = [
    "STATE_DIM", "STATE_VEC_IDX_MAPPING", "AGILEX_RAW_LAYOUT", "AGILEX_UNIFIED_INDICES",
    "AGILEX_STATE_DIVISOR", "AGILEX_ACTION_DIVISOR", "unified_indices", "scatter", "gather", "mask",
]


def _load_layout() -> dict:
    # next to this module (package data), so it works from a source tree, an editable or a colcon install
    text = (Path(__file__).resolve().parent / "data" / "state_vec.json").read_text(encoding="utf-8")
    return json.loads(text)


_LAYOUT = _load_layout()

STATE_DIM: int = int(_LAYOUT["state_vec_len"])
STATE_VEC_IDX_MAPPING: dict[str, int] = {k: int(v) for k, v in _LAYOUT["mapping"].items()}

_AGILEX = _LAYOUT["agilex"]
AGILEX_RAW_LAYOUT: list[str] = list(_AGILEX["raw_layout"])
AGILEX_UNIFIED_INDICES: list[int] = [int(i) for i in _AGILEX["unified_indices"]]
AGILEX_STATE_DIVISOR: np.ndarray = np.asarray(_AGILEX["state_divisor"], dtype=np.float64)
AGILEX_ACTION_DIVISOR: np.ndarray = np.asarray(_AGILEX["action_divisor"], dtype=np.float64)


def unified_indices(slot_names: Sequence[str]) -> np.ndarray:
    """Indices of named slots in the 128-vector; a KeyError lists every unknown name."""
    unknown = [s for s in slot_names if s not in STATE_VEC_IDX_MAPPING]
    if unknown:
        raise KeyError(
            f"unknown unified slot name(s) {unknown}; valid names are the keys of "
            f"rdt_core/data/state_vec.json 'mapping', e.g. 'right_arm_joint_0_pos', 'right_gripper_open'"
        )
    return np.asarray([STATE_VEC_IDX_MAPPING[s] for s in slot_names], dtype=np.int64)


def _check_indices(indices) -> np.ndarray:
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= STATE_DIM):
        raise IndexError(f"unified indices must lie in [0, {STATE_DIM}); got {idx.tolist()}")
    if len(set(idx.tolist())) != idx.size:
        raise ValueError(f"unified indices must be distinct; got {idx.tolist()}")
    return idx


def scatter(values: np.ndarray, indices) -> np.ndarray:
    """(..., D) robot-ordered values -> (..., 128) float32 vector, zeros in the slots not given."""
    idx = _check_indices(indices)
    values = np.asarray(values)
    if values.shape[-1] != idx.size:
        raise ValueError(f"scatter: values have {values.shape[-1]} entries in the last axis but "
                         f"{idx.size} indices were given")
    out = np.zeros(values.shape[:-1] + (STATE_DIM,), dtype=np.float32)
    out[..., idx] = values
    return out


def gather(vec: np.ndarray, indices) -> np.ndarray:
    """(..., 128) vector -> (..., D) values at the given slots (robot order)."""
    idx = _check_indices(indices)
    vec = np.asarray(vec)
    if vec.shape[-1] != STATE_DIM:
        raise ValueError(f"gather: expected a last axis of {STATE_DIM}, got shape {vec.shape}")
    return vec[..., idx]


def mask(indices) -> np.ndarray:
    """(128,) float32 0/1 mask, 1 at the filled slots (the model's state/action mask)."""
    idx = _check_indices(indices)
    m = np.zeros(STATE_DIM, dtype=np.float32)
    m[idx] = 1.0
    return m
