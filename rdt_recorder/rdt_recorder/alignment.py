"""Stream alignment: the ONE implementation used by the live recorder and the bag converter.

Every stream (a camera, a joint-state topic) delivers ``(stamp_ns, payload)`` messages. Steps are laid on a
grid at the control frequency; step ``k`` at time ``t_k`` takes, for every stream, the newest message
stamped at or before ``t_k`` and no older than the tolerance. A step that some stream cannot fill is counted
(per-stream misses) and skipped, never invented. With ``next_streams`` (action = the next step's measured
state), a step also carries those streams' values at ``t_{k+1}``, and it is skipped when they are missing.

The aligner works incrementally (live: ``push`` messages as they come, ``poll(watermark_ns)`` for the steps
that can no longer change) and in batch (``push`` everything, then ``finish()``).
"""
from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence


class NonMonotonicStampError(ValueError):
    """A stream delivered a message stamped earlier than the one before it (strict mode)."""

    def __init__(self, stream: str, previous_ns: int, stamp_ns: int):
        self.stream, self.previous_ns, self.stamp_ns = stream, previous_ns, stamp_ns
        super().__init__(
            f"stream '{stream}': header stamp {stamp_ns} ns is earlier than the previous message's "
            f"{previous_ns} ns (by {(previous_ns - stamp_ns) / 1e6:.3f} ms); header stamps must not go backwards. "
            "Fix the publisher's clock, or record the topic with receive times (zero header stamps)."
        )


def header_stamp_ns(header) -> int:
    """A std_msgs/Header's stamp in integer nanoseconds (live messages and rosbags-decoded ones alike)."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def effective_stamp(header_stamp_ns: int, receive_ns: int | None) -> int:
    """The header stamp (the sensor's clock); the receive time only where the header stamp is zero."""
    if header_stamp_ns:
        return int(header_stamp_ns)
    if receive_ns is None:
        raise ValueError("message has a zero header stamp and no receive time to fall back on")
    return int(receive_ns)


@dataclass
class AlignedStep:
    """One filled step: its grid time, the chosen payload and stamp of every stream."""

    index: int                      # position on the grid (gaps where steps were skipped)
    stamp_ns: int                   # the step time written to /timestamps
    values: dict[str, Any]          # stream -> payload of the chosen message
    stamps: dict[str, int]          # stream -> stamp of the chosen message
    next_values: dict[str, Any] = field(default_factory=dict)  # next_streams' payloads at the next step time


@dataclass
class _SkewAccumulator:
    count: int = 0
    total_ns: int = 0
    max_ns: int = 0

    def add(self, skew_ns: int) -> None:
        self.count += 1
        self.total_ns += skew_ns
        self.max_ns = max(self.max_ns, skew_ns)


@dataclass
class AlignmentStats:
    """What alignment did: steps written and skipped, per-stream misses and skew (step time - message stamp)."""

    steps: int = 0
    skipped_steps: int = 0
    misses: dict[str, int] = field(default_factory=dict)
    skew_mean_ms: dict[str, float] = field(default_factory=dict)
    skew_max_ms: dict[str, float] = field(default_factory=dict)
    late_messages: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "steps": self.steps,
            "skipped_steps": self.skipped_steps,
            "misses": dict(self.misses),
            "skew_mean_ms": dict(self.skew_mean_ms),
            "skew_max_ms": dict(self.skew_max_ms),
            "late_messages": dict(self.late_messages),
        }

    def summary_lines(self) -> list[str]:
        lines = [f"steps written {self.steps}, skipped {self.skipped_steps}"]
        for name in self.misses:
            lines.append(
                f"  {name:<24} misses {self.misses[name]:>6}   skew mean {self.skew_mean_ms.get(name, 0.0):7.2f} ms"
                f"   max {self.skew_max_ms.get(name, 0.0):7.2f} ms"
            )
        return lines


