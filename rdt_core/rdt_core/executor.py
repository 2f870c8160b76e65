"""The rclpy executor the nodes spin (rclpy is imported only when called: rdt_core itself stays ROS-free).

rclpy's EventsExecutor where it exists (Jazzy: rclpy.experimental), else a MultiThreadedExecutor. The nodes'
callbacks are short (image callbacks keep the message, the control tick is a few ms of numpy, the writer and
the inference run in their own threads), so one thread runs them all. What cost was the Python
MultiThreadedExecutor itself: a wait set rebuilt in Python, a future and a thread hand-over per callback, all
holding the GIL. Measured with ``py-spy record --gil`` on the policy node in bench/ros_bench.py: its spin
thread held the GIL for 67 % of the GIL-held samples (inference 3.5 %); the recorder used a full core for
~900 callbacks a second, 17 % with the EventsExecutor. The EventsExecutor waits, takes and dispatches in C++.
"""
from __future__ import annotations


def make_executor():
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError:   # rclpy before Jazzy
        from rclpy.executors import MultiThreadedExecutor

        return MultiThreadedExecutor(num_threads=4)
    return EventsExecutor()


def freeze_startup_objects() -> None:
    """Exempts everything made so far (torch, rclpy, the model: millions of objects) from garbage collection.

    A full collection walks every object the process holds, with the GIL held, so every thread stops for
    it: measured in bench/ros_bench.py, one in the policy node took 218 ms (a 223 ms hole in the 100 Hz
    commands). After start-up those objects live as long as the process; frozen, a full collection walks
    only what was made since (sub-millisecond)."""
    import gc

    gc.collect()
    gc.freeze()


def spin(executor, keep_going=lambda: True, period_s: float = 0.1) -> None:
    """Run callbacks while rclpy is ok and ``keep_going()``; through spin_once, since the EventsExecutor's
    spin() of rclpy 7.1.6 never ran a timer (measured: 0 ticks of a 10 ms timer in 2 s; spin_once: 198).
    The node is built by now: its objects are frozen first (``freeze_startup_objects``)."""
    import rclpy

    freeze_startup_objects()
    while rclpy.ok() and keep_going():
        executor.spin_once(timeout_sec=period_s)
