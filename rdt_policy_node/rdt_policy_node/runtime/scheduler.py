"""ChunkScheduler: inference in a worker, requested early, aligned to its observation, stitched into a Plan.

The control tick never waits for the model: ``request`` hands the observation to a worker (a thread, or a
separate process for a model that holds the GIL) and returns; ``poll`` picks up a finished chunk. The next
chunk is requested when the current one has about ``latency`` left before its ``execute_horizon`` ends
(latency measured, the slowest of the recent ones). A ready chunk is aligned to the time its observation
was taken (row i belongs to ``obs_stamp + i / control_frequency``; rows already in the past are dropped)
and blended into the running plan: a linear cross-fade over ``blend_steps``, or in ``rtc`` mode
(real-time chunking) the predictor is also given the actions already committed for the new chunk's first
rows (``inpaint_actions``) so the new chunk starts on them.
"""
from __future__ import annotations

import math
import multiprocessing
import queue
import threading
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .interpolation import Plan
from .observation import Observation, materialize

CHUNKING_MODES = ("crossfade", "rtc")


@dataclass
class Chunk:
    """One inference: its timing, its actions (None when it failed), and why it was rejected."""

    seq: int
    obs_stamp: float
    request_time: float
    ready_time: float = math.nan
    actions: np.ndarray | None = None
    error: str | None = None
    first_index: int | None = None  # first row executed (None = not used)
    inpainted: int = 0  # rows conditioned on committed actions (rtc)

    @property
    def latency(self) -> float:
        return self.ready_time - self.request_time


def call_predictor(predict: Callable, images, qpos, stamp, inpaint):
    """Predictors take (images, qpos, stamp); the inpaint keyword is only passed when used. The observation's
    camera frames are converted here, in the inference worker (observation.materialize)."""
    images = materialize(images)
    if inpaint is None:
        return predict(images, qpos, stamp)
    return predict(images, qpos, stamp, inpaint_actions=inpaint)


class ThreadInference:
    """Runs the predictor in one worker thread (torch releases the GIL during its kernels).

    The thread is a daemon and owns its queue, rather than a ThreadPoolExecutor (whose threads Python joins
    at exit): a model that never returns must not keep the node from shutting down.
    """

    def __init__(self, predict: Callable):
        self.predict = predict
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="rdt-inference", daemon=True)
        self._thread.start()

    def submit(self, images, qpos, stamp, inpaint) -> Future:
        if self._closed:
            raise RuntimeError("inference worker is closed")
        future: Future = Future()
        self._jobs.put((future, (images, qpos, stamp, inpaint)))
        return future

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call_predictor(self.predict, *args))
            except BaseException as exc:  # reported through the future: the tick turns it into a hold
                future.set_exception(exc)

    def close(self, timeout: float = 3.0) -> bool:
        """Cancel what has not started and let the worker end, waiting up to ``timeout`` s for a running
        inference (torch still running in a thread when the interpreter exits aborts the process:
        "terminate called without an active exception"); a model that never returns is left behind.
        Returns whether the worker has ended (False: a process should leave with os._exit, see the node)."""
        self._closed = True
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job[0].cancel()
        self._jobs.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()


_CHILD_PREDICTOR = None


def _child_init(factory, args):
    global _CHILD_PREDICTOR
    _CHILD_PREDICTOR = factory(*args)


def _child_predict(images, qpos, stamp, inpaint):
    return call_predictor(_CHILD_PREDICTOR, images, qpos, stamp, inpaint)


