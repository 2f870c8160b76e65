"""The policy node and the recorder node on a real ROS 2 graph (real DDS between processes), under camera load.

    python bench/ros_bench.py [--seconds 30] [--record-seconds 60] [--part policy|recorder|both]

Needs ROS 2 sourced and the workspace built (rdt_msgs); without it, it says so and exits 0.

policy: the fake Kinova (rdt_bringup's fake robot node) and the policy node (tiny model, each inference made
  to take at least 300 ms), each in its own process, under three 640x480 rgb8 cameras at 30 Hz. The bench
  profile is kinova_gen3 with a third (left-wrist) camera and the per-tick JointState command
  backend, so that every control tick is a message whose period can be timed (the JointTrajectory backend
  sends multi-point trajectories at chunk switches instead). Printed: command period p50 / p99 and the
  longest gap (DDS source timestamps, against the nominal 1 / publish_rate_hz), the end-to-end age of the
  observation behind each chunk (camera stamp -> chunk ready, from ~/action_chunk), the policy node's CPU
  (/proc, % of one core), and camera messages dropped (sent by the publishers, never seen by the node's image callback).
recorder: the recorder node (profile aloha: three cameras) records --record-seconds of three 640x480
  cameras at 30 Hz and four JointState streams at 200 Hz; printed: frames dropped (in DDS / the executor,
  and in the recorder's queue), steps written vs expected, finalise time.
The load is made as cheap as a real (C++) driver's: one process per camera and one for the joint streams,
each publishing messages serialised once before the loop, only the header stamp rewritten in the CDR bytes
(``child_publisher``). This process only subscribes (the probe) and calls services.
All processes use rdt_bringup/config/fastdds_large_images.xml (a 32 MB shared-memory segment: Fast DDS's
default 512 KB one cannot hold a 640x480 rgb8 frame) unless --fastdds-default or the variable is already set.
Goals (issue 13): p99 command period <= 1.1 x nominal, longest gap <= 1.5 x nominal, 0 dropped frames,
finalise < 1 s.
"""
from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from rdt_core.testing import wait_for

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from record_bench import run_at, scene_frames  # noqa: E402  (the camera-like frames and the paced loop)

ROOT = HERE.parent
FASTDDS_PROFILE = ROOT / "rdt_bringup" / "config" / "fastdds_large_images.xml"
FASTDDS_PROFILE_VARIABLES = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")   # Fast DDS 2, 3
CAMERA_TOPICS = ["/bench/cam_high/image_raw", "/bench/cam_right_wrist/image_raw", "/bench/cam_left_wrist/image_raw"]


