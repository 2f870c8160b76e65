"""bag2hdf5 throughput on a generated three-camera bag (raw Image and CompressedImage variants), ours vs a naive loop.

    python bench/convert_bench.py [--seconds 8] [--width 640 --height 480] [--storage sqlite3|mcap] [--repeat 5]
                                  [--long 120]

The naive loop is what a first script does: deserialize every message, cv2-convert every frame (decode the JPEG
or take the raw pixels, then encode), keep the newest per stream, and append one step at a time to resizable
h5py datasets. Ours and naive run alternately ``--repeat`` times on the same bag (the machine may be shared: the
best run of each is the least disturbed one); prints each throughput as multiples of real time, the process CPU
seconds each used, and the ratios ours / naive of the best and of the median runs.

``--long SECONDS`` (issue 12: a 2-minute bag of three raw 640x480 cameras is ~10 GB) converts a raw bag of
that length and one of ``--seconds`` with ours, each in a fresh process, and prints throughput (goal: >= 4x
real time on 2 cores) and peak RSS of the converter and its HDF5-build children (goal: the same for both lengths, i.e. bounded
independent of the bag). CPU seconds (all threads and the build child) and the reading thread's own CPU seconds
are printed beside the wall time: on a shared machine the wall time measures the load, the CPU seconds the work;
so is how much of the bag came from the disk rather than the page cache: the bag is evicted from the page cache
before each conversion (``--cached`` leaves it there), as a bag recorded earlier is read from the disk.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record_bench import scene_frames  # noqa: E402

from rdt_core.robots import load_profile  # noqa: E402
from rdt_recorder.bag2hdf5 import ConvertOptions, convert_bags  # noqa: E402

TS = get_typestore(Stores.ROS2_JAZZY)


def header(t: int):
    return TS.types["std_msgs/msg/Header"](
        stamp=TS.types["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9), frame_id="cam")


def generate_bag(path: Path, profile, seconds: float, w: int, h: int, compressed: bool, storage: str) -> None:
    """aloha-like bag: 3 cameras at 30 Hz, every joint stream at 100 Hz."""
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    frames = [scene_frames(30, w, h, i) for i in range(len(profile.cameras))]
    jpegs = [[cv2.imencode(".jpg", f[:, :, ::-1])[1].reshape(-1) for f in cam] for cam in frames]
    t0, end = 10**9, 10**9 + int(seconds * 1e9)
    events = []
    for c in range(len(profile.cameras)):
        events += [(t, "cam", c) for t in range(t0 + c * 3_000_000, end, 33_333_333)]
    streams = profile.state_streams + profile.action_streams
    events += [(t, "joints", None) for t in range(t0, end, 10_000_000)]
    events.sort(key=lambda e: e[0])
    with Writer(path, version=9, storage_plugin=plugin) as wr:
        cam_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
        cams = [wr.add_connection(c.topic, cam_type, typestore=TS) for c in profile.cameras]
        joints = [wr.add_connection(s.topic, "sensor_msgs/msg/JointState", typestore=TS) for s in streams]
        counters = [0] * len(cams)
        for t, kind, c in events:
            if kind == "cam":
                k = counters[c] % 30
                counters[c] += 1
                if compressed:
                    msg = TS.types[cam_type](header=header(t), format="rgb8; jpeg compressed bgr8", data=jpegs[c][k])
                else:
                    f = frames[c][k]
                    msg = TS.types[cam_type](header=header(t), height=h, width=w, encoding="rgb8", is_bigendian=0,
                                             step=w * 3, data=f.reshape(-1))
                wr.write(cams[c], t + 5_000_000, TS.serialize_cdr(msg, cam_type))
            else:
                for conn, s in zip(joints, streams):
                    names = list(s.msg_joint_names)
                    msg = TS.types["sensor_msgs/msg/JointState"](
                        header=header(t), name=names, position=np.sin(t / 1e9 + np.arange(len(names))),
                        velocity=np.zeros(0), effort=np.zeros(0))
                    wr.write(conn, t + 1_000_000, TS.serialize_cdr(msg, "sensor_msgs/msg/JointState"))


def naive_convert(bag: Path, out: Path, profile) -> int:
    """Deserialize everything, convert every frame with cv2, append one step at a time with h5py."""
    cams = {c.topic: c.role for c in profile.cameras}
    joint_topics = {s.topic for s in profile.state_streams + profile.action_streams}
    latest: dict[str, object] = {}
    period = int(1e9 / profile.control_frequency)
    d = profile.dof
    steps = 0
    next_t = None
    with AnyReader([bag]) as reader, h5py.File(out, "w") as f:
        qpos = f.create_dataset("observations/qpos", (0, d), maxshape=(None, d), dtype="f8")
        action = f.create_dataset("action", (0, d), maxshape=(None, d), dtype="f8")
        images = {r: f.create_dataset(f"observations/images/{r}", (0,), maxshape=(None,),
                                      dtype=h5py.vlen_dtype(np.uint8)) for r in cams.values()}
        for conn, _, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            t = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            if conn.topic in cams:
                if conn.msgtype.endswith("CompressedImage"):
                    img = cv2.imdecode(msg.data, cv2.IMREAD_COLOR)[:, :, ::-1]
                else:
                    img = msg.data.reshape(msg.height, msg.width, 3)
                latest[cams[conn.topic]] = cv2.imencode(".jpg", np.ascontiguousarray(img))[1].reshape(-1)
            elif conn.topic in joint_topics:
                latest[conn.topic] = np.asarray(msg.position, dtype=np.float64)
            if next_t is None:
                next_t = t
            if t >= next_t and len(latest) == len(cams) + len(joint_topics):
                state = np.concatenate([latest[s.topic] for s in profile.state_streams])
                for ds, v in ((qpos, state), (action, state)):
                    ds.resize((steps + 1, d))
                    ds[steps] = v
                for role, ds in images.items():
                    ds.resize((steps + 1,))
                    ds[steps] = latest[role]
                steps += 1
                next_t += period
    return steps


def run_ours(bag: Path, out: Path, profile_name: str) -> int:
    results = convert_bags([str(bag)], out, ConvertOptions(profile=profile_name))
    assert not results[0].error, results[0].error
    return sum(e.steps for e in results[0].episodes)


def _cpu_s() -> float:
    """CPU seconds of this process and of its finished children (the episode writer builds the HDF5 file
    in a child process)."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def timed(fn) -> tuple[float, float, int]:
    """(wall s, process CPU s, steps) of one conversion."""
    c, t = _cpu_s(), time.perf_counter()
    steps = fn()
    return time.perf_counter() - t, _cpu_s() - c, steps


