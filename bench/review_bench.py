"""Review benchmark: how long rdt-dataset-review takes to build, against the time the episodes took to record.

Issue 10 asks that reviewing a dataset be faster than recording it, and that a 50 x 30 s dataset build in
minutes on 2 cores. Generates fake-ALOHA episodes as recorded (3 cameras, 640x480 JPEG, 25 Hz; sensor noise on
every frame, as a real camera has, so no frame repeats and every one must be decoded), builds the review with
one worker per core, and prints:
  recorded   the episodes' total duration (what recording them took, in real time)
  review     the build's wall time (decode every frame once, H.264 video, thumbnails, plots, pages)
  ratio      recorded / review (> 1: reviewing is faster than recording), steps per second, and the time a
             50 x 30 s dataset takes at this rate.

    python bench/review_bench.py [--episodes 4] [--seconds 30] [--jobs 2] [--out out/bench/review]
"""
from __future__ import annotations

import argparse
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from rdt_core.episode import EpisodeMeta, encode_jpeg, write_episode
from rdt_core.fake_robot import FakeRobot
from rdt_core.robots import load_profile
from rdt_training.review import build_review

PROFILE = "aloha"


def make_episode(path: Path, seed: int, seconds: float) -> Path:
    """A fake-robot episode that keeps moving (a new target every 3 s), frames with sensor noise."""
    profile = load_profile(PROFILE)
    robot = FakeRobot(profile, seed=seed, image_size=(480, 640))
    robot.reset()
    rng = np.random.default_rng(seed)
    dt = 1.0 / profile.control_frequency
    steps = int(round(seconds * profile.control_frequency))
    qpos, action, stamps = [], [], []
    frames = {c.role: [] for c in profile.cameras}
    for t in range(steps):
        if t and t % int(3 / dt) == 0:
            robot.reset(qpos=robot.joint_positions(), target=None)
        q = robot.joint_positions().copy()
        a = robot.expert_action()
        for role, img in robot.render().items():
            noisy = np.clip(img.astype(np.int16) + rng.integers(-4, 5, img.shape, dtype=np.int16), 0, 255)
            frames[role].append(encode_jpeg(noisy.astype(np.uint8)))
        qpos.append(q)
        action.append(a)
        stamps.append(int(t * dt * 1e9))
        robot.command(a)
        robot.step(dt)
    meta = EpisodeMeta(robot=profile.name, joint_names=profile.joint_names,
                       camera_names=[c.role for c in profile.cameras],
                       control_frequency=profile.control_frequency, instruction="benchmark")
    return write_episode(path, meta, stamps, np.array(qpos), np.array(action), frames)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--out", default="out/bench/review")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    data = out / "episodes"
    data.mkdir(parents=True)
    t0 = time.monotonic()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(make_episode, [data / f"episode_{k}.hdf5" for k in range(args.episodes)],
                      range(args.episodes), [args.seconds] * args.episodes))
    print(f"generated {args.episodes} x {args.seconds:g} s fake-ALOHA episodes (3 x 640x480) in "
          f"{time.monotonic() - t0:.0f} s")
    t0 = time.monotonic()
    build_review(data, out / "review", jobs=args.jobs, progress=False)
    review_s = time.monotonic() - t0
    recorded_s = args.episodes * args.seconds
    steps = args.episodes * int(round(args.seconds * load_profile(PROFILE).control_frequency))
    print(f"recorded {recorded_s:.0f} s; review built in {review_s:.1f} s with {args.jobs} worker(s): "
          f"ratio recorded / review = {recorded_s / review_s:.2f}x, {steps / review_s:.0f} steps/s "
          f"({3 * steps / review_s:.0f} frames/s)")
    print(f"a 50 x 30 s dataset at this rate: {50 * 30 / (recorded_s / review_s) / 60:.1f} min")


if __name__ == "__main__":
    main()
