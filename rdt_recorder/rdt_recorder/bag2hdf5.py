"""bag2hdf5: turn rosbag2 recordings (sqlite3 or mcap) into HDF5 episodes, without ROS.

    bag2hdf5 BAG [BAG ...] --out DIR --profile NAME [--instruction TEXT] [--topic ROLE=/name ...]
             [--split gap:SECONDS|marker:/topic|bag] [--jobs N]

Messages are read with ``rosbags.highlevel.AnyReader`` and aligned by the same code as the live recorder
(``rdt_recorder.alignment``). Only the frames a step uses are converted (``rdt_core.images``, as the live
nodes do; a depth or unsupported encoding, or a truncated frame, fails the bag naming the topic), in encoder
threads; JPEG
CompressedImages are passed through unchanged (the camera's ``color_order`` attribute then says "bgr").
Each bag is converted into a hidden staging folder of this run (``.bag2hdf5-<run>/``, locked while the run
lives) and its episodes are moved into ``--out`` as ``episode_<n>.hdf5`` only when the whole bag converted: a
bag with an error contributes no episode, so fixing the problem and running again gives the complete set
without duplicates. Runs into the same ``--out`` at once each keep their own staging folder and number their
episodes under a lock; a staging folder left by a killed run is removed, and reported, by the next run.
Steps with a non-finite joint value or a bad frame (empty, undecodable) are left out and reported with their
topic and time (rdt_core.episode's policy), the rest of the bag converts.
"""
from __future__ import annotations

import argparse
import collections
import ctypes
import fcntl
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from rdt_core.episode import DEFAULT_JPEG_QUALITY, EpisodeMeta, EpisodeWriter, next_episode_path
from rdt_core.robots import JointNameMismatchError, load_profile
from rdt_recorder.alignment import AlignmentStats, NonMonotonicStampError, effective_stamp, header_stamp_ns
from rdt_recorder.frames import CompressedFrame, ImageConversionError, RawImage, frame_to_stored
from rdt_recorder.streams import StreamPlan, parse_topic_overrides
from rdt_recorder.writer import recording_summary

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
JOINT_STATE = "sensor_msgs/msg/JointState"


class ConversionError(RuntimeError):
    """A problem with one bag; the message names the bag, the topic and the fix."""


@dataclass(frozen=True)
class SplitRule:
    """How a bag is cut into episodes, on the bag's receive-time axis."""

    kind: str                 # "bag" | "gap" | "marker"
    gap_s: float = 0.0
    marker_topic: str = ""

    @classmethod
    def parse(cls, text: str) -> "SplitRule":
        kind, _, arg = text.partition(":")
        if kind == "bag" and not arg:
            return cls("bag")
        if kind == "gap":
            try:
                gap = float(arg)
            except ValueError:
                gap = -1.0
            if gap > 0:
                return cls("gap", gap_s=gap)
        if kind == "marker" and arg.startswith("/") and len(arg) > 1:
            return cls("marker", marker_topic=arg)
        raise ValueError(f"--split expects gap:SECONDS (> 0), marker:/topic or bag, got '{text}'")


@dataclass
class EpisodeSummary:
    staged: str
    steps: int
    duration_s: float
    stats: dict
    final: str = ""
    rejected: int = 0           # steps left out (non-finite joints, bad frames), see BagResult.rejections


@dataclass
class BagResult:
    bag: str
    episodes: list[EpisodeSummary] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str = ""
    empty_segments: int = 0
    rejections: list[str] = field(default_factory=list)   # rejected steps: topic, time and reason


@dataclass
class ConvertOptions:
    profile: str
    instruction: str = ""
    topics: dict = field(default_factory=dict)
    split: SplitRule = SplitRule("bag")
    tolerance_s: float = 0.1
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    encode_workers: int = 2
    progress: bool = False