class StreamAligner:
    """Samples several timestamped streams onto a common step grid (see the module docstring).

    ``start_ns``: time of the first step; None = the first moment every stream has delivered a message.
    ``end_ns``: no step after this time; None = open-ended.
    ``max_duration_s``: at most this long from the first step (``max_duration_s * frequency`` steps).
    ``strict``: a stream's stamps must not decrease (bag conversion); otherwise late messages are inserted in
    order and those older than an already-decided step are counted and ignored (live).
    """

    def __init__(
        self,
        streams: Sequence[str],
        frequency_hz: float,
        tolerance_s: float,
        *,
        next_streams: Sequence[str] = (),
        start_ns: int | None = None,
        end_ns: int | None = None,
        max_duration_s: float | None = None,
        strict: bool = False,
    ):
        if not streams:
            raise ValueError("alignment needs at least one stream")
        if len(set(streams)) != len(streams):
            raise ValueError(f"stream names must be unique, got {list(streams)}")
        unknown = [s for s in next_streams if s not in streams]
        if unknown:
            raise ValueError(f"next_streams {unknown} are not among the streams {list(streams)}")
        if not frequency_hz > 0:
            raise ValueError(f"control frequency must be > 0 Hz, got {frequency_hz}")
        if not tolerance_s > 0:
            raise ValueError(f"tolerance must be > 0 s, got {tolerance_s}")
        self.streams = list(streams)
        self.next_streams = list(next_streams)
        self.period_ns = int(round(1e9 / frequency_hz))
        self.tolerance_ns = int(round(tolerance_s * 1e9))
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.max_duration_ns = int(round(max_duration_s * 1e9)) if max_duration_s else None
        self.strict = strict
        self._stamps: dict[str, deque[int]] = {s: deque() for s in self.streams}
        self._payloads: dict[str, deque[Any]] = {s: deque() for s in self.streams}
        self._last_pushed: dict[str, int | None] = {s: None for s in self.streams}
        self._first_seen: dict[str, int] = {}
        self._next_index = 0          # the next grid step to decide
        self._finished = False
        self._misses = {s: 0 for s in self.streams}
        self._skew = {s: _SkewAccumulator() for s in self.streams}
        self._late = {s: 0 for s in self.streams}
        self._steps = 0
        self._skipped = 0

    # ------------------------------------------------------------------ input
    def push(self, stream: str, stamp_ns: int, payload: Any) -> None:
        """Add one message (``stamp_ns`` already resolved with :func:`effective_stamp`)."""
        stamps = self._stamps.get(stream)
        if stamps is None:
            raise KeyError(f"unknown stream '{stream}'; streams are {self.streams}")
        stamp_ns = int(stamp_ns)
        last = self._last_pushed[stream]
        if last is not None and stamp_ns < last:
            if self.strict:
                raise NonMonotonicStampError(stream, last, stamp_ns)
            decided = self._decided_before()
            if decided is not None and stamp_ns <= decided:
                self._late[stream] += 1          # would change a step already written
                return
            i = bisect.bisect_right(stamps, stamp_ns)
            stamps.insert(i, stamp_ns)
            self._payloads[stream].insert(i, payload)
        else:
            stamps.append(stamp_ns)
            self._payloads[stream].append(payload)
            self._last_pushed[stream] = stamp_ns
        self._first_seen.setdefault(stream, stamp_ns)

    # ----------------------------------------------------------------- output
    @property
    def started(self) -> bool:
        """True once the grid's origin is known (every stream has delivered, or start_ns was given)."""
        return self._origin() is not None

    def waiting_for(self) -> list[str]:
        """Streams that have not delivered any message yet."""
        return [s for s in self.streams if s not in self._first_seen]

    def step_time(self, index: int) -> int:
        origin = self._origin()
        if origin is None:
            raise RuntimeError("the step grid has no origin yet (not every stream has delivered)")
        return origin + index * self.period_ns

    def poll(self, watermark_ns: int | None = None) -> list[AlignedStep]:
        """Steps that can no longer change: every stream has a message after the step time (or the step
        time is at or before ``watermark_ns``, the live clock minus the latency we wait for)."""
        return list(self._emit(watermark_ns, final=False))

    def finish(self, until_ns: int | None = None) -> list[AlignedStep]:
        """Batch end / episode stop: decide every remaining step up to ``until_ns`` (default: the last
        moment every stream still covers, i.e. the earliest of the streams' last stamps)."""
        if until_ns is None:
            lasts = [self._last_pushed[s] for s in self.streams]
            until_ns = min(lasts) if all(v is not None for v in lasts) else None
        if self.end_ns is not None:
            until_ns = self.end_ns if until_ns is None else min(until_ns, self.end_ns)
        steps = [] if until_ns is None else list(self._emit(until_ns, final=True))
        self._finished = True
        return steps

    @property
    def done(self) -> bool:
        """True when ``end_ns`` has been reached or ``finish`` was called."""
        if self._finished:
            return True
        origin = self._origin()
        return self.end_ns is not None and origin is not None and self.step_time(self._next_index) > self.end_ns

    def stats(self) -> AlignmentStats:
        return AlignmentStats(
            steps=self._steps,
            skipped_steps=self._skipped,
            misses=dict(self._misses),
            skew_mean_ms={s: (a.total_ns / a.count / 1e6 if a.count else 0.0) for s, a in self._skew.items()},
            skew_max_ms={s: a.max_ns / 1e6 for s, a in self._skew.items()},
            late_messages=dict(self._late),
        )

    # -------------------------------------------------------------- internals
    def _origin(self) -> int | None:
        if self.start_ns is None:
            if len(self._first_seen) < len(self.streams):
                return None
            # first grid point at which every stream has a message: the latest first stamp
            self.start_ns = max(self._first_seen.values())
        if self.max_duration_ns is not None:
            end = self.start_ns + self.max_duration_ns - 1      # exclusive: duration * frequency steps
            self.end_ns = end if self.end_ns is None else min(self.end_ns, end)
            self.max_duration_ns = None
        return int(self.start_ns)

    def _decided_before(self) -> int | None:
        """Stamps at or before this time can no longer affect an undecided step."""
        origin = self._origin()
        if origin is None or self._next_index == 0:
            return None
        return self.step_time(self._next_index - 1)

    def _covered(self, stream: str, t: int) -> bool:
        """The stream's choice for time t is final: a message stamped after t has arrived."""
        last = self._last_pushed[stream]
        return last is not None and last > t

    def _pick(self, stream: str, t: int) -> tuple[int, Any] | None:
        stamps = self._stamps[stream]
        i = bisect.bisect_right(stamps, t) - 1
        if i < 0:
            return None
        stamp = stamps[i]
        if t - stamp > self.tolerance_ns:
            return None
        return stamp, self._payloads[stream][i]

    def _prune(self, t: int) -> None:
        """Drop messages that can no longer be chosen for any step at or after t."""
        for s in self.streams:
            stamps, payloads = self._stamps[s], self._payloads[s]
            while len(stamps) >= 2 and stamps[1] <= t:
                stamps.popleft()
                payloads.popleft()

    def _emit(self, watermark_ns: int | None, final: bool) -> Iterable[AlignedStep]:
        if self._finished or self._origin() is None:
            return
        while True:
            k = self._next_index
            t = self.step_time(k)
            if self.end_ns is not None and t > self.end_ns:
                return
            t_next = t + self.period_ns
            limit = watermark_ns if watermark_ns is not None else -math.inf
            if final:
                if t > limit:
                    return
                if any(self._last_pushed[s] is None or t_next > self._last_pushed[s] for s in self.next_streams):
                    return   # the state was not recorded at the next step time: the last step gets no action
            elif not (t <= limit and (not self.next_streams or t_next <= limit)):
                need_now = all(self._covered(s, t) for s in self.streams)
                need_next = all(self._covered(s, t_next) for s in self.next_streams)
                if not (need_now and need_next):
                    return
            self._next_index += 1
            step = self._fill(k, t, t_next)
            self._prune(t)
            if step is not None:
                yield step

    def _fill(self, k: int, t: int, t_next: int) -> AlignedStep | None:
        values, stamps, next_values = {}, {}, {}
        missing: set[str] = set()
        for s in self.streams:
            picked = self._pick(s, t)
            if picked is None:
                missing.add(s)
            else:
                stamps[s], values[s] = picked
        for s in self.next_streams:
            picked = self._pick(s, t_next)
            if picked is None:
                missing.add(s)
            else:
                next_values[s] = picked[1]
        if missing:
            self._skipped += 1
            for s in missing:
                self._misses[s] += 1
            return None
        for s, stamp in stamps.items():
            self._skew[s].add(t - stamp)
        self._steps += 1
        return AlignedStep(index=k, stamp_ns=t, values=values, stamps=stamps, next_values=next_values)
