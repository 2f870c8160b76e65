"""Live recorder under a real load: three 640x480 cameras at 30 Hz and joint states at 200 Hz, fed in real time.

    python bench/record_bench.py [--seconds 120] [--profile aloha] [--out DIR]

Prints dropped frames (goal 0), input-queue high-water mark, CPU use of the process, steps written vs the
control-rate expectation, and the time to finalise the episode (goal under 1 s).
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from rdt_core.episode import EpisodeReader
from rdt_core.robots import load_profile
from rdt_recorder.streams import StreamPlan
from rdt_recorder.writer import EpisodeRecorder


def scene_frames(n: int, w: int, h: int, seed: int) -> list[np.ndarray]:
    """Camera-like frames (gradients, shapes, sensor noise): JPEG costs what it costs on real images."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 127 // (w + h)) + 64], -1).astype(np.uint8)
    frames = []
    for k in range(n):
        img = base.copy()
        cv2.circle(img, (int(w / 2 + w / 4 * np.cos(k / 5)), int(h / 2 + h / 4 * np.sin(k / 5))), h // 8,
                   (230, 40, 40), -1)
        cv2.rectangle(img, (w // 8, h // 2), (w // 8 + w // 6, h // 2 + h // 5), (30, 180, 60), -1)
        noise = rng.integers(-6, 7, size=img.shape, dtype=np.int16)
        frames.append(np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    return frames


def run_at(hz: float, stop: threading.Event, emit) -> None:
    period, nxt = 1.0 / hz, time.monotonic()
    while not stop.is_set():
        emit()
        nxt += period
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:
            nxt = time.monotonic()        # fell behind by a second: do not burst to catch up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--profile", default="aloha", help="a profile with three cameras (aloha, agilex)")
    ap.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    args = ap.parse_args()

    profile = load_profile(args.profile)
    plan = StreamPlan.from_profile(profile)
    out = Path(args.out or tempfile.mkdtemp(prefix="record_bench_"))
    rec = EpisodeRecorder(plan, out, tolerance_s=0.1)
    frames = {c.role: scene_frames(30, args.width, args.height, i) for i, c in enumerate(plan.cameras)}
    joint_streams = [(s.role, list(s.spec.msg_joint_names)) for s in plan.state + plan.action]
    stop = threading.Event()
    sent = {"frames": 0, "joints": 0}

    def camera(role):
        k = [0]

        def emit():
            rec.on_image(role, time.time_ns(), frames[role][k[0] % 30])
            k[0] += 1
            sent["frames"] += 1
        return emit

    def joints():
        t = time.time_ns()
        for role, names in joint_streams:
            rec.on_joints(role, t, names, np.sin(t / 1e9 + np.arange(len(names))) * 0.5)
        sent["joints"] += 1

    threads = [threading.Thread(target=run_at, args=(30.0, stop, camera(c.role)), daemon=True) for c in plan.cameras]
    threads.append(threading.Thread(target=run_at, args=(200.0, stop, joints), daemon=True))
    print(f"recording {args.seconds:.0f} s of {len(plan.cameras)} x {args.width}x{args.height} @ 30 Hz + "
          f"{len(joint_streams)} JointState stream(s) @ 200 Hz ({profile.name}, {profile.control_frequency:g} Hz) "
          f"into {out}", flush=True)
    for t in threads:
        t.start()
    time.sleep(0.3)
    ru0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    rec.start(instruction="benchmark")
    next_report = time.monotonic() + 10
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        time.sleep(0.2)
        if time.monotonic() >= next_report:
            s = rec.status()
            print(f"  {s.duration:6.1f} s  {s.steps} steps  {s.rate:.1f} Hz  dropped {s.dropped_frames}", flush=True)
            next_report += 10
    built = []
    rec.on_finished = built.append
    t_stop = time.monotonic()
    rec.stop(wait=False)                        # as the node and the keyboard stop: the file is built meanwhile
    stop_s = time.monotonic() - t_stop
    ru1, wall1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    stop.set()
    for t in threads:
        t.join()
    rec.wait_for_builds()
    result = built[-1]
    rec.close()
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    expected = int(args.seconds * profile.control_frequency)
    with EpisodeReader(result.path) as r:
        steps = r.num_steps
    size = result.path.stat().st_size
    print()
    print(result.summary())
    print()
    print(f"dropped frames          {sum(result.dropped_frames.values())} (goal 0)")
    print(f"queue high-water        {result.queue_high_water} messages (capacity 512)")
    print(f"CPU use                 {cpu / (wall1 - wall0) * 100:.0f} % of one core "
          f"(feeders included; {cpu:.1f} s CPU in {wall1 - wall0:.1f} s)")
    print(f"steps written           {steps} of {expected} expected ({steps / max(1, expected) * 100:.1f} %)")
    print(f"stop returned after     {stop_s * 1e3:.0f} ms (goal < 1000 ms; the next episode may start then)")
    print(f"file complete after     {result.finalize_s * 1e3:.0f} ms (HDF5 built from the step log, child process)")
    print(f"episode size            {size / 2**20:.1f} MiB ({size / max(1, steps) / 1024:.0f} KiB/step)")
    if args.out is None:
        result.path.unlink()


if __name__ == "__main__":
    main()