def _peak_rss_mib() -> float:
    """Peak resident memory of this process since its exec (VmHWM; ru_maxrss would include the parent's)."""
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmHWM:")) / 1024


def _evict(folder: Path) -> None:
    """Drop the (synced) bag's pages from the page cache: the converter reads it from the disk, as it would a
    bag recorded earlier, and every run starts alike whatever the other processes left in memory."""
    for p in folder.iterdir():
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _disk_read_bytes() -> int:
    """Bytes this process had read from the disk itself (not from the page cache), per /proc/self/io."""
    with open("/proc/self/io") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("read_bytes:"))


def _sys_s() -> float:
    """System (kernel) CPU seconds of this process and its finished children: page-cache reads, page faults."""
    return sum(r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                    resource.getrusage(resource.RUSAGE_CHILDREN)))


def _ours_in_child(bag: str, out: str, profile_name: str, queue) -> None:
    main, disk, kernel = time.thread_time(), _disk_read_bytes(), _sys_s()
    wall, cpu, steps = timed(lambda: run_ours(Path(bag), Path(out), profile_name))
    main = time.thread_time() - main   # the reading thread: the part that the encoder threads cannot share
    disk, kernel = _disk_read_bytes() - disk, _sys_s() - kernel
    # the largest of this process and the writer's HDF5 build children (theirs starts from this one's at fork)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    queue.put((wall, cpu, main, steps, max(_peak_rss_mib(), children), disk, kernel))