class _SegmentWriter:
    """One episode being converted: aligner + in-order encoding futures + EpisodeWriter in the staging folder."""

    def __init__(self, plan: StreamPlan, opts: ConvertOptions, staged_path: Path, meta: EpisodeMeta, pool,
                 color_order: dict):
        self.plan, self.opts, self.pool, self.color_order = plan, opts, pool, color_order
        self.aligner = plan.make_aligner(opts.tolerance_s, strict=True)
        self.meta = meta
        self.writer = EpisodeWriter(staged_path, meta, durable=False)   # the bag stays: no fsync per commit
        self.pending: collections.deque = collections.deque()
        self.last_encoded: dict[str, tuple] = {}
        self.steps = 0
        self.first = self.last = None

    def push(self, role: str, stamp: int, payload) -> None:
        self.aligner.push(role, stamp, payload)
        for step in self.aligner.poll():
            self._submit(step)

    def _submit(self, step) -> None:
        qpos, action, frames = self.plan.assemble(step)
        futures = {}
        for r, f in frames.items():
            last = self.last_encoded.get(r)
            if last is not None and last[0] == step.stamps[r]:   # same frame as the previous step: encode once
                futures[r] = last[1]
            else:
                futures[r] = self.pool.submit(frame_to_stored, f, self.color_order[r], self.opts.jpeg_quality)
                self.last_encoded[r] = (step.stamps[r], futures[r])
        self.pending.append((step.stamp_ns, qpos, action, futures))
        while len(self.pending) > 4 * max(1, self.opts.encode_workers):
            self._write_one()

    def _write_one(self) -> None:
        stamp, qpos, action, futures = self.pending.popleft()
        if not self.writer.append(stamp, qpos, action, {r: f.result() for r, f in futures.items()}):
            return                       # rejected (non-finite joint, bad frame): counted by the writer
        self.steps += 1
        self.first = stamp if self.first is None else self.first
        self.last = stamp

    def rejections(self, bag: Path) -> list[str]:
        """One line per rejected step the writer kept the details of: topic, time in the bag, reason."""
        topics = self.plan.topics
        joints = ", ".join(topics[s.role] for s in self.plan.state + self.plan.action)
        lines = []
        for r in self.writer.rejected.first:
            cam = r["reason"][:-len(" frame")] if r["reason"].endswith(" frame") else None
            where = f"topic {topics[cam]} ({cam})" if cam in topics else f"{r['reason']} on {joints}"
            lines.append(f"{bag}: {where} at stamp {r['stamp_ns'] / 1e9:.3f} s: {r['detail']}; step left out")
        more = self.writer.rejected.count - len(lines)
        return lines + ([f"{bag}: ... and {more} more rejected step(s)"] if more > 0 else [])

    def finish(self) -> EpisodeSummary | None:
        for step in self.aligner.finish():
            self._submit(step)
        while self.pending:
            self._write_one()
        stats = self.aligner.stats()
        if self.steps == 0:
            self.writer.discard()
            return None
        path = self.writer.close(extra=recording_summary(stats, {}, 0))
        duration = (self.last - self.first) / 1e9 + 1.0 / self.plan.profile.control_frequency
        return EpisodeSummary(staged=str(path), steps=self.steps, duration_s=duration, stats=stats.to_dict(),
                              rejected=self.writer.rejected.count)

    def abandon(self) -> None:
        for *_, futures in self.pending:
            for f in futures.values():
                f.cancel()
        self.pending.clear()
        self.writer.discard()


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3      # glibc mallopt parameters (malloc.h)


