"""A catalogue of malformed bags and bad arguments for bag2hdf5, shared by test_bag2hdf5_malformed.py and
bench/fault_bench.py: each case builds its bag (real rosbag2 files written with rosbags, then damaged) and
says what bag2hdf5 must answer: the exit code, words the message must hold, and how many episodes (with how
many rejected steps) may be left under a final name."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from recorder_testdata import (COMPRESSED, IMAGE, JOINT_STATE, TS, compressed_msg, frame_rgb, image_msg, joint_msg,
                               kinova_bag_messages, write_bag)

CAM = "/cam_high/color/image_raw"
WRIST = "/camera/color/image_raw"


@dataclass
class Case:
    name: str
    build: Callable[[Path], list]          # tmp folder -> bag2hdf5 arguments (before --out)
    code: int                              # expected exit status
    words: tuple                           # the message names these (the bag, topic, time, fix)
    episodes: int = 0                      # episodes that may appear under final names
    rejected: int = 0                      # steps those episodes must have left out (at least)
    extra_args: tuple = field(default=())


def _msgs(seconds=0.6):
    return kinova_bag_messages(seconds=seconds)[0]


def _stamp(m) -> int:
    return m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec


def _replace(msgs, topic, fn, which=None):
    """``fn(msg) -> msg`` on the messages of ``topic`` (all, or the indices in ``which``)."""
    out, k = [], 0
    for tp, ty, r, m in msgs:
        if tp == topic:
            if which is None or k in which:
                m = fn(m)
            k += 1
        out.append((tp, ty, r, m))
    return out


def _bag(tmp, name, msgs, storage="sqlite3") -> Path:
    return write_bag(tmp / name, msgs, storage)


def empty_jpeg(m):
    return TS.types[COMPRESSED](header=m.header, format=m.format, data=np.zeros(0, np.uint8))


def garbage_jpeg(m):
    return TS.types[COMPRESSED](header=m.header, format=m.format,
                                data=np.frombuffer(b"\xff\xd8" + os.urandom(500), np.uint8))


def nan_joints(m):
    pos = np.array(m.position, np.float64)
    pos[2] = np.nan
    return joint_msg(_stamp(m), list(m.name), pos)


def inf_joints(m):
    pos = np.array(m.position, np.float64)
    pos[0] = np.inf
    return joint_msg(_stamp(m), list(m.name), pos)


def short_image(m):
    return TS.types[IMAGE](header=m.header, height=m.height, width=m.width, encoding=m.encoding,
                           is_bigendian=0, step=m.step, data=m.data[: len(m.data) // 3])


def empty_image(m):
    return TS.types[IMAGE](header=m.header, height=m.height, width=m.width, encoding=m.encoding,
                           is_bigendian=0, step=m.step, data=np.zeros(0, np.uint8))


def _no_metadata(tmp):
    bag = _bag(tmp, "nometa", _msgs())
    (bag / "metadata.yaml").unlink()
    return [bag]


def _db3_file(tmp):
    return [next(_bag(tmp, "file", _msgs()).glob("*.db3"))]


def _truncated(tmp, storage):
    bag = _bag(tmp, f"trunc_{storage}", _msgs(), storage)
    f = next(bag.glob("*.db3" if storage == "sqlite3" else "*.mcap"))
    f.write_bytes(f.read_bytes()[: 3000])
    return [bag]


def _garbage_metadata(tmp):
    bag = _bag(tmp, "badmeta", _msgs())
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: [unclosed\n")
    return [bag]


def _empty_folder(tmp):
    (tmp / "emptydir").mkdir()
    return [tmp / "emptydir"]


def _wrong_type(tmp):
    msgs = [(CAM if tp == "/joint_states" else tp, ty, r, m) for tp, ty, r, m in _msgs() if tp != CAM]
    return [_bag(tmp, "wrongtype", msgs)]


def _all_frames(fn, name):
    return lambda tmp: [_bag(tmp, name, _replace(_msgs(), WRIST, fn))]


def _some(topic, fn, which, name):
    return lambda tmp: [_bag(tmp, name, _replace(_msgs(), topic, fn, which))]


def _no_messages(tmp):
    msgs = _msgs()
    bag = tmp / "nomsgs"
    from rosbags.rosbag2 import Writer
    with Writer(bag, version=9) as w:
        for topic, typ in {(tp, ty) for tp, ty, _, _ in msgs}:
            w.add_connection(topic, typ, typestore=TS)
    return [bag]


def _joints_only(tmp):
    return [_bag(tmp, "jointsonly", [m for m in _msgs() if m[0] == "/joint_states"])]


def _corrupt_cdr(tmp):
    bag = _bag(tmp, "cdr", _msgs())
    import sqlite3
    db = next(bag.glob("*.db3"))
    con = sqlite3.connect(db)
    tid = con.execute("SELECT id FROM topics WHERE name = '/joint_states'").fetchone()[0]
    row = con.execute("SELECT id, data FROM messages WHERE topic_id = ? LIMIT 1 OFFSET 20", (tid,)).fetchone()
    con.execute("UPDATE messages SET data = ? WHERE id = ?", (row[1][:10], row[0]))
    con.commit()
    con.close()
    return [bag]


def _unknown_encoding(tmp):
    return [_bag(tmp, "weird", _replace(_msgs(), CAM, lambda m: image_msg(_stamp(m), frame_rgb(0, 0), "weird9")))]


def _backwards(tmp):
    out = []
    for tp, ty, r, m in _msgs():
        if tp == "/joint_states" and 1_300_000_000 <= r < 1_320_000_000:
            m = joint_msg(1_100_000_000, list(m.name), m.position)
        out.append((tp, ty, r, m))
    return [_bag(tmp, "backwards", out)]


def _renamed(tmp):
    return [_bag(tmp, "renamed", [(tp, ty, r, joint_msg(r, [n.replace("joint_7", "j7") for n in m.name], m.position)
                                   if tp == "/joint_states" else m) for tp, ty, r, m in _msgs()])]


def _depth(tmp):
    msgs = _msgs()
    depth = [("/depth", IMAGE, r + 1, image_msg(r, frame_rgb(0, 0), "16UC1")) for tp, _, r, _ in msgs if tp == CAM]
    return [_bag(tmp, "depth", msgs + depth), "--topic", "cam_high=/depth"]


def _missing_marker(tmp):
    return [_bag(tmp, "nomarker", _msgs()), "--split", "marker:/episode_start"]


def _out_is_a_file(tmp):
    (tmp / "out_file").write_text("not a folder")
    return [_bag(tmp, "good", _msgs()), "--out", tmp / "out_file"]


def _missing_topic(tmp):
    msgs, _ = kinova_bag_messages(seconds=0.5, cam_topics={"cam_high": "/other/image", "cam_right_wrist": WRIST})
    return [_bag(tmp, "missingtopic", msgs)]


CASES = [
    Case("no such bag", lambda tmp: [tmp / "nope"], 1, ("nope", "no such bag")),
    Case("metadata.yaml missing", _no_metadata, 1, ("nometa", "metadata.yaml is missing", "ros2 bag reindex")),
    Case("a .db3 file instead of the bag folder", _db3_file, 1, ("not its .db3 file",)),
    Case("empty folder", _empty_folder, 1, ("emptydir", "metadata.yaml is missing", "no .db3 or .mcap")),
    Case("metadata.yaml not YAML", _garbage_metadata, 1, ("badmeta", "cannot open the bag", "ros2 bag info")),
    Case("truncated .db3", lambda tmp: _truncated(tmp, "sqlite3"), 1, ("trunc_sqlite3",)),
    Case("truncated .mcap", lambda tmp: _truncated(tmp, "mcap"), 1, ("trunc_mcap",)),
    Case("a topic of the profile missing", _missing_topic, 1, ("/cam_high/color/image_raw", "--topic cam_high=")),
    Case("camera topic carries JointState", _wrong_type, 1, ("has type sensor_msgs/msg/JointState",)),
    Case("joint topic only", _joints_only, 1, ("is not in the bag", "--topic cam_high=")),
    Case("connections but no messages", _no_messages, 1, ("no complete step",)),
    Case("unknown image encoding", _unknown_encoding, 1, ("weird9", CAM, "is not supported")),
    Case("header stamps going backwards", _backwards, 1, ("/joint_states", "earlier than the previous")),
    Case("joint names do not match the profile", _renamed, 1, ("/joint_states", "joint_7")),
    Case("depth image as the camera", _depth, 1, ("/depth", "16UC1", "not a colour camera")),
    Case("a truncated CDR message", _corrupt_cdr, 1, ("/joint_states", "cannot deserialize")),
    Case("marker topic missing", _missing_marker, 1, ("marker topic /episode_start",)),
    # bad data inside a good bag: those steps are left out and named, the rest converts. Frames come at 30 Hz
    # and steps at 25 Hz, so two consecutive bad frames (five joint messages at 100 Hz) reach at least one step.
    Case("every wrist frame zero-length", _all_frames(empty_jpeg, "allempty"), 1,
         ("every aligned step was rejected", WRIST, "is empty")),
    Case("one zero-length frame", _some(WRIST, empty_jpeg, {5, 6}, "oneempty"), 0,
         (WRIST, "cam_right_wrist", "at stamp", "is empty", "step left out"), episodes=1, rejected=1),
    Case("undecodable JPEG frames", _some(WRIST, garbage_jpeg, {3, 4}, "garbagejpeg"), 0,
         (WRIST, "does not decode as JPEG", "step left out"), episodes=1, rejected=1),
    Case("NaN joint positions", _some("/joint_states", nan_joints, set(range(20, 25)), "nan"), 0,
         ("non-finite", "on /joint_states", "= nan", "step left out"), episodes=1, rejected=1),
    Case("inf joint positions", _some("/joint_states", inf_joints, set(range(30, 35)), "inf"), 0,
         ("non-finite", "= inf"), episodes=1, rejected=1),
    Case("raw image shorter than its size", _some(CAM, short_image, {4, 5}, "short"), 0,
         (CAM, "bytes of data", "truncated", "step left out"), episodes=1, rejected=1),
    Case("zero-length raw image", _some(CAM, empty_image, {6, 7}, "emptyraw"), 0, (CAM, "step left out"),
         episodes=1, rejected=1),
    Case("--out is a regular file", _out_is_a_file, 2, ("is a file, not a folder",)),
    Case("bad --split", lambda tmp: [_bag(tmp, "good2", _msgs()), "--split", "gap:x"], 2, ("gap:SECONDS",)),
]


def run_case(case: Case, tmp: Path, timeout: float = 180) -> dict:
    """Build the case's bag, run the bag2hdf5 CLI on it, and report what it left in --out."""
    tmp.mkdir(parents=True, exist_ok=True)
    args = [str(a) for a in case.build(tmp)]
    out = tmp / "out"
    if "--out" not in args:
        args += ["--out", str(out)]
    proc = subprocess.run([sys.executable, "-m", "rdt_recorder.bag2hdf5", *args, "--profile", "kinova_gen3",
                           *case.extra_args], capture_output=True, text=True, timeout=timeout)
    text = proc.stdout + proc.stderr
    finals = sorted(out.glob("episode_*.hdf5")) if out.is_dir() else []
    hidden = sorted(p.name for p in out.iterdir() if p.name.startswith(".")) if out.is_dir() else []
    return {"code": proc.returncode, "text": text, "finals": finals, "hidden": hidden,
            "missing_words": [w for w in case.words if w not in text]}


def clean(tmp: Path) -> None:
    shutil.rmtree(tmp, ignore_errors=True)