class ProcessInference:
    """Runs the predictor in a separate (spawned) process, built there by ``factory(*args)`` (picklable)."""

    def __init__(self, factory: Callable, args: tuple = ()):
        ctx = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_child_init,
                                         initargs=(factory, tuple(args)))

    def submit(self, images, qpos, stamp, inpaint) -> Future:
        return self._pool.submit(_child_predict, images, qpos, stamp, inpaint)

    def close(self, timeout: float = 3.0) -> bool:
        """Stops the pool without waiting: the model runs in another process, nothing of it in ours."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        return True


class ChunkScheduler:
    def __init__(self, inference, *, dof: int, control_frequency: float, horizon: int = 64,
                 execute_horizon: int | None = None, blend_steps: int = 5, mode: str = "crossfade",
                 initial_latency_s: float = 0.3, latency_window: int = 10):
        # settings are checked by rdt_policy_node.config (PolicyConfig) before they get here
        execute_horizon = horizon if execute_horizon in (None, 0) else min(int(execute_horizon), horizon)
        self.inference = inference if hasattr(inference, "submit") else ThreadInference(inference)
        self.dof, self.horizon, self.execute_horizon = dof, horizon, execute_horizon
        self.dt = 1.0 / float(control_frequency)
        self.blend_steps, self.mode = int(blend_steps), mode
        self._latencies = deque([float(initial_latency_s)], maxlen=latency_window)
        self._measured = False
        self._pending: tuple[Chunk, Future] | None = None
        self._seq = 0
        self.plan: Plan | None = None
        self.current: Chunk | None = None
        self.chunks_received = 0

    # ------------------------------------------------------------------ timing
    @property
    def next_seq(self) -> int:
        """Sequence number the next request will get (chunks below it were requested earlier)."""
        return self._seq

    @property
    def busy(self) -> bool:
        return self._pending is not None

    @property
    def latency_estimate(self) -> float:
        return max(self._latencies)

    @property
    def switch_time(self) -> float:
        """When the current chunk reaches its execute_horizon (the next chunk should be running by then)."""
        if self.current is None:
            return -math.inf
        # by the last row at the latest: the plan ends there, and after it the controller holds
        rows = len(self.current.actions) if self.current.actions is not None else self.horizon
        return self.current.obs_stamp + min(self.execute_horizon, rows - 1) * self.dt

    def should_request(self, now: float) -> bool:
        if self.busy:
            return False
        if self.plan is None or self.current is None:
            return True
        return now + self.latency_estimate + self.dt >= self.switch_time

    def chunk_index(self, now: float) -> int:
        """Row of the current chunk being executed now."""
        if self.current is None:
            return 0
        return int(np.clip(math.floor((now - self.current.obs_stamp) / self.dt + 1e-9), 0, self.horizon - 1))

    # ------------------------------------------------------------------ worker
    def request(self, obs: Observation, now: float) -> Chunk | None:
        """Start inference on ``obs`` unless one is running; returns the pending chunk record."""
        if self.busy:
            return None
        inpaint = None
        if self.mode == "rtc" and self.plan is not None:
            k = min(self.horizon, math.ceil((self.latency_estimate + self.dt) / self.dt) + self.blend_steps)
            times = obs.stamp + np.arange(k) * self.dt
            times = times[times <= self.plan.end_time]
            if len(times):
                inpaint = self.plan.sample(times).astype(np.float32)
        chunk = Chunk(self._seq, float(obs.stamp), float(now), inpainted=0 if inpaint is None else len(inpaint))
        self._seq += 1
        try:
            fut = self.inference.submit(obs.images, np.asarray(obs.qpos, dtype=np.float32), obs.stamp, inpaint)
        except Exception as e:  # a broken worker (dead inference process, closed pool): report it, never raise
            fut = Future()
            fut.set_exception(e)
        self._pending = (chunk, fut)
        return chunk

    def pending_for(self, now: float) -> float:
        """Seconds the running inference has been running (0 when none is)."""
        return 0.0 if self._pending is None else max(0.0, now - self._pending[0].request_time)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the running inference (if any) has finished; True when none is running any more.
        For tests and shutdown; the control tick never calls it."""
        if self._pending is None:
            return True
        try:
            self._pending[1].exception(timeout=timeout)
        except Exception:  # timeout or cancelled
            pass
        return self._pending[1].done()

    def poll(self, now: float) -> Chunk | None:
        """The finished chunk (validated: ``error`` says why it cannot be used), or None."""
        if self._pending is None or not self._pending[1].done():
            return None
        chunk, fut = self._pending
        self._pending = None
        chunk.ready_time = float(now)
        self.chunks_received += 1
        if fut.cancelled():
            chunk.error = "inference cancelled"
            return chunk
        exc = fut.exception()
        if exc is not None:
            chunk.error = f"inference failed: {type(exc).__name__}: {exc}"
            return chunk
        if not self._measured:  # the first measurement replaces the configured guess
            self._latencies.clear()
            self._measured = True
        self._latencies.append(chunk.latency)
        try:  # anything may come back (a tensor that requires grad or lives on the GPU, a list, None)
            raw = np.asarray(fut.result())
            if raw.dtype.kind not in "fiu":
                raise TypeError(f"dtype {raw.dtype} (need real numbers)")
            actions = raw.astype(np.float64)
        except Exception as e:
            chunk.error = f"chunk is not a numeric array: {type(e).__name__}: {e}"
            return chunk
        chunk.actions = actions
        if actions.ndim != 2 or actions.shape[1] != self.dof or not 1 <= actions.shape[0] <= self.horizon:
            chunk.error = (f"chunk has shape {actions.shape}, expected (<= {self.horizon}, {self.dof}); "
                           f"the checkpoint does not match the robot profile")
        elif not np.all(np.isfinite(actions)):
            chunk.error = "non-finite action in chunk"
        return chunk

    # ------------------------------------------------------------------ stitching
    def accept(self, chunk: Chunk, now: float) -> bool:
        """Make ``chunk`` the running plan from ``now`` on, aligned and blended; False (chunk.error) if too late."""
        rows = len(chunk.actions)
        first = max(0, math.ceil((now - chunk.obs_stamp) / self.dt - 1e-9))
        if first >= rows:
            chunk.error = f"chunk arrived {now - chunk.obs_stamp:.3f} s after its observation, past its last action"
            return False
        times = chunk.obs_stamp + np.arange(first, rows) * self.dt
        values = chunk.actions[first:].copy()
        if self.plan is not None:
            k = min(self.blend_steps, len(values))
            if k:
                w = (np.arange(1, k + 1) / (self.blend_steps + 1))[:, None]
                values[:k] = (1 - w) * self.plan.sample(times[:k]) + w * values[:k]
            if times[0] > now + 1e-9:  # keep the trajectory continuous from the current command time
                times = np.concatenate([[now], times])
                values = np.concatenate([self.plan.sample(now)[None], values])
        chunk.first_index = first
        self.plan = Plan(times, values)
        self.current = chunk
        return True

    def reset(self, plan: Plan | None = None) -> None:
        """Drop the running plan (e.g. after a hold); a pending inference still completes and is polled."""
        self.plan = plan
        self.current = None

    def close(self, timeout: float = 3.0) -> bool:
        """Ends the inference worker (``timeout``: see ThreadInference.close); True when it has ended."""
        return self.inference.close(timeout)