def reuse_large_buffers() -> bool:
    """Let glibc reuse freed message buffers instead of mapping fresh zeroed pages for each one.

    By default a buffer over 128 KiB is its own mmap (or the heap top is trimmed after the free), so every
    ~0.9 MiB raw frame read from a bag costs ~225 page faults: measured, that was 380k faults and half the
    reading thread's system time per 30 s of a three-camera bag. The freed memory stays in the heap for
    the next frame (bounded by the frames alive at once, not by the bag length). Process-wide; glibc only
    (False elsewhere, nothing changed)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 16 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, 64 << 20))


def _open_reader(bag: Path):
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    if not bag.exists():
        raise ConversionError(f"{bag}: no such bag (expected a rosbag2 folder with metadata.yaml)")
    if bag.is_file() and bag.suffix in (".db3", ".mcap"):
        raise ConversionError(f"{bag}: give the bag's folder ({bag.parent}, with metadata.yaml), not its {bag.suffix} "
                              "file")
    if bag.is_dir() and not (bag / "metadata.yaml").is_file():
        storage = sorted(p.name for p in bag.iterdir() if p.suffix in (".db3", ".mcap"))
        fix = (f"rebuild it with `ros2 bag reindex {bag}`" + (" -s mcap" if storage[0].endswith(".mcap") else "")
               + " (it reads the storage files), then convert again") if storage else \
            "this folder holds no .db3 or .mcap file either; is it the bag folder?"
        raise ConversionError(f"{bag}: metadata.yaml is missing; {fix}")
    try:
        reader = AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_JAZZY))
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises several types; all mean "cannot read this bag"
        raise ConversionError(
            f"{bag}: cannot open the bag ({type(exc).__name__}: {exc}); expected a rosbag2 folder with "
            "metadata.yaml and its .db3 or .mcap files; check it with `ros2 bag info`") from None
    return reader


def _check_topics(bag: Path, reader, plan: StreamPlan, split: SplitRule) -> dict[str, str]:
    """topic -> role; every role's topic must be present with a usable message type."""
    present = {t: info.msgtype for t, info in reader.topics.items()}
    listing = ", ".join(f"{t} [{m}]" for t, m in sorted(present.items())) or "none"
    wanted = {c.role: (c.topic, (IMAGE, COMPRESSED)) for c in plan.cameras}
    wanted.update({s.role: (s.topic, (JOINT_STATE,)) for s in plan.state + plan.action})
    by_topic: dict[str, str] = {}
    for role, (topic, types) in wanted.items():
        if topic not in present:
            raise ConversionError(
                f"{bag}: topic {topic} (role '{role}') is not in the bag; topics present: {listing}. "
                f"Fix: pass --topic {role}=/the/right/topic")
        if present[topic] not in types:
            raise ConversionError(
                f"{bag}: topic {topic} (role '{role}') has type {present[topic]}, expected {' or '.join(types)}")
        if topic in by_topic:
            raise ConversionError(f"{bag}: topic {topic} is given to two roles, '{by_topic[topic]}' and '{role}'")
        by_topic[topic] = role
    if split.kind == "marker" and split.marker_topic not in present:
        raise ConversionError(f"{bag}: marker topic {split.marker_topic} is not in the bag; topics present: {listing}")
    return by_topic


