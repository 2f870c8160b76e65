"""HDF5 episodes with real files: round trip, crash + recover, disk full, bad data, official loader, validation."""
import errno
import os
import subprocess
import sys
import textwrap
import time

import cv2
import h5py
import numpy as np
import pytest

from rdt_core.episode import (DEFAULT_JPEG_QUALITY, BadFrame, CheckedJpeg, DiskFullError, EmptyEpisodeError,
                              EpisodeMeta, EpisodeReader, EpisodeWriter, decode_jpeg, encode_jpeg,
                              find_temporary_episodes, hdf5_size_bound, jpeg_problem, next_episode_path, recover,
                              temp_path_for, validate_episode, write_episode)
from rdt_core.testing import wait_for

CAMS = ["cam_high", "cam_right_wrist", "cam_left_wrist"]
JOINTS = [f"j{i}" for i in range(4)]


def meta(**kw):
    base = dict(robot="test_bot", joint_names=JOINTS, camera_names=CAMS, control_frequency=25.0,
                instruction="pick up the cube", extra={"topics": {"cam_high": "/cam_high/image"}})
    base.update(kw)
    return EpisodeMeta(**base)


def frame(i, cam_idx, h=48, w=64):
    """A distinctive RGB image: left half red-ish, right half blue-ish, brightness per step."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2, 0] = 200
    img[:, w // 2:, 2] = 200
    img[:, :, 1] = (10 * i + 60 * cam_idx) % 256
    return img


def close(decoded, original):
    """JPEG is lossy: the mean error of a faithful decode is a few grey levels (sharp edges excepted)."""
    return decoded.shape == original.shape and np.abs(decoded.astype(int) - original).mean() < 4


def step_data(i):
    q = np.arange(4) + 0.001 * i
    return 1_000_000_000 + 40_000_000 * i, q, q + 0.5, {c: encode_jpeg(frame(i, k)) for k, c in enumerate(CAMS)}


def test_jpeg_is_rgb_through_imdecode_and_default_quality_is_opencv_default():
    img = frame(3, 1)
    data = encode_jpeg(img)
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert raw[10, 5, 0] > 150 and raw[10, 5, 2] < 50          # channel 0 = red stays first
    assert close(decode_jpeg(data), img)
    # 95 is what cv2.imencode uses without parameters (the official pipeline's call)
    assert DEFAULT_JPEG_QUALITY == 95
    assert cv2.imencode(".jpg", img)[1].tobytes() == encode_jpeg(img, 95)
    bgr = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))[1].tobytes()
    assert close(decode_jpeg(bgr, "bgr"), img)
    with pytest.raises(ValueError, match="decode"):
        decode_jpeg(b"not a jpeg")


def test_jpeg_problem_catches_empty_garbage_truncated_and_corrupted_frames():
    good = encode_jpeg(frame(3, 1, h=240, w=320))
    assert isinstance(good, CheckedJpeg) and jpeg_problem(good) is None
    assert jpeg_problem(np.frombuffer(good, np.uint8)) is None
    assert "empty" in jpeg_problem(b"")
    assert "no start-of-image" in jpeg_problem(b"garbage bytes, not an image")
    assert "does not decode" in jpeg_problem(good[: len(good) // 2])              # truncated
    assert "does not decode" in jpeg_problem(good[:2] + bytes(len(good) - 2))      # header lost


def test_reduced_decode_keeps_colour_order_at_a_fraction_of_the_size():
    img = frame(3, 1, h=96, w=128)
    half = decode_jpeg(encode_jpeg(img), reduce=2)
    assert half.shape == (48, 64, 3) and close(half, cv2.resize(img, (64, 48), interpolation=cv2.INTER_AREA))
    bgr = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))[1].tobytes()
    assert decode_jpeg(bgr, "bgr", reduce=4).shape == (24, 32, 3)
    assert close(decode_jpeg(bgr, "bgr", reduce=4), cv2.resize(img, (32, 24), interpolation=cv2.INTER_AREA))
    with pytest.raises(ValueError, match="reduce must be one of"):
        decode_jpeg(encode_jpeg(img), reduce=3)


def test_stream_round_trip_and_atomic_rename(tmp_path):
    final = tmp_path / "episode_0.hdf5"
    w = EpisodeWriter(final, meta(), flush_interval_s=0.0)
    assert w.temp_path == temp_path_for(final) and w.temp_path.name == ".episode_0.steps.sqlite"
    steps = [step_data(i) for i in range(12)]
    for s in steps:
        w.append(*s)
        assert not final.exists()                                # never a half episode under the final name
    assert w.close(extra={"drops": {"cam_high": 1}}) == final
    assert not w.temp_path.exists()
    with EpisodeReader(final) as r:
        assert r.num_steps == 12
        assert r.meta.robot == "test_bot" and r.meta.joint_names == JOINTS and r.meta.camera_names == CAMS
        assert r.meta.instruction == "pick up the cube" and r.meta.control_frequency == 25.0
        assert r.meta.extra == {"topics": {"cam_high": "/cam_high/image"}, "drops": {"cam_high": 1},
                                "rejected_steps": {"count": 0, "by_reason": {}, "first": []}}
        np.testing.assert_array_equal(r.timestamps, [s[0] for s in steps])
        assert r.timestamps.dtype == np.int64
        np.testing.assert_array_equal(r.qpos, np.stack([s[1] for s in steps]))
        np.testing.assert_array_equal(r.action, np.stack([s[2] for s in steps]))
        assert r.jpeg("cam_left_wrist", 7) == steps[7][3]["cam_left_wrist"]
        block = r.jpegs("cam_left_wrist", 5, 9)
        assert [b.tobytes() for b in block] == [s[3]["cam_left_wrist"] for s in steps[5:9]]
        assert len(r.jpegs("cam_high")) == 12
        assert close(r.image("cam_right_wrist", 5), frame(5, 1))
        with pytest.raises(KeyError, match="cam_top"):
            r.image("cam_top", 0)
    rep = validate_episode(final)
    assert rep.ok and rep.num_steps == 12, str(rep)


def test_official_rdt_loader_line_decodes_our_frames(tmp_path):
    steps = [step_data(i) for i in range(3)]
    path = write_episode(tmp_path / "episode_0.hdf5", meta(), [s[0] for s in steps], [s[1] for s in steps],
                         [s[2] for s in steps], {c: [s[3][c] for s in steps] for c in CAMS})
    with h5py.File(path, "r") as f:
        for k, cam in enumerate(CAMS):
            for i in range(3):
                img = cv2.imdecode(np.frombuffer(f['observations']['images'][cam][i], np.uint8), cv2.IMREAD_COLOR)
                assert img.shape == (48, 64, 3)
                assert close(img, frame(i, k))
        assert f["observations"]["qpos"].shape == (3, 4) and f["action"].shape == (3, 4)
        assert f["observations"]["qpos"].dtype == np.float64


def test_context_manager_keeps_temp_on_error_and_refuses_overwrite(tmp_path):
    final = tmp_path / "episode_3.hdf5"
    with pytest.raises(RuntimeError):
        with EpisodeWriter(final, meta()) as w:
            w.append(*step_data(0))
            raise RuntimeError("operator hit ctrl-c")
    assert w.temp_path.exists() and not final.exists() and find_temporary_episodes(tmp_path) == [w.temp_path]
    with pytest.raises(FileExistsError, match="recover"):
        EpisodeWriter(final, meta())
    assert recover(w.temp_path) == final
    with EpisodeReader(final) as r:
        assert r.num_steps == 1 and r.meta.extra["recovered"]["steps"] == 1
    with pytest.raises(FileExistsError, match="never overwritten"):
        EpisodeWriter(final, meta())


def test_discard_deletes_the_temp_file(tmp_path):
    w = EpisodeWriter(tmp_path / "episode_0.hdf5", meta())
    w.append(*step_data(0))
    w.discard()
    assert list(tmp_path.iterdir()) == []


def test_bad_steps_are_rejected_without_losing_earlier_ones(tmp_path):
    w = EpisodeWriter(tmp_path / "episode_0.hdf5", meta())
    w.append(*step_data(0))
    t, q, a, frames = step_data(1)
    with pytest.raises(ValueError, match=r"missing \['cam_left_wrist'\]"):
        w.append(t, q, a, {c: frames[c] for c in CAMS[:2]})
    with pytest.raises(ValueError, match="need 4 values"):
        w.append(t, q[:3], a, frames)
    with pytest.raises(ValueError, match="must increase"):
        w.append(step_data(0)[0], q, a, frames)
    w.append(t, q, a, frames)
    path = w.close()
    assert validate_episode(path).num_steps == 2


CRASH_SCRIPT = textwrap.dedent("""
    import os, sys
    import numpy as np
    sys.path.insert(0, sys.argv[2])
    from test_episode import meta, step_data
    from rdt_core.episode import EpisodeWriter
    w = EpisodeWriter(sys.argv[1], meta(), flush_interval_s=1e9, durable=sys.argv[3] == "durable")
    for i in range(40):
        w.append(*step_data(i))
        if i == 24:
            w.flush()
    print("wrote", flush=True)
    os._exit(0)   # dies mid-episode: no close, no flush, no HDF5 cleanup
