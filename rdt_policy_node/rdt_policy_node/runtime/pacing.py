"""The control loop's clock: a thread of its own that calls the tick every period, at real-time priority where
the system allows it (ROS-free).

Why not an executor timer: on a busy robot PC (cameras, the model, the arm's driver on a few cores) the
executor's thread is an ordinary thread among many, and the ROS timer's callback waits behind image
callbacks and the scheduler. Measured in bench/ros_bench.py (100 Hz commands, three 640x480 cameras, 2
cores): a tick took 0.5 ms at the median but 7.7 ms at the 99th percentile, preempted in the middle.
ros2_control runs its update loop the same way: its own thread, SCHED_FIFO when the user may.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Callable

#: what to tell a user whose account may not raise a thread's scheduling priority
REALTIME_HINT = ("allow real-time scheduling for this user (e.g. a line '@realtime - rtprio 99' in "
                 "/etc/security/limits.conf and the user in group realtime, as ros2_control documents; in Docker "
                 "--cap-add=sys_nice --ulimit rtprio=99), or set realtime_priority:=0 to silence this")


def set_realtime_priority(priority: int) -> str | None:
    """Puts the calling thread under SCHED_FIFO at ``priority`` (1-99; 0: leave it as it is). Returns None on
    success, else why it could not (the thread then keeps its normal priority)."""
    if priority <= 0:
        return None
    if not hasattr(os, "sched_setscheduler"):
        return "this system has no SCHED_FIFO (Linux only)"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))   # 0: this thread, on Linux
    except PermissionError:
        return f"no permission for SCHED_FIFO priority {priority}: {REALTIME_HINT}"
    except OSError as e:
        return f"SCHED_FIFO priority {priority} refused ({e}): {REALTIME_HINT}"
    return None


class Pacer:
    """Absolute deadlines every ``period`` s on ``clock``: a late wake-up does not shift the ones after it,
    and after a stall of more than a period the missed deadlines are skipped, not caught up in a burst."""

    def __init__(self, period: float, clock: Callable[[], float] = time.monotonic):
        self.period, self.clock = float(period), clock
        self.deadline = clock()
        self.skipped = 0

    def delay(self) -> float:
        """Seconds until the next deadline (advanced by this call); 0 when it has passed."""
        self.deadline += self.period
        late = self.clock() - self.deadline
        if late > self.period:
            missed = int(late // self.period)
            self.skipped += missed
            self.deadline += missed * self.period
        return max(0.0, -late)


class ControlThread:
    """Calls ``tick()`` every ``period`` s in a daemon thread at SCHED_FIFO ``priority`` (0 = normal).

    After every tick the thread sleeps at least ``MIN_REST`` of a period, even when late: a tick slower than
    its period must not keep a real-time thread on the CPU (it would starve everything else on that core).
    An exception from ``tick`` ends the loop (commands stop: the arm's controller holds its last command) and
    is kept in ``error`` for the owner, which should stop too; ``priority_problem`` says why real-time priority
    was not granted (None when it was, or was not asked for)."""

    MIN_REST = 0.1

    def __init__(self, period: float, tick: Callable[[], None], *, priority: int = 0, name: str = "control"):
        self.period, self.tick, self.priority = float(period), tick, int(priority)
        self.error: BaseException | None = None
        self.priority_problem: str | None = None
        self.ticks = 0
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "ControlThread":
        self._thread.start()
        self._started.wait()          # priority_problem is known once start() returns
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def native_id(self) -> int | None:
        """The OS thread id (for ``os.sched_getscheduler``, ``ps -L``)."""
        return self._thread.native_id

    def stop(self, timeout: float = 2.0) -> bool:
        """Ends the loop after the running tick; True when the thread has ended."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        self.priority_problem = set_realtime_priority(self.priority)
        self._started.set()
        pacer = Pacer(self.period)
        while not self._stop.wait(max(pacer.delay(), self.MIN_REST * self.period)):
            try:
                self.tick()
            except BaseException as e:  # noqa: BLE001 - handed to the owner, which stops
                self.error = e
                return
            self.ticks += 1
