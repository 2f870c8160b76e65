"""ObservationWindow: the last two aligned control steps of every camera and joint stream.

Alignment follows the official RDT deployment (scripts/agilex_inference.py): a step is taken at the
oldest of the newest camera stamps; it needs every stream (cameras and joint streams) to have a message
at or after that time; older messages are dropped and the first message at or after it is used. The
window starts with an empty step, so the very first observation's t-1 slots are missing (None), as in
the official code.

Frames are kept as they arrive (a :class:`CameraFrame` around the message's fields, rdt_core.images) and
turned into the model's RGB input only when an observation that uses them goes to the model, in the
inference worker (:func:`materialize`): of 3 cameras x 30 Hz, only the few frames each chunk sees are
converted and, optionally, JPEG-encoded and decoded as the official deployment does to match the
training data. Never in a sensor callback (90 conversions a second for 6 used per chunk) nor in the
control tick (a few milliseconds per frame would make a 100 Hz timer late).

A stream's age is the larger of two clocks: the caller's time minus the message's stamp, and the time
since the message arrived (a local monotonic clock the caller hands in: the window reads no clock of its
own, so it runs on wall, ROS or simulated time alike). Stamps alone cannot be trusted to go stale: a sensor
whose clock runs ahead of ours, a stamp from a driver bug, or our clock stepping back (NTP) would keep a
dead stream "fresh" for as long as the offset. Joint messages with non-finite positions are dropped (and
named in ``problems``), so a driver reporting NaN makes the stream go stale instead of reaching the model.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

SLOT_ORDER = ("exterior", "right_wrist", "left_wrist")


@dataclass
class Observation:
    """One model input: ``images`` in window order, ``qpos`` (D,), ``stamp`` = the step's sensor time."""

    images: list  # history * cameras entries, oldest step first: [ext, right, left] per step; None = missing
    qpos: np.ndarray
    stamp: float
    step: int  # running step number (0 = first)
    camera_stamps: dict = field(default_factory=dict)

    @property
    def camera_skew(self) -> float:
        """Seconds between the oldest and newest camera frame of the newest step."""
        if not self.camera_stamps:
            return 0.0
        s = list(self.camera_stamps.values())
        return float(max(s) - min(s))


@dataclass(eq=False)
class CameraFrame:
    """One camera frame as it arrived (rdt_core.images RawImage / CompressedFrame fields, or an RGB array),
    made the model's (H, W, 3) uint8 RGB input by :meth:`rgb` the first time an observation using it goes to
    the model, with the JPEG round trip when ``jpeg_quality`` is set; the result is kept, so a frame seen at
    steps t-1 and t is converted once (and stays the same object for the encoder's per-frame cache).
    Picklable: a ProcessInference child converts it there."""

    source: object
    jpeg_quality: int | None = None
    _rgb: np.ndarray | None = field(default=None, repr=False)

    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            if isinstance(self.source, np.ndarray):
                image = self.source
            else:
                from rdt_core.images import to_rgb   # (cv2: not imported where every frame is an array)

                image = to_rgb(self.source)
            self._rgb = jpeg_roundtrip(image, self.jpeg_quality) if self.jpeg_quality else image
        return self._rgb


def materialize(images: Sequence | None) -> list | None:
    """An observation's frames -> what the predictor reads: CameraFrames converted (in the caller's thread,
    the inference worker), anything else (arrays, None, a simulator's own lazy frames) passed unchanged."""
    if images is None:
        return None
    return [f.rgb() if isinstance(f, CameraFrame) else f for f in images]


def jpeg_roundtrip(image: np.ndarray, quality: int = 95) -> np.ndarray:
    """Encode to JPEG and decode again (RGB in, RGB out) exactly as recorded episodes are encoded
    (rdt_core.episode), which is also the official deployment's jpeg_mapping: the array goes into
    cv2.imencode as it is, with no channel swap, so the model sees the compression it was trained on."""
    from rdt_core.episode import decode_jpeg, encode_jpeg

    return decode_jpeg(encode_jpeg(image, quality), "rgb")