def convert_bag(bag: str | Path, staging_dir: str | Path, opts: ConvertOptions) -> BagResult:
    """Convert one bag into episodes in ``staging_dir`` (they are complete files; the caller numbers them)."""
    bag = Path(bag)
    staging_dir = Path(staging_dir)
    result = BagResult(bag=str(bag))
    segment: _SegmentWriter | None = None
    try:
        profile = load_profile(opts.profile)
        plan = StreamPlan.from_profile(profile, opts.topics)
        reader = _open_reader(bag)
    except ConversionError as exc:
        result.error = str(exc)
        return result
    except Exception as exc:  # noqa: BLE001 - profile / override problems
        result.error = f"{bag}: {exc}"
        return result
    reuse_large_buffers()
    pool = ThreadPoolExecutor(max_workers=max(1, opts.encode_workers), thread_name_prefix="jpeg")
    staging_dir.mkdir(parents=True, exist_ok=True)
    try:
        try:
            role_of = _check_topics(bag, reader, plan, opts.split)
            color_order = {c.role: ("bgr" if reader.topics[c.topic].msgtype == COMPRESSED else "rgb")
                           for c in plan.cameras}
            topics = set(role_of) | ({opts.split.marker_topic} if opts.split.kind == "marker" else set())
            conns = [c for c in reader.connections if c.topic in topics]
            total = sum(c.msgcount for c in conns)

            def new_segment() -> _SegmentWriter:
                n = len(result.episodes) + result.empty_segments
                meta = EpisodeMeta(
                    robot=profile.name, joint_names=list(profile.joint_names), camera_names=plan.camera_roles,
                    control_frequency=float(profile.control_frequency), instruction=opts.instruction,
                    extra={"source": "bag2hdf5", "bag": bag.name, "segment": n, "topics": plan.topics,
                           "split": opts.split.kind, "action_source": plan.action_source,
                           "tolerance_s": opts.tolerance_s, "jpeg_quality": opts.jpeg_quality},
                    camera_color_order=dict(color_order))
                return _SegmentWriter(plan, opts, staging_dir / f"episode_{n}.hdf5", meta, pool, color_order)

            def close_segment() -> None:
                nonlocal segment
                if segment is None:
                    return
                summary = segment.finish()
                result.rejections += segment.rejections(bag)
                segment = None
                if summary is None:
                    result.empty_segments += 1
                else:
                    result.episodes.append(summary)

            prev_recv = None
            bar = None
            if opts.progress:
                from tqdm import tqdm
                bar = tqdm(total=total, unit="msg", desc=bag.name, leave=False)
            for i, (conn, recv_ns, raw) in enumerate(reader.messages(connections=conns)):
                if bar is not None and i % 256 == 0:
                    bar.update(min(256, total - bar.n))
                split = opts.split
                if split.kind == "gap" and prev_recv is not None and recv_ns - prev_recv > split.gap_s * 1e9:
                    close_segment()
                prev_recv = recv_ns
                if split.kind == "marker" and conn.topic == split.marker_topic:
                    close_segment()
                    continue
                role = role_of[conn.topic]
                try:
                    msg = reader.deserialize(raw, conn.msgtype)
                except Exception as exc:  # noqa: BLE001
                    raise ConversionError(f"{bag}: topic {conn.topic}: cannot deserialize a message "
                                          f"({exc}); the bag may be corrupt") from None
                if conn.msgtype == IMAGE:
                    # kept as fields; rdt_core.images converts the frames a step uses, in the encoder threads
                    payload = RawImage(msg.encoding, int(msg.height), int(msg.width), int(msg.step), msg.data,
                                       topic=conn.topic, stamp_ns=header_stamp_ns(msg.header))
                    try:   # a depth / unknown encoding fails the bag; a damaged frame only its step (writer)
                        payload.check_encoding()
                    except ImageConversionError as exc:
                        raise ConversionError(f"{bag}: {exc}") from None
                elif conn.msgtype == COMPRESSED:
                    payload = CompressedFrame(str(msg.format), msg.data.tobytes(), topic=conn.topic,
                                              stamp_ns=header_stamp_ns(msg.header))
                else:
                    try:
                        payload = plan.mappers[role].extract(list(msg.name), msg.position)
                    except JointNameMismatchError as exc:
                        raise ConversionError(f"{bag}: topic {conn.topic}: {exc}") from None
                if segment is None:
                    segment = new_segment()
                try:
                    segment.push(role, effective_stamp(header_stamp_ns(msg.header), recv_ns), payload)
                except NonMonotonicStampError as exc:
                    raise ConversionError(f"{bag}: topic {conn.topic}: {exc}") from None
            close_segment()
            if bar is not None:
                bar.close()
        finally:
            reader.close()
        if not result.episodes and result.rejections:
            result.error = (f"{bag}: no step left: every aligned step was rejected (bad frames or non-finite "
                            "joint values, listed above)")
        elif not result.episodes:
            result.error = (f"{bag}: no complete step: no moment at which every stream ({', '.join(plan.roles)}) "
                            f"had a message within {opts.tolerance_s} s; check the topics or raise --tolerance")
    except ConversionError as exc:
        result.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a broken bag surfaces as anything from rosbags or sqlite
        result.error = f"{bag}: conversion failed ({type(exc).__name__}: {exc}); the bag may be corrupt"
    finally:
        if segment is not None:
            segment.abandon()
        pool.shutdown(wait=True)
    if result.error:
        for ep in result.episodes:
            Path(ep.staged).unlink(missing_ok=True)
        result.episodes = []
    return result