# ----------------------------------------------------------------------------- children (own processes)
def child_policy(report: str, latency: float, ros_args: list[str]) -> None:
    """The policy node's own main(), with each inference taking at least ``latency`` s and the image callback
    noting every stamp it sees (written to ``report`` at exit)."""
    from rdt_core.policy import RDTPolicy
    from rdt_policy_node import node as policy_node

    predict = RDTPolicy.predict

    def predict_slowly(self, *args, **kwargs):
        t0 = time.monotonic()
        out = predict(self, *args, **kwargs)
        time.sleep(max(0.0, latency - (time.monotonic() - t0)))
        return out

    RDTPolicy.predict = predict_slowly
    seen = collections.defaultdict(list)
    on_image = policy_node.PolicyNode._on_image

    def counting(self, role, topic, compressed, msg):
        seen[topic].append(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
        on_image(self, role, topic, compressed, msg)

    policy_node.PolicyNode._on_image = counting
    ticks, collections_ = [], []   # (start, duration) of each control tick; (end, generation, duration) of each GC
    on_tick = policy_node.PolicyNode._on_control_tick

    def timed_tick(self):
        t0 = time.monotonic()
        on_tick(self)
        ticks.append((t0, time.monotonic() - t0))

    policy_node.PolicyNode._on_control_tick = timed_tick
    gc_start = {}

    def gc_timer(phase, info):
        if phase == "start":
            gc_start["t"] = time.perf_counter()
        elif "t" in gc_start:
            t = gc_start.pop("t")
            collections_.append((time.monotonic(), info["generation"], time.perf_counter() - t))

    gc.callbacks.append(gc_timer)
    try:
        policy_node.main(args=["policy_node", "--ros-args", *ros_args])
    finally:
        Path(report).write_text(json.dumps({"seen": seen, "ticks": ticks, "gc": collections_}))


def child_recorder(report: str, ros_args: list[str]) -> None:
    """The recorder node's own main(), its image callback noting every stamp it sees."""
    from rdt_recorder import node as recorder_node

    seen = collections.defaultdict(list)
    on_image = recorder_node.RecorderNode._on_image

    def counting(self, role, topic, msg):
        seen[topic].append(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
        on_image(self, role, topic, msg)

    recorder_node.RecorderNode._on_image = counting
    try:
        recorder_node.main(args=["record", "--ros-args", *ros_args])
    finally:
        Path(report).write_text(json.dumps(seen))


# ----------------------------------------------------------------------------- this process: load + probe
def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_child(kind: str, workdir: Path, *args: str, name: str = "") -> tuple[subprocess.Popen, Path]:
    report = workdir / f"{name or kind}.json"
    log = open(workdir / f"{name or kind}.log", "w")
    proc = subprocess.Popen([sys.executable, __file__, "--child", kind, "--report", str(report), *args],
                            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    return proc, report


def stop_child(proc: subprocess.Popen, timeout: float = 30.0) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def child_publisher(report: str, kind: str, topic: str, seed: int, width: int, height: int, rate: float,
                    ros_args: list[str]) -> None:
    """A cheap sensor driver in its own process, as a camera or arm driver (C++) is: every message is
    serialised once before the loop, and each period only the header stamp in the CDR bytes is rewritten and
    the bytes are published (rclpy publishes bytes as serialised data: no Python message, no conversion).
    kind "camera": ``topic`` carries 10 camera-like rgb8 frames in turn; kind "joints": the aloha profile's
    four JointState streams, one second of sine positions in turn. The stamps sent are written to ``report``;
    ``report``'s ``.matched`` file appears once every publisher has a subscriber (DDS matched both ends)."""
    import struct

    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image, JointState

    from rdt_core.images import rgb_image_fields

    rclpy.init(args=["--ros-args", *ros_args])
    node = rclpy.create_node(f"ros_bench_{kind}_{seed}")
    if kind == "camera":
        payloads = [serialize_message(Image(**rgb_image_fields(f))) for f in scene_frames(10, width, height, seed)]
        streams = [(node.create_publisher(Image, topic, qos_profile_sensor_data), topic, payloads)]
    else:
        from rdt_core.robots import load_profile

        profile = load_profile("aloha")
        streams = []
        for s in profile.state_streams + profile.action_streams:
            names = list(s.msg_joint_names)
            msgs = [JointState(name=names, position=list(0.3 * np.sin(k / rate + np.arange(len(names)))))
                    for k in range(int(rate))]
            streams.append((node.create_publisher(JointState, s.topic, qos_profile_sensor_data), s.topic,
                            [serialize_message(m) for m in msgs]))
    if any(b[:2] != b"\x00\x01" for _, _, payloads in streams for b in payloads):
        raise SystemExit("rclpy serialised big-endian CDR here: the stamp offset below assumes little-endian")
    buffers = [[bytearray(b) for b in payloads] for _, _, payloads in streams]
    sent = {t: [] for _, t, _ in streams}
    k = [0]
    matched = Path(report).with_suffix(".matched")

    def emit():
        now = time.time_ns()                      # the ROS clock (system time), as a driver stamps its frames
        if not matched.exists() and all(pub.get_subscription_count() for pub, _, _ in streams):
            matched.touch()
        for (pub, t, _), bufs in zip(streams, buffers):
            buf = bufs[k[0] % len(bufs)]
            struct.pack_into("<iI", buf, 4, now // 1_000_000_000, now % 1_000_000_000)   # header.stamp
            pub.publish(bytes(buf))
            sent[t].append(now)
        k[0] += 1

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        run_at(rate, stop, emit)
    finally:
        Path(report).write_text(json.dumps(sent))
        node.destroy_node()
        rclpy.try_shutdown()


class Publishers:
    """The sensor load: :func:`child_publisher` processes (one per camera, one for all joint streams)."""

    def __init__(self, workdir: Path, cameras: list[str], width: int, height: int, joints: bool = False):
        self.children = []
        for i, topic in enumerate(cameras):
            self.children.append(start_child("publisher", workdir, "--kind", "camera", "--topic", topic,
                                             "--seed", str(i), "--width", str(width), "--height", str(height),
                                             "--rate", "30", "--", name=f"camera{i}"))
        if joints:
            self.children.append(start_child("publisher", workdir, "--kind", "joints", "--rate", "200", "--",
                                             name="joints"))
        self.sent = {}

    def wait_matched(self, timeout: float) -> None:
        """Until DDS has matched every publisher with a subscriber: messages sent before are not the
        subscriber's to lose."""
        marks = [report.with_suffix(".matched") for _, report in self.children]
        if not wait_for(lambda: all(m.exists() for m in marks), timeout):
            raise SystemExit(f"publishers without a subscriber after {timeout:.0f} s: "
                             f"{[m.stem for m in marks if not m.exists()]}")

    def close(self) -> dict:
        """Stops the publishers; returns every stamp they sent, by topic."""
        for proc, report in self.children:
            stop_child(proc)
            if report.exists():
                self.sent.update(json.loads(report.read_text()))
        return self.sent


def dropped(sent: dict, seen: dict, t0_ns: int, t1_ns: int) -> tuple[int, int]:
    """(messages sent in [t0, t1] that the node never saw, messages sent in [t0, t1])."""
    lost = total = 0
    for topic, stamps in sent.items():
        got = set(seen.get(topic, []))
        window = [s for s in stamps if t0_ns <= s <= t1_ns]
        total += len(window)
        lost += sum(1 for s in window if s not in got)
    return lost, total


def spin_in_thread(node):
    """The probe's executor in a thread. A probe that stalls loses messages (the publishers keep 10) and would
    show its stall as a gap in the commands: a SingleThreadedExecutor (no hand-over between threads), spun by
    the nodes' own ``spin`` (start-up's objects frozen). Not the nodes' EventsExecutor: it fails on callbacks
    that take the message info, which gives the DDS source timestamps measured here (SystemError in rclpy
    7.1.6)."""
    from rclpy.executors import SingleThreadedExecutor

    from rdt_core.executor import spin

    executor = SingleThreadedExecutor()
    executor.add_node(node)
    stop = threading.Event()
    thread = threading.Thread(target=spin, args=(executor, lambda: not stop.is_set()), daemon=True)
    thread.start()
    return stop, thread


def bench_profile(workdir: Path) -> Path:
    """kinova_gen3 + a left-wrist camera, commanded through per-tick JointState messages."""
    from rdt_core.robots import load_profile

    base = load_profile("kinova_gen3")
    data = yaml.safe_load((ROOT / "rdt_core" / "rdt_core" / "profiles" / "kinova_gen3.yaml").read_text())
    data["name"] = "kinova_gen3_bench"
    data["cameras"] = [{"role": "cam_high", "slot": "exterior", "topic": CAMERA_TOPICS[0]},
                       {"role": "cam_right_wrist", "slot": "right_wrist", "topic": CAMERA_TOPICS[1]},
                       {"role": "cam_left_wrist", "slot": "left_wrist", "topic": CAMERA_TOPICS[2]}]
    data["command"] = {"backend": "joint_state",
                       "topics": [{"topic": "/bench/joint_commands", "joints": list(base.joint_names)}]}
    path = workdir / "kinova_gen3_bench.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def host_cpu_times() -> tuple[int, int] | None:
    """(all CPU ticks, steal ticks) since boot from /proc/stat, or None where there is none."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


def shares_a_stall(start_ns: int, end_ns: int, other_stamps: np.ndarray, gap_s: float) -> bool:
    """Whether another process's stream (sorted stamps) has a gap over ``gap_s`` overlapping [start, end]."""
    gaps = np.flatnonzero(np.diff(other_stamps) / 1e9 > gap_s)
    return any(other_stamps[i] < end_ns and other_stamps[i + 1] > start_ns for i in gaps)


def percentile(x, q) -> float:
    return float(np.percentile(np.asarray(x), q)) if len(x) else float("nan")


def bench_policy(args, workdir: Path) -> None:
    import rclpy
    from sensor_msgs.msg import JointState

    from rdt_msgs.msg import ActionChunk, PolicyStatus

    profile_path = bench_profile(workdir)
    params = yaml.safe_load((ROOT / "rdt_bringup" / "config" / "kinova_gen3.yaml").read_text())
    publish_rate = float(params["rdt_policy_node"]["ros__parameters"]["publish_rate_hz"])
    fake, _ = start_child("fake", workdir, "--", "-p", f"profile:={profile_path}", "-p", "camera_rate_hz:=1.0",
                          "-p", "image_width:=64", "-p", "image_height:=48", "-p",
                          "camera_topics:=['/bench/unused/a', '/bench/unused/b', '/bench/unused/c']")
    policy, policy_report = start_child(
        "policy", workdir, "--latency", str(args.latency), "--",
        "--params-file", str(ROOT / "rdt_bringup" / "config" / "kinova_gen3.yaml"),
        "-r", "__node:=rdt_policy_node", "-p", f"profile:={profile_path}", "-p", "checkpoint:=tiny",
        "-p", "device:=cpu", "-p", "dtype:=float32", "-p", f"camera_topics:={CAMERA_TOPICS}",
        "-p", "camera_compressed:=[false, false, false]", "-p", "command_backend:=joint_state",
        # the untrained model's rows are clipped to the limits rather than its chunks rejected
        "-p", "chunk_range_margin:=100.0",
        *(["-p", f"max_observation_age_s:={args.max_age}"] if args.max_age else []))
    rclpy.init()
    node = rclpy.create_node("ros_bench_probe")
    commands, chunks, statuses = [], [], []
    node.create_subscription(JointState, "/bench/joint_commands",
                             lambda m, info: commands.append(info["source_timestamp"]), 100)
    joint_states = []   # the fake arm's, as the policy node sees them (it holds when they are 0.25 s old)
    node.create_subscription(JointState, "/joint_states", lambda m, info: joint_states.append(info["source_timestamp"]),
                             100)
    node.create_subscription(ActionChunk, "/rdt_policy_node/action_chunk", chunks.append, 50)
    reasons = []
    node.create_subscription(PolicyStatus, "/rdt_policy_node/status",
                             lambda m: (statuses.append(m.state), reasons.append(m.hold_reason)), 50)
    stop_probe, thread = spin_in_thread(node)
    cams = Publishers(workdir, CAMERA_TOPICS, args.width, args.height)
    try:
        if not wait_for(lambda: statuses and statuses[-1] == "RUNNING", args.startup_timeout):
            raise SystemExit(f"the policy node never reached RUNNING (states {dict(collections.Counter(statuses))}, "
                             f"hold reasons {sorted(set(reasons))[:6]}); logs in {workdir}; on a loaded machine "
                             f"the cameras published from here may come late: try --max-age 1.0")
        n_status = len(statuses)
        time.sleep(2.0)
        t0, mono0, cpu0, steal0 = time.time_ns(), time.monotonic(), cpu_seconds(policy.pid), host_cpu_times()
        n_cmd, n_chunk, n_joint = len(commands), len(chunks), len(joint_states)
        time.sleep(args.seconds)
        t1, mono1, cpu1, steal1 = time.time_ns(), time.monotonic(), cpu_seconds(policy.pid), host_cpu_times()
        window_cmds = np.array(commands[n_cmd:], dtype=np.int64)
        window_chunks = list(chunks[n_chunk:])
        joint_stamps = np.sort(np.array(joint_states[n_joint:], dtype=np.int64))
        joint_gaps = np.diff(joint_stamps) / 1e9
        states = collections.Counter(statuses[n_status:])
        holds = collections.Counter(re.sub(r"[\d.]+ s", "N s", r) for r in reasons[n_status:] if r)
    finally:
        sent = cams.close()
        stop_child(policy)
        stop_child(fake)
        stop_probe.set()
        thread.join(timeout=10)
        node.destroy_node()
        rclpy.try_shutdown()
    report = json.loads(policy_report.read_text()) if policy_report.exists() else {}
    seen = report.get("seen", {})
    ticks = np.array([t for t in report.get("ticks", []) if mono0 <= t[0] <= mono1]).reshape(-1, 2)
    gcs = [g for g in report.get("gc", []) if mono0 <= g[0] <= mono1]
    lost, total = dropped(sent, seen, t0, t1 - 500_000_000)   # the last half second may still be in flight
    cmd_stamps = np.sort(window_cmds)
    periods = np.diff(cmd_stamps) / 1e9
    latencies = [c.inference_latency for c in window_chunks]
    ages = [(c.ready_stamp.sec + 1e-9 * c.ready_stamp.nanosec) - (c.header.stamp.sec + 1e-9 * c.header.stamp.nanosec)
            for c in window_chunks]
    nominal = 1.0 / publish_rate
    sender_gap = max((np.diff([s for s in stamps if t0 <= s <= t1]).max(initial=0) for stamps in sent.values()),
                     default=0) / 1e9
    wall = (t1 - t0) / 1e9
    print(f"policy node, {args.seconds:.0f} s: 3 x {args.width}x{args.height} rgb8 @ 30 Hz in, tiny model with >= "
          f"{args.latency * 1e3:.0f} ms inference, publish {publish_rate:g} Hz (nominal period {nominal * 1e3:.1f} ms), "
          f"max_observation_age_s {args.max_age or params['rdt_policy_node']['ros__parameters']['max_observation_age_s']:g}")
    print(f"  command period p50     {percentile(periods, 50) * 1e3:6.1f} ms  ({percentile(periods, 50) / nominal:.2f} x)")
    print(f"  command period p99     {percentile(periods, 99) * 1e3:6.1f} ms  ({percentile(periods, 99) / nominal:.2f} x, "
          f"goal <= 1.1 x)")
    print(f"  longest gap            {periods.max() * 1e3 if len(periods) else float('nan'):6.1f} ms  "
          f"({periods.max() / nominal if len(periods) else float('nan'):.2f} x, goal <= 1.5 x); "
          f"{len(window_cmds)} commands, {len(window_cmds) / wall / publish_rate * 100:.1f} % of the ticks")
    print(f"  observation age        p50 {percentile(ages, 50) * 1e3:.0f} ms, p99 {percentile(ages, 99) * 1e3:.0f} ms, "
          f"max {max(ages) * 1e3 if ages else float('nan'):.0f} ms (camera stamp -> chunk ready), {len(ages)} chunks")
    print(f"  inference latency      p50 {percentile(latencies, 50) * 1e3:.0f} ms, max "
          f"{max(latencies) * 1e3 if latencies else float('nan'):.0f} ms (the tiny model + the >= "
          f"{args.latency * 1e3:.0f} ms sleep)")
    print(f"  policy node CPU        {(cpu1 - cpu0) / wall * 100:.0f} % of one core")
    print(f"  camera messages lost   {lost} of {total} ({lost / max(1, total) * 100:.1f} %, goal 0)")
    if len(ticks):
        late = np.diff(ticks[:, 0]) / nominal
        print(f"  tick callbacks         start-to-start p99 {np.percentile(late, 99):.2f} x, max {late.max():.2f} x; "
              f"duration p50 {np.percentile(ticks[:, 1], 50) * 1e3:.2f} ms, p99 {np.percentile(ticks[:, 1], 99) * 1e3:.2f} ms, "
              f"max {ticks[:, 1].max() * 1e3:.1f} ms")
    if len(joint_gaps):
        print(f"  fake arm joint states  p99 period {percentile(joint_gaps, 99) * 1e3:.1f} ms, longest gap "
              f"{joint_gaps.max() * 1e3:.0f} ms (the fake robot node's own lateness: 100 Hz nominal)")
    if gcs:
        by_gen = collections.defaultdict(list)
        for _, generation, seconds in gcs:
            by_gen[generation].append(seconds)
        print("  garbage collections    " + ", ".join(
            f"gen {g}: {len(v)}, longest {max(v) * 1e3:.1f} ms" for g, v in sorted(by_gen.items()))
              + " (in the window)")
    print(f"  camera sender          longest gap {sender_gap * 1e3:.0f} ms between two frames of one camera "
          f"(nominal 33 ms: this process's own lateness)")
    long_gaps = [(a, b) for a, b in zip(cmd_stamps[:-1], cmd_stamps[1:]) if (b - a) / 1e9 > 1.5 * nominal]
    shared = sum(shares_a_stall(a, b, joint_stamps, 1.5 * nominal) for a, b in long_gaps)
    if steal0 and steal1:
        steal = (steal1[1] - steal0[1]) / max(1, steal1[0] - steal0[0])
        print(f"  machine                host steal {steal * 100:.1f} % of the CPU time in the window (a VM's "
              f"hypervisor running something else); {shared} of the {len(long_gaps)} command gaps over 1.5 x "
              f"overlap a gap over 1.5 x in the fake robot process (stalls of the whole machine, not the node)")
    print(f"  states seen            {dict(states)} (status messages in the window)")
    if holds:
        print(f"  hold reasons           {dict(holds.most_common(4))}")


def bench_recorder(args, workdir: Path) -> None:
    import rclpy
    from std_srvs.srv import Trigger

    from rdt_core.episode import EpisodeReader
    from rdt_core.robots import load_profile
    from rdt_msgs.srv import StartEpisode

    profile = load_profile("aloha")
    out = workdir / "episodes"
    recorder, report = start_child("recorder", workdir, "--", "-p", "profile:=aloha", "-p", f"output_dir:={out}",
                                   "-p", "keyboard:=false", "-p", f"camera_topics:={CAMERA_TOPICS}",
                                   "-p", "camera_compressed:=[false, false, false]")
    rclpy.init()
    node = rclpy.create_node("ros_bench_publisher")
    stop_probe, thread = spin_in_thread(node)
    streams = profile.state_streams + profile.action_streams
    sensors = Publishers(workdir, CAMERA_TOPICS, args.width, args.height, joints=True)
    start = node.create_client(StartEpisode, "/rdt_recorder/start_episode")
    stop_srv = node.create_client(Trigger, "/rdt_recorder/stop_episode")

    def call(client, request, timeout=60.0):
        if not client.wait_for_service(timeout_sec=args.startup_timeout):
            raise SystemExit(f"no {client.srv_name} service; logs in {workdir}")
        future = client.call_async(request)
        if not wait_for(future.done, timeout):
            raise SystemExit(f"{client.srv_name} did not answer in {timeout:.0f} s")
        return future.result()

    try:
        sensors.wait_matched(args.startup_timeout)
        reply = call(start, StartEpisode.Request(instruction="benchmark"))
        if not reply.success:
            raise SystemExit(f"start_episode refused: {reply.message}")
        t0, cpu0 = time.time_ns(), cpu_seconds(recorder.pid)
        time.sleep(args.record_seconds)
        t1 = time.time_ns()
        tic = time.monotonic()
        reply = call(stop_srv, Trigger.Request())
        stop_s = time.monotonic() - tic
        cpu1 = cpu_seconds(recorder.pid)
    finally:
        sent = sensors.close()
        stop_child(recorder)
        stop_probe.set()
        thread.join(timeout=10)
        node.destroy_node()
        rclpy.try_shutdown()
    seen = json.loads(report.read_text()) if report.exists() else {}
    lost, total = dropped({t: sent.get(t, []) for t in CAMERA_TOPICS}, seen, t0, t1 - 500_000_000)
    episode = out / "episode_0.hdf5"
    steps, extra = 0, {}
    if episode.exists():   # an episode without one complete step is not kept
        with EpisodeReader(episode) as r:
            steps, extra = r.num_steps, r.meta.extra
    log = (workdir / "recorder.log").read_text()
    finalised = re.findall(r"finalised in (\d+) ms \(steps sealed in the log after (\d+) ms\)", log)
    expected = int(args.record_seconds * profile.control_frequency)
    queue_drops = sum((extra.get("dropped_frames") or {}).values())
    wall = (t1 - t0) / 1e9
    print(f"recorder node, {args.record_seconds:.0f} s: 3 x {args.width}x{args.height} rgb8 @ 30 Hz + {len(streams)} "
          f"JointState streams @ 200 Hz ({profile.name}, {profile.control_frequency:g} Hz)")
    print(f"  frames lost in DDS     {lost} of {total} (never seen by the node's image callback, goal 0)")
    print(f"  frames dropped (queue) {queue_drops} (the recorder's own count, goal 0)")
    print(f"  steps written          {steps} of {expected} expected ({steps / max(1, expected) * 100:.1f} %)")
    total, sealed = finalised[-1] if finalised else ("?", "?")
    print(f"  finalise time          {total} ms in the node (goal < 1000 ms): the last steps were in the log after "
          f"{sealed} ms, the file complete after {total}; stop_episode answered in {stop_s * 1e3:.0f} ms")
    print(f"  recorder node CPU      {(cpu1 - cpu0) / wall * 100:.0f} % of one core")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["policy", "recorder", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=30.0, help="policy measurement window")
    ap.add_argument("--record-seconds", type=float, default=60.0)
    ap.add_argument("--latency", type=float, default=0.3, help="least inference time of the tiny model (s)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--startup-timeout", type=float, default=300.0)
    ap.add_argument("--max-age", type=float, default=0.0,
                    help="the policy node's max_observation_age_s (default: kinova_gen3.yaml's 0.25 s)")
    ap.add_argument("--keep", action="store_true", help="keep the nodes' logs and reports (printed where)")
    ap.add_argument("--fastdds-default", action="store_true",
                    help="Fast DDS's built-in transports (512 KB shared-memory segment) instead of "
                         "rdt_bringup/config/fastdds_large_images.xml")
    ap.add_argument("--child", choices=["policy", "recorder", "fake", "publisher"], help=argparse.SUPPRESS)
    for hidden in ("--kind", "--topic"):
        ap.add_argument(hidden, default="", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--rate", type=float, default=30.0, help=argparse.SUPPRESS)
    ap.add_argument("--report", help=argparse.SUPPRESS)
    ap.add_argument("ros_args", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "policy":
        child_policy(args.report, args.latency, args.ros_args)
        return 0
    if args.child == "recorder":
        child_recorder(args.report, args.ros_args)
        return 0
    if args.child == "publisher":
        child_publisher(args.report, args.kind, args.topic, args.seed, args.width, args.height, args.rate,
                        args.ros_args)
        return 0
    if args.child == "fake":
        from rdt_bringup.fake_robot_node import main as fake_main
        fake_main(args=["fake_robot_node", "--ros-args", *args.ros_args])
        return 0

    from rdt_core.testing import missing_ros_modules
    missing = missing_ros_modules("sensor_msgs", "std_srvs", "rdt_msgs")
    if missing:
        print(f"ros_bench: skipped: needs ROS 2 sourced and this workspace built (missing {', '.join(missing)})")
        return 0
    from rdt_core.testing import isolated_ros_domain
    import shutil
    workdir = Path(tempfile.mkdtemp(prefix="ros_bench_"))
    if not args.fastdds_default:   # for every process of the graph (the children inherit it)
        for var in FASTDDS_PROFILE_VARIABLES:
            os.environ.setdefault(var, str(FASTDDS_PROFILE))
    print(f"Fast DDS profile: {os.environ.get(FASTDDS_PROFILE_VARIABLES[0]) or 'none (built-in transports)'}")
    with isolated_ros_domain(fallback=94):
        if args.part in ("policy", "both"):
            bench_policy(args, workdir)
        if args.part in ("recorder", "both"):
            bench_recorder(args, workdir)
    if args.keep:
        print(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir)   # kept (with the nodes' logs) when a part fails
    return 0


if __name__ == "__main__":
    sys.exit(main())
