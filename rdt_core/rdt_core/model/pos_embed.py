"""Deterministic sin-cos initial values of RDT's learned positional embeddings (MAE style).

The released checkpoints overwrite these values, but training from scratch and the 1B layout check need the
exact official init: sin half then cos half, omega = 1e4^(-2i/d), computed in float64 like the reference.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def sincos_1d(embed_dim: int, positions) -> np.ndarray:
    """(M, embed_dim) float64: [sin(pos*omega), cos(pos*omega)] for each position."""
    if embed_dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dimension, got {embed_dim}")
    omega = 1.0 / 10000.0 ** (np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0))
    pos = np.asarray(positions, dtype=np.float64).reshape(-1)
    angles = np.outer(pos, omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_nd(embed_dim: int, grid_sizes: Sequence[int]) -> np.ndarray:
    """(*|grid_sizes|, embed_dim): the dimension is split evenly between the axes longer than 1.

    A negative size means "this many positions that share one embedding" (e.g. the patches of one image).
    """
    sizes = tuple(abs(int(s)) for s in grid_sizes)
    varying = [i for i, s in enumerate(grid_sizes) if int(s) > 1]
    emb = np.zeros(sizes + (embed_dim,))
    if not varying:
        return emb
    dim_each = embed_dim // len(varying)
    dim_each -= dim_each % 2
    for slot, axis in enumerate(varying):
        shape = [1] * len(sizes) + [dim_each]
        shape[axis] = sizes[axis]
        emb[..., slot * dim_each:(slot + 1) * dim_each] += sincos_1d(dim_each, np.arange(sizes[axis])).reshape(shape)
    return emb


def multimodal_pos_embed(embed_dim: int, modalities: Sequence[tuple[str, int | Sequence[int]]],
                         embed_modality: bool = True) -> np.ndarray:
    """(sum of lengths, embed_dim) embedding of a sequence made of several modalities in order.

    With ``embed_modality`` the first half encodes the modality index and the second half the position inside
    it; otherwise the whole width encodes the position. A length ``n > 1`` gets positions 0..n-1, a length
    ``-n`` gives n tokens that all sit at position 0, a tuple is an n-d grid (see :func:`sincos_nd`).
    """
    modalities = list(modalities)
    if embed_modality:
        pos_dim = embed_dim // 2
        modality_emb = sincos_1d(pos_dim, np.arange(len(modalities)))
    else:
        pos_dim = embed_dim
    rows = []
    for idx, (_name, length) in enumerate(modalities):
        if isinstance(length, (list, tuple)):
            pos = sincos_nd(pos_dim, length).reshape(-1, pos_dim)
        elif int(length) > 1:
            pos = sincos_1d(pos_dim, np.arange(int(length)))
        else:
            pos = np.repeat(sincos_1d(pos_dim, [0]), abs(int(length)), axis=0)
        if embed_modality:
            pos = np.concatenate([np.repeat(modality_emb[idx:idx + 1], len(pos), axis=0), pos], axis=1)
        rows.append(pos)
    return np.concatenate(rows, axis=0)


def x_pos_embed_init(hidden_size: int, horizon: int) -> np.ndarray:
    """(horizon+3, hidden): tokens [timestep, ctrl_freq, state, horizon actions]."""
    return multimodal_pos_embed(hidden_size, [("timestep", 1), ("ctrl_freq", 1), ("state", 1), ("action", horizon)])


def cond_pos_embed_init(hidden_size: int, length: int, config=None) -> np.ndarray:
    """(length, hidden) init of a condition embedding; ``config`` is the official list of (name, size) pairs."""
    if config is None:
        return sincos_1d(hidden_size, np.arange(length))
    emb = multimodal_pos_embed(hidden_size, [(name, size) for name, size in config], embed_modality=False)
    if emb.shape[0] != length:
        raise ValueError(f"positional-embedding config {config!r} describes {emb.shape[0]} tokens, "
                         f"but the condition length is {length}; make them agree")
    return emb