""")


@pytest.mark.parametrize("durable", ["durable", "not durable"])
def test_process_crash_then_recover_returns_the_flushed_steps(tmp_path, durable):
    """The recorder's log (fsync'd commits) and bag2hdf5's (durable=False, no fsync): a dead process keeps
    every commit either way."""
    final = tmp_path / "episode_0.hdf5"
    out = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(final), os.path.dirname(__file__), durable],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "wrote" in out.stdout, out.stderr
    temp = temp_path_for(final)
    assert temp.exists() and not final.exists()
    assert recover(temp) == final and not temp.exists()
    rep = validate_episode(final)
    assert rep.ok, str(rep)
    with EpisodeReader(final) as r:
        n = r.num_steps
        assert n == 25                            # every committed step is back, the uncommitted 15 are not
        truth = [step_data(i) for i in range(n)]
        np.testing.assert_array_equal(r.timestamps, [s[0] for s in truth])
        np.testing.assert_array_equal(r.qpos, np.stack([s[1] for s in truth]))
        assert r.jpeg("cam_high", n - 1) == truth[-1][3]["cam_high"]
        assert r.meta.extra["recovered"]["steps"] == n
    # the official loader opens the recovered file normally
    with h5py.File(final, "r") as f:
        assert f["observations"]["images"]["cam_high"].shape == (n,)


def test_disk_full_at_open_and_while_recording_keeps_a_valid_file(tmp_path):
    huge = 1 << 62
    with pytest.raises(DiskFullError, match="MiB free"):
        EpisodeWriter(tmp_path / "episode_0.hdf5", meta(), min_free_bytes=huge)
    assert list(tmp_path.iterdir()) == []
    w = EpisodeWriter(tmp_path / "episode_0.hdf5", meta(), flush_interval_s=0.0)
    for i in range(5):
        w.append(*step_data(i))
    w.min_free_bytes = huge                        # the disk "fills up" during the episode
    with pytest.raises(DiskFullError, match="stopped at 6 steps") as err:
        w.append(*step_data(5))
    assert err.value.errno == errno.ENOSPC and "to build this episode" in str(err.value)
    with pytest.raises(DiskFullError):
        w.append(*step_data(6))
    path = w.close()                               # keeps what was written
    rep = validate_episode(path)
    assert rep.ok and rep.num_steps == 6, str(rep)


def test_next_episode_path_counts_finals_and_temps(tmp_path):
    assert next_episode_path(tmp_path / "new").name == "episode_0.hdf5"
    (tmp_path / "episode_0.hdf5").touch()
    (tmp_path / "episode_4.hdf5").touch()
    (tmp_path / "notes.txt").touch()
    assert next_episode_path(tmp_path).name == "episode_5.hdf5"
    temp_path_for(tmp_path / "episode_9.hdf5").touch()
    assert next_episode_path(tmp_path).name == "episode_10.hdf5"
    (tmp_path / ".episode_12.hdf5.partial").touch()                     # an earlier version's temporary file
    assert next_episode_path(tmp_path).name == "episode_13.hdf5"


def test_validation_lists_problems(tmp_path):
    bad = tmp_path / "bad.hdf5"
    undecodable = np.frombuffer(b"garbage!", np.uint8)
    with h5py.File(bad, "w") as f:
        f.create_dataset("observations/qpos", data=np.zeros((5, 4)))
        f.create_dataset("timestamps", data=np.array([5, 6, 6, 8], dtype=np.int64))
        ds = f.create_dataset("observations/images/cam_high", shape=(5,), dtype=h5py.vlen_dtype(np.uint8))
        for i in range(5):
            ds[i] = undecodable
        f.attrs["robot"] = "x"
        f.attrs["joint_names"] = ["a", "b", "c"]
        f.attrs["camera_names"] = ["cam_high", "cam_left_wrist"]
        f.attrs["schema_version"] = "2.0"
    rep = validate_episode(bad)
    text = str(rep)
    assert not rep.ok
    for expected in ["missing file attribute(s) ['control_frequency']", "missing dataset /action",
                     "missing dataset /observations/images/cam_left_wrist", "length mismatch",
                     "timestamps are not strictly increasing", "frame 0 is not a JPEG",
                     "and 2 more bad frames", "schema_version '2.0'", "has 4 columns but joint_names lists 3"]:
        assert expected in text, f"{expected!r} not in report:\n{text}"
    (tmp_path / "plain.txt").write_text("hello")
    assert "not a readable HDF5 file" in str(validate_episode(tmp_path / "plain.txt"))
    assert not validate_episode(tmp_path / "missing.hdf5").ok


# ----------------------------------------------------------------------------- batched writes
def _contents(path):
    with h5py.File(path, "r") as f:
        return {"t": f["timestamps"][:], "q": f["observations/qpos"][:], "a": f["action"][:],
                "img": {c: [x.tobytes() for x in f[f"observations/images/{c}"][:]] for c in CAMS}}


def test_append_many_and_blocks_give_the_same_file_as_single_appends(tmp_path):
    steps = [step_data(i) for i in range(23)]
    one = EpisodeWriter(tmp_path / "episode_0.hdf5", meta(), flush_interval_s=0.0)
    for s in steps:
        one.append(*s)
    one = one.close()
    w = EpisodeWriter(tmp_path / "episode_1.hdf5", meta(), flush_interval_s=float("inf"))
    w.append(*steps[0])
    batch = steps[1:14]                                          # crosses two block boundaries
    w.append_many([s[0] for s in batch], np.stack([s[1] for s in batch]), np.stack([s[2] for s in batch]),
                  {c: [s[3][c] for s in batch] for c in CAMS})
    assert w.num_steps == 14 and w.flushed_steps == 0           # nothing committed yet
    for s in steps[14:]:
        w.append(*s)
    w.append_many([], np.zeros((0, 4)), np.zeros((0, 4)), {c: [] for c in CAMS})
    two = w.close()
    a, b = _contents(one), _contents(two)
    np.testing.assert_array_equal(a["t"], [s[0] for s in steps])
    np.testing.assert_array_equal(b["t"], a["t"])
    np.testing.assert_array_equal(b["q"], np.stack([s[1] for s in steps]))
    np.testing.assert_array_equal(b["a"], a["a"])
    assert b["img"] == a["img"] == {c: [s[3][c] for s in steps] for c in CAMS}
    assert validate_episode(two).ok and validate_episode(two).num_steps == 23


def test_frames_of_equal_length_are_stored_one_per_step(tmp_path):
    """h5py's slice assignment turns equal-length vlen frames into a 2-D array; the block writer must not."""
    same = encode_jpeg(frame(0, 0))
    other = same[:100] + bytes([same[100] ^ 1]) + same[101:]    # same length, different bytes
    frames = [same, other] * 4
    path = write_episode(tmp_path / "episode_0.hdf5", meta(camera_names=["cam_high"]), np.arange(1, 9),
                         np.zeros((8, 4)), np.ones((8, 4)), {"cam_high": frames})
    with h5py.File(path, "r") as f:
        ds = f["observations/images/cam_high"]
        assert ds.shape == (8,)
        assert [ds[i].tobytes() for i in range(8)] == frames


