"""The HDF5 episode schema: one module that writes, reads and validates episodes (recorder, converter,
training and the official RDT loader all read the same files).

Layout (DESIGN.md): /observations/qpos (T, D) float64, /action (T, D) float64,
/observations/images/<camera role> (T,) variable-length uint8 JPEG bytes, /timestamps (T,) int64 ns,
file attributes: robot, joint_names, camera_names, control_frequency, instruction, schema_version,
sim (False, for ALOHA tooling) and ``extra`` (a JSON string: topics, skew summary, drops, rejected steps, ...).
JPEG colour convention (official ALOHA/AgileX data): cv2.imdecode of a stored frame returns RGB order,
i.e. frames are encoded with cv2.imencode straight from RGB arrays; per-camera attribute
``color_order`` ("rgb" default, "bgr" for a camera's own JPEG passed through) says what imdecode returns.

Crashes and full disks: HDF5 cannot be trusted after a failed write (on ENOSPC it raised, then crashed the
process inside H5Dwrite or at close), so the recording process never writes HDF5. Steps go to a hidden step
log, ``.episode_<n>.steps.sqlite``: SQLite commits are atomic, and a full disk is an error that keeps every
earlier commit. The log is committed (fsync'd) at least every ``flush_interval_s``, so a SIGKILL loses at
most that much. HDF5 is written only by child processes (an HDF5 crash there cannot take the recorder
down): the live recorder's follower copies each commit into the episode's file while recording, so that
closing it is quick; otherwise, and whenever the follower fails, the file is built from the log when the
episode is closed, or later by ``recover``, after the space it needs is reserved with ``posix_fallocate``
(a full disk is then a sentence saying what to free). The final name appears only through an atomic
``os.replace`` of the complete file; the log is deleted after that.

One policy for bad data, the same for the live recorder and the bag converter (both write through
EpisodeWriter): a step with a non-finite joint value, or a camera frame that is empty or does not decode,
is not written; it is counted, with its time and reason, in the episode's ``extra["rejected_steps"]``.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import cv2
import h5py
import numpy as np

__all__ = [
    "SCHEMA_VERSION", "DEFAULT_JPEG_QUALITY", "encode_jpeg", "decode_jpeg", "jpeg_problem", "CheckedJpeg",
    "BadFrame", "EpisodeMeta", "EpisodeWriter", "RejectedSteps", "DiskFullError", "EmptyEpisodeError",
    "EpisodeBuildError", "temp_path_for", "find_temporary_episodes", "recover", "next_episode_path",
    "write_episode", "EpisodeReader", "ValidationReport", "validate_episode", "nonfinite_problem", "check_jpeg", "build_episode",
    "hdf5_size_bound",
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
LOG_FORMAT = "rdt-episode-steps/1"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_MiB = 2 ** 20


class DiskFullError(OSError):
    """Not enough disk space: the episode stopped; every step committed before is kept in its step log."""


class EmptyEpisodeError(ValueError):
    """An episode without a single step to write: nothing was written."""


class EpisodeBuildError(RuntimeError):
    """Building the HDF5 file from a step log failed; the steps are safe in the log (``recover`` retries)."""


# ----------------------------------------------------------------------------- JPEG
class CheckedJpeg(bytes):
    """JPEG bytes known to decode (encoded here, or passed through :func:`check_jpeg`): the writer does
    not decode them again."""


@dataclass(frozen=True)
class BadFrame:
    """A camera frame that cannot be stored (it did not convert or decode): its step is rejected."""

    reason: str


def encode_jpeg(rgb: np.ndarray, quality: int = DEFAULT_JPEG_QUALITY) -> CheckedJpeg:
    """(H, W, 3) uint8 RGB -> JPEG bytes whose ``cv2.imdecode`` returns the same RGB order."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"encode_jpeg needs an (H, W, 3) uint8 RGB image, got {arr.dtype} {arr.shape}")
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(arr), [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise ValueError("cv2.imencode failed to encode the frame as JPEG")
    return CheckedJpeg(buf.tobytes())


_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}


def decode_jpeg(data: bytes | np.ndarray, color_order: str = "rgb", reduce: int = 1) -> np.ndarray:
    """JPEG bytes -> (H, W, 3) uint8 RGB (``color_order`` = what imdecode returns for this stream).

    ``reduce`` (2, 4 or 8) decodes at 1/reduce of the size, several times faster (libjpeg's DCT scaling):
    for previews, not for training frames."""
    if reduce not in _REDUCED:
        raise ValueError(f"reduce must be one of {sorted(_REDUCED)}, got {reduce}")
    buf = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else np.asarray(data, np.uint8)
    img = cv2.imdecode(buf, _REDUCED[reduce]) if buf.size else None
    if img is None:
        raise ValueError(f"could not decode a JPEG frame ({buf.size} bytes)")
    if color_order == "bgr":
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if color_order != "rgb":
        raise ValueError(f"color_order must be 'rgb' or 'bgr', got {color_order!r}")
    return img


