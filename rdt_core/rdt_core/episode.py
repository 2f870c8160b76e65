"""The HDF5 episode schema: one module that writes, reads and validates episodes (recorder, converter,
training and the official RDT loader all read the same files).

Layout (DESIGN.md): /observations/qpos (T, D) float64, /action (T, D) float64,
/observations/images/<camera role> (T,) variable-length uint8 JPEG bytes, /timestamps (T,) int64 ns,
file attributes: robot, joint_names, camera_names, control_frequency, instruction, schema_version,
sim (False, for ALOHA tooling) and ``extra`` (a JSON string: topics, skew summary, drops, ...).
JPEG colour convention (official ALOHA/AgileX data): cv2.imdecode of a stored frame returns RGB order,
i.e. frames are encoded with cv2.imencode straight from RGB arrays; per-camera attribute
``color_order`` ("rgb" default, "bgr" for a camera's own JPEG passed through) says what imdecode returns.

Crash tolerance: the writer appends into chunked, resizable datasets of a hidden temporary file opened
in HDF5 single-writer/multiple-reader (SWMR) mode, so whatever was flushed stays readable after a crash
or SIGKILL; ``recover`` copies those steps into a valid episode. Steps are buffered and written in blocks
(per-step resizes of SWMR datasets dominated conversion time), but every flush writes the buffer first, so
the bound "a crash loses at most ``flush_interval_s``" is unchanged. The final name appears only through an
atomic ``os.replace`` once the episode is complete.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import cv2
import h5py
import numpy as np

__all__ = [
    "SCHEMA_VERSION", "DEFAULT_JPEG_QUALITY", "encode_jpeg", "decode_jpeg", "EpisodeMeta", "EpisodeWriter",
    "DiskFullError", "temp_path_for", "recover", "next_episode_path", "write_episode", "EpisodeReader",
    "ValidationReport", "validate_episode",
]

SCHEMA_VERSION = "1.0"
#: The official pipeline encodes with ``cv2.imencode('.jpg', img)`` and no parameters (RDT's
#: scripts/agilex_inference.py ``jpeg_mapping``, "align with training"): OpenCV's default quality, 95.
DEFAULT_JPEG_QUALITY = 95
DEFAULT_MIN_FREE_BYTES = 256 * 1024 * 1024

QPOS = "observations/qpos"
ACTION = "action"
TIMESTAMPS = "timestamps"
IMAGES = "observations/images"
_JPEG_DTYPE = h5py.vlen_dtype(np.dtype("uint8"))
_STR_DTYPE = h5py.string_dtype()
_REQUIRED_ATTRS = ("robot", "joint_names", "camera_names", "control_frequency", "schema_version")


class DiskFullError(OSError):
    """Free disk space fell below the writer's threshold; what was written is flushed and kept."""


