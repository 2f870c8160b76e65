"""bag2hdf5 on real rosbag2 bags (sqlite3 and mcap) written with rosbags: every aligned value vs ground truth."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rdt_core.episode import EpisodeReader, validate_episode
from rdt_recorder.bag2hdf5 import main
from recorder_testdata import (COMPRESSED, IMAGE, JOINT_STATE, Stream, compressed_msg, expected_steps, frame_rgb,
                               frame_value, identify, image_msg, joint_msg, joint_value, kinova_bag_messages,
                               write_bag)

MS = 1_000_000
KINOVA_PERIOD = 40 * MS          # 25 Hz
TOL = 100 * MS


def episodes(folder: Path) -> list[Path]:
    return sorted(folder.glob("episode_*.hdf5"), key=lambda p: int(p.stem.split("_")[1]))


def check_kinova_episode(path: Path, truth, next_state=True, end_ns=None):
    exp = expected_steps(truth, KINOVA_PERIOD, TOL, ["joints"] if next_state else None, end_ns=end_ns)
    assert validate_episode(path).ok, str(validate_episode(path))
    with EpisodeReader(path) as r:
        assert r.num_steps == len(exp)
        assert r.timestamps.tolist() == [t for t, _, _ in exp]
        assert r.meta.joint_names[:2] == ["joint_1", "joint_2"]
        assert r.meta.camera_color_order.get("cam_right_wrist") == "bgr"       # JPEG passed through
        for i, (t, vals, nxt) in enumerate(exp):
            np.testing.assert_allclose(r.qpos[i], vals["joints"], rtol=0, atol=1e-12)
            np.testing.assert_allclose(r.action[i], nxt["joints"], rtol=0, atol=1e-12)
            assert identify(r.image("cam_high", i), 0) == vals["cam_high"]
            assert identify(r.image("cam_right_wrist", i), 1) == vals["cam_right_wrist"]
        return r.num_steps, r.meta


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_kinova_bag_converts_to_ground_truth(tmp_path, storage):
    msgs, truth = kinova_bag_messages(drop_cam_high=(10, 11, 12, 13))    # a 130 ms camera hole: steps skipped
    bag = write_bag(tmp_path / f"run_{storage}", msgs, storage)
    out = tmp_path / "out"
    assert main([str(bag), "--out", str(out), "--profile", "kinova_gen3", "--instruction", "pick the cube"]) == 0
    [ep] = episodes(out)
    steps, meta = check_kinova_episode(ep, truth)
    assert meta.instruction == "pick the cube" and meta.robot == "kinova_gen3"
    summary = meta.extra["alignment"]
    assert summary["skipped_steps"] >= 1 and summary["misses"]["cam_high"] == summary["skipped_steps"]
    assert 0 < summary["skew_max_ms"]["cam_high"] <= 100
    assert not list(out.glob(".*"))            # no temporary or staging leftovers


ALOHA_SIDES = ("left", "right")
ALOHA_MSG_NAMES = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper"]
LEADER_CLOSED, LEADER_OPEN, FOLLOWER_CLOSED, FOLLOWER_SPAN = -0.0552, 0.8298, 0.6197, 1.0017


def aloha_messages(t0=5_000_000_000, seconds=1.5):
    """ALOHA: cam_high bgr8 Image, cam_left_wrist mono8 Image, cam_right_wrist JPEG; followers 50 Hz; leaders
    (the action source) 50 Hz with their own gripper range."""
    msgs, truth = [], {}
    end = t0 + int(seconds * 1e9)
    cams = (("cam_high", "bgr8", 2 * MS), ("cam_left_wrist", "mono8", 9 * MS), ("cam_right_wrist", "jpeg", 21 * MS))
    for c, (role, enc, phase) in enumerate(cams):
        s = truth[role] = Stream()
        t, k = t0 + phase, 0
        while t < end:
            rgb = frame_rgb(c, k)
            msg, typ = (compressed_msg(t, rgb), COMPRESSED) if enc == "jpeg" else (image_msg(t, rgb, enc), IMAGE)
            msgs.append((f"/{role}/camera/color/image_rect_raw", typ, t + 5 * MS, msg))
            s.stamps.append(t)
            s.values.append(k)
            t += 33_333_333
            k += 1
    for kind, offset in (("follower", 0), ("leader", 20)):
        for side_i, side in enumerate(ALOHA_SIDES):
            s = truth[f"{kind}_{side}"] = Stream()
            t = t0 + (3 + side_i) * MS
            while t < end:
                pos = [joint_value(j + offset + 7 * side_i, t) for j in range(7)]
                msgs.append((f"/{kind}_{side}/joint_states", JOINT_STATE, t + MS, joint_msg(t, ALOHA_MSG_NAMES, pos)))
                s.stamps.append(t)
                s.values.append(np.array(pos))
                t += 20 * MS
    return msgs, truth


def test_aloha_leader_arms_are_the_action_source_with_gripper_remap(tmp_path):
    msgs, truth = aloha_messages()
    bag = write_bag(tmp_path / "aloha", msgs, "mcap")
    out = tmp_path / "out"
    assert main([str(bag), "--out", str(out), "--profile", "aloha", "--tolerance", "0.05"]) == 0
    [ep] = episodes(out)
    exp = expected_steps(truth, 20 * MS, 50 * MS, None)
    with EpisodeReader(ep) as r:
        assert r.num_steps == len(exp) > 64      # more than one 64-step EpisodeWriter block
        assert r.timestamps.tolist() == [t for t, _, _ in exp]
        assert r.meta.camera_color_order == {"cam_high": "rgb", "cam_left_wrist": "rgb", "cam_right_wrist": "bgr"}
        for i, (t, v, _) in enumerate(exp):
            np.testing.assert_allclose(r.qpos[i], np.concatenate([v["follower_left"], v["follower_right"]]),
                                       atol=1e-12)
            lead = np.concatenate([v["leader_left"], v["leader_right"]])
            for g in (6, 13):       # leader gripper mapped linearly onto the follower gripper's range
                lead[g] = FOLLOWER_CLOSED + FOLLOWER_SPAN * (lead[g] - LEADER_CLOSED) / (LEADER_OPEN - LEADER_CLOSED)
            np.testing.assert_allclose(r.action[i], lead, atol=1e-12)
            assert identify(r.image("cam_high", i), 0) == v["cam_high"]
            assert identify(r.image("cam_right_wrist", i), 2) == v["cam_right_wrist"]
            grey = r.image("cam_left_wrist", i).reshape(-1, 3).mean(axis=0)
            assert np.all(np.abs(grey - frame_value(v["cam_left_wrist"])) < 4)


def test_split_by_gap_and_by_marker(tmp_path):
    msgs, truth = kinova_bag_messages(seconds=3.0, gaps=[(2_000_000_000, 2_600_000_000)])
    bag = write_bag(tmp_path / "gap", msgs)
    out = tmp_path / "gap_out"
    assert main([str(bag), "--out", str(out), "--profile", "kinova_gen3", "--split", "gap:0.3"]) == 0
    eps = episodes(out)
    assert len(eps) == 2
    for ep, (lo, hi) in zip(eps, [(0, 2_000_000_000), (2_600_000_000, 10**19)]):
        part = {n: Stream([t for t in s.stamps if lo <= t < hi], [v for t, v in zip(s.stamps, s.values)
                                                                  if lo <= t < hi]) for n, s in truth.items()}
        check_kinova_episode(ep, part)

    marker = ("/episode_start", "std_msgs/msg/Empty")
    from recorder_testdata import TS
    msgs2, truth2 = kinova_bag_messages(seconds=2.0)
    mark_t = 1_900_000_000
    msgs2.append((marker[0], marker[1], mark_t, TS.types[marker[1]]()))
    bag2 = write_bag(tmp_path / "marker", msgs2, "mcap")
    out2 = tmp_path / "marker_out"
    assert main([str(bag2), "--out", str(out2), "--profile", "kinova_gen3", "--split", "marker:/episode_start"]) == 0
    eps = episodes(out2)
    assert len(eps) == 2
    with EpisodeReader(eps[0]) as a, EpisodeReader(eps[1]) as b:
        assert a.timestamps[-1] < mark_t and b.timestamps[0] > mark_t - 20 * MS
        assert a.num_steps > 15 and b.num_steps > 15


def test_parallel_bags_numbered_in_bag_order_after_existing_episodes(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "episode_4.hdf5").write_bytes(b"earlier episode, left alone")
    bags = []
    for i, storage in enumerate(("sqlite3", "mcap", "sqlite3")):
        msgs, _ = kinova_bag_messages(t_start_ns=(1 + i) * 10**9, seconds=0.6 + 0.4 * i)
        bags.append(str(write_bag(tmp_path / f"bag{i}", msgs, storage)))
    assert main([*bags, "--out", str(out), "--profile", "kinova_gen3", "--jobs", "2"]) == 0
    eps = episodes(out)
    assert [p.name for p in eps] == ["episode_4.hdf5", "episode_5.hdf5", "episode_6.hdf5", "episode_7.hdf5"]
    assert (out / "episode_4.hdf5").read_bytes() == b"earlier episode, left alone"
    lengths = []
    for p in eps[1:]:
        with EpisodeReader(p) as r:
            lengths.append((r.meta.extra["bag"], r.num_steps))
    assert [b for b, _ in lengths] == ["bag0", "bag1", "bag2"]
    assert lengths[0][1] < lengths[1][1] < lengths[2][1]


def run_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "rdt_recorder.bag2hdf5", *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


def assert_failed_cleanly(out: Path, code: int, text: str, *needles):
    assert code == 1, text
    for n in needles:
        assert n in text, f"{n!r} not in:\n{text}"
    assert not episodes(out), "no episode may be left after a failed bag"
    assert not [p for p in out.iterdir() if p.name.startswith(".")], list(out.iterdir())


def test_missing_topic_names_bag_topic_and_fix(tmp_path):
    msgs, _ = kinova_bag_messages(seconds=0.5, cam_topics={"cam_high": "/other/image",
                                                           "cam_right_wrist": "/camera/color/image_raw"})
    bag = write_bag(tmp_path / "b", msgs)
    code, text = run_cli(bag, "--out", tmp_path / "out", "--profile", "kinova_gen3")
    assert_failed_cleanly(tmp_path / "out", code, text, str(bag), "/cam_high/color/image_raw", "/other/image",
                          "--topic cam_high=")
    # the fix the message names works
    code, text = run_cli(bag, "--out", tmp_path / "out", "--profile", "kinova_gen3", "--topic", "cam_high=/other/image")
    assert code == 0, text
    assert len(episodes(tmp_path / "out")) == 1


def test_unknown_encoding_and_non_monotonic_stamps_and_joint_mismatch(tmp_path):
    msgs, _ = kinova_bag_messages(seconds=0.5)
    bad_enc = [(tp, ty, r, image_msg(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec, frame_rgb(0, 0), "nv12")
                if tp == "/cam_high/color/image_raw" else m) for tp, ty, r, m in msgs]
    code, text = run_cli(write_bag(tmp_path / "enc", bad_enc), "--out", tmp_path / "o1", "--profile", "kinova_gen3")
    assert_failed_cleanly(tmp_path / "o1", code, text, "enc", "/cam_high/color/image_raw", "nv12", "not supported")

    # one damaged frame (half its bytes): its step is left out, named with topic, time and the true reason
    cam_msgs = [i for i, (tp, *_rest) in enumerate(msgs) if tp == "/cam_high/color/image_raw"]
    short = list(msgs)
    tp, ty, r, m = short[cam_msgs[5]]
    damaged = image_msg(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec, frame_rgb(0, 5))
    damaged.data = damaged.data[: len(damaged.data) // 2]
    short[cam_msgs[5]] = (tp, ty, r, damaged)
    code, text = run_cli(write_bag(tmp_path / "short", short), "--out", tmp_path / "o4", "--profile", "kinova_gen3")
    assert code == 0 and len(episodes(tmp_path / "o4")) == 1, text
    assert "topic /cam_high/color/image_raw" in text and "truncated" in text and "step left out" in text, text

    backwards = []
    for tp, ty, r, m in msgs:
        if tp == "/joint_states" and 1_300_000_000 <= r < 1_320_000_000:
            m = joint_msg(1_100_000_000, list(m.name), m.position)
        backwards.append((tp, ty, r, m))
    code, text = run_cli(write_bag(tmp_path / "mono", backwards), "--out", tmp_path / "o2", "--profile", "kinova_gen3")
    assert_failed_cleanly(tmp_path / "o2", code, text, "mono", "/joint_states", "earlier than the previous")

    renamed = [(tp, ty, r, joint_msg(r, [n.replace("joint_7", "j7") for n in m.name], m.position)
                if tp == "/joint_states" else m) for tp, ty, r, m in msgs]
    code, text = run_cli(write_bag(tmp_path / "names", renamed), "--out", tmp_path / "o3", "--profile", "kinova_gen3")
    assert_failed_cleanly(tmp_path / "o3", code, text, "names", "/joint_states", "joint_7")


def test_broken_bag_and_depth_topic(tmp_path):
    msgs, _ = kinova_bag_messages(seconds=0.5)
    bag = write_bag(tmp_path / "broken", msgs)
    db = next(bag.glob("*.db3"))
    db.write_bytes(db.read_bytes()[:3000])           # truncated storage file
    code, text = run_cli(bag, "--out", tmp_path / "o1", "--profile", "kinova_gen3")
    assert_failed_cleanly(tmp_path / "o1", code, text, "broken")

    depth = [(tp, ty, r, image_msg(r, frame_rgb(0, 0), "16UC1")) for tp, ty, r, m in msgs
             if tp == "/cam_high/color/image_raw"]
    good = write_bag(tmp_path / "depth", msgs + [("/depth", IMAGE, r + 1, m) for _, _, r, m in depth])
    code, text = run_cli(good, "--out", tmp_path / "o2", "--profile", "kinova_gen3", "--topic", "cam_high=/depth")
    assert_failed_cleanly(tmp_path / "o2", code, text, "topic /depth", "16UC1", "depth", "colour topic")


def test_one_failed_bag_does_not_stop_the_others(tmp_path):
    msgs, _ = kinova_bag_messages(seconds=0.5)
    good = write_bag(tmp_path / "good", msgs)
    out = tmp_path / "out"
    code, text = run_cli(tmp_path / "missing_bag", good, "--out", out, "--profile", "kinova_gen3")
    assert code == 1 and "missing_bag" in text and "FAILED" in text
    assert len(episodes(out)) == 1


def test_bad_arguments_are_explained(tmp_path):
    code, text = run_cli(tmp_path, "--out", tmp_path / "o", "--profile", "kinova_gen3", "--split", "gap:x")
    assert code == 2 and "gap:SECONDS" in text
    code, text = run_cli(tmp_path, "--out", tmp_path / "o", "--profile", "kinova_gen3", "--topic", "nosuch=/x")
    assert code != 0 and "unknown stream role" in text and "cam_high" in text


READ_FAULTS_SCRIPT = """
import resource, sys
from pathlib import Path
from rosbags.highlevel import AnyReader
from rdt_recorder.bag2hdf5 import reuse_large_buffers
applied = reuse_large_buffers() if sys.argv[2] == "reuse" else None
with AnyReader([Path(sys.argv[1])]) as reader:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    held = []
    for conn, _, raw in reader.messages():
        held = (held + [reader.deserialize(raw, conn.msgtype)])[-3:]   # a few frames alive, as the aligner keeps
    print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_reuse_large_buffers_reads_raw_frames_without_fresh_pages(tmp_path):
    """Each 640x480 rgb8 message read from a bag is a ~0.9 MiB buffer; glibc's defaults map fresh zeroed
    pages for many of them (a page fault per 4 KiB: the converter's system time). With reuse_large_buffers
    the freed buffers are reused: a fraction of the faults (counted by the kernel, not timed)."""
    rgb = np.zeros((480, 640, 3), np.uint8)
    msgs = [("/cam", IMAGE, 10**9 + k * 33 * MS, image_msg(10**9 + k * 33 * MS, rgb + k)) for k in range(60)]
    msgs += [("/joints", JOINT_STATE, 10**9 + k * 10 * MS, joint_msg(10**9 + k * 10 * MS, ["a", "b"], [0.0, 1.0]))
             for k in range(200)]                       # small messages in between, as in a recorded bag
    bag = write_bag(tmp_path / "raw", msgs)
    faults = {}
    for mode in ("default", "reuse"):
        out = subprocess.run([sys.executable, "-c", READ_FAULTS_SCRIPT, str(bag), mode], capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        applied, n = out.stdout.split()
        faults[mode] = int(n)
    assert applied == "True"
    pages = 60 * rgb.nbytes // 4096
    assert faults["default"] > pages // 4, faults          # the defaults fault for a good part of the frames
    assert faults["reuse"] < faults["default"] // 4, faults
