"""Terminal control of the recorder, ROS-free: key commands, what they do, the live status line.

Keys: ``s`` start/stop, ``d`` discard, ``r`` re-record (discard the current episode and start again),
``q`` quit (the current episode is stopped and kept).
"""
from __future__ import annotations

import os
import select
import sys
import threading
from typing import Callable

from rdt_recorder.writer import EpisodeRecorder, RecorderError, RecorderState, RecorderStatus

KEYS = {"s": "toggle", "d": "discard", "r": "rerecord", "q": "quit"}
HELP = "keys: [s] start/stop  [d] discard  [r] re-record  [q] quit"


def parse_key(ch: str) -> str | None:
    """The command a key stands for (case-insensitive), None for any other key."""
    return KEYS.get(ch.lower()) if ch else None


def apply_command(recorder: EpisodeRecorder, command: str, *, instruction: str | None = None,
                  max_duration_s: float = 0.0) -> str:
    """Carry out one keyboard command on the recorder; returns what happened (never raises on a wrong state)."""
    recording = recorder.state in (RecorderState.RECORDING, RecorderState.FINALIZING)
    try:
        if command == "toggle":
            if recording:
                return recorder.stop(wait=False).message      # the file is built while the next one records
            path = recorder.start(instruction=instruction, max_duration_s=max_duration_s)
            return f"recording {path}"
        if command == "discard":
            return recorder.discard().message if recording else "nothing to discard: not recording"
        if command == "rerecord":
            note = recorder.discard().message + "; " if recording else ""
            path = recorder.start(instruction=instruction, max_duration_s=max_duration_s)
            return f"{note}recording again {path}"
        if command == "quit":
            return (recorder.stop().message + "; quitting") if recording else "quitting"
    except (RecorderError, OSError) as exc:
        return f"{command} failed: {exc}"
    raise ValueError(f"unknown command '{command}'; commands are {sorted(set(KEYS.values()))}")


def status_line(status: RecorderStatus) -> str:
    """One terminal line: state, episode, steps, duration, rate, skipped / rejected steps, dropped frames."""
    if status.state == "RECORDING":
        return (f"[REC] episode {status.episode_index}  steps {status.steps}  {status.duration:6.1f} s  "
                f"{status.rate:5.1f} Hz  skipped {status.dropped_steps}  dropped {status.dropped_frames}"
                + (f"  rejected {status.rejected_steps}" if status.rejected_steps else ""))
    last = f"  last: {status.message}" if status.message else ""
    return f"[{status.state}] {HELP}{last}"


class KeyReader:
    """Reads single keys from a terminal in a daemon thread (cbreak mode, restored on stop)."""

    def __init__(self, on_command: Callable[[str], None], stream=None):
        self.stream = stream or sys.stdin
        self.on_command = on_command
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="keyboard", daemon=True)
        self._saved = None

    @staticmethod
    def available(stream=None) -> bool:
        stream = stream or sys.stdin
        try:
            return stream.isatty()
        except (AttributeError, ValueError):
            return False

    def start(self) -> "KeyReader":
        import termios
        import tty

        fd = self.stream.fileno()
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        if self._saved is not None:
            import termios
            termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None

    def _run(self) -> None:
        fd = self.stream.fileno()
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            ch = os.read(fd, 1).decode(errors="ignore")
            command = parse_key(ch)
            if command:
                self.on_command(command)
