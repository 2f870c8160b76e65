"""The control loop's clock (runtime.pacing): absolute deadlines, no catch-up bursts, a rest after every tick,
errors handed to the owner, real-time priority or a reason why not. Real threads and clocks; only lower
bounds on sleeps are asserted (a loaded machine makes waits longer, never shorter)."""
import os
import threading
import time

import pytest

from rdt_policy_node.runtime import pacing
from rdt_policy_node.runtime.pacing import ControlThread, Pacer, set_realtime_priority


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_pacer_keeps_absolute_deadlines_and_skips_what_a_stall_missed():
    clock = FakeClock()
    pacer = Pacer(0.01, clock)
    assert pacer.delay() == pytest.approx(0.01)
    clock.t += 0.013                       # woke 3 ms late: the next deadline is still on the grid
    assert pacer.delay() == pytest.approx(0.007)
    clock.t += 0.007
    clock.t += 0.055                       # a 55 ms stall: five deadlines passed
    assert pacer.delay() == 0.0            # tick now, once ...
    assert pacer.skipped == 4              # ... not five times in a burst
    assert pacer.delay() == pytest.approx(0.01 - 0.005)   # and back on the original 10 ms grid
    assert (pacer.deadline - 100.0) / 0.01 == pytest.approx(round((pacer.deadline - 100.0) / 0.01))


def test_control_thread_ticks_until_stopped():
    ticks, threads = [], set()
    loop = ControlThread(0.005, lambda: (ticks.append(time.monotonic()), threads.add(threading.get_ident())))
    loop.start()
    try:
        deadline = time.monotonic() + 30
        while len(ticks) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(ticks) >= 20
        assert threads == {loop._thread.ident} != {threading.get_ident()}
    finally:
        assert loop.stop()
    n = len(ticks)
    time.sleep(0.05)
    assert len(ticks) == n and not loop.alive and loop.error is None
    assert all(b - a >= 0.0 for a, b in zip(ticks, ticks[1:]))


def test_a_tick_slower_than_its_period_still_rests_after_each_tick():
    """A real-time thread that never slept would take its core from everything else."""
    spans = []

    def slow_tick():
        t0 = time.monotonic()
        time.sleep(0.02)                   # 4 periods of 5 ms: every deadline is missed
        spans.append((t0, time.monotonic()))

    loop = ControlThread(0.005, slow_tick).start()
    try:
        deadline = time.monotonic() + 30
        while len(spans) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        loop.stop()
    rests = [b[0] - a[1] for a, b in zip(spans, spans[1:])]
    assert len(rests) >= 5
    assert min(rests) >= ControlThread.MIN_REST * 0.005 * 0.95


def test_an_error_in_the_tick_ends_the_loop_and_is_kept():
    calls = []

    def failing():
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("tick broke")

    loop = ControlThread(0.002, failing).start()
    deadline = time.monotonic() + 30
    while loop.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not loop.alive
    assert isinstance(loop.error, RuntimeError) and "tick broke" in str(loop.error)
    assert len(calls) == 3 and loop.ticks == 2


def test_realtime_priority_is_granted_or_the_reason_is_given():
    assert set_realtime_priority(0) is None     # not asked for: nothing changes
    loop = ControlThread(0.01, lambda: None, priority=10).start()
    try:
        if loop.priority_problem is None:       # allowed here (root, or rtprio rights)
            assert os.sched_getscheduler(loop.native_id) == os.SCHED_FIFO
            assert os.sched_getparam(loop.native_id).sched_priority == 10
        else:
            assert "rtprio" in loop.priority_problem
            assert os.sched_getscheduler(loop.native_id) == os.SCHED_OTHER
    finally:
        loop.stop()
    assert os.sched_getscheduler(0) == os.SCHED_OTHER      # the caller's thread is left as it was


def test_no_permission_for_realtime_names_the_fix(monkeypatch):
    def refuse(*args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(pacing.os, "sched_setscheduler", refuse)
    problem = set_realtime_priority(40)
    assert "no permission for SCHED_FIFO priority 40" in problem
    assert "/etc/security/limits.conf" in problem and "realtime_priority:=0" in problem
