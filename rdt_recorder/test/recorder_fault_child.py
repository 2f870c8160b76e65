"""A live recorder in its own process for the fault tests (full disk, SIGKILL): kinova_gen3 streams from real
threads at real rates, cameras as ~40 KB incompressible JPEGs passed through (so a small disk fills in
seconds). Prints one JSON line per event (and the count of steps it skipped itself, as it grows); the last is
{"alive": true} when the process survived.

    recorder_fault_child.py OUT_DIR SECONDS MIN_FREE_BYTES FLUSH_S
"""
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rdt_core.episode import encode_jpeg  # noqa: E402
from rdt_core.robots import load_profile  # noqa: E402
from rdt_recorder.frames import CompressedFrame  # noqa: E402
from rdt_recorder.streams import StreamPlan  # noqa: E402
from rdt_recorder.writer import EpisodeRecorder, RecorderState  # noqa: E402
from recorder_testdata import KINOVA_JOINTS, joint_value  # noqa: E402


def say(**event):
    print(json.dumps(event), flush=True)


def feed(recorder, stop: threading.Event):
    rng = np.random.default_rng(0)
    frames = [encode_jpeg(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)) for _ in range(6)]
    formats = {"cam_high": "rgb8; jpeg compressed rgb8", "cam_right_wrist": "bgr8; jpeg compressed bgr8"}
    t_next_cam = t_next_joint = time.monotonic()
    k = 0
    while not stop.is_set():
        now = time.monotonic()
        if now >= t_next_joint:
            t = time.time_ns()
            recorder.on_joints("joints", t, KINOVA_JOINTS, [joint_value(j, t) for j in range(8)])
            t_next_joint += 0.01
        if now >= t_next_cam:
            t = time.time_ns()
            for role, fmt in formats.items():
                recorder.on_image(role, t, CompressedFrame(fmt, bytes(frames[k % 6])))
            k += 1
            t_next_cam += 1 / 30
        time.sleep(max(0.0, min(t_next_cam, t_next_joint) - time.monotonic()))


def report_skips(recorder, stop: threading.Event):
    """Say each time the recorder skips steps itself (inputs stale on a loaded machine): those grid steps were
    never recorded, so a crash cannot have lost them."""
    last = 0
    while not stop.is_set():
        skipped = recorder.status().dropped_steps
        if skipped != last:
            last = skipped
            say(skipped=skipped, t_ns=time.time_ns())
        time.sleep(0.02)


if __name__ == "__main__":
    out, seconds, min_free, flush_s = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    recorder = EpisodeRecorder(StreamPlan.from_profile(load_profile("kinova_gen3")), out, tolerance_s=0.1,
                               min_free_bytes=min_free, flush_interval_s=flush_s, encode_workers=2)
    stop = threading.Event()
    feeder = threading.Thread(target=feed, args=(recorder, stop), daemon=True)
    feeder.start()
    temp = recorder.start(instruction="fault test")
    say(started=str(temp), t_ns=time.time_ns())
    threading.Thread(target=report_skips, args=(recorder, stop), daemon=True).start()
    end = time.monotonic() + seconds
    while time.monotonic() < end and recorder.state is RecorderState.RECORDING:
        time.sleep(0.05)
    say(stopping=True, state=recorder.state.value, t_ns=time.time_ns())
    if recorder.state is RecorderState.RECORDING:
        recorder.stop()
    while recorder.state is RecorderState.FINALIZING or recorder.last_result is None:
        time.sleep(0.05)           # stopped on its own (disk full): the episode is being built
    recorder.wait_for_builds()
    result = recorder.last_result
    stop.set()
    feeder.join()
    say(steps=result.steps, kept=result.kept, path=str(result.path) if result.path else None,
        message=result.message, state=recorder.state.value)
    recorder.close()
    say(alive=True)