# ----------------------------------------------------------------------------- JPEG
def encode_jpeg(rgb: np.ndarray, quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes whose ``cv2.imdecode`` returns the same RGB order."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"encode_jpeg needs an (H, W, 3) uint8 RGB image, got {arr.dtype} {arr.shape}")
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(arr), [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise ValueError("cv2.imencode failed to encode the frame as JPEG")
    return buf.tobytes()


def decode_jpeg(data: bytes | np.ndarray, color_order: str = "rgb") -> np.ndarray:
    """JPEG bytes -> (H, W, 3) uint8 RGB (``color_order`` = what imdecode returns for this stream)."""
    buf = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else np.asarray(data, np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None:
        raise ValueError(f"could not decode a JPEG frame ({buf.size} bytes)")
    if color_order == "bgr":
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if color_order != "rgb":
        raise ValueError(f"color_order must be 'rgb' or 'bgr', got {color_order!r}")
    return img


# ----------------------------------------------------------------------------- metadata
@dataclass
class EpisodeMeta:
    robot: str
    joint_names: list[str]
    camera_names: list[str]
    control_frequency: float
    instruction: str = ""
    extra: dict = field(default_factory=dict)
    camera_color_order: dict[str, str] = field(default_factory=dict)

    def color_order(self, camera: str) -> str:
        return self.camera_color_order.get(camera, "rgb")

    def validate(self) -> None:
        if not self.robot:
            raise ValueError("EpisodeMeta.robot must name the robot profile, e.g. 'kinova_gen3'")
        if not self.joint_names or len(set(self.joint_names)) != len(self.joint_names):
            raise ValueError(f"EpisodeMeta.joint_names must be non-empty and unique, got {self.joint_names}")
        if len(set(self.camera_names)) != len(self.camera_names):
            raise ValueError(f"EpisodeMeta.camera_names must be unique, got {self.camera_names}")
        if not self.control_frequency > 0:
            raise ValueError(f"EpisodeMeta.control_frequency must be > 0 Hz, got {self.control_frequency}")
        for cam, order in self.camera_color_order.items():
            if cam not in self.camera_names or order not in ("rgb", "bgr"):
                raise ValueError(f"EpisodeMeta.camera_color_order[{cam!r}] = {order!r}: camera must be one of "
                                 f"{self.camera_names} and order 'rgb' or 'bgr'")
        try:
            json.dumps(self.extra)
        except (TypeError, ValueError) as e:
            raise ValueError(f"EpisodeMeta.extra must be JSON-serialisable: {e}") from e

    def write_attrs(self, f: h5py.File) -> None:
        f.attrs["robot"] = self.robot
        f.attrs["joint_names"] = np.array(self.joint_names, dtype=_STR_DTYPE)
        f.attrs["camera_names"] = np.array(self.camera_names, dtype=_STR_DTYPE)
        f.attrs["control_frequency"] = float(self.control_frequency)
        f.attrs["instruction"] = self.instruction
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["extra"] = json.dumps(self.extra, sort_keys=True)
        f.attrs["sim"] = False

    @classmethod
    def from_file(cls, f: h5py.File) -> "EpisodeMeta":
        a = f.attrs
        missing = [k for k in _REQUIRED_ATTRS if k not in a]
        if missing:
            raise ValueError(f"{f.filename}: missing file attribute(s) {missing}; not an rdt_core episode "
                             "(validate_episode gives the full report)")
        cams = _strs(a["camera_names"])
        orders = {}
        for cam in cams:
            ds = f.get(f"{IMAGES}/{cam}")
            if ds is not None and "color_order" in ds.attrs:
                orders[cam] = _str(ds.attrs["color_order"])
        return cls(robot=_str(a["robot"]), joint_names=_strs(a["joint_names"]), camera_names=cams,
                   control_frequency=float(a["control_frequency"]), instruction=_str(a.get("instruction", "")),
                   extra=json.loads(_str(a.get("extra", "{}")) or "{}"), camera_color_order=orders)


def _str(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _strs(v) -> list[str]:
    return [_str(x) for x in np.atleast_1d(v).tolist()] if np.size(v) else []


# ----------------------------------------------------------------------------- paths
def temp_path_for(final_path: str | Path) -> Path:
    """The hidden temporary name an episode has while it is written (``.<name>.partial``)."""
    p = Path(final_path)
    return p.with_name(f".{p.name}.partial")


_EPISODE_RE = re.compile(r"^\.?episode_(\d+)\.hdf5(\.partial)?$")


def next_episode_path(folder: str | Path) -> Path:
    """``folder/episode_<n>.hdf5`` continuing after the highest episode present (temporary ones count)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    nums = [int(m.group(1)) for p in folder.iterdir() if (m := _EPISODE_RE.match(p.name))]
    return folder / f"episode_{max(nums) + 1 if nums else 0}.hdf5"


def _check_free(folder: Path, min_free_bytes: int, context: str) -> None:
    free = shutil.disk_usage(folder).free
    if free < min_free_bytes:
        raise DiskFullError(
            f"only {free / 2**20:.1f} MiB free on {folder} (need at least {min_free_bytes / 2**20:.1f} MiB); "
            f"{context}. Free some space or choose another output folder.")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_read(path: Path) -> h5py.File:
    """Open for reading; a crashed writer's file (SWMR flags still set) opens as a SWMR reader."""
    try:
        return h5py.File(path, "r")
    except OSError as e:
        if "already open for write" not in str(e):
            raise
        return h5py.File(path, "r", swmr=True)


def _jpeg_buffer(cam: str, data, step: int | None = None) -> np.ndarray:
    """The frame as a uint8 array the writer may keep until its block is written: a view of immutable
    ``bytes``, a copy of anything the caller could reuse (bytearray, memoryview, ndarray)."""
    if isinstance(data, bytes):
        buf = np.frombuffer(data, np.uint8)
    elif isinstance(data, (bytearray, memoryview)):
        buf = np.frombuffer(data, np.uint8).copy()
    else:
        buf = np.array(data, np.uint8).reshape(-1)
    if buf.size == 0:
        raise ValueError(f"camera {cam!r}: empty JPEG frame" + (f" at batch index {step}" if step is not None else ""))
    return buf


def _write_vlen(ds: h5py.Dataset, start: int, frames: Sequence[np.ndarray]) -> None:
    """Write consecutive variable-length frames with one H5Dwrite (h5py's ``ds[a:b] = ...`` turns frames of
    equal length into a 2-D array and refuses them)."""
    k = len(frames)
    obj = np.empty(k, dtype=ds.dtype)
    for i, fr in enumerate(frames):
        obj[i] = fr
    fspace = ds.id.get_space()
    fspace.select_hyperslab((start,), (k,))
    ds.id.write(h5py.h5s.create_simple((k,)), fspace, obj, mtype=h5py.h5t.py_create(ds.dtype))


# ----------------------------------------------------------------------------- writer
class EpisodeWriter:
    """Streams one episode to disk step by step; crash-tolerant; not thread-safe (one thread owns it).

    Steps are buffered in memory and written ``block_steps`` at a time (one resize and one write per dataset:
    per-step resizes of SWMR datasets cost milliseconds). ``append``/``append_many`` flush, buffer included,
    when ``flush_interval_s`` passed since the last flush (0 = every step), so a crash loses at most that
    much. Call ``flush()`` from the owning thread when steps stop arriving. ``num_steps`` counts every step
    accepted, ``flushed_steps`` those a crash would keep.
    """

    def __init__(self, final_path: str | Path, meta: EpisodeMeta, *, flush_interval_s: float = 1.0,
                 min_free_bytes: int = DEFAULT_MIN_FREE_BYTES, block_steps: int = 64):
        meta.validate()
        if int(block_steps) < 1:
            raise ValueError(f"block_steps must be >= 1, got {block_steps}")
        self.block_steps = int(block_steps)
        self.final_path = Path(final_path)
        self.temp_path = temp_path_for(self.final_path)
        self.meta = meta
        self.flush_interval_s = float(flush_interval_s)
        self.min_free_bytes = int(min_free_bytes)
        self.num_steps = 0
        self.flushed_steps = 0
        self._written = 0                  # steps in the datasets (flushed or not)
        self._buf_stamps: list[int] = []
        self._buf_qpos: list[np.ndarray] = []
        self._buf_action: list[np.ndarray] = []
        self._buf_frames: dict[str, list[np.ndarray]] = {cam: [] for cam in meta.camera_names}
        self._last_stamp: int | None = None
        self._disk_full = False
        self._closed = False
        if self.final_path.exists():
            raise FileExistsError(f"episode {self.final_path} already exists; it is never overwritten "
                                  "(use next_episode_path(folder) for a fresh name)")
        if self.temp_path.exists():
            raise FileExistsError(f"an unfinished episode {self.temp_path} is in the way; turn it into an episode "
                                  f"with recover('{self.temp_path}') or delete it")
        self.final_path.parent.mkdir(parents=True, exist_ok=True)
        _check_free(self.final_path.parent, self.min_free_bytes, "the episode was not started")

        D = len(meta.joint_names)
        f = h5py.File(self.temp_path, "w", libver="latest")
        try:
            self._qpos = f.create_dataset(QPOS, shape=(0, D), maxshape=(None, D), dtype="f8", chunks=(256, D))
            self._action = f.create_dataset(ACTION, shape=(0, D), maxshape=(None, D), dtype="f8", chunks=(256, D))
            self._stamps = f.create_dataset(TIMESTAMPS, shape=(0,), maxshape=(None,), dtype="i8", chunks=(1024,))
            f.require_group(IMAGES)
            self._images = {}
            for cam in meta.camera_names:
                ds = f.create_dataset(f"{IMAGES}/{cam}", shape=(0,), maxshape=(None,), dtype=_JPEG_DTYPE,
                                      chunks=(64,))
                ds.attrs["color_order"] = meta.color_order(cam)
                self._images[cam] = ds
            meta.write_attrs(f)
            f.swmr_mode = True  # from here on the file stays readable whatever happens to this process
            f.flush()
        except BaseException:
            f.close()
            self.temp_path.unlink(missing_ok=True)
            raise
        self._file = f
        self._last_flush = time.monotonic()

    # -- context manager: success closes; an exception leaves the (recoverable) temp file
    def __enter__(self) -> "EpisodeWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._release()

    def append(self, stamp_ns: int, qpos: np.ndarray, action: np.ndarray,
               jpeg_frames: Mapping[str, bytes]) -> None:
        """Add one step (all cameras' JPEG bytes, joint state and action in robot units)."""
        self._check_open()
        D = len(self.meta.joint_names)
        q = np.array(qpos, dtype=np.float64).reshape(-1)     # copies: the step waits in the buffer
        a = np.array(action, dtype=np.float64).reshape(-1)
        if q.size != D or a.size != D:
            raise ValueError(f"qpos and action need {D} values (joints {self.meta.joint_names}); got "
                             f"{q.size} and {a.size}")
        self._check_cameras(jpeg_frames)
        frames = {cam: _jpeg_buffer(cam, data) for cam, data in jpeg_frames.items()}
        stamp = int(stamp_ns)
        if self._last_stamp is not None and stamp <= self._last_stamp:
            raise ValueError(f"timestamps must increase: step {self.num_steps} has {stamp} ns after "
                             f"{self._last_stamp} ns")
        self._buf_stamps.append(stamp)
        self._buf_qpos.append(q)
        self._buf_action.append(a)
        for cam, buf in frames.items():
            self._buf_frames[cam].append(buf)
        self.num_steps += 1
        self._last_stamp = stamp
        if len(self._buf_stamps) >= self.block_steps:
            self._write_buffer()
        if time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def append_many(self, stamps_ns: Sequence[int], qpos: np.ndarray, action: np.ndarray,
                    jpeg_frames: Mapping[str, Sequence[bytes]]) -> None:
        """Add T steps at once (converter, offline tools): same checks and file as T ``append`` calls.

        The whole batch is checked before anything is added, so a bad batch adds nothing. Steps reach the
        file in blocks of ``block_steps`` and the file is flushed whenever ``flush_interval_s`` passed.
        """
        self._check_open()
        D = len(self.meta.joint_names)
        st = np.asarray(stamps_ns)
        if st.ndim != 1 or (st.size and st.dtype.kind not in "iu"):
            raise ValueError(f"append_many: stamps_ns must be a 1-D sequence of integer nanoseconds, got "
                             f"dtype {st.dtype} shape {st.shape}")
        T = st.shape[0]
        st = st.astype(np.int64)
        q = np.array(qpos, dtype=np.float64)                 # copies: the steps wait in the buffer
        a = np.array(action, dtype=np.float64)
        if q.shape != (T, D) or a.shape != (T, D):
            raise ValueError(f"append_many: {T} stamps need qpos and action of shape ({T}, {D}) (joints "
                             f"{self.meta.joint_names}); got {q.shape} and {a.shape}")
        self._check_cameras(jpeg_frames)
        lengths = {cam: len(v) for cam, v in jpeg_frames.items()}
        if any(n != T for n in lengths.values()):
            raise ValueError(f"append_many: {T} stamps but frames per camera {lengths}; every camera needs one "
                             "JPEG frame per step")
        frames = {cam: [_jpeg_buffer(cam, data, i) for i, data in enumerate(v)] for cam, v in jpeg_frames.items()}
        if T == 0:
            return
        steps = np.diff(st)
        if (steps <= 0).any() or (self._last_stamp is not None and st[0] <= self._last_stamp):
            i = int(np.flatnonzero(steps <= 0)[0]) + 1 if (steps <= 0).any() else 0
            prev = st[i - 1] if i else self._last_stamp
            raise ValueError(f"timestamps must increase: step {self.num_steps + i} has {int(st[i])} ns after "
                             f"{int(prev)} ns; nothing of this batch was added")
        lo = 0
        while lo < T:
            hi = min(T, lo + self.block_steps - len(self._buf_stamps))
            self._buf_stamps.extend(st[lo:hi].tolist())
            self._buf_qpos.extend(q[lo:hi])
            self._buf_action.extend(a[lo:hi])
            for cam, bufs in frames.items():
                self._buf_frames[cam].extend(bufs[lo:hi])
            self.num_steps += hi - lo
            self._last_stamp = int(st[hi - 1])
            lo = hi
            if len(self._buf_stamps) >= self.block_steps:
                self._write_buffer()
            if time.monotonic() - self._last_flush >= self.flush_interval_s:
                self.flush()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"episode writer for {self.final_path} is closed")
        if self._disk_full:
            raise DiskFullError(f"episode {self.temp_path} was stopped for lack of disk space; close() keeps "
                                f"its {self.num_steps} steps")

    def _check_cameras(self, jpeg_frames: Mapping) -> None:
        cams = set(jpeg_frames)
        if cams != set(self.meta.camera_names):
            raise ValueError(f"step needs one JPEG frame for each camera {self.meta.camera_names}; missing "
                             f"{sorted(set(self.meta.camera_names) - cams)}, unexpected {sorted(cams - set(self.meta.camera_names))}")

    def _write_buffer(self) -> None:
        """Move the buffered steps into the datasets: one resize and one write per dataset."""
        k = len(self._buf_stamps)
        if k == 0:
            return
        n, D = self._written, len(self.meta.joint_names)
        # images first, the timestamp last: recover() treats a step as complete when its stamp is written
        for cam, bufs in self._buf_frames.items():
            ds = self._images[cam]
            ds.resize((n + k,))
            _write_vlen(ds, n, bufs)
        for ds, rows in ((self._qpos, self._buf_qpos), (self._action, self._buf_action)):
            ds.resize((n + k, D))
            ds[n:n + k] = np.stack(rows)
        self._stamps.resize((n + k,))
        self._stamps[n:n + k] = np.asarray(self._buf_stamps, dtype=np.int64)
        self._written = n + k
        self._buf_stamps.clear()
        self._buf_qpos.clear()
        self._buf_action.clear()
        for bufs in self._buf_frames.values():
            bufs.clear()

    def flush(self) -> None:
        """Write everything appended so far to disk, then check free space (DiskFullError when short)."""
        if self._closed:
            return
        self._write_buffer()
        self._file.flush()
        self.flushed_steps = self._written
        self._last_flush = time.monotonic()
        try:
            _check_free(self.final_path.parent, self.min_free_bytes,
                        f"the episode stopped at {self.num_steps} steps, all flushed to {self.temp_path}; "
                        f"close() keeps them as {self.final_path.name}")
        except DiskFullError:
            self._disk_full = True
            raise

    def close(self, extra: dict | None = None) -> Path:
        """Finish the episode: merge ``extra`` into the attributes, flush, atomically rename; returns the path."""
        if self._closed:
            raise RuntimeError(f"episode writer for {self.final_path} is already closed")
        if extra:
            self.meta.extra.update(extra)
        self.meta.validate()
        self._release()
        with h5py.File(self.temp_path, "r+") as f:  # SWMR forbids attribute writes; reopen normally
            self.meta.write_attrs(f)
            f.attrs["num_steps"] = self.num_steps
        return _finalize(self.temp_path, self.final_path)

    def discard(self) -> None:
        """Drop the episode: close and delete the temporary file."""
        self._release(keep_buffered=False)
        self.temp_path.unlink(missing_ok=True)

    def _release(self, keep_buffered: bool = True) -> None:
        """Close the file; buffered steps are written first unless the episode is being thrown away."""
        if not self._closed:
            self._closed = True
            try:
                if keep_buffered:
                    self._write_buffer()
                self._file.flush()
                self.flushed_steps = self._written
            finally:
                self._file.close()


def _finalize(temp: Path, final: Path) -> Path:
    if final.exists():
        raise FileExistsError(f"{final} appeared while the episode was written; the episode stays in {temp}")
    _fsync(temp)
    os.replace(temp, final)
    try:
        dfd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - directories cannot be fsynced on every filesystem
        pass
    return final


def write_episode(path: str | Path, meta: EpisodeMeta, timestamps: Sequence[int], qpos: np.ndarray,
                  action: np.ndarray, jpeg_frames: Mapping[str, Sequence[bytes]], *,
                  min_free_bytes: int = DEFAULT_MIN_FREE_BYTES) -> Path:
    """Write a whole episode at once (converter, tests); same file as the streaming writer."""
    T = len(timestamps)
    if len(qpos) != T or len(action) != T or any(len(v) != T for v in jpeg_frames.values()):
        raise ValueError(f"write_episode: {T} timestamps but qpos {len(qpos)}, action {len(action)}, frames "
                         f"{ {k: len(v) for k, v in jpeg_frames.items()} }; all need one entry per step")
    w = EpisodeWriter(path, meta, flush_interval_s=float("inf"), min_free_bytes=min_free_bytes)
    try:
        w.append_many(timestamps, qpos, action, jpeg_frames)
    except BaseException:
        w.discard()
        raise
    return w.close()


# ----------------------------------------------------------------------------- recovery
def _complete_steps(f: h5py.File, cams: Sequence[str]) -> int:
    """Steps present in every dataset, minus trailing ones whose writes did not all land."""
    dsets = [f[QPOS], f[ACTION], f[TIMESTAMPS]] + [f[f"{IMAGES}/{c}"] for c in cams]
    n = min(ds.shape[0] for ds in dsets)
    stamps = f[TIMESTAMPS]
    while n > 0:
        if stamps[n - 1] != 0 and all(f[f"{IMAGES}/{c}"][n - 1].size > 0 for c in cams):
            break
        n -= 1
    return n


def recover(temp_path: str | Path, final_path: str | Path | None = None) -> Path:
    """Turn a crashed writer's temporary file into a valid episode of the complete steps it holds.

    The steps are copied into a fresh file (the crashed one is only deleted once the new one is in place).
    ``final_path`` defaults to the name the writer would have used.
    """
    temp_path = Path(temp_path)
    if final_path is None:
        m = re.match(r"^\.(.+)\.partial$", temp_path.name)
        if not m:
            raise ValueError(f"{temp_path} is not a temporary episode name (.<name>.partial); pass final_path")
        final_path = temp_path.with_name(m.group(1))
    final_path = Path(final_path)
    if final_path.exists():
        raise FileExistsError(f"{final_path} already exists; pass another final_path to recover {temp_path}")
    if not temp_path.exists():
        raise FileNotFoundError(f"no temporary episode at {temp_path}")
    try:
        src = _open_read(temp_path)
    except OSError as e:
        raise ValueError(f"{temp_path} cannot be opened as HDF5 ({e}); nothing of it is recoverable") from e
    staging = final_path.with_name(f".{final_path.name}.recovering")
    try:
        try:
            meta = EpisodeMeta.from_file(src)
            missing = [p for p in (QPOS, ACTION, TIMESTAMPS) + tuple(f"{IMAGES}/{c}" for c in meta.camera_names)
                       if p not in src]
        except (ValueError, KeyError) as e:
            raise ValueError(f"{temp_path} is not a recoverable episode: {e}") from e
        if missing:
            raise ValueError(f"{temp_path} is not a recoverable episode: datasets {missing} are missing")
        n = _complete_steps(src, meta.camera_names)
        meta.extra = dict(meta.extra, recovered={"from": temp_path.name, "steps": n,
                                                 "steps_in_file": int(src[TIMESTAMPS].shape[0])})
        with h5py.File(staging, "w") as dst:
            D = src[QPOS].shape[1]
            for name, dt in ((QPOS, "f8"), (ACTION, "f8")):
                dst.create_dataset(name, data=src[name][:n], maxshape=(None, D), dtype=dt, chunks=(256, D))
            dst.create_dataset(TIMESTAMPS, data=src[TIMESTAMPS][:n], maxshape=(None,), dtype="i8", chunks=(1024,))
            dst.require_group(IMAGES)
            for cam in meta.camera_names:
                s = src[f"{IMAGES}/{cam}"]
                d = dst.create_dataset(f"{IMAGES}/{cam}", shape=(n,), maxshape=(None,), dtype=_JPEG_DTYPE,
                                       chunks=(64,))
                for lo in range(0, n, 256):  # read in blocks, write frame by frame (vlen)
                    block = s[lo:min(n, lo + 256)]
                    for k, data in enumerate(block):
                        d[lo + k] = data
                d.attrs["color_order"] = meta.color_order(cam)
            meta.write_attrs(dst)
            dst.attrs["num_steps"] = n
    except BaseException:
        src.close()
        staging.unlink(missing_ok=True)
        raise
    src.close()
    out = _finalize(staging, final_path)
    temp_path.unlink()
    return out


# ----------------------------------------------------------------------------- reader
class EpisodeReader:
    """Opens an episode once; arrays on demand, images decoded only when asked for."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._f = _open_read(self.path)
        try:
            self.meta = EpisodeMeta.from_file(self._f)
            self.num_steps = int(self._f[TIMESTAMPS].shape[0])
        except BaseException:
            self._f.close()
            raise
        self._cache: dict[str, np.ndarray] = {}

    def __enter__(self) -> "EpisodeReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _array(self, name: str) -> np.ndarray:
        if name not in self._cache:
            self._cache[name] = self._f[name][:]
        return self._cache[name]

    @property
    def qpos(self) -> np.ndarray:
        return self._array(QPOS)

    @property
    def action(self) -> np.ndarray:
        return self._array(ACTION)

    @property
    def timestamps(self) -> np.ndarray:
        return self._array(TIMESTAMPS)

    def _dataset(self, camera: str) -> h5py.Dataset:
        if camera not in self.meta.camera_names:
            raise KeyError(f"{self.path.name} has no camera {camera!r}; cameras: {self.meta.camera_names}")
        return self._f[f"{IMAGES}/{camera}"]

    def jpeg(self, camera: str, i: int) -> bytes:
        return self._dataset(camera)[i].tobytes()

    def image(self, camera: str, i: int) -> np.ndarray:
        return decode_jpeg(self._dataset(camera)[i], self.meta.color_order(camera))

    def close(self) -> None:
        self._f.close()


# ----------------------------------------------------------------------------- validation
@dataclass
class ValidationReport:
    path: Path
    ok: bool
    problems: list[str]
    num_steps: int

    def __str__(self) -> str:
        head = f"{self.path}: {'OK' if self.ok else 'INVALID'}, {self.num_steps} steps"
        return head if self.ok else head + "".join(f"\n  - {p}" for p in self.problems)


def validate_episode(path: str | Path) -> ValidationReport:
    """Check a file against the schema; every problem found is listed in the report."""
    path = Path(path)
    problems: list[str] = []
    if not path.exists():
        return ValidationReport(path, False, ["file does not exist"], 0)
    try:
        f = _open_read(path)
    except OSError as e:
        return ValidationReport(path, False, [f"not a readable HDF5 file: {e}"], 0)
    n = 0
    with f:
        a = f.attrs
        missing_attrs = [k for k in _REQUIRED_ATTRS if k not in a]
        if missing_attrs:
            problems.append(f"missing file attribute(s) {missing_attrs}")
        joint_names = _strs(a["joint_names"]) if "joint_names" in a else None
        cams = _strs(a["camera_names"]) if "camera_names" in a else None
        if "schema_version" in a and _str(a["schema_version"]).split(".")[0] != SCHEMA_VERSION.split(".")[0]:
            problems.append(f"schema_version {_str(a['schema_version'])!r} is not compatible with {SCHEMA_VERSION}")
        if "control_frequency" in a and not float(a["control_frequency"]) > 0:
            problems.append(f"control_frequency attribute must be > 0, got {a['control_frequency']}")
        if "extra" in a:
            try:
                json.loads(_str(a["extra"]))
            except ValueError:
                problems.append("attribute 'extra' is not valid JSON")
        lengths = {}
        for name in (QPOS, ACTION, TIMESTAMPS):
            if name not in f:
                problems.append(f"missing dataset /{name}")
            else:
                lengths[name] = f[name].shape[0]
        stored = sorted(f[IMAGES].keys()) if IMAGES in f else []
        if cams is not None:
            for cam in cams:
                if cam not in stored:
                    problems.append(f"missing dataset /{IMAGES}/{cam} (camera listed in camera_names)")
            extra_cams = [c for c in stored if c not in cams]
            if extra_cams:
                problems.append(f"image datasets {extra_cams} are not listed in camera_names")
        for cam in stored:
            lengths[f"{IMAGES}/{cam}"] = f[f"{IMAGES}/{cam}"].shape[0]
        if lengths and len(set(lengths.values())) > 1:
            problems.append("length mismatch between datasets: " + ", ".join(f"/{k}={v}" for k, v in lengths.items()))
        n = min(lengths.values()) if lengths else 0
        if lengths and n == 0:
            problems.append("the episode has no steps")
        for name in (QPOS, ACTION):
            if name in f:
                ds = f[name]
                if ds.ndim != 2:
                    problems.append(f"/{name} must be 2-D (T, D), has shape {ds.shape}")
                elif joint_names is not None and ds.shape[1] != len(joint_names):
                    problems.append(f"/{name} has {ds.shape[1]} columns but joint_names lists {len(joint_names)}")
                elif not np.isfinite(ds[:]).all():
                    problems.append(f"/{name} contains NaN or infinite values")
        if TIMESTAMPS in f:
            ts = f[TIMESTAMPS][:]
            if ts.dtype.kind not in "iu":
                problems.append(f"/timestamps must be integer nanoseconds, has dtype {ts.dtype}")
            bad = np.flatnonzero(np.diff(ts.astype(np.int64)) <= 0)
            if bad.size:
                problems.append(f"/timestamps are not strictly increasing ({bad.size} time(s), first at step "
                                f"{bad[0] + 1}: {ts[bad[0]]} -> {ts[bad[0] + 1]})")
        for cam in stored:
            ds = f[f"{IMAGES}/{cam}"]
            order = _str(ds.attrs.get("color_order", "rgb"))
            if order not in ("rgb", "bgr"):
                problems.append(f"camera {cam}: color_order attribute {order!r} is not 'rgb' or 'bgr'")
                order = "rgb"
            m = ds.shape[0]
            for i in sorted({0, m - 1}) if m else []:
                try:
                    decode_jpeg(ds[i], order)
                except (ValueError, TypeError) as e:
                    problems.append(f"camera {cam}: frame {i} does not decode as JPEG ({e})")
    return ValidationReport(path, not problems, problems, n)