def long_bags(args, profile, work: Path) -> None:
    """Ours on a raw bag of ``--long`` seconds and one of ``--seconds``, each in a fresh process."""
    print("\nlong bag, raw Image (rgb8): ours only, each conversion in a fresh process")
    rss = {}
    for seconds in (args.seconds, args.long):
        bag, out = work / f"long_{seconds:g}", work / f"long_out_{seconds:g}"
        start = time.perf_counter()
        generate_bag(bag, profile, seconds, args.width, args.height, False, args.storage)
        size = sum(p.stat().st_size for p in bag.iterdir()) / 2**30
        made = time.perf_counter() - start
        os.sync()   # the bag on disk before the clock starts, as a recorded one is (no write-back in the timing)
        if not args.cached:
            _evict(bag)
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        child = ctx.Process(target=_ours_in_child, args=(str(bag), str(out), args.profile, queue))
        child.start()
        wall, cpu, main, steps, rss[seconds], disk, kernel = queue.get()
        child.join()
        print(f"  {seconds:6g} s bag ({size:.2f} GiB, written in {made:.0f} s): {wall:6.1f} s = "
              f"{seconds / wall:5.2f} x real time, CPU {cpu:6.1f} s (system {kernel:.1f} s; {seconds / cpu:5.2f} "
              "bag-s per CPU-s; "
              f"reading thread {main:.1f} s), {disk / 2**30:.2f} GiB of the bag read from the disk, not the page "
              f"cache; peak RSS {rss[seconds]:.0f} MiB, {steps} steps; load average "
              + " ".join(f"{x:.1f}" for x in os.getloadavg()), flush=True)
        shutil.rmtree(bag)
        shutil.rmtree(out, ignore_errors=True)
    grows = rss[args.long] > 1.25 * rss[args.seconds] + 32
    print(f"  peak RSS {rss[args.long]:.0f} MiB for {args.long:g} s vs {rss[args.seconds]:.0f} MiB for "
          f"{args.seconds:g} s: {'GROWS with the bag' if grows else 'bounded, independent of the bag length'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--profile", default="aloha")
    ap.add_argument("--storage", default="sqlite3", choices=["sqlite3", "mcap"])
    ap.add_argument("--repeat", type=int, default=5, help="alternating runs of each converter per bag")
    ap.add_argument("--long", type=float, default=0.0, metavar="SECONDS",
                    help="instead: ours on a raw bag this long and one of --seconds (throughput, peak RSS)")
    ap.add_argument("--cached", action="store_true",
                    help="with --long: leave the bag in the page cache (default: evicted, read from the disk)")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    profile = load_profile(args.profile)
    work = Path(tempfile.mkdtemp(prefix="convert_bench_"))
    try:
        print(f"{args.seconds:g} s {profile.name} bag, {len(profile.cameras)} cameras {args.width}x{args.height} "
              f"@ 30 Hz, {args.storage}; control {profile.control_frequency:g} Hz; {os.cpu_count()} CPUs, load average "
              + " ".join(f"{x:.1f}" for x in os.getloadavg()))
        if args.long:
            long_bags(args, profile, work)
            return
        for compressed in (False, True):
            kind = "CompressedImage (JPEG)" if compressed else "raw Image (rgb8)"
            bag = work / f"bag_{'jpeg' if compressed else 'raw'}"
            generate_bag(bag, profile, args.seconds, args.width, args.height, compressed, args.storage)
            size = sum(p.stat().st_size for p in bag.iterdir()) / 2**20
            ours, naive = [], []
            for _ in range(args.repeat):
                ours.append(timed(lambda: run_ours(bag, work / "ours", args.profile)))
                shutil.rmtree(work / "ours")
                naive.append(timed(lambda: naive_convert(bag, work / "naive.hdf5", profile)))
                (work / "naive.hdf5").unlink()
            print(f"\n{kind}: bag {size:.0f} MiB, {args.repeat} alternating runs each")
            for name, runs in (("ours", ours), ("naive", naive)):
                walls = [w for w, _, _ in runs]
                best = min(runs)
                print(f"  {name:6s} best {best[0]:6.2f} s  {args.seconds / best[0]:6.2f} x real time  cpu {best[1]:5.2f} s  "
                      f"median {statistics.median(walls):6.2f} s  ({best[2]} steps)  runs: "
                      + " ".join(f"{w:.2f}" for w in walls))
            ratio_best = min(naive)[0] / min(ours)[0]
            ratio_median = statistics.median(w for w, _, _ in naive) / statistics.median(w for w, _, _ in ours)
            print(f"  ratio ours / naive: {ratio_best:.2f}x faster (best runs), {ratio_median:.2f}x (median runs)")
            shutil.rmtree(bag)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
