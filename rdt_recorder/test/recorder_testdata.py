"""Test data with known values: real rosbag2 bags written with rosbags, frames that say which frame they are.

A frame of camera ``c`` with index ``k`` (< 120) is a flat colour: R = frame_value(k), G = 40 + 60 * c,
B = frame_block(k); after JPEG the mean of each channel identifies the frame and the channel order. Joint ``j`` at stamp ``t`` (s) has
position ``joint_value(j, t)``.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

TS = get_typestore(Stores.ROS2_JAZZY)
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
JOINT_STATE = "sensor_msgs/msg/JointState"
H, W = 24, 32


def frame_value(k: int) -> int:
    return 20 + (k % 30) * 6


def frame_block(k: int) -> int:
    return 200 + (k // 30) * 15


def frame_rgb(cam: int, k: int) -> np.ndarray:
    assert k < 120
    img = np.empty((H, W, 3), np.uint8)
    img[...] = (frame_value(k), 40 + 60 * cam, frame_block(k))
    return img


def identify(rgb: np.ndarray, cam: int, candidates=range(120)) -> int:
    """The frame index whose colour matches a decoded RGB frame (asserts camera and channel order)."""
    mean = rgb.reshape(-1, 3).mean(axis=0)
    assert abs(mean[1] - (40 + 60 * cam)) < 4 and mean[2] > 190, f"colour order/camera wrong: {mean}"
    best = min(candidates, key=lambda k: abs(frame_value(k) - mean[0]) + abs(frame_block(k) - mean[2]))
    assert abs(frame_value(best) - mean[0]) < 2.5 and abs(frame_block(best) - mean[2]) < 5, f"no frame matches {mean}"
    return best


def joint_value(j: int, t_ns: int) -> float:
    return 0.1 * j + 0.5 * np.sin(t_ns / 1e9 + j)


def _header(stamp_ns: int, frame_id: str = ""):
    Header = TS.types["std_msgs/msg/Header"]
    Time = TS.types["builtin_interfaces/msg/Time"]
    return Header(stamp=Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000), frame_id=frame_id)


def image_msg(stamp_ns: int, rgb: np.ndarray, encoding: str = "rgb8"):
    if encoding == "rgb8":
        arr = rgb
    elif encoding == "bgr8":
        arr = rgb[:, :, ::-1]
    elif encoding == "mono8":
        arr = rgb[:, :, 0]
    elif encoding == "16UC1":
        arr = rgb[:, :, 0].astype(np.uint16)
    else:
        arr = rgb
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    return TS.types[IMAGE](header=_header(stamp_ns, "cam"), height=h, width=w, encoding=encoding, is_bigendian=0,
                           step=arr.nbytes // h, data=arr.reshape(-1).view(np.uint8))


def compressed_msg(stamp_ns: int, rgb: np.ndarray, quality: int = 95):
    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])   # as image_transport
    assert ok
    return TS.types[COMPRESSED](header=_header(stamp_ns, "cam"), format="rgb8; jpeg compressed bgr8",
                                data=buf.reshape(-1))


def joint_msg(stamp_ns: int, names, positions):
    return TS.types[JOINT_STATE](header=_header(stamp_ns), name=list(names),
                                 position=np.asarray(positions, np.float64), velocity=np.zeros(0),
                                 effort=np.zeros(0))


def write_bag(path: Path, messages, storage: str = "sqlite3") -> Path:
    """``messages``: (topic, msgtype, receive_ns, msg) in any order; written in receive order."""
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as w:
        conns = {}
        for topic, msgtype, recv, msg in sorted(messages, key=lambda m: m[2]):
            if topic not in conns:
                conns[topic] = w.add_connection(topic, msgtype, typestore=TS)
            w.write(conns[topic], recv, TS.serialize_cdr(msg, msgtype))
    return path


@dataclass
class Stream:
    """Ground truth of one stream: stamps (ns) and, per message, what it carries."""

    stamps: list[int] = field(default_factory=list)
    values: list = field(default_factory=list)

    def at(self, t: int, tolerance_ns: int):
        i = bisect.bisect_right(self.stamps, t) - 1
        if i < 0 or t - self.stamps[i] > tolerance_ns:
            return None
        return self.values[i]


def expected_steps(streams: dict[str, Stream], period_ns: int, tolerance_ns: int, next_state: list[str] | None,
                   end_ns: int | None = None):
    """Brute-force oracle: the grid from the latest first stamp; per step each stream's newest value at or before
    it within tolerance; with ``next_state`` those streams' values one period later (while recorded); steps with a
    gap skip."""
    t0 = max(s.stamps[0] for s in streams.values())
    last = min(s.stamps[-1] for s in streams.values()) if end_ns is None else end_ns
    out = []
    t = t0
    while t <= last:
        vals = {n: s.at(t, tolerance_ns) for n, s in streams.items()}
        nxt = {n: streams[n].at(t + period_ns, tolerance_ns) for n in (next_state or [])}
        if next_state and any(t + period_ns > streams[n].stamps[-1] for n in next_state):
            break
        if all(v is not None for v in vals.values()) and all(v is not None for v in nxt.values()):
            out.append((t, vals, nxt))
        t += period_ns
    return out


KINOVA_JOINTS = ["joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "joint_7",
                 "robotiq_85_left_knuckle_joint"]


def kinova_bag_messages(t_start_ns: int = 1_000_000_000, seconds: float = 2.0, cam_topics=None,
                        compressed_wrist: bool = True, gaps=(), drop_cam_high=()):
    """Messages for the kinova_gen3 profile (cam_high raw rgb8 30 Hz, cam_right_wrist JPEG 30 Hz, /joint_states
    100 Hz with names shuffled) and the ground truth per stream. ``gaps``: (from_ns, to_ns) with no messages."""
    cam_topics = cam_topics or {"cam_high": "/cam_high/color/image_raw", "cam_right_wrist": "/camera/color/image_raw"}
    msgs, truth = [], {"cam_high": Stream(), "cam_right_wrist": Stream(), "joints": Stream()}
    end = t_start_ns + int(seconds * 1e9)

    def in_gap(t):
        return any(a <= t < b for a, b in gaps)

    order = [3, 0, 7, 1, 5, 2, 6, 4]   # message order differs from the profile's
    t, k = t_start_ns, 0
    while t < end:
        if not in_gap(t):
            pos = [joint_value(j, t) for j in range(8)]
            msgs.append(("/joint_states", JOINT_STATE, t + 1_500_000,
                         joint_msg(t, [KINOVA_JOINTS[j] for j in order], [pos[j] for j in order])))
            truth["joints"].stamps.append(t)
            truth["joints"].values.append(np.array(pos))
        t += 10_000_000
        k += 1
    for cam, role, phase in ((0, "cam_high", 3_000_000), (1, "cam_right_wrist", 17_000_000)):
        t, k = t_start_ns + phase, 0
        while t < end:
            if not in_gap(t) and not (role == "cam_high" and k in drop_cam_high):
                rgb = frame_rgb(cam, k)
                if role == "cam_right_wrist" and compressed_wrist:
                    msg, typ = compressed_msg(t, rgb), COMPRESSED
                else:
                    msg, typ = image_msg(t, rgb, "rgb8"), IMAGE
                msgs.append((cam_topics[role], typ, t + 8_000_000, msg))
                truth[role].stamps.append(t)
                truth[role].values.append(k)
            t += 33_333_333
            k += 1
    return msgs, truth


class LiveFeeder:
    """Publishes kinova_gen3 streams into an EpisodeRecorder from real threads at real rates (joints 100 Hz,
    cameras 30 Hz), stamped with the wall clock; keeps the ground truth of every message the recorder took."""

    def __init__(self, recorder, joint_hz=100.0, camera_hz=30.0, size=(24, 32)):
        import threading
        self.recorder = recorder
        self.truth = {"cam_high": Stream(), "cam_right_wrist": Stream(), "joints": Stream()}
        self.stop_event = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._joints, args=(joint_hz,), daemon=True)]
        for cam, role in ((0, "cam_high"), (1, "cam_right_wrist")):
            self.threads.append(threading.Thread(target=self._camera, args=(cam, role, camera_hz), daemon=True))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for t in self.threads:
            t.join()

    def _run(self, hz, emit):
        import time
        period = 1.0 / hz
        nxt = time.monotonic()
        while not self.stop_event.is_set():
            emit()
            nxt += period
            delay = nxt - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def _joints(self, hz):
        import time
        order = [3, 0, 7, 1, 5, 2, 6, 4]

        def emit():
            t = time.time_ns()
            pos = [joint_value(j, t) for j in range(8)]
            if self.recorder.on_joints("joints", t, [KINOVA_JOINTS[j] for j in order], [pos[j] for j in order]):
                with self._lock:
                    self.truth["joints"].stamps.append(t)
                    self.truth["joints"].values.append(np.array(pos))
        self._run(hz, emit)

    def _camera(self, cam, role, hz):
        import time
        k = [0]

        def emit():
            t = time.time_ns()
            if self.recorder.on_image(role, t, frame_rgb(cam, k[0] % 120)):
                with self._lock:
                    self.truth[role].stamps.append(t)
                    self.truth[role].values.append(k[0] % 120)
            k[0] += 1
        self._run(hz, emit)
