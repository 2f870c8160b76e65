"""The live recorder under attack: a really full disk (a 20 MiB tmpfs, or a per-file size limit where mount
is not permitted; any threshold; a filler process), SIGKILL while it records, stops and recovers, NaN joints
and undecodable frames. The process lives, nothing committed is lost, nothing bad is written."""
import random
import threading
import time

import numpy as np
import pytest

from rdt_core.episode import EpisodeReader
from rdt_core.robots import load_profile
from rdt_core.testing import small_disk
from rdt_recorder.frames import CompressedFrame
from rdt_recorder.streams import StreamPlan
from rdt_recorder.writer import EpisodeRecorder
from recorder_faults import MiB, disk_full_trial, episode_stamps, kill_recover_trial, kill_trial
from recorder_testdata import KINOVA_JOINTS, LiveFeeder, joint_value


@pytest.mark.parametrize("min_free", [0, 4 * MiB])
def test_recording_on_a_full_disk_with_any_threshold_keeps_the_process_and_the_steps(tmp_path, min_free):
    with small_disk(tmp_path) as disk:
        trial = disk_full_trial(disk, min_free)
    assert trial.must > 20 and trial.kept == trial.must, trial.detail


def test_a_filler_process_taking_the_disk_during_recording(tmp_path):
    with small_disk(tmp_path) as disk:
        if disk.kind != "tmpfs":
            pytest.skip("a filler process needs a real small filesystem; mount is not permitted here")
        trial = disk_full_trial(disk, 0, filler=True)
    assert trial.must > 5 and trial.kept == trial.must, trial.detail


@pytest.mark.parametrize("phase", ["record", "stop"])
def test_sigkill_while_recording_or_stopping_keeps_every_step_older_than_a_second(tmp_path, phase):
    delay = random.Random(phase).uniform(2.0, 3.0) if phase == "record" else random.Random(phase).uniform(0.0, 1.0)
    trial = kill_trial(tmp_path, phase, delay)
    assert trial.must > 20 and trial.kept == trial.must and "left behind" not in trial.detail, trial.detail


def test_sigkill_during_recover_then_recover_again(tmp_path):
    trial = kill_recover_trial(tmp_path)
    assert trial.must > 20 and trial.kept == trial.must and "left behind" not in trial.detail, trial.detail


def test_live_nan_joints_and_undecodable_frames_are_left_out_and_counted(tmp_path):
    rec = EpisodeRecorder(StreamPlan.from_profile(load_profile("kinova_gen3")), tmp_path, encode_workers=2)
    bad, stop = threading.Event(), threading.Event()

    def saboteur():               # bursts of NaN joints and garbage JPEGs on top of the good streams
        while not stop.is_set():
            if bad.is_set():
                t = time.time_ns()
                rec.on_joints("joints", t, KINOVA_JOINTS, [np.nan] + [joint_value(j, t) for j in range(1, 8)])
                rec.on_image("cam_right_wrist", t, CompressedFrame("bgr8; jpeg compressed bgr8", b"\xff\xd8broken"))
            time.sleep(0.003)
    try:
        with LiveFeeder(rec):
            rec.start()
            t = threading.Thread(target=saboteur, daemon=True)
            t.start()
            time.sleep(0.8)
            bad.set()
            time.sleep(0.3)
            bad.clear()
            time.sleep(0.8)
            status = rec.status()
            result = rec.stop()
            stop.set()
            t.join()
    finally:
        rec.close()
    assert result.kept and result.rejected["count"] > 0 and status.rejected_steps > 0
    assert "rejected" in result.message and "rejected" in result.summary()
    stamps = episode_stamps(result.path)
    with EpisodeReader(result.path) as r:
        rejected = r.meta.extra["rejected_steps"]
    assert rejected["count"] == result.rejected["count"]
    assert set(rejected["by_reason"]) <= {"non-finite qpos", "non-finite action", "cam_right_wrist frame"}
    assert len(stamps) == result.steps > 20


def test_recover_after_a_kill_in_the_first_50_ms_writes_nothing_and_says_so(tmp_path):
    import json
    import subprocess
    import sys
    from recorder_faults import start_child
    out = tmp_path / "early"
    child = start_child(out, 60)
    assert json.loads(child.stdout.readline()).get("started")
    time.sleep(0.05)
    child.kill()                                  # before the first commit of a step
    child.wait(timeout=30)
    done = subprocess.run([sys.executable, "-m", "rdt_recorder.recover", str(out)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nothing to recover" in done.stdout and "nothing was written" in done.stdout
    assert list(out.iterdir()) == []