def test_buffered_frames_do_not_alias_the_callers_buffers(tmp_path):
    """A caller reusing its buffers after append must not change the stored steps."""
    t, q, a, frames = step_data(0)
    reused = {c: bytearray(v) for c, v in frames.items()}
    as_array = {c: np.frombuffer(v, np.uint8).copy() for c, v in frames.items()}
    w = EpisodeWriter(tmp_path / "episode_0.hdf5", meta(), flush_interval_s=float("inf"))
    w.append(t, q, a, reused)
    w.append(t + 1, q, a, {c: memoryview(reused[c]) for c in CAMS})
    w.append(t + 2, q, a, as_array)
    qs = np.stack([q, q])
    w.append_many([t + 3, t + 4], qs, qs, {c: [as_array[c], reused[c]] for c in CAMS})
    for c in CAMS:
        reused[c][:] = b"\0" * len(reused[c])
        as_array[c][:] = 0
    q[:] = -1.0
    qs[:] = -1.0
    with EpisodeReader(w.close()) as r:
        assert [r.jpeg(c, i) for c in CAMS for i in range(5)] == [frames[c] for c in CAMS for _ in range(5)]
        np.testing.assert_array_equal(r.qpos, np.stack([step_data(0)[1]] * 5))


def test_append_many_rejects_a_bad_batch_whole(tmp_path):
    w = EpisodeWriter(tmp_path / "episode_0.hdf5", meta())
    w.append(*step_data(0))
    batch = [step_data(i) for i in range(1, 6)]
    t = [s[0] for s in batch]
    q = np.stack([s[1] for s in batch])
    fr = {c: [s[3][c] for s in batch] for c in CAMS}
    with pytest.raises(ValueError, match=r"step 4 has .* nothing of this batch was added"):
        w.append_many(t[:3] + [t[1]] + t[4:], q, q, fr)
    with pytest.raises(ValueError, match="step 1 has"):
        w.append_many([step_data(0)[0]] + t[1:], q, q, fr)
    with pytest.raises(ValueError, match=r"shape \(5, 4\)"):
        w.append_many(t, q[:, :3], q, fr)
    with pytest.raises(ValueError, match="one JPEG frame per step"):
        w.append_many(t, q, q, {c: v[:4] for c, v in fr.items()})
    with pytest.raises(ValueError, match=r"missing \['cam_left_wrist'\]"):
        w.append_many(t, q, q, {c: fr[c] for c in CAMS[:2]})
    with pytest.raises(ValueError, match="integer nanoseconds"):
        w.append_many(np.asarray(t, float), q, q, fr)
    assert w.num_steps == 1
    w.append_many(t, q, q + 0.5, fr)
    path = w.close()
    with EpisodeReader(path) as r:
        assert r.num_steps == 6
        np.testing.assert_array_equal(r.timestamps, [step_data(i)[0] for i in range(6)])
        np.testing.assert_array_equal(r.action[1:], q + 0.5)


