"""EpisodeRecorder: the ROS-free live recorder behind ``ros2 run rdt_recorder record``.

Callers (ROS callbacks, a fake robot, a test) hand over messages with ``on_image`` / ``on_joints``; these never
block: a full input queue drops the message and counts it. One alignment thread maps joint messages, aligns
streams (``rdt_recorder.alignment``) and hands each step to a pool of JPEG encoder threads; one writer thread
owns the ``rdt_core.episode.EpisodeWriter`` (its step log), appends steps in order and commits at least every
``flush_interval_s``, so a crash loses at most that much. Free disk space is checked before and during
recording; on shortage, or when a write fails on a full disk, the episode stops cleanly and what is committed
is kept (the HDF5 file is built, or the recorder says what to free and to run ``recover``). Steps with a
non-finite joint value or a frame that does not decode are rejected and counted (rdt_core.episode's policy).
A follower process keeps the episode's HDF5 file up to date with the log while recording
(``EpisodeWriter(live_build=True)``), so finishing it takes a fraction of a second whatever the episode's
length; ``stop(wait=False)`` (the ROS node, the keyboard) returns once the log is sealed and the file is
finished in that child process, so the next episode can start at once; ``on_finished`` reports the episode
when its file is complete.
"""
from __future__ import annotations

import collections
import dataclasses
import enum
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rdt_core.episode import (DEFAULT_JPEG_QUALITY, DEFAULT_MIN_FREE_BYTES, EpisodeMeta, EpisodeWriter,
                              next_episode_path)
from rdt_recorder.alignment import AlignmentStats, effective_stamp
from rdt_recorder.frames import CompressedFrame, frame_to_stored
from rdt_core.robots import JointNameMismatchError
from rdt_recorder.streams import StreamPlan


class RecorderState(str, enum.Enum):
    IDLE = "IDLE"
    RECORDING = "RECORDING"
    FINALIZING = "FINALIZING"
    ERROR = "ERROR"


class RecorderError(RuntimeError):
    """A request that does not fit the recorder's state (the message says what to do instead)."""


@dataclass
class EpisodeResult:
    """What happened to one episode."""

    path: Path | None              # final episode path (None when discarded or nothing was written)
    steps: int
    duration_s: float
    stats: AlignmentStats
    dropped_frames: dict[str, int]
    queue_high_water: int
    finalize_s: float
    message: str
    kept: bool
    rejected: dict = field(default_factory=dict)   # EpisodeWriter.rejected.to_dict(): steps left out and why
    rejected_summary: str = ""
    pending: bool = False          # stop(wait=False): the steps are safe in the log, the file is being built
    seal_s: float = 0.0            # of finalize_s: until the last step was in the log (the rest: the file)

    def summary(self) -> str:
        head = f"{self.message}: {self.steps} steps, {self.duration_s:.1f} s"
        drops = sum(self.dropped_frames.values())
        lines = [head, f"  dropped frames {drops} {self.dropped_frames if drops else ''}".rstrip(),
                 f"  queue high-water {self.queue_high_water}, finalised in {self.finalize_s * 1e3:.0f} ms "
                 f"(steps sealed in the log after {self.seal_s * 1e3:.0f} ms)"]
        if self.rejected.get("count"):
            lines.append(f"  {self.rejected_summary}")
        return "\n".join(lines + self.stats.summary_lines())


@dataclass
class RecorderStatus:
    """A snapshot for the status topic and the terminal line (fields of rdt_msgs/EpisodeStatus)."""

    state: str
    episode_index: int
    path: str
    steps: int
    duration: float
    rate: float
    dropped_steps: int
    dropped_frames: int
    rejected_steps: int = 0
    stream_names: list[str] = field(default_factory=list)
    stream_misses: list[int] = field(default_factory=list)
    stream_max_skew_ms: list[float] = field(default_factory=list)
    queue_high_water: int = 0
    message: str = ""