STAGING_PREFIX = ".bag2hdf5-"            # a run's staging folder, flock'ed by its run while it lives
NEW_PREFIX = ".bag2hdf5-new-"            # a staging folder being created (locked, then renamed)


def _flock(folder: Path, blocking: bool) -> int | None:
    """An exclusive flock on a folder: the descriptor, or None when another process holds it. The OS
    releases it when the process ends, however it ends (SIGKILL included)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def prepare_output(out_dir: str | Path) -> Path:
    """The output folder, created if needed; ConversionError with a sentence when it cannot be written."""
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise ConversionError(f"--out {out_dir} is a file, not a folder: give a folder for the episodes (it is "
                              "created when missing)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        # an unnamed file (O_TMPFILE where the filesystem has it): a run killed here leaves nothing behind
        tempfile.TemporaryFile(dir=out_dir).close()
    except OSError as exc:
        raise ConversionError(f"--out {out_dir} cannot be written ({exc.strerror or exc}): choose a folder you can "
                              "write to") from None
    return out_dir


def clean_stale_staging(out_dir: Path, max_age_s: float = 60.0) -> list[str]:
    """Remove staging folders whose run is gone (killed: its lock is free); returns what was removed.
    Folders of runs still alive are left alone."""
    notes = []
    for staging in sorted(out_dir.glob(STAGING_PREFIX + "*")):
        if not staging.is_dir():
            continue
        if staging.name.startswith(NEW_PREFIX):
            if time.time() - staging.stat().st_mtime < max_age_s:
                continue                          # a run is creating it right now
        else:
            fd = _flock(staging, blocking=False)
            if fd is None:
                continue                          # its run is still converting
            os.close(fd)
        files = sum(1 for p in staging.rglob("*") if p.is_file())
        shutil.rmtree(staging, ignore_errors=True)
        notes.append(f"removed {staging.name}, left by an interrupted bag2hdf5 run ({files} unfinished file(s)); "
                     "its bags were not published: convert them again")
    return notes


class _Staging:
    """This run's hidden staging folder in --out, locked while the run lives."""

    def __init__(self, out_dir: Path):
        new = Path(tempfile.mkdtemp(prefix=NEW_PREFIX, dir=out_dir))
        self._fd = _flock(new, blocking=True)    # locked before it carries the name others check
        self.path = new.with_name(STAGING_PREFIX + new.name[len(NEW_PREFIX):])
        new.rename(self.path)

    def for_bag(self, i: int) -> Path:
        return self.path / f"bag{i}"

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _publish(results: list[BagResult], out_dir: Path) -> None:
    """Number the finished bags' staged episodes and move them to their final names, under --out's lock so
    runs at the same time never pick the same number."""
    fd = _flock(out_dir, blocking=True)
    try:
        for result in results:
            for ep in result.episodes:
                final = next_episode_path(out_dir)
                os.replace(ep.staged, final)
                ep.final = str(final)
    finally:
        os.close(fd)


def convert_bags(bags: list[str], out_dir: str | Path, opts: ConvertOptions, jobs: int = 1,
                 notes: list[str] | None = None) -> list[BagResult]:
    """Convert several bags (in parallel processes when jobs > 1); episodes are numbered in bag order.
    ``notes`` receives what was cleaned up from interrupted runs. ConversionError when --out is unusable."""
    from tqdm import tqdm

    out_dir = prepare_output(out_dir)
    cleaned = clean_stale_staging(out_dir)
    if notes is not None:
        notes.extend(cleaned)
    staging = _Staging(out_dir)
    results: dict[int, BagResult] = {}
    try:
        if jobs <= 1 or len(bags) == 1:
            single = ConvertOptions(**{**opts.__dict__, "progress": opts.progress})
            for i, bag in enumerate(tqdm(bags, unit="bag", disable=not opts.progress or len(bags) == 1)):
                results[i] = convert_bag(bag, staging.for_bag(i), single)
        else:
            quiet = ConvertOptions(**{**opts.__dict__, "progress": False})
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as ex:
                futures = {ex.submit(convert_bag, bag, staging.for_bag(i), quiet): i for i, bag in enumerate(bags)}
                for fut in tqdm(as_completed(futures), total=len(futures), unit="bag", disable=not opts.progress):
                    i = futures[fut]
                    try:
                        results[i] = fut.result()
                    except Exception as exc:  # noqa: BLE001 - a crashed worker
                        results[i] = BagResult(bag=bags[i], error=f"{bags[i]}: worker failed: {exc!r}")
        ordered = [results[i] for i in range(len(bags))]
        _publish([r for r in ordered if not r.error], out_dir)
    finally:
        staging.remove()
    return ordered