def test_buffered_steps_survive_an_exception_in_the_owner_and_are_dropped_by_discard(tmp_path):
    final = tmp_path / "episode_0.hdf5"
    with pytest.raises(KeyboardInterrupt):
        with EpisodeWriter(final, meta(), flush_interval_s=float("inf")) as w:
            for i in range(7):
                w.append(*step_data(i))
            assert w.flushed_steps == 0
            raise KeyboardInterrupt
    assert recover(w.temp_path) == final
    assert validate_episode(final).num_steps == 7
    d = EpisodeWriter(tmp_path / "episode_1.hdf5", meta())
    d.append_many(*zip(*[step_data(i)[:3] for i in range(5)]), {c: [step_data(i)[3][c] for i in range(5)] for c in CAMS})
    d.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episode_0.hdf5"]


def test_flush_interval_bounds_what_is_unflushed_at_real_rates(tmp_path):
    """At 100 Hz with flush_interval_s=0.1: after every append, each step that started more than 0.1 s
    earlier is flushed, although blocks are far bigger than the steps in an interval."""
    w = EpisodeWriter(tmp_path / "episode_0.hdf5", meta(), flush_interval_s=0.1)
    starts = []
    most_unflushed = 0
    i = 0
    while i < 60:  # 0.6 s at 100 Hz when the machine keeps up; a count, so a loaded machine only takes longer
        starts.append(time.monotonic())
        w.append(*step_data(i))
        now = time.monotonic()
        assert w.flushed_steps >= sum(1 for s in starts if s < now - 0.1)
        most_unflushed = max(most_unflushed, w.num_steps - w.flushed_steps)
        i += 1
        time.sleep(0.01)
    assert most_unflushed >= 1                     # steps do wait for the interval: not one commit per step
    assert w.flushed_steps >= sum(1 for s in starts if s < starts[-1] - 0.1) > 20
    assert w.close() and validate_episode(w.final_path).num_steps == i


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from test_episode import meta, step_data
    from rdt_core.episode import EpisodeWriter
    w = EpisodeWriter(sys.argv[1], meta(), flush_interval_s=0.15, live_build=sys.argv[3] == "live")
    i = 0
    while True:
        start = time.monotonic()
        w.append(*step_data(i))
        print(i, start, flush=True)
        i += 1
        time.sleep(0.01)
