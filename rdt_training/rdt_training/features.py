"""Frozen SigLIP features for training: computed on the fly per batch, or once per dataset to disk.

The vision tower is frozen during fine-tuning, so every frame's features never change; with image
augmentation off they can be computed once (``FeatureStore.build``) and read back instead of decoding
and encoding six frames per sample. Cache files are keyed by the episode file (path, size, mtime) and by
a fingerprint of the encoder, so a changed episode or encoder is re-encoded, never silently reused; and by
the frames kept (the still-frame rule and a curation trim move an episode's start), so a cache never serves
another window's rows.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import torch

from rdt_core.episode import EpisodeReader


def encoder_fingerprint(vision) -> str:
    """Identifies an encoder's weights and preprocessing (config + a checksum of every parameter)."""
    h = hashlib.sha1()
    h.update(json.dumps(vision.model.config.to_dict(), sort_keys=True, default=str).encode())
    h.update(repr(sorted(vision.processor.to_dict().items(), key=lambda kv: kv[0])).encode())
    with torch.no_grad():
        for name, p in sorted(vision.model.state_dict().items()):
            h.update(name.encode())
            h.update(np.float64(p.double().sum().item()).tobytes())
            h.update(np.float64(p.double().abs().sum().item()).tobytes())
    return h.hexdigest()[:16]


def encode_frames(vision, images: Sequence[np.ndarray | None], batch_size: int = 0) -> torch.Tensor:
    """(N, P, C) features of frames (None = the missing-camera background), as a normal (autograd-usable)
    tensor: the encoder runs in inference mode, whose tensors cannot enter a graph that is trained."""
    if batch_size and len(images) > batch_size:
        parts = [vision.encode(list(images[i:i + batch_size])) for i in range(0, len(images), batch_size)]
        out = torch.cat(parts)
    else:
        out = vision.encode(list(images))
    return out.clone()


def batch_image_tokens(vision, batch: dict, *, device=None, dtype=None) -> torch.Tensor:
    """The (B, history*cams*P, C) image tokens of a collated batch (cached features or raw frames)."""
    if "image_features" in batch:
        feats = batch["image_features"]
    else:
        flat = [img for sample in batch["images"] for img in sample]
        feats = encode_frames(vision, flat).reshape(len(batch["images"]), len(batch["images"][0]),
                                                    vision.num_patches, vision.hidden_size)
    b = feats.shape[0]
    feats = feats.reshape(b, -1, feats.shape[-1])
    return feats.to(device=device or feats.device, dtype=dtype or feats.dtype)


class FeatureStore:
    """Per-episode HDF5 files of float16 features, one dataset per camera role (rows from the episode's
    start); plus the background features that stand in for missing frames."""

    def __init__(self, cache_dir, vision, *, fingerprint: str | None = None):
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.fingerprint = fingerprint or encoder_fingerprint(vision)
        self.num_patches = vision.num_patches
        self.hidden_size = vision.hidden_size
        self.background = encode_frames(vision, [None])[0].float().cpu().numpy()
        self._vision = vision
        self._files: dict[str, h5py.File] = {}
        self._pid = os.getpid()
        self.built_now = 0   # episodes encoded by the last build (0 = everything came from the cache)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_files"] = {}
        state["_vision"] = None      # workers only read; the encoder stays in the main process
        return state

    @staticmethod
    def _window(ep) -> tuple[int, int]:
        """(first file frame, rows) an indexed episode's cache holds: its frames from its start on."""
        return ep.frame_offset + ep.start, ep.num_steps - ep.start

    def path_for(self, ep) -> Path:
        p = Path(ep.path).resolve()
        st = p.stat()
        first, rows = self._window(ep)
        key = hashlib.sha1(f"{p}|{st.st_size}|{st.st_mtime_ns}|{first}|{rows}|{self.fingerprint}".encode())
        return self.cache_dir / f"{p.stem}-{key.hexdigest()[:16]}.h5"

    def build(self, episodes, *, batch_size: int = 32, progress: bool = False) -> int:
        """Encode every frame (from each episode's start) that is not cached yet; returns episodes encoded."""
        from tqdm.auto import tqdm
        if self._vision is None:
            raise RuntimeError("FeatureStore.build needs the encoder (call it in the main process)")
        todo = [e for e in episodes if not self.path_for(e).is_file()]
        for ep in tqdm(todo, desc="caching SigLIP features", disable=not progress):
            final = self.path_for(ep)
            tmp = final.with_name("." + final.name + ".partial")
            first, rows = self._window(ep)
            with EpisodeReader(ep.path) as reader, h5py.File(tmp, "w") as out:
                out.attrs["first"] = int(first)
                out.attrs["fingerprint"] = self.fingerprint
                out.attrs["episode"] = str(ep.path)
                for role in ep.cameras:
                    if role is None:
                        continue
                    dset = out.create_dataset(role, (rows, self.num_patches, self.hidden_size), dtype=np.float16,
                                              chunks=(1, self.num_patches, self.hidden_size))
                    for i in range(0, rows, batch_size):
                        frames = [reader.image(role, first + j) for j in range(i, min(rows, i + batch_size))]
                        dset[i:i + len(frames)] = encode_frames(self._vision, frames).float().cpu().numpy()
            os.replace(tmp, final)
        self.built_now = len(todo)
        return len(todo)

    def _file(self, ep) -> h5py.File:
        if os.getpid() != self._pid:
            self._files, self._pid = {}, os.getpid()
        key = (str(ep.path), self._window(ep))
        f = self._files.get(key)
        if f is None:
            path = self.path_for(ep)
            if not path.is_file():
                raise FileNotFoundError(f"no cached features for {ep.path} in {self.cache_dir}; "
                                        f"call FeatureStore.build(dataset.episodes) first")
            f = self._files[key] = h5py.File(path, "r")
        return f

    def features(self, ep, plan) -> np.ndarray:
        """(len(plan), P, C) float32: cached features of each (role, file frame) of the indexed episode
        ``ep`` (see EpisodeDataset.frame_plan), background where None."""
        out = np.empty((len(plan), self.num_patches, self.hidden_size), dtype=np.float32)
        f = None
        for k, p in enumerate(plan):
            if p is None:
                out[k] = self.background
                continue
            f = f or self._file(ep)
            out[k] = f[p[0]][p[1] - int(f.attrs["first"])]
        return out

    def close(self):
        for f in self._files.values():
            f.close()
        self._files = {}