class ObservationWindow:
    """Thread-safe: sensor callbacks add messages, the control tick takes steps, the worker reads them."""

    def __init__(self, camera_slots: Sequence[str | None], joint_streams: Mapping[str, Sequence[int]], dof: int,
                 *, history: int = 2, jpeg: bool = False, jpeg_quality: int = 95, queue_len: int = 64,
                 arrival_clock=None):
        """camera_slots[i]: the camera role that fills model camera slot i (None = the robot has none there).
        joint_streams: stream role -> the profile joint indices its messages fill (together all D joints).
        arrival_clock: the caller's local monotonic clock that times message arrivals (the node passes
        time.monotonic, a simulation its sim clock; None: ages from stamps only)."""
        self.camera_slots = list(camera_slots)
        self.cameras = [c for c in self.camera_slots if c is not None]
        if not self.cameras:
            raise ValueError("ObservationWindow needs at least one camera; the profile lists none")
        self.joint_streams = {k: np.asarray(v, dtype=np.int64) for k, v in joint_streams.items()}
        covered = np.concatenate(list(self.joint_streams.values())) if self.joint_streams else np.array([], int)
        if sorted(covered.tolist()) != list(range(dof)):
            raise ValueError(f"joint streams {dict((k, v.tolist()) for k, v in self.joint_streams.items())} must "
                             f"fill each of the {dof} joints exactly once; fix the profile's state_streams")
        self.dof = dof
        self.history = history
        self.jpeg = jpeg
        self.jpeg_quality = jpeg_quality
        self._lock = threading.Lock()
        self._queues = {name: deque(maxlen=queue_len) for name in self.streams}
        self._latest_stamp: dict[str, float] = {}
        self._arrival_clock = arrival_clock
        self._arrival: dict[str, float] = {}
        self._problems: dict[str, str] = {}
        self._latest_qpos = np.full(dof, np.nan)
        self.reset()

    @classmethod
    def from_profile(cls, profile, *, history: int = 2, jpeg: bool = False, **kw) -> "ObservationWindow":
        slots = [(profile.camera_for_slot(s).role if profile.camera_for_slot(s) else None) for s in SLOT_ORDER]
        names = profile.joint_names
        streams = {s.role: [names.index(j) for j in s.joints] for s in profile.state_streams}
        return cls(slots, streams, profile.dof, history=history, jpeg=jpeg, **kw)

    @property
    def streams(self) -> list[str]:
        return self.cameras + list(self.joint_streams)

    @property
    def window_size(self) -> int:
        return self.history * len(self.camera_slots)

    def reset(self) -> None:
        """Forget every step (queues keep their messages); the next observation starts with empty t-1 slots."""
        with self._lock:
            self._steps = deque([None] * (self.history - 1), maxlen=self.history)
            self._step_count = 0
            self._last: Observation | None = None

    def clear(self) -> None:
        """Forget every message and step (after our clock jumped: their stamps are in another time base)."""
        with self._lock:
            for q in self._queues.values():
                q.clear()
            self._latest_stamp.clear()
            self._arrival.clear()
            self._problems.clear()
        self.reset()

    # ------------------------------------------------------------------ input (sensor callbacks)
    def add_image(self, role: str, image, stamp: float) -> None:
        """``image``: an (H, W, 3) RGB array or the fields of a camera message (rdt_core.images RawImage /
        CompressedFrame), kept unconverted as a CameraFrame; any other object (a simulator's lazy frame) is
        kept as given, for its predictor to read."""
        if role not in self.cameras:
            raise KeyError(f"unknown camera {role!r}; the window has {self.cameras}")
        from rdt_core.images import CompressedFrame, RawImage

        if isinstance(image, (np.ndarray, RawImage, CompressedFrame)):
            image = CameraFrame(image, self.jpeg_quality if self.jpeg else None)
        with self._lock:
            self._queues[role].append((float(stamp), image))
            self._received(role, stamp)

    def _received(self, stream: str, stamp: float) -> None:
        self._latest_stamp[stream] = max(float(stamp), self._latest_stamp.get(stream, -math.inf))
        if self._arrival_clock is not None:
            self._arrival[stream] = self._arrival_clock()
        self._problems.pop(stream, None)

    def add_joints(self, stream: str, positions: Sequence[float], stamp: float) -> None:
        """positions: values for the stream's joints, in the order of its profile joint indices."""
        idx = self.joint_streams.get(stream)
        if idx is None:
            raise KeyError(f"unknown joint stream {stream!r}; the window has {list(self.joint_streams)}")
        pos = np.asarray(positions, dtype=np.float64)
        if pos.shape != idx.shape:
            raise ValueError(f"joint stream {stream!r}: got {pos.shape[0] if pos.ndim else 0} values, expected {len(idx)}")
        with self._lock:
            if not np.all(np.isfinite(pos)):
                bad = [int(i) for i, ok in zip(idx, np.isfinite(pos)) if not ok]
                self._problems[stream] = f"dropped a message with non-finite positions (joint columns {bad})"
                return
            self._queues[stream].append((float(stamp), pos))
            self._received(stream, stamp)
            self._latest_qpos[idx] = pos

    # ------------------------------------------------------------------ steps (control tick)
    def step(self) -> bool:
        """Take one aligned step from the queues; False when some stream has nothing recent enough yet."""
        with self._lock:
            if any(not self._queues[c] for c in self.streams):
                return False
            frame_time = min(self._queues[c][-1][0] for c in self.cameras)
            if any(self._queues[s][-1][0] < frame_time for s in self.streams):
                return False
            taken = {}
            for s in self.streams:
                q = self._queues[s]
                while q[0][0] < frame_time:
                    q.popleft()
                taken[s] = q.popleft()
        images = {c: taken[c][1] for c in self.cameras}
        qpos = np.empty(self.dof)
        for s, idx in self.joint_streams.items():
            qpos[idx] = taken[s][1]
        entry = {"images": images, "qpos": qpos, "stamp": frame_time,
                 "camera_stamps": {c: taken[c][0] for c in self.cameras}}
        with self._lock:
            self._steps.append(entry)
            frames = []
            for e in self._steps:
                for role in self.camera_slots:
                    frames.append(None if (e is None or role is None) else e["images"][role])
            self._last = Observation(frames, qpos, frame_time, self._step_count, entry["camera_stamps"])
            self._step_count += 1
        return True

    def observation(self) -> Observation | None:
        """The newest model input (None before the first step)."""
        with self._lock:
            return self._last

    # ------------------------------------------------------------------ health
    def ages(self, now: float) -> dict[str, float]:
        """Seconds since the newest message of each stream (inf when none arrived yet): the larger of its
        stamp's age at ``now`` and the time since it arrived."""
        with self._lock:
            local = self._arrival_clock() if self._arrival_clock is not None else None
            out = {}
            for s in self.streams:
                age = now - self._latest_stamp.get(s, -math.inf)
                if local is not None and s in self._arrival:
                    age = max(age, local - self._arrival[s])
                out[s] = age
            return out

    def stamp_ages(self, now: float) -> dict[str, float]:
        """``now`` minus each stream's newest stamp (negative: stamped in our future, the clocks disagree)."""
        with self._lock:
            return {s: now - self._latest_stamp.get(s, -math.inf) for s in self.streams}

    def problems(self) -> dict[str, str]:
        """Stream -> what was wrong with its newest message(s) since the last good one (for hold reasons)."""
        with self._lock:
            return dict(self._problems)

    def latest_qpos(self) -> np.ndarray | None:
        """Newest measured joint positions, None until every joint was seen."""
        with self._lock:
            q = self._latest_qpos.copy()
        return None if np.isnan(q).any() else q