""")


@pytest.mark.parametrize("build", ["live", "at close"])
def test_sigkill_loses_at_most_the_last_flush_interval(tmp_path, build):
    """A writer killed at 100 Hz: every step that started more than flush_interval_s before the last
    completed append comes back from recover, with its values; nothing is invented. A live follower
    sees its recorder gone, deletes its half-written file and exits: the log is the one record."""
    final = tmp_path / "episode_0.hdf5"
    child = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(final), os.path.dirname(__file__), build],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        while len(lines) < 80:
            line = child.stdout.readline()
            assert line, child.stderr.read()
            lines.append(line)
    finally:
        child.kill()                                   # SIGKILL: no close, no flush, no HDF5 cleanup
        child.wait(timeout=30)
    lines += child.stdout.read().splitlines(keepends=True)
    done = [tuple(float(x) for x in ln.split()) for ln in lines if ln.endswith("\n")]
    last_start = done[-1][1]
    must_keep = sum(1 for _, start in done if start < last_start - 0.15)
    assert wait_for(lambda: not list(tmp_path.glob(".episode_0.hdf5.building-*"))), list(tmp_path.iterdir())
    assert not final.exists()
    assert recover(temp_path_for(final)) == final
    with EpisodeReader(final) as r:
        n = r.num_steps
        assert must_keep <= n <= len(done) + 1
        truth = [step_data(i) for i in range(n)]
        np.testing.assert_array_equal(r.timestamps, [s[0] for s in truth])
        np.testing.assert_array_equal(r.action, np.stack([s[2] for s in truth]))
        assert r.jpeg("cam_right_wrist", n - 1) == truth[-1][3]["cam_right_wrist"]


# ----------------------------------------------------------------------------- live build (the recorder)
def _episode_content(path):
    with EpisodeReader(path) as r:
        return (r.timestamps.copy(), r.qpos.copy(), r.action.copy(),
                {c: [r.jpeg(c, i) for i in range(r.num_steps)] for c in CAMS}, dict(r.meta.extra))


def _building_files(folder):
    return list(folder.glob(".episode_*.hdf5.building-*"))


def test_live_build_writes_the_file_while_recording_and_equals_a_build_from_the_log(tmp_path):
    """The follower copies committed steps into the HDF5 file during the episode; closing finishes that
    file, with the same content and attributes as building it from the log at the end."""
    live = EpisodeWriter(tmp_path / "live" / "episode_0.hdf5", meta(), flush_interval_s=0.0, live_build=True)
    ref = EpisodeWriter(tmp_path / "ref" / "episode_0.hdf5", meta(), flush_interval_s=0.0)
    for i in range(30):
        live.append(*step_data(i))
        ref.append(*step_data(i))
    # before close: the follower's file already holds steps (it grows while the episode is recorded)
    assert wait_for(lambda: live._live.bytes_on_disk() > 30 * 3 * len(step_data(0)[3]["cam_high"]))
    (building,) = _building_files(tmp_path / "live")
    for i in range(30, 45):
        live.append(*step_data(i))
        ref.append(*step_data(i))
    build = live.close_async(extra={"alignment": {"note": "summary known at the end"}})
    path = build.wait()
    assert build.live_failure == ""
    assert not building.exists() and not temp_path_for(path).exists()
    assert validate_episode(path).ok
    got, want = _episode_content(path), _episode_content(ref.close(extra={"alignment": {"note": "summary known at the end"}}))
    for g, w in zip(got[:3], want[:3]):
        np.testing.assert_array_equal(g, w)
    assert got[3] == want[3]
    assert got[4] == want[4] and got[4]["alignment"] == {"note": "summary known at the end"}
    with h5py.File(path) as f:
        assert f.attrs["num_steps"] == 45


def test_a_dead_follower_falls_back_to_building_from_the_log(tmp_path):
    """The follower is an optimisation: killed mid-episode, the file is built from the log at close, every
    step is there, and the build says why it did not use the follower."""
    w = EpisodeWriter(tmp_path / "episode_0.hdf5", meta(), flush_interval_s=0.0, live_build=True)
    for i in range(20):
        w.append(*step_data(i))
    w._live.proc.kill()
    w._live.proc.wait()
    for i in range(20, 30):
        w.append(*step_data(i))
    build = w.close_async()
    path = build.wait()
    assert build.live_failure and "SIGKILL" in build.live_failure
    assert not _building_files(tmp_path) and not temp_path_for(path).exists()
    with EpisodeReader(path) as r:
        assert r.num_steps == 30
        np.testing.assert_array_equal(r.timestamps, [step_data(i)[0] for i in range(30)])


def test_discarding_a_live_episode_leaves_no_file(tmp_path):
    w = EpisodeWriter(tmp_path / "episode_0.hdf5", meta(), flush_interval_s=0.0, live_build=True)
    for i in range(10):
        w.append(*step_data(i))
    assert wait_for(lambda: len(_building_files(tmp_path)) == 1)
    proc = w._live.proc
    w.discard()
    assert proc.poll() is not None                   # the follower is gone, not left running
    assert list(tmp_path.iterdir()) == []


def test_live_episode_without_a_step_writes_nothing(tmp_path):
    w = EpisodeWriter(tmp_path / "episode_0.hdf5", meta(), live_build=True)
    bad = step_data(0)
    w.append(bad[0], bad[1] * np.nan, bad[2], bad[3])          # rejected: the only step
    with pytest.raises(EmptyEpisodeError):
        w.close()
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- bad data, empty and old files
def test_non_finite_joints_and_bad_frames_are_rejected_counted_and_named(tmp_path):
    w = EpisodeWriter(tmp_path / "episode_0.hdf5", meta())
    written = []
    for i in range(10):
        t, q, a, frames = step_data(i)
        if i == 2:
            q = q.copy(); q[1] = np.nan                                    # a NaN from the joint driver
        if i == 4:
            a = a.copy(); a[3] = np.inf
        if i == 5:
            frames = dict(frames, cam_high=b"\xff\xd8 garbage from a broken camera")
        if i == 6:
            frames = dict(frames, cam_left_wrist=b"")                       # a zero-length frame
        if i == 7:
            frames = dict(frames, cam_right_wrist=BadFrame("image buffer of 10 bytes does not hold 48 rows"))
        if i == 8:
            raw = bytes(frames["cam_high"])                                 # plain bytes: decoded to check
            frames = dict(frames, cam_high=raw[: len(raw) // 2])
        if w.append(t, q, a, frames):
            written.append(i)
    assert written == [0, 1, 3, 9] and w.num_steps == 4 and w.rejected.count == 6
    path = w.close()
    rep = validate_episode(path)
    assert rep.ok and rep.num_steps == 4, str(rep)
    with EpisodeReader(path) as r:
        np.testing.assert_array_equal(r.timestamps, [step_data(i)[0] for i in written])
        assert np.isfinite(r.qpos).all() and np.isfinite(r.action).all()
        rejected = r.meta.extra["rejected_steps"]
    assert rejected["count"] == 6
    assert rejected["by_reason"] == {"non-finite qpos": 1, "non-finite action": 1, "cam_high frame": 2,
                                     "cam_left_wrist frame": 1, "cam_right_wrist frame": 1}
    first = rejected["first"]
    assert [f["stamp_ns"] for f in first] == [step_data(i)[0] for i in (2, 4, 5, 6, 7, 8)]
    assert first[0]["detail"] == "j1 = nan" and first[1]["detail"] == "j3 = inf"
    assert "does not decode" in first[2]["detail"] and "empty" in first[3]["detail"]
    assert "48 rows" in first[4]["detail"] and "does not decode" in first[5]["detail"]
    assert w.rejected.summary().startswith("6 step(s) rejected: 2 x cam_high frame")


def test_an_episode_of_only_bad_steps_writes_nothing(tmp_path):
    w = EpisodeWriter(tmp_path / "episode_0.hdf5", meta())
    t, q, a, frames = step_data(0)
    assert not w.append(t, np.full(4, np.nan), a, frames)
    with pytest.raises(EmptyEpisodeError, match="non-finite qpos"):
        w.close()
    assert list(tmp_path.iterdir()) == []


def test_recover_of_an_episode_killed_before_its_first_commit_writes_nothing_and_says_so(tmp_path):
    final = tmp_path / "episode_0.hdf5"
    w = EpisodeWriter(final, meta(), flush_interval_s=1e9)
    w.append(*step_data(0))                       # not committed: a crash now keeps nothing
    w._log.conn.close()                           # what SIGKILL leaves: an open log, never committed again
    with pytest.raises(EmptyEpisodeError, match="holds no step.*nothing was written"):
        recover(temp_path_for(final))
    assert list(tmp_path.iterdir()) == []


def test_recover_reads_an_earlier_versions_partial_hdf5(tmp_path):
    """Files left by the SWMR writer of earlier versions (``.episode_<n>.hdf5.partial``) still recover."""
    temp = tmp_path / ".episode_2.hdf5.partial"
    steps = [step_data(i) for i in range(6)]
    with h5py.File(temp, "w") as f:
        m = meta()
        m.write_attrs(f)
        f.create_dataset("observations/qpos", data=np.stack([s[1] for s in steps]))
        f.create_dataset("action", data=np.stack([s[2] for s in steps]))
        stamps = np.array([s[0] for s in steps] + [0], np.int64)        # the last step's stamp never landed
        f.create_dataset("timestamps", data=stamps[[0, 1, 2, 3, 4, 6]])
        for cam in CAMS:
            ds = f.create_dataset(f"observations/images/{cam}", shape=(6,), dtype=h5py.vlen_dtype(np.uint8))
            for i, s in enumerate(steps):
                ds[i] = np.frombuffer(s[3][cam], np.uint8)
    assert find_temporary_episodes(tmp_path) == [temp]
    out = recover(temp)
    assert out == tmp_path / "episode_2.hdf5" and not temp.exists()
    with EpisodeReader(out) as r:
        assert r.num_steps == 5 and r.jpeg("cam_high", 4) == steps[4][3]["cam_high"]
        assert r.meta.extra["recovered"] == {"from": ".episode_2.hdf5.partial", "steps": 5}


def test_the_space_reserved_for_building_covers_the_file(tmp_path):
    """hdf5_size_bound (what is reserved before HDF5 writes) is above the real file size, for tiny and
    for large frames."""
    for h, w, n in ((8, 8, 200), (240, 320, 40)):
        frames = {c: [encode_jpeg(frame(i, k, h=h, w=w)) for i in range(n)] for k, c in enumerate(CAMS)}
        path = write_episode(tmp_path / f"episode_{h}.hdf5", meta(), np.arange(1, n + 1), np.zeros((n, 4)),
                             np.zeros((n, 4)), frames)
        payload = sum(len(f) for v in frames.values() for f in v)
        bound = hdf5_size_bound(n, 4, n * len(CAMS), payload)
        assert path.stat().st_size < bound < 2 * path.stat().st_size + 2 * 2**20