def summary_table(results: list[BagResult]) -> str:
    rows = [("bag", "episodes", "steps", "seconds", "skipped", "rejected", "status")]
    for r in results:
        steps = sum(e.steps for e in r.episodes)
        secs = sum(e.duration_s for e in r.episodes)
        skipped = sum(e.stats.get("skipped_steps", 0) for e in r.episodes)
        rejected = sum(e.rejected for e in r.episodes)
        status = "FAILED" if r.error else "ok" if not rejected else "ok, steps rejected (see below)"
        rows.append((Path(r.bag).name, str(len(r.episodes)), str(steps), f"{secs:.1f}", str(skipped),
                     str(rejected), status))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bag2hdf5", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bags", nargs="+", metavar="BAG", help="rosbag2 folders (sqlite3 or mcap)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder for episode_<n>.hdf5")
    p.add_argument("--profile", required=True, metavar="NAME", help="robot profile name or YAML path")
    p.add_argument("--instruction", default="", metavar="TEXT", help="language instruction stored in each episode")
    p.add_argument("--topic", action="append", default=[], metavar="ROLE=/name",
                   help="use this topic for a profile stream role (repeatable)")
    p.add_argument("--split", default="bag", metavar="gap:SECONDS|marker:/topic|bag",
                   help="episode boundaries: a receive-time gap, each message on a marker topic, or one per bag")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="bags converted in parallel processes")
    p.add_argument("--tolerance", type=float, default=0.1, metavar="SECONDS",
                   help="oldest message a step may use (default 0.1)")
    p.add_argument("--jpeg-quality", type=int, default=DEFAULT_JPEG_QUALITY, metavar="Q",
                   help=f"JPEG quality for re-encoded frames (default {DEFAULT_JPEG_QUALITY})")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        opts = ConvertOptions(profile=args.profile, instruction=args.instruction,
                              topics=parse_topic_overrides(args.topic), split=SplitRule.parse(args.split),
                              tolerance_s=args.tolerance, jpeg_quality=args.jpeg_quality,
                              encode_workers=max(1, (os.cpu_count() or 2) // max(1, args.jobs)),
                              progress=sys.stderr.isatty())
        if args.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
        if args.tolerance <= 0:
            raise ValueError(f"--tolerance must be > 0, got {args.tolerance}")
        load_profile(args.profile)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"bag2hdf5: error: {exc}", file=sys.stderr)
        return 2
    notes: list[str] = []
    try:
        results = convert_bags(args.bags, args.out, opts, jobs=args.jobs, notes=notes)
    except ConversionError as exc:
        print(f"bag2hdf5: error: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"bag2hdf5: {note}", file=sys.stderr)
    print(summary_table(results))
    for r in results:
        for w in r.warnings + r.rejections:
            print(f"warning: {w}", file=sys.stderr)
        for e in r.episodes:
            print(f"  {e.final}  {e.steps} steps  ({Path(r.bag).name})")
        if r.error:
            print(f"error: {r.error}", file=sys.stderr)
    return 0 if all(not r.error for r in results) else 1


if __name__ == "__main__":
    # run the imported module's main so worker processes unpickle its classes by their real module name
    from rdt_recorder.bag2hdf5 import main as _main
    sys.exit(_main())