def jpeg_problem(data) -> str | None:
    """Why these bytes are not a usable JPEG frame, or None. Cheap: an eighth-size greyscale decode
    (``cv2.IMREAD_REDUCED_GRAYSCALE_8``), which still reads every entropy-coded segment, so random,
    truncated and corrupted bytes are caught."""
    buf = np.frombuffer(memoryview(data), np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
    if buf.size == 0:
        return "is empty (0 bytes)"
    if buf.size < 4 or buf[0] != 0xFF or buf[1] != 0xD8:
        return f"is not a JPEG (no start-of-image marker, {buf.size} bytes)"
    if cv2.imdecode(buf.astype(np.uint8, copy=False), cv2.IMREAD_REDUCED_GRAYSCALE_8) is None:
        return f"does not decode as JPEG ({buf.size} bytes)"
    return None


def check_jpeg(data) -> CheckedJpeg:
    """The bytes as :class:`CheckedJpeg`; ValueError naming the problem when they do not decode."""
    if isinstance(data, CheckedJpeg):
        return data
    problem = jpeg_problem(data)
    if problem:
        raise ValueError(f"the frame {problem}")
    return CheckedJpeg(bytes(data))


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
_EPISODE_RE = re.compile(r"^\.?episode_(\d+)\.")
_LOG_RE = re.compile(r"^\.(episode_\d+)\.steps\.sqlite$")
_LEGACY_RE = re.compile(r"^\.(.+\.hdf5)\.partial$")


def temp_path_for(final_path: str | Path) -> Path:
    """The hidden step log an episode has while it is recorded (``.episode_<n>.steps.sqlite``): what a crash
    leaves behind and what ``recover`` turns into ``episode_<n>.hdf5``."""
    p = Path(final_path)
    return p.with_name(f".{p.stem}.steps.sqlite")


def _building_path(final_path: Path, pid: int | None = None) -> Path:
    """The hidden name of the HDF5 file while process ``pid`` (default: this one) builds it from the log
    (one per process: a builder left running by a killed recorder and a later ``recover`` never write into
    one file)."""
    return final_path.with_name(f".{final_path.name}.building-{os.getpid() if pid is None else pid}")


def _remove_dead_builds(final_path: Path) -> None:
    """Delete half-built files of ``final_path`` whose builder process is gone."""
    for p in final_path.parent.glob(f".{final_path.name}.building-*"):
        try:
            os.kill(int(p.name.rsplit("-", 1)[1]), 0)
        except (ValueError, ProcessLookupError):
            p.unlink(missing_ok=True)
        except PermissionError:
            pass


def _final_path_for(temp_path: Path) -> Path:
    for pattern, ext in ((_LOG_RE, ".hdf5"), (_LEGACY_RE, "")):
        m = pattern.match(temp_path.name)
        if m:
            return temp_path.with_name(m.group(1) + ext)
    raise ValueError(f"{temp_path} is not a temporary episode (.episode_<n>.steps.sqlite, or "
                     ".episode_<n>.hdf5.partial of earlier versions); pass final_path")


def find_temporary_episodes(folder: str | Path) -> list[Path]:
    """The step logs (and earlier versions' ``.hdf5.partial`` files) in ``folder`` that ``recover`` takes."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if _LOG_RE.match(p.name) or _LEGACY_RE.match(p.name))


def next_episode_path(folder: str | Path) -> Path:
    """``folder/episode_<n>.hdf5`` continuing after the highest episode present (temporary ones count)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    nums = [int(m.group(1)) for p in folder.iterdir() if (m := _EPISODE_RE.match(p.name))]
    return folder / f"episode_{max(nums) + 1 if nums else 0}.hdf5"


def _free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def _check_free(folder: Path, min_free_bytes: int, context: str) -> None:
    free = _free_bytes(folder)
    if free < min_free_bytes:
        raise DiskFullError(
            errno.ENOSPC, f"only {free / _MiB:.1f} MiB free on {folder} (need at least {min_free_bytes / _MiB:.1f} "
            f"MiB); {context}. Free some space or choose another output folder.")


def _fsync_dir(folder: Path) -> None:
    try:
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - directories cannot be fsynced on every filesystem
        pass


def _unlink_log(log_path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{log_path}{suffix}").unlink(missing_ok=True)


def _sniff(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(16)


def _open_read(path: Path) -> h5py.File:
    """Open for reading; a file of an earlier version's crashed SWMR writer opens as a SWMR reader."""
    try:
        return h5py.File(path, "r")
    except OSError as e:
        if "already open for write" not in str(e):
            raise
        return h5py.File(path, "r", swmr=True)


# ----------------------------------------------------------------------------- rejected steps
@dataclass
class RejectedSteps:
    """Steps left out of an episode (non-finite joints, bad frames): how many, why, and the first ones."""

    count: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    first: list[dict] = field(default_factory=list)
    keep_first: int = 20

    def add(self, stamp_ns: int, reason: str, detail: str) -> None:
        self.count += 1
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        if len(self.first) < self.keep_first:
            self.first.append({"stamp_ns": int(stamp_ns), "reason": reason, "detail": detail})

    def to_dict(self) -> dict:
        return {"count": self.count, "by_reason": dict(self.by_reason), "first": list(self.first)}

    def summary(self, t0_ns: int | None = None) -> str:
        """One line: "3 steps rejected: 2 x non-finite qpos, 1 x cam_high frame (first at 1.240 s: ...)"."""
        if not self.count:
            return "no step rejected"
        first = self.first[0]
        at = (first["stamp_ns"] - t0_ns) / 1e9 if t0_ns is not None else first["stamp_ns"] / 1e9
        kinds = ", ".join(f"{n} x {r}" for r, n in sorted(self.by_reason.items(), key=lambda kv: -kv[1]))
        return (f"{self.count} step(s) rejected: {kinds} (first at {at:.3f} s: {first['reason']}: "
                f"{first['detail']})")


def _step_problem(joint_names: Sequence[str], qpos: np.ndarray, action: np.ndarray) -> tuple[str, str] | None:
    for label, values in (("qpos", qpos), ("action", action)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            j = int(bad[0])
            return f"non-finite {label}", f"{joint_names[j]} = {values[j]}" + (
                f" (and {bad.size - 1} more joint(s))" if bad.size > 1 else "")
    return None


def _frame_buffer(data) -> np.ndarray:
    """A frame's bytes as a uint8 array (BadFrame excluded by the caller)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, np.uint8)
    return np.ascontiguousarray(np.asarray(data, np.uint8).reshape(-1))


def _frame_problem(cam: str, data) -> tuple[str, str] | None:
    if isinstance(data, BadFrame):
        return f"{cam} frame", data.reason
    if isinstance(data, CheckedJpeg):
        return None if len(data) else (f"{cam} frame", "is empty (0 bytes)")
    problem = jpeg_problem(_frame_buffer(data))
    return (f"{cam} frame", problem) if problem else None


# ----------------------------------------------------------------------------- the step log (SQLite)
def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return True
    return isinstance(exc, sqlite3.Error) and "full" in str(exc).lower()


class _StepLog:
    """An append-only SQLite table of steps: one row per step (stamp, qpos, action, one JPEG per camera)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, meta: EpisodeMeta):
        self.path, self.conn, self.meta = path, conn, meta
        self.cams = list(meta.camera_names)
        self.D = len(meta.joint_names)

    @classmethod
    def create(cls, path: Path, meta: EpisodeMeta, durable: bool = True) -> "_StepLog":
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA page_size = 65536")        # JPEG blobs: fewer overflow pages
            conn.execute("PRAGMA journal_mode = DELETE")
            # durable: a commit is on disk when it returns; else it is atomic, but a power cut may lose it
            conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'OFF'}")
            cols = "".join(f", f{k} BLOB NOT NULL" for k in range(len(meta.camera_names)))
            conn.execute("BEGIN")
            conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute(f"CREATE TABLE steps (idx INTEGER PRIMARY KEY, stamp_ns INTEGER NOT NULL, "
                         f"qpos BLOB NOT NULL, action BLOB NOT NULL{cols})")
            conn.executemany("INSERT INTO meta VALUES (?, ?)",
                             [("format", LOG_FORMAT), ("episode", json.dumps(dataclasses.asdict(meta)))])
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            _unlink_log(path)
            raise
        return cls(path, conn, meta)

    @classmethod
    def open(cls, path: Path, busy_timeout_s: float = 5.0) -> "_StepLog":
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, isolation_level=None, timeout=busy_timeout_s)
        try:
            rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if rows.get("format") != LOG_FORMAT:
                raise ValueError(f"{path}: step log format {rows.get('format')!r}, expected {LOG_FORMAT!r}")
            meta = EpisodeMeta(**json.loads(rows["episode"]))
        except (sqlite3.Error, KeyError, TypeError, json.JSONDecodeError) as exc:
            conn.close()
            raise ValueError(f"{path} is not a readable step log ({exc})") from None
        except BaseException:
            conn.close()
            raise
        return cls(path, conn, meta)

    def begin(self) -> None:
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN")

    def add(self, idx: int, stamp: int, qpos: np.ndarray, action: np.ndarray, frames: list) -> None:
        self.begin()
        self.conn.execute(f"INSERT INTO steps VALUES (?, ?, ?, ?{', ?' * len(frames)})",
                          (idx, stamp, qpos.astype("<f8").tobytes(), action.astype("<f8").tobytes(), *frames))

    def commit(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")

    def rollback(self) -> None:
        try:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def store_meta(self, meta: EpisodeMeta) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('episode', ?)", (json.dumps(dataclasses.asdict(meta)),))

    # -- the builder's view (same interface as _LegacySource)
    @property
    def num_steps(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM steps").fetchone()[0])

    @property
    def frame_bytes(self) -> int:
        if not self.cams:
            return 0
        total = " + ".join(f"length(f{k})" for k in range(len(self.cams)))
        return int(self.conn.execute(f"SELECT coalesce(sum({total}), 0) FROM steps").fetchone()[0])

    def block(self, start: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict] | None:
        """Steps ``start`` .. ``start + size - 1`` that are committed (None when there is none yet). Read in
        one statement, so a reader never holds its lock on the log while it writes elsewhere."""
        rows = self.conn.execute("SELECT * FROM steps WHERE idx >= ? ORDER BY idx LIMIT ?", (start, size)).fetchall()
        if not rows:
            return None
        stamps = np.array([r[1] for r in rows], np.int64)
        q = np.frombuffer(b"".join(r[2] for r in rows), "<f8").reshape(len(rows), self.D)
        a = np.frombuffer(b"".join(r[3] for r in rows), "<f8").reshape(len(rows), self.D)
        frames = {c: [np.frombuffer(r[4 + k], np.uint8) for r in rows] for k, c in enumerate(self.cams)}
        return stamps, q, a, frames

    def blocks(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, dict]]:
        start = 0
        while (got := self.block(start, size)) is not None:
            start += len(got[0])
            yield got

    def close(self) -> None:
        self.conn.close()


class _LegacySource:
    """A crashed SWMR ``.hdf5.partial`` of earlier versions: its complete steps, read in blocks."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.f = _open_read(path)
        except OSError as e:
            raise ValueError(f"{path} cannot be opened as HDF5 ({e}); nothing of it is recoverable") from e
        try:
            self.meta = EpisodeMeta.from_file(self.f)
            missing = [p for p in (QPOS, ACTION, TIMESTAMPS) + tuple(f"{IMAGES}/{c}" for c in self.meta.camera_names)
                       if p not in self.f]
            if missing:
                raise ValueError(f"datasets {missing} are missing")
            self.num_steps = self._complete_steps()
        except (ValueError, KeyError) as e:
            self.f.close()
            raise ValueError(f"{path} is not a recoverable episode: {e}") from e
        except BaseException:
            self.f.close()
            raise

    def _complete_steps(self) -> int:
        """Steps present in every dataset, minus trailing ones whose writes did not all land."""
        cams = self.meta.camera_names
        dsets = [self.f[QPOS], self.f[ACTION], self.f[TIMESTAMPS]] + [self.f[f"{IMAGES}/{c}"] for c in cams]
        n = min(ds.shape[0] for ds in dsets)
        while n > 0:
            if self.f[TIMESTAMPS][n - 1] != 0 and all(self.f[f"{IMAGES}/{c}"][n - 1].size > 0 for c in cams):
                break
            n -= 1
        return n

    @property
    def frame_bytes(self) -> int:
        return sum(int(x.size) for c in self.meta.camera_names for x in self.f[f"{IMAGES}/{c}"][:self.num_steps])

    def blocks(self, size: int):
        for lo in range(0, self.num_steps, size):
            hi = min(self.num_steps, lo + size)
            yield (self.f[TIMESTAMPS][lo:hi], self.f[QPOS][lo:hi], self.f[ACTION][lo:hi],
                   {c: list(self.f[f"{IMAGES}/{c}"][lo:hi]) for c in self.meta.camera_names})

    def close(self) -> None:
        self.f.close()


def _open_source(path: Path):
    head = _sniff(path)
    if head.startswith(_SQLITE_MAGIC):
        return _StepLog.open(path)
    if head.startswith(_HDF5_MAGIC):
        return _LegacySource(path)
    raise ValueError(f"{path} is neither a step log nor an HDF5 file ({len(head)} bytes at its start: "
                     f"{head!r}); nothing of it is recoverable")


# ----------------------------------------------------------------------------- building the HDF5 file
def hdf5_size_bound(num_steps: int, num_joints: int, num_frames: int, frame_bytes: int) -> int:
    """An upper bound of the size of the HDF5 file holding these steps: what building it reserves on disk.
    Frames sit in HDF5's global heap behind 16-byte references; measured overheads were 94, 200 and 860
    bytes per frame for 0.3, 23 and 360 KB frames, covered here by 2 % + 96 bytes per frame + 1 MiB."""
    arrays = num_steps * (16 * num_joints + 8)
    heap = frame_bytes + 32 * num_frames
    return int(1.02 * (arrays + heap)) + 2 * 32 * num_frames + _MiB


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


def _reserve(path: Path, nbytes: int, context: str) -> None:
    """Allocate ``nbytes`` for ``path`` now, so HDF5 never meets a full disk while writing into it."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):   # no fallocate here: check instead
            _check_free(path.parent, nbytes, context)
            return
        raise _no_room(path.parent, nbytes, context) from None
    finally:
        os.close(fd)


def _no_room(folder: Path, nbytes: int, context: str) -> DiskFullError:
    """The full-disk sentence: what was being written, how much it needs and how much to free."""
    free = _free_bytes(folder)
    return DiskFullError(
        errno.ENOSPC, f"{context} needs about {nbytes / _MiB:.1f} MiB on {folder}, but only "
        f"{free / _MiB:.1f} MiB are free: free at least {max(nbytes - free, 0) / _MiB + 1:.0f} MiB more")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _finalize(temp: Path, final: Path) -> Path:
    if final.exists():
        raise FileExistsError(f"{final} appeared while the episode was written; the episode stays in {temp}")
    _fsync_file(temp)
    os.replace(temp, final)
    _fsync_dir(final.parent)
    return final


class _Hdf5Episode:
    """The one writer of the episode layout: created empty, grown block by block, sealed with its
    attributes. Both the build from a finished log and the live follower write through it."""

    def __init__(self, path: Path, meta: EpisodeMeta):
        self.path, self.num_steps = path, 0
        D = len(meta.joint_names)
        with h5py.File(path, "w") as f:                       # the header: small, written at once
            for name in (QPOS, ACTION):
                f.create_dataset(name, shape=(0, D), maxshape=(None, D), dtype="f8", chunks=(256, D))
            f.create_dataset(TIMESTAMPS, shape=(0,), maxshape=(None,), dtype="i8", chunks=(1024,))
            f.require_group(IMAGES)
            for cam in meta.camera_names:
                ds = f.create_dataset(f"{IMAGES}/{cam}", shape=(0,), maxshape=(None,), dtype=_JPEG_DTYPE,
                                      chunks=(64,))
                ds.attrs["color_order"] = meta.color_order(cam)
            meta.write_attrs(f)
            f.attrs["num_steps"] = 0
        self._file: h5py.File | None = None

    def open(self) -> None:
        self._file = h5py.File(self.path, "r+")

    def append(self, stamps: np.ndarray, q: np.ndarray, a: np.ndarray, frames: Mapping) -> None:
        f, lo, hi = self._file, self.num_steps, self.num_steps + len(stamps)
        for name, values in ((TIMESTAMPS, stamps), (QPOS, q), (ACTION, a)):
            f[name].resize(hi, axis=0)
            f[name][lo:hi] = values
        for cam, bufs in frames.items():
            ds = f[f"{IMAGES}/{cam}"]
            ds.resize((hi,))
            _write_vlen(ds, lo, bufs)
        self.num_steps = hi

    def flush(self) -> None:
        """Hand what HDF5 holds in memory to the OS and the OS's pages to the disk, so that sealing the
        file at the end has little left to write."""
        self._file.flush()
        _fsync_file(self.path)

    def seal(self, meta: EpisodeMeta) -> None:
        """Write the final attributes (the recorder's summary is known only at the end) and close."""
        meta.write_attrs(self._file)
        self._file.attrs["num_steps"] = self.num_steps
        self._file.close()
        self._file = None

    def abandon(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except Exception:  # noqa: BLE001 - the file is deleted next: HDF5 may be broken after a failed write
                pass
            self._file = None
        self.path.unlink(missing_ok=True)


def _build_hdf5(source_path: Path, final: Path, meta_override: dict | None = None,
                recovered: bool = False) -> Path:
    """Write ``final`` from a step log (or an earlier version's partial file); the source is left alone."""
    source = _open_source(source_path)
    try:
        meta = EpisodeMeta(**meta_override) if meta_override else source.meta
        n = source.num_steps
        if n == 0:
            raise EmptyEpisodeError(f"{source_path} holds no complete step; nothing was written")
        if recovered:
            meta.extra = dict(meta.extra, recovered={"from": source_path.name, "steps": n})
        meta.validate()
        building = _building_path(final)
        _remove_dead_builds(final)
        building.unlink(missing_ok=True)
        D = len(meta.joint_names)
        bound = hdf5_size_bound(n, D, n * len(meta.camera_names), source.frame_bytes)
        context = (f"writing {final.name} ({n} steps; they are safe in {source_path.name}; "
                   f"run `recover {final.parent}` once there is room)")
        out: _Hdf5Episode | None = None
        try:
            try:                              # the header: small, but the disk may be full already
                out = _Hdf5Episode(building, meta)
            except (OSError, RuntimeError) as exc:
                if _is_disk_full(exc) or _free_bytes(final.parent) < bound:
                    raise _no_room(final.parent, bound, context) from None
                raise
            _reserve(building, bound, context)
            out.open()
            for block in source.blocks(256):
                out.append(*block)
            out.seal(meta)
            return _finalize(building, final)
        except BaseException:
            if out is not None:
                out.abandon()
            building.unlink(missing_ok=True)
            raise
    finally:
        source.close()


_CHILD_ERRORS = {"DiskFullError": DiskFullError, "EmptyEpisodeError": EmptyEpisodeError,
                 "EpisodeBuildError": EpisodeBuildError,
                 "FileExistsError": FileExistsError, "ValueError": ValueError}


def _spawn_child(args: list[str]) -> tuple[subprocess.Popen, "tempfile._TemporaryFileWrapper"]:
    """``python -m rdt_core.episode ARGS`` importing this very rdt_core; stdin and stdout are pipes."""
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    stderr = tempfile.TemporaryFile(mode="w+")        # HDF5's error stack may be long: not a pipe
    proc = subprocess.Popen([sys.executable, "-m", "rdt_core.episode", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    return proc, stderr


def _exit_text(code: int) -> str:
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"failed (exit status {code})"


class _LiveBuild:
    """The follower of one episode being recorded: a child process (``python -m rdt_core.episode follow``)
    that copies every committed step of the log into the HDF5 file as it is recorded, so that closing the
    episode leaves only the last interval's steps to write. The log stays the record: if the follower dies,
    the episode is built from the log as before, and a killed recorder leaves the log for ``recover`` (the
    follower sees its stdin close without the word to finish, deletes its file and exits)."""

    def __init__(self, log_path: Path, final_path: Path):
        self.proc, self.stderr = _spawn_child(["follow", str(log_path), str(final_path)])
        self.building = _building_path(final_path, self.proc.pid)

    def bytes_on_disk(self) -> int:
        """Space its file already takes: space the finished episode will not need again."""
        try:
            return os.stat(self.building).st_blocks * 512
        except OSError:
            return 0

    def finish(self, options: dict) -> str:
        """Tell the follower the log is sealed (with the final attributes): "" once told, else why not."""
        try:
            self.proc.stdin.write(json.dumps(options) + "\n")
            self.proc.stdin.close()
            return ""
        except (BrokenPipeError, OSError, ValueError):
            self.abandon()
            return f"the follower {_exit_text(self.proc.returncode)} before the episode ended"

    def abandon(self) -> None:
        """Stop the follower and delete its file (discard, or a build from the log instead)."""
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.stderr.close()
        self.building.unlink(missing_ok=True)


class EpisodeBuild:
    """Building ``final_path`` from a step log, started at once; ``wait()`` for the result. With ``isolate``
    (default) the HDF5 file is written by a child process, so that even a crash of the HDF5 library cannot end
    the caller, and the caller may go on meanwhile (the recorder starts the next episode). Given the
    episode's ``live`` follower, that child only finishes the file it kept up to date; should it fail, the
    file is built from the log instead (``live_failure`` says why). Errors keep their type (DiskFullError,
    EmptyEpisodeError, ...); a crashed child is an EpisodeBuildError. The log is left in place unless
    ``remove_log``: then it is deleted once the episode is in place, by ``wait()`` or, with
    ``wait(cleanup=False)``, by a later ``cleanup()`` (deleting a large file takes a fifth of a second or
    more, which need not delay reporting the episode)."""

    def __init__(self, source_path: str | Path, final_path: str | Path, *, meta: EpisodeMeta | None = None,
                 recovered: bool = False, isolate: bool = True, remove_log: bool = False,
                 live: _LiveBuild | None = None):
        self.source_path, self.final_path = Path(source_path), Path(final_path)
        self._override = dataclasses.asdict(meta) if meta is not None else None
        self._recovered, self._remove_log, self._isolate = recovered, remove_log, isolate
        self._result: Path | BaseException | None = None
        self._proc = None
        self.live_failure = live.finish({"meta": self._override}) if live is not None else ""
        self._following = live is not None and not self.live_failure
        if self._following:
            self._proc, self._stderr = live.proc, live.stderr
        else:
            self._start()

    def _start(self) -> None:
        if self._isolate:
            self._proc, self._stderr = _spawn_child(["build", str(self.source_path), str(self.final_path)])
            self._proc.stdin.write(json.dumps({"meta": self._override, "recovered": self._recovered}))
            self._proc.stdin.close()

    def done(self) -> bool:
        return self._proc is None or self._proc.poll() is not None

    def wait(self, cleanup: bool = True) -> Path:
        """The episode's path once it is complete; raises what stopped the build."""
        if self._result is None:
            try:
                try:
                    self._result = self._run() if self._proc is None else self._collect()
                except Exception as exc:  # noqa: BLE001 - the follower failed: the log has every step
                    if not self._following:
                        raise
                    self._following, self._proc = False, None
                    self.live_failure = str(exc)
                    self._start()
                    self._result = self._run() if self._proc is None else self._collect()
            except BaseException as exc:   # noqa: BLE001 - kept, raised again on every wait()
                self._result = exc
        if isinstance(self._result, BaseException):
            raise self._result
        if cleanup:
            self.cleanup()
        return self._result

    def cleanup(self) -> None:
        """Delete the log (``remove_log``) once the episode is in place; a failed build keeps it."""
        if self._remove_log and isinstance(self._result, Path):
            _unlink_log(self.source_path)

    def _run(self) -> Path:
        return _build_hdf5(self.source_path, self.final_path, self._override, self._recovered)

    def _collect(self) -> Path:
        stdout = self._proc.stdout.read()
        code = self._proc.wait()
        self._proc.stdout.close()
        self._stderr.seek(0)
        stderr = self._stderr.read()
        self._stderr.close()
        if code == 0:
            return self.final_path
        _remove_dead_builds(self.final_path)
        lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
        if code > 0 and lines:
            err = json.loads(lines[-1])
            cls = _CHILD_ERRORS.get(err["error"], EpisodeBuildError)
            if cls is DiskFullError:
                raise DiskFullError(errno.ENOSPC, err["message"])
            raise cls(err["message"])
        how = _exit_text(code)
        tail = stderr.strip().splitlines()[-3:]
        raise EpisodeBuildError(
            f"writing {self.final_path.name} {how} (HDF5 does this after a write error, most often a full disk); its "
            f"steps are safe in {self.source_path}: check the free space on {self.final_path.parent} and run "
            f"`ros2 run rdt_recorder recover {self.final_path.parent}`"
            + (f". Its last words: {' | '.join(tail)}" if tail else ""))


def build_episode(source_path: str | Path, final_path: str | Path, *, meta: EpisodeMeta | None = None,
                  recovered: bool = False, isolate: bool = True) -> Path:
    """:class:`EpisodeBuild` waited for: ``final_path`` built from a step log, which is left in place."""
    return EpisodeBuild(source_path, final_path, meta=meta, recovered=recovered, isolate=isolate).wait()


_FOLLOW_POLL_S = 0.2         # how often the follower looks for new commits
_FOLLOW_SYNC_S = 1.0         # how often it hands its file to the disk, so that sealing it is quick
_FOLLOW_BLOCK = 64           # steps per read: the log's lock is held for one read at a time


def _follow(log_path: Path, final: Path, wake: threading.Event, command: dict) -> Path | None:
    """Copy the log's committed steps into the HDF5 file while the episode is recorded. Once ``command``
    says "seal" (the log is sealed: every step committed), copy the rest, write the final attributes
    (``command["meta"]``) and move the file into place; on "abandon" delete it and return None."""
    source = _StepLog.open(log_path, busy_timeout_s=60.0)
    out = None
    try:
        out = _Hdf5Episode(_building_path(final), source.meta)
        out.open()
        last_sync = time.monotonic()
        while True:
            verdict = command.get("verdict")     # read once: steps committed before it are all in the log
            if verdict == "abandon":
                out.abandon()
                return None
            while command.get("verdict") != "abandon" and (
                    block := source.block(out.num_steps, _FOLLOW_BLOCK)) is not None:
                out.append(*block)
            if verdict == "seal":
                break
            if time.monotonic() - last_sync >= _FOLLOW_SYNC_S:
                out.flush()
                last_sync = time.monotonic()
            wake.wait(_FOLLOW_POLL_S)
        n = source.num_steps
        if n == 0:
            raise EmptyEpisodeError(f"{log_path} holds no complete step; nothing was written")
        if out.num_steps != n:
            raise EpisodeBuildError(f"the follower copied {out.num_steps} of the log's {n} steps")
        meta = EpisodeMeta(**command["meta"]) if command.get("meta") else source.meta
        meta.validate()
        out.seal(meta)
        return _finalize(out.path, final)
    except BaseException:
        if out is not None:
            out.abandon()
        raise
    finally:
        source.close()


def _follow_main(log_path: Path, final: Path) -> Path | None:
    """The follower's process: one JSON line on stdin (the final options) seals the episode; stdin closing
    without it (the recorder discarded the episode, or died) abandons it."""
    wake, command = threading.Event(), {}

    def listen() -> None:
        line = sys.stdin.readline()
        if line.strip():
            command.update(json.loads(line))
        command["verdict"] = "seal" if line.strip() else "abandon"
        wake.set()

    threading.Thread(target=listen, daemon=True).start()
    return _follow(log_path, final, wake, command)


def _child_main(argv: list[str]) -> int:
    """``python -m rdt_core.episode build|follow STEP_LOG FINAL`` (options as JSON on stdin): the isolated
    builder, or an episode's live follower."""
    if len(argv) != 3 or argv[0] not in ("build", "follow"):
        print("usage: python -m rdt_core.episode build|follow STEP_LOG FINAL.hdf5  (JSON options on stdin)",
              file=sys.stderr)
        return 2
    try:
        if argv[0] == "follow":
            path = _follow_main(Path(argv[1]), Path(argv[2]))
            if path is None:
                print(json.dumps({"error": "abandoned", "message": "the episode was abandoned"}), flush=True)
                return 1
        else:
            opts = json.loads(sys.stdin.read() or "{}")
            path = _build_hdf5(Path(argv[1]), Path(argv[2]), opts.get("meta"), bool(opts.get("recovered")))
    except (DiskFullError, EmptyEpisodeError, EpisodeBuildError, FileExistsError, ValueError, OSError) as exc:
        name = type(exc).__name__ if type(exc).__name__ in _CHILD_ERRORS else (
            "DiskFullError" if _is_disk_full(exc) else type(exc).__name__)
        message = exc.strerror if isinstance(exc, DiskFullError) and exc.strerror else str(exc)
        print(json.dumps({"error": name, "message": message}), flush=True)
        return 3
    print(json.dumps({"ok": str(path)}), flush=True)
    return 0


# ----------------------------------------------------------------------------- writer
class EpisodeWriter:
    """Streams one episode into its step log; not thread-safe (one thread owns it at a time).

    ``append`` / ``append_many`` commit the log whenever ``flush_interval_s`` passed since the last commit
    (0 = every step), so a crash loses at most that much; call ``flush()`` when steps stop arriving.
    Bad data follows the module's policy: a step with a non-finite value or a bad frame is counted in
    ``rejected`` and not written (``append`` returns False). ``num_steps`` counts the steps accepted,
    ``flushed_steps`` those a crash would keep. The recording stops with DiskFullError when the free space
    would fall below ``min_free_bytes`` once the episode's HDF5 file is built; what is committed stays.
    ``close()`` builds ``episode_<n>.hdf5`` (in a child process unless ``isolate_build`` is False).
    ``live_build`` (the recorder) keeps the HDF5 file up to date while the episode is recorded, in a
    follower process (:class:`_LiveBuild`), so that ``close()`` takes a fraction of a second however long
    the episode; the log stays the record either way.
    ``durable=False`` (bag2hdf5: its bag stays, a crashed conversion is run again) commits without fsync:
    a killed process still keeps every commit, a power cut may not; the built HDF5 file is fsync'd either way.
    """

    def __init__(self, final_path: str | Path, meta: EpisodeMeta, *, flush_interval_s: float = 1.0,
                 min_free_bytes: int = DEFAULT_MIN_FREE_BYTES, isolate_build: bool = True, durable: bool = True,
                 live_build: bool = False):
        meta.validate()
        self.final_path = Path(final_path)
        self.log_path = temp_path_for(self.final_path)
        self.meta = dataclasses.replace(meta, extra=dict(meta.extra))
        self.flush_interval_s = float(flush_interval_s)
        self.min_free_bytes = int(min_free_bytes)
        self.isolate_build = bool(isolate_build)
        self.num_steps = 0
        self.flushed_steps = 0
        self.rejected = RejectedSteps()
        self._frame_bytes = self._flushed_frame_bytes = 0
        self._interval_bytes = 0        # most frame bytes committed at once
        self._last_stamp: int | None = None
        self.first_stamp: int | None = None      # of the first step offered, written or rejected
        self._failure: OSError | None = None
        self._closed = False
        for other, what in ((self.final_path, "episode"), (self.log_path, "unfinished episode"),
                            (self.final_path.with_name(f".{self.final_path.name}.partial"), "unfinished episode")):
            if other.exists():
                if other == self.final_path:
                    raise FileExistsError(f"episode {other} already exists; it is never overwritten "
                                          "(use next_episode_path(folder) for a fresh name)")
                raise FileExistsError(f"an {what} {other} is in the way; turn it into an episode with "
                                      f"recover('{other}') (`ros2 run rdt_recorder recover {other.parent}`) or delete it")
        self.final_path.parent.mkdir(parents=True, exist_ok=True)
        _check_free(self.final_path.parent, self.min_free_bytes, "the episode was not started")
        try:
            self._log = _StepLog.create(self.log_path, self.meta, durable=durable)
        except sqlite3.Error as exc:
            if _is_disk_full(exc):
                raise DiskFullError(errno.ENOSPC, f"the disk holding {self.final_path.parent} is full ({exc}); "
                                    "the episode was not started. Free some space or choose another folder") from None
            raise OSError(f"cannot create the step log {self.log_path}: {exc}") from None
        self._live = _LiveBuild(self.log_path, self.final_path) if live_build and isolate_build else None
        self._last_flush = time.monotonic()

    @property
    def temp_path(self) -> Path:
        """The step log: what a crash leaves and ``recover`` takes."""
        return self.log_path

    # -- context manager: success closes; an exception keeps the (recoverable) step log
    def __enter__(self) -> "EpisodeWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._release()

    def append(self, stamp_ns: int, qpos: np.ndarray, action: np.ndarray,
               jpeg_frames: Mapping[str, bytes | BadFrame]) -> bool:
        """Add one step (every camera's JPEG bytes, joint state and action in robot units); False when the
        step was rejected (see the class docstring)."""
        self._check_open()
        D = len(self.meta.joint_names)
        q = np.asarray(qpos, dtype=np.float64).reshape(-1)
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if q.size != D or a.size != D:
            raise ValueError(f"qpos and action need {D} values (joints {self.meta.joint_names}); got "
                             f"{q.size} and {a.size}")
        self._check_cameras(jpeg_frames)
        stamp = int(stamp_ns)
        if self._last_stamp is not None and stamp <= self._last_stamp:
            raise ValueError(f"timestamps must increase: step {self.num_steps} has {stamp} ns after "
                             f"{self._last_stamp} ns")
        written = self._add(stamp, q, a, jpeg_frames)
        if time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()
        return written

    def append_many(self, stamps_ns: Sequence[int], qpos: np.ndarray, action: np.ndarray,
                    jpeg_frames: Mapping[str, Sequence[bytes | BadFrame]]) -> int:
        """Add T steps at once (offline tools, tests): the same policy as T ``append`` calls; returns how
        many were written. Shapes, cameras and timestamps of the whole batch are checked first, so a
        malformed batch adds nothing."""
        self._check_open()
        D = len(self.meta.joint_names)
        st = np.asarray(stamps_ns)
        if st.ndim != 1 or (st.size and st.dtype.kind not in "iu"):
            raise ValueError(f"append_many: stamps_ns must be a 1-D sequence of integer nanoseconds, got "
                             f"dtype {st.dtype} shape {st.shape}")
        T = st.shape[0]
        st = st.astype(np.int64)
        q = np.asarray(qpos, dtype=np.float64)
        a = np.asarray(action, dtype=np.float64)
        if q.shape != (T, D) or a.shape != (T, D):
            raise ValueError(f"append_many: {T} stamps need qpos and action of shape ({T}, {D}) (joints "
                             f"{self.meta.joint_names}); got {q.shape} and {a.shape}")
        self._check_cameras(jpeg_frames)
        lengths = {cam: len(v) for cam, v in jpeg_frames.items()}
        if any(n != T for n in lengths.values()):
            raise ValueError(f"append_many: {T} stamps but frames per camera {lengths}; every camera needs one "
                             "JPEG frame per step")
        if T == 0:
            return 0
        steps = np.diff(st)
        if (steps <= 0).any() or (self._last_stamp is not None and st[0] <= self._last_stamp):
            i = int(np.flatnonzero(steps <= 0)[0]) + 1 if (steps <= 0).any() else 0
            prev = st[i - 1] if i else self._last_stamp
            raise ValueError(f"timestamps must increase: step {self.num_steps + i} has {int(st[i])} ns after "
                             f"{int(prev)} ns; nothing of this batch was added")
        written = 0
        for i in range(T):
            written += self._add(int(st[i]), q[i], a[i], {cam: v[i] for cam, v in jpeg_frames.items()})
            if time.monotonic() - self._last_flush >= self.flush_interval_s:
                self.flush()
        return written

    def _add(self, stamp: int, q: np.ndarray, a: np.ndarray, frames: Mapping) -> bool:
        self._last_stamp = stamp
        if self.first_stamp is None:
            self.first_stamp = stamp
        problem = _step_problem(self.meta.joint_names, q, a)
        for cam in self.meta.camera_names:
            problem = problem or _frame_problem(cam, frames[cam])
        if problem:
            self.rejected.add(stamp, *problem)
            return False
        blobs = [f if isinstance(f, (bytes, bytearray, memoryview)) else memoryview(_frame_buffer(f))
                 for f in (frames[cam] for cam in self.meta.camera_names)]
        try:
            self._log.add(self.num_steps, stamp, q, a, blobs)
        except (sqlite3.Error, OSError) as exc:
            self._storage_failed(exc)
        self.num_steps += 1
        self._frame_bytes += sum(len(b) if not isinstance(b, memoryview) else b.nbytes for b in blobs)
        return True

    def rejected_summary(self) -> str:
        """The rejected steps in one line, times from the episode's first step."""
        return self.rejected.summary(self.first_stamp)

    def hdf5_bytes_needed(self) -> int:
        """Disk space that building this episode's HDF5 file needs (an upper bound)."""
        return hdf5_size_bound(self.num_steps, len(self.meta.joint_names),
                               self.num_steps * len(self.meta.camera_names), self._frame_bytes)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"episode writer for {self.final_path} is closed")
        if self._failure is not None:
            raise type(self._failure)(self._failure.errno, self._failure.strerror)

    def _check_cameras(self, jpeg_frames: Mapping) -> None:
        cams = set(jpeg_frames)
        if cams != set(self.meta.camera_names):
            raise ValueError(f"step needs one JPEG frame for each camera {self.meta.camera_names}; missing "
                             f"{sorted(set(self.meta.camera_names) - cams)}, unexpected {sorted(cams - set(self.meta.camera_names))}")

    def _storage_failed(self, exc: BaseException) -> None:
        """The log could not be written: roll back to the last commit, stop, and say what is kept."""
        self._log.rollback()
        self.num_steps = self.flushed_steps
        self._frame_bytes = self._flushed_frame_bytes
        full = _is_disk_full(exc)
        text = (f"{'the disk is full' if full else 'writing failed'} ({exc}): the episode stopped at "
                f"{self.flushed_steps} steps, every one committed to {self.log_path}; close() keeps them as "
                f"{self.final_path.name} once about {self.hdf5_bytes_needed() / _MiB:.1f} MiB are free there")
        self._failure = (DiskFullError if full else OSError)(errno.ENOSPC if full else errno.EIO, text)
        raise type(self._failure)(self._failure.errno, text) from None

    def flush(self) -> None:
        """Commit everything appended so far (on disk when this returns), then check the free space."""
        if self._closed or self._failure is not None:
            return
        try:
            self._log.commit()
        except (sqlite3.Error, OSError) as exc:
            self._storage_failed(exc)
        self._interval_bytes = max(self._interval_bytes, self._frame_bytes - self._flushed_frame_bytes)
        self.flushed_steps = self.num_steps
        self._flushed_frame_bytes = self._frame_bytes
        self._last_flush = time.monotonic()
        # room to build the HDF5 file (less what the follower wrote already), and for the next interval's
        # steps in the log and in that file
        written = self._live.bytes_on_disk() if self._live is not None else 0
        build = max(0, self.hdf5_bytes_needed() - written) + 2 * self._interval_bytes
        try:
            _check_free(self.final_path.parent, self.min_free_bytes + build,
                        f"{self.min_free_bytes / _MiB:.0f} MiB to keep free plus {build / _MiB:.1f} MiB to build this "
                        f"episode; it stopped at {self.num_steps} steps, all committed to {self.log_path}, and "
                        f"close() keeps them as {self.final_path.name}")
        except DiskFullError as exc:
            self._failure = exc
            raise

    def close(self, extra: dict | None = None) -> Path:
        """Finish the episode: merge ``extra`` into its attributes, build ``episode_<n>.hdf5`` and remove the
        log; returns the path. EmptyEpisodeError (and no file) when no step was written; on DiskFullError or
        EpisodeBuildError the log stays for ``recover``."""
        return self.close_async(extra).wait()

    def close_async(self, extra: dict | None = None) -> EpisodeBuild:
        """:meth:`close` that returns as soon as the log is sealed: the build runs on (``wait()`` for it)."""
        if self._closed:
            raise RuntimeError(f"episode writer for {self.final_path} is already closed")
        if extra:
            self.meta.extra.update(extra)
        self.meta.extra["rejected_steps"] = self.rejected.to_dict()
        self.meta.validate()
        self._release(final_meta=True)
        if self.flushed_steps == 0:
            self._abandon_live()
            _unlink_log(self.log_path)
            raise EmptyEpisodeError(f"episode {self.final_path.name} has no step ({self.rejected_summary()}); "
                                    "nothing was written")
        live, self._live = self._live, None
        return EpisodeBuild(self.log_path, self.final_path, meta=self.meta, isolate=self.isolate_build,
                            remove_log=True, live=live)

    def discard(self) -> None:
        """Drop the episode: delete its step log."""
        if not self._closed:
            self._closed = True
            self._log.rollback()
            self._log.close()
        self._abandon_live()
        _unlink_log(self.log_path)

    def _abandon_live(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.abandon()

    def _release(self, final_meta: bool = False) -> None:
        """Commit what was appended (unless the disk failed) and close the log; unless this is the end of
        the episode (``final_meta``), the follower stops: the log is what ``recover`` takes."""
        if not final_meta:
            self._abandon_live()
        if self._closed:
            return
        self._closed = True
        try:
            if self._failure is None:
                if final_meta:
                    self._log.begin()
                    self._log.store_meta(self.meta)   # recover after a failed build keeps the summary too
                self._log.commit()
                self.flushed_steps = self.num_steps
        except (sqlite3.Error, OSError):
            self._log.rollback()
            self.num_steps = self.flushed_steps
        finally:
            self._log.close()


def write_episode(path: str | Path, meta: EpisodeMeta, timestamps: Sequence[int], qpos: np.ndarray,
                  action: np.ndarray, jpeg_frames: Mapping[str, Sequence[bytes]], *,
                  min_free_bytes: int = DEFAULT_MIN_FREE_BYTES, isolate_build: bool = True) -> Path:
    """Write a whole episode at once (tests, offline tools); the same file and policy as the streaming writer."""
    T = len(timestamps)
    if len(qpos) != T or len(action) != T or any(len(v) != T for v in jpeg_frames.values()):
        raise ValueError(f"write_episode: {T} timestamps but qpos {len(qpos)}, action {len(action)}, frames "
                         f"{ {k: len(v) for k, v in jpeg_frames.items()} }; all need one entry per step")
    w = EpisodeWriter(path, meta, flush_interval_s=float("inf"), min_free_bytes=min_free_bytes,
                      isolate_build=isolate_build)
    try:
        w.append_many(timestamps, qpos, action, jpeg_frames)
    except BaseException:
        w.discard()
        raise
    return w.close()


# ----------------------------------------------------------------------------- recovery
def recover(temp_path: str | Path, final_path: str | Path | None = None) -> Path:
    """Turn what a crashed recording left (its step log, or an earlier version's ``.hdf5.partial``) into a
    valid episode of every step it committed; the temporary file is deleted once the episode is in place.
    A log without a single step is deleted and reported as EmptyEpisodeError (nothing written).
    ``final_path`` defaults to the name the writer would have used."""
    temp_path = Path(temp_path)
    final_path = _final_path_for(temp_path) if final_path is None else Path(final_path)
    if not temp_path.exists():
        raise FileNotFoundError(f"no temporary episode at {temp_path}")
    if final_path.exists() and not _built_from(final_path, temp_path):
        raise FileExistsError(f"{final_path} already exists; pass another final_path to recover {temp_path}")
    try:
        out = final_path if final_path.exists() else build_episode(temp_path, final_path, recovered=True)
    except FileExistsError:                 # a builder left by a killed recorder finished first
        if not _built_from(final_path, temp_path):
            raise
        out = final_path
    except EmptyEpisodeError:
        _unlink_log(temp_path)
        raise EmptyEpisodeError(f"{temp_path.name} holds no step (the recording ended before its first commit); "
                                "nothing to recover, so nothing was written and it was removed") from None
    _unlink_log(temp_path)
    return out


def _built_from(final_path: Path, temp_path: Path) -> bool:
    """Whether ``final_path`` is the complete episode of the step log ``temp_path`` (its build finished but
    the recorder died before deleting the log)."""
    try:
        report = validate_episode(final_path, frames="ends")
        source = _open_source(temp_path)
    except (OSError, ValueError):
        return False
    try:
        return report.ok and report.num_steps == source.num_steps
    finally:
        source.close()


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

    def jpegs(self, camera: str, start: int = 0, stop: int | None = None) -> list[np.ndarray]:
        """Frames ``start:stop`` of a camera as uint8 arrays of JPEG bytes, in one read (a pass over a whole
        episode reads it in blocks of these instead of frame by frame)."""
        return list(self._dataset(camera)[start:stop])

    def image(self, camera: str, i: int) -> np.ndarray:
        """Frame ``i`` of ``camera`` as (H, W, 3) RGB; a frame that does not decode is a ValueError naming
        the file, the camera and the step."""
        try:
            return decode_jpeg(self._dataset(camera)[i], self.meta.color_order(camera))
        except ValueError as exc:
            raise ValueError(f"{self.path}: camera {camera!r}, step {i}: {exc}; `rdt-dataset-info "
                             f"{self.path}` lists every bad frame") from None

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


def validate_episode(path: str | Path, *, frames: str = "all",
                     steps: tuple[int, int] | None = None) -> ValidationReport:
    """Check a file against the schema; every problem found is listed in the report. ``frames="all"``
    checks every JPEG frame (an eighth-size decode, about 1-4 ms each), ``"ends"`` only the first and last.
    ``steps=(lo, hi)`` judges the per-step data (joint values, timestamps, frames) only in steps lo..hi-1, the
    part a curation trim keeps; steps are still named by their index in the file."""
    if frames not in ("all", "ends"):
        raise ValueError(f"frames must be 'all' or 'ends', got {frames!r}")
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
        lo, hi = (0, n) if steps is None else (max(0, int(steps[0])), min(n, int(steps[1])))
        for name in (QPOS, ACTION):
            if name in f:
                ds = f[name]
                if ds.ndim != 2:
                    problems.append(f"/{name} must be 2-D (T, D), has shape {ds.shape}")
                elif joint_names is not None and ds.shape[1] != len(joint_names):
                    problems.append(f"/{name} has {ds.shape[1]} columns but joint_names lists {len(joint_names)}")
                else:
                    problem = nonfinite_problem(f"/{name}", ds[lo:hi], joint_names, first_step=lo)
                    if problem:
                        problems.append(problem)
        if TIMESTAMPS in f:
            ts = f[TIMESTAMPS][lo:hi]
            if ts.dtype.kind not in "iu":
                problems.append(f"/timestamps must be integer nanoseconds, has dtype {ts.dtype}")
            bad = np.flatnonzero(np.diff(ts.astype(np.int64)) <= 0)
            if bad.size:
                problems.append(f"/timestamps are not strictly increasing ({bad.size} time(s), first at step "
                                f"{lo + bad[0] + 1}: {ts[bad[0]]} -> {ts[bad[0] + 1]})")
        for cam in stored:
            ds = f[f"{IMAGES}/{cam}"]
            order = _str(ds.attrs.get("color_order", "rgb"))
            if order not in ("rgb", "bgr"):
                problems.append(f"camera {cam}: color_order attribute {order!r} is not 'rgb' or 'bgr'")
                order = "rgb"
            m_lo, m_hi = (0, ds.shape[0]) if steps is None else (lo, min(hi, ds.shape[0]))
            checked = (range(m_lo, m_hi) if frames == "all" else sorted({m_lo, m_hi - 1})) if m_hi > m_lo else []
            bad = []
            for i in checked:
                problem = jpeg_problem(ds[i])
                if problem:
                    bad.append(f"frame {i} {problem}")
            if bad:
                more = f" (and {len(bad) - 3} more bad frames)" if len(bad) > 3 else ""
                problems.append(f"camera {cam}: " + "; ".join(bad[:3]) + more)
    return ValidationReport(path, not problems, problems, n)


def nonfinite_problem(name: str, values: np.ndarray, joint_names: Sequence[str] | None = None,
                      first_step: int = 0) -> str | None:
    """"/observations/qpos has 3 non-finite values, first at step 17 (joint_3 = nan)", or None; ``values``
    starts at step ``first_step``."""
    values = np.asarray(values)
    bad = np.argwhere(~np.isfinite(values))
    if not bad.size:
        return None
    step, col = (int(bad[0][0]), int(bad[0][1])) if values.ndim == 2 else (int(bad[0][0]), None)
    label = "" if col is None else (joint_names[col] if joint_names and col < len(joint_names) else f"column {col}")
    value = values[step] if col is None else values[step, col]
    return (f"{name} has {len(bad)} non-finite value(s), first at step {first_step + step}"
            + (f" ({label} = {value})" if label else f" ({value})"))


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