def episode_index_of(path: Path) -> int:
    stem = Path(path).stem
    try:
        return int(stem.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return 0


class _Episode:
    """Per-episode pipeline state (threads, queues, writer); lives from start() to stop()/discard()."""

    def __init__(self, writer: EpisodeWriter, meta: EpisodeMeta, aligner, max_steps_queue: int):
        self.writer = writer
        self.meta = meta
        self.aligner = aligner
        self.steps_q: queue.Queue = queue.Queue(maxsize=max_steps_queue)
        self.stop_ns: int | None = None          # set by stop(): no step after this time
        self.abort = threading.Event()           # discard: drop everything, write nothing more
        self.align_done = threading.Event()
        self.steps_written = 0
        self.append_times: collections.deque[float] = collections.deque(maxlen=256)
        self.first_stamp: int | None = None
        self.last_stamp: int | None = None
        self.error: str = ""
        self.last_encoded: dict[str, tuple] = {}   # camera -> (message stamp, JPEG future): encode a frame once
        self.threads: list[threading.Thread] = []


class EpisodeRecorder:
    """Records aligned episodes from live streams (see the module docstring).

    ``clock`` returns the current time in the streams' clock (ns); the live clock decides steps whose
    streams went quiet, ``latency_s`` after the step time.
    """

    def __init__(
        self,
        plan: StreamPlan,
        output_dir: str | Path,
        *,
        instruction: str = "",
        jpeg_quality: int = DEFAULT_JPEG_QUALITY,
        tolerance_s: float = 0.1,
        latency_s: float = 0.2,
        queue_size: int = 512,
        step_queue_size: int = 64,
        encode_workers: int | None = None,
        flush_interval_s: float = 0.5,
        min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
        clock: Callable[[], int] = time.time_ns,
        on_finished: Callable[[EpisodeResult], None] | None = None,
    ):
        if not 1 <= int(jpeg_quality) <= 100:
            raise ValueError(f"jpeg_quality must be within 1..100, got {jpeg_quality}")
        if not 0 < flush_interval_s <= 1.0:
            raise ValueError(f"flush_interval_s must be within (0, 1] s so a crash loses at most a second, "
                             f"got {flush_interval_s}")
        self.plan = plan
        self.output_dir = Path(output_dir)
        self.instruction = instruction
        self.jpeg_quality = int(jpeg_quality)
        self.tolerance_s = float(tolerance_s)
        self.latency_ns = int(latency_s * 1e9)
        self.flush_interval_s = flush_interval_s
        self.min_free_bytes = int(min_free_bytes)
        self.clock = clock
        self.on_finished = on_finished
        self._step_queue_size = step_queue_size
        self._ingest: queue.Queue = queue.Queue(maxsize=queue_size)
        self._pool = ThreadPoolExecutor(max_workers=encode_workers or max(2, os.cpu_count() or 2),
                                        thread_name_prefix="jpeg")
        self._color_order = {c.role: ("bgr" if c.compressed else "rgb") for c in plan.cameras}
        self._joint_roles = {s.role for s in plan.state + plan.action}
        self._camera_roles = set(plan.camera_roles)
        self._lock = threading.RLock()          # guards state transitions and the status snapshot
        self._state = RecorderState.IDLE
        self._episode: _Episode | None = None
        self._episode_index = 0
        self._path = ""
        self._message = "idle: start an episode"
        self._dropped: dict[str, int] = {r: 0 for r in plan.roles}
        self._high_water = 0
        self._last_result: EpisodeResult | None = None
        self._builds: list[threading.Thread] = []       # episodes being built in the background

    # ------------------------------------------------------------ input side
    def on_image(self, role: str, stamp_ns: int, frame, receive_ns: int | None = None) -> bool:
        """A camera frame: an (H, W, 3) uint8 RGB array, a CompressedFrame, a RawImage or JPEG bytes.
        Returns False when it was not taken (not recording, or the queue was full: counted as dropped)."""
        if role not in self._camera_roles:
            raise KeyError(f"unknown camera role '{role}'; cameras are {sorted(self._camera_roles)}")
        return self._offer(role, stamp_ns, frame, receive_ns)

    def on_joints(self, role: str, stamp_ns: int, names: Sequence[str], positions: Sequence[float],
                  receive_ns: int | None = None) -> bool:
        """A JointState: names and positions as in the message."""
        if role not in self._joint_roles:
            raise KeyError(f"unknown joint stream role '{role}'; joint streams are {sorted(self._joint_roles)}")
        return self._offer(role, stamp_ns, (tuple(names), np.asarray(positions, dtype=np.float64)), receive_ns)

    def _offer(self, role, stamp_ns, payload, receive_ns) -> bool:
        if self._state is not RecorderState.RECORDING:
            return False
        if receive_ns is None and not stamp_ns:
            receive_ns = self.clock()
        try:
            self._ingest.put_nowait((role, effective_stamp(stamp_ns, receive_ns), payload))
        except queue.Full:
            self._dropped[role] += 1
            return False
        size = self._ingest.qsize()
        if size > self._high_water:
            self._high_water = size
        return True

    # --------------------------------------------------------------- control
    @property
    def state(self) -> RecorderState:
        return self._state

    def start(self, instruction: str | None = None, max_duration_s: float = 0.0) -> Path:
        """Open the next episode_<n>.hdf5 (under its temporary name, returned) and start recording.
        ``max_duration_s`` > 0 stops automatically after that long (from the first step)."""
        with self._lock:
            if self._state in (RecorderState.RECORDING, RecorderState.FINALIZING):
                raise RecorderError(f"already recording {self._path}: stop or discard it first")
            self.output_dir.mkdir(parents=True, exist_ok=True)
            final = next_episode_path(self.output_dir)
            text = self.instruction if instruction in (None, "") else instruction
            meta = EpisodeMeta(
                robot=self.plan.profile.name,
                joint_names=list(self.plan.profile.joint_names),
                camera_names=self.plan.camera_roles,
                control_frequency=float(self.plan.profile.control_frequency),
                instruction=text,
                extra={"source": "rdt_recorder live", "topics": self.plan.topics,
                       "action_source": self.plan.action_source, "tolerance_s": self.tolerance_s,
                       "jpeg_quality": self.jpeg_quality},
                camera_color_order=dict(self._color_order),
            )
            # checks free space first: DiskFullError (naming the folder and the fix) and no file when short
            writer = EpisodeWriter(final, meta, flush_interval_s=self.flush_interval_s,
                                   min_free_bytes=self.min_free_bytes, live_build=True)
            aligner = self.plan.make_aligner(self.tolerance_s, max_duration_s=max_duration_s or None)
            ep = _Episode(writer, meta, aligner, self._step_queue_size)
            while not self._ingest.empty():       # nothing from before this episode
                self._ingest.get_nowait()
            self._dropped = {r: 0 for r in self.plan.roles}
            self._high_water = 0
            self._episode = ep
            self._episode_index = episode_index_of(final)
            self._path = str(writer.temp_path)
            self._message = f"recording episode {self._episode_index}" + (f": {text}" if text else "")
            ep.threads = [threading.Thread(target=self._align_loop, args=(ep,), name="align", daemon=True),
                          threading.Thread(target=self._write_loop, args=(ep,), name="h5writer", daemon=True)]
            self._state = RecorderState.RECORDING
            for t in ep.threads:
                t.start()
            return Path(writer.temp_path)

    def stop(self, wait: bool = True) -> EpisodeResult:
        """Finish the episode: write the remaining steps and build episode_<n>.hdf5. ``wait=False`` returns
        once the steps are sealed in the log (result.pending; the file follows, reported by on_finished)."""
        return self._end(discard=False, reason="stopped", wait=wait)

    def discard(self) -> EpisodeResult:
        """Abandon the episode and delete its file."""
        return self._end(discard=True, reason="discarded")

    def close(self) -> None:
        """Stop any episode, wait for the episodes still being built and release the encoder threads."""
        if self._state in (RecorderState.RECORDING, RecorderState.FINALIZING):
            self.stop()
        self.wait_for_builds()
        self._pool.shutdown(wait=True)

    def wait_for_builds(self, timeout: float | None = None) -> bool:
        """Wait until every episode stopped with ``wait=False`` has its file (or its error); True when done."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            builds = list(self._builds)
        for t in builds:
            t.join(None if end is None else max(0.0, end - time.monotonic()))
        return not any(t.is_alive() for t in builds)

    def status(self) -> RecorderStatus:
        with self._lock:
            ep = self._episode
            stats = ep.aligner.stats() if ep else (self._last_result.stats if self._last_result else AlignmentStats())
            steps = ep.steps_written if ep else (self._last_result.steps if self._last_result else 0)
            duration = steps / float(self.plan.profile.control_frequency)
            rate = 0.0
            if ep and ep.append_times:
                now = time.monotonic()
                rate = float(sum(1 for t in ep.append_times if now - t <= 1.0))
            names = self.plan.roles
            return RecorderStatus(
                state=self._state.value, episode_index=self._episode_index, path=self._path, steps=steps,
                duration=duration, rate=rate, dropped_steps=stats.skipped_steps,
                dropped_frames=sum(self._dropped.values()), stream_names=list(names),
                rejected_steps=(ep.writer.rejected.count if ep else
                                (self._last_result.rejected.get("count", 0) if self._last_result else 0)),
                stream_misses=[int(stats.misses.get(n, 0)) for n in names],
                stream_max_skew_ms=[float(stats.skew_max_ms.get(n, 0.0)) for n in names],
                queue_high_water=self._high_water, message=self._message)

    @property
    def last_result(self) -> EpisodeResult | None:
        return self._last_result

    # --------------------------------------------------------------- threads
    def _align_loop(self, ep: _Episode) -> None:
        """Map joint messages, align, and queue each step with its JPEG encodings in flight."""
        al = ep.aligner
        try:
            while not ep.abort.is_set():
                items = []
                try:
                    items.append(self._ingest.get(timeout=0.02))
                    while len(items) < 256:
                        items.append(self._ingest.get_nowait())
                except queue.Empty:
                    pass
                for role, stamp, payload in items:
                    if role in self._joint_roles:
                        names, positions = payload
                        payload = self.plan.mappers[role].extract(names, positions)
                    al.push(role, stamp, payload)
                stopping = ep.stop_ns is not None
                if stopping and self._ingest.empty():
                    if al.end_ns is None or ep.stop_ns < al.end_ns:
                        al.end_ns = ep.stop_ns
                    for step in al.finish():
                        self._submit(ep, step)
                    return
                for step in al.poll(self.clock() - self.latency_ns):
                    self._submit(ep, step)
                if al.done and not stopping:
                    self._message = f"episode {self._episode_index} reached its maximum duration"
                    ep.stop_ns = al.end_ns
                    threading.Thread(target=self._end, daemon=True,
                                     kwargs={"discard": False, "reason": "max duration", "episode": ep,
                                             "wait": False}).start()
        except JointNameMismatchError as exc:
            self._fail(ep, str(exc))
        except Exception as exc:  # noqa: BLE001 - reported in status, episode kept
            self._fail(ep, f"alignment failed: {exc!r}")
        finally:
            ep.align_done.set()
            self._put_step(ep, None)

    def _submit(self, ep: _Episode, step) -> None:
        qpos, action, frames = self.plan.assemble(step)
        futures = {}
        for role, frame in frames.items():
            stamp = step.stamps[role]
            last = ep.last_encoded.get(role)
            if last is not None and last[0] == stamp:    # control rate above the camera rate: same frame again
                futures[role] = last[1]
                continue
            futures[role] = self._pool.submit(frame_to_stored, frame, self._color_order[role], self.jpeg_quality)
            ep.last_encoded[role] = (stamp, futures[role])
        self._put_step(ep, (step.stamp_ns, qpos, action, futures))

    def _put_step(self, ep: _Episode, item) -> None:
        while not ep.abort.is_set():
            try:
                ep.steps_q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _write_loop(self, ep: _Episode) -> None:
        """The only thread that touches the h5py file."""
        unflushed = False
        while True:
            try:
                item = ep.steps_q.get(timeout=self.flush_interval_s)
            except queue.Empty:
                if ep.abort.is_set():
                    return
                if unflushed and not ep.error:
                    try:
                        ep.writer.flush()
                    except OSError as exc:   # DiskFullError, or a write that failed: committed steps stay
                        ep.steps_written = ep.writer.num_steps
                        self._fail(ep, f"disk full, episode stopped with {ep.steps_written} steps kept: {exc}")
                    unflushed = False
                continue
            if item is None or ep.abort.is_set():
                return
            if ep.error:
                continue                      # disk full: drain, write nothing more
            stamp, qpos, action, futures = item
            try:
                jpegs = {role: f.result() for role, f in futures.items()}
                written = ep.writer.append(stamp, qpos, action, jpegs)   # False: rejected (NaN, bad frame)
            except OSError as exc:            # DiskFullError, or a write that failed: committed steps stay
                ep.steps_written = ep.writer.num_steps
                self._fail(ep, f"disk full, episode stopped with {ep.steps_written} steps kept: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001
                ep.steps_written = ep.writer.num_steps
                self._fail(ep, f"writing step failed, episode stopped with {ep.steps_written} steps kept: {exc!r}")
                continue
            unflushed = True
            ep.steps_written = ep.writer.num_steps
            if not written:
                continue
            ep.append_times.append(time.monotonic())
            if ep.first_stamp is None:
                ep.first_stamp = stamp
            ep.last_stamp = stamp

    def _fail(self, ep: _Episode, message: str) -> None:
        """Stop recording on an error, keeping what is written (finalised from another thread)."""
        if ep.error:
            return
        ep.error = message
        self._message = message
        threading.Thread(target=self._end, kwargs={"discard": False, "reason": "error", "episode": ep,
                                                   "wait": False}, daemon=True).start()

    def _end(self, discard: bool, reason: str, episode: _Episode | None = None, wait: bool = True) -> EpisodeResult:
        with self._lock:
            ep = self._episode
            if ep is None or (episode is not None and ep is not episode):
                if episode is None:
                    raise RecorderError("not recording: start an episode first")
                return self._last_result     # an automatic stop of an episode that already ended
            self._episode = None       # later stop/discard calls see "not recording"
            self._state = RecorderState.FINALIZING
        t0 = time.perf_counter()
        if ep.stop_ns is None:
            ep.stop_ns = self.clock()
        if discard:
            ep.abort.set()
        for t in ep.threads:
            if t is not threading.current_thread():
                t.join()
        stats = ep.aligner.stats()
        dropped = dict(self._dropped)
        path: Path | None = None
        kept = False
        error = ep.error
        message = ""
        if discard:
            ep.writer.discard()
            message = f"episode {self._episode_index} discarded"
        elif ep.steps_written == 0:
            ep.writer.discard()
            waiting = ep.aligner.waiting_for()
            rejected = ep.writer.rejected
            message = (error or f"episode {self._episode_index} had no complete step"
                       + (f" (no message from {waiting}: check those topics)" if waiting else "")
                       + (f" ({ep.writer.rejected_summary()})" if rejected.count else "") + "; nothing kept")
        build = None
        if not discard and ep.steps_written:
            try:
                build = ep.writer.close_async(extra=recording_summary(stats, dropped, self._high_water))
            except Exception as exc:  # noqa: BLE001 - e.g. the disk took the last commit: the log stays
                path, kept, message, error = self._built(ep, None, exc, error)
        seal_s = time.perf_counter() - t0
        duration = ((ep.last_stamp - ep.first_stamp) / 1e9 + 1 / self.plan.profile.control_frequency
                    if ep.first_stamp is not None else 0.0)
        result = EpisodeResult(path=path, steps=0 if discard else ep.steps_written, duration_s=duration,
                               stats=stats, dropped_frames=dropped, queue_high_water=self._high_water,
                               finalize_s=0.0, message=message, kept=kept, rejected=ep.writer.rejected.to_dict(),
                               rejected_summary=ep.writer.rejected_summary(), seal_s=seal_s)
        if build is not None and not wait:      # the operator goes on; the file follows
            result.path, result.kept, result.pending = build.final_path, True, True
            result.finalize_s = time.perf_counter() - t0
            result.message = (f"{error}; " if error else "") + (
                f"episode {self._episode_index}: {result.steps} steps recorded, writing {build.final_path.name}")
            thread = threading.Thread(target=self._finish_build, args=(ep, build, result, error, t0),
                                      name="episode-build", daemon=True)
            with self._lock:        # wait_for_builds sees the build as soon as the state leaves FINALIZING
                self._settle(result, error, latest=True)
                thread.start()      # its own _settle waits for this lock: the pending result is in place
                self._builds = [t for t in self._builds if t.is_alive()] + [thread]
            return result
        if build is not None:
            result.path, result.kept, result.message, error = self._built(ep, build, None, error)
        result.finalize_s = time.perf_counter() - t0
        self._settle(result, error, latest=True)
        if self.on_finished is not None:
            self.on_finished(result)
        if build is not None:
            build.cleanup()
        return result

    def _built(self, ep: _Episode, build, exc: BaseException | None, error: str):
        """(path, kept, message, error) once the episode's build is over (``exc``: why it did not start)."""
        try:
            if exc is not None:
                raise exc
            path = Path(build.wait(cleanup=False))   # the log goes once the episode is reported
        except Exception as exc:  # noqa: BLE001 - DiskFullError, EpisodeBuildError: the step log stays
            message = (f"{error}; " if error else "") + (
                f"could not finalise the episode ({exc}); its steps are in {ep.writer.temp_path}: once there "
                f"is room, run `ros2 run rdt_recorder recover {ep.writer.temp_path.parent}`")
            return None, False, message, error or message
        message = (f"{error}; " if error else "") + f"episode saved to {path}"
        if ep.writer.rejected.count:
            message += f"; {ep.writer.rejected_summary()}"
        return path, True, message, error

    def _finish_build(self, ep: _Episode, build, pending: EpisodeResult, error: str, t0: float) -> None:
        """Background end of stop(wait=False): report the episode once its file is complete."""
        path, kept, message, error = self._built(ep, build, None, error)
        result = dataclasses.replace(pending, path=path, kept=kept, message=message, pending=False,
                                     finalize_s=time.perf_counter() - t0)
        self._settle(result, error, latest=False, replaces=pending)
        if self.on_finished is not None:
            self.on_finished(result)
        build.cleanup()

    def _settle(self, result: EpisodeResult, error: str, *, latest: bool,
                replaces: EpisodeResult | None = None) -> None:
        """Publish an episode's outcome. A background build replaces its pending result unless a later
        episode ended meanwhile, and changes state and message only while no episode is recording."""
        with self._lock:
            if not latest and self._last_result is not replaces:
                return
            self._last_result = result
            if latest or self._episode is None:
                self._state = RecorderState.ERROR if error else RecorderState.IDLE
                self._path = str(result.path) if result.path else ""
                self._message = result.message


def recording_summary(stats: AlignmentStats, dropped: dict[str, int], high_water: int) -> dict:
    """The episode attributes that describe how well the streams were aligned."""
    return {"alignment": stats.to_dict(), "dropped_frames": dict(dropped), "queue_high_water": int(high_water)}


__all__ = ["EpisodeRecorder", "EpisodeResult", "RecorderStatus", "RecorderState", "RecorderError",
           "CompressedFrame", "recording_summary", "DEFAULT_MIN_FREE_BYTES"]
