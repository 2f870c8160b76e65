"""Fault trials of the live recorder, shared by test_recorder_faults.py and bench/fault_bench.py: a recorder
process (recorder_fault_child.py) on a really full disk, or killed with SIGKILL while it records, while it
stops, or while ``recover`` rebuilds its episode. Each trial returns what had to survive and what did."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rdt_core.episode import EpisodeReader, recover, temp_path_for, validate_episode

MiB = 2 ** 20
CHILD = str(Path(__file__).with_name("recorder_fault_child.py"))
PERIOD = 40_000_000          # kinova_gen3: 25 Hz


def events(stdout: str) -> dict:
    out = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            out.update(json.loads(line))
    return out


def episode_stamps(path) -> np.ndarray:
    """The timestamps of a valid episode whose steps are on the 25 Hz grid and finite."""
    rep = validate_episode(path)
    assert rep.ok, str(rep)
    with EpisodeReader(path) as r:
        assert np.isfinite(r.qpos).all() and np.isfinite(r.action).all()
        stamps = r.timestamps
    assert np.all(np.diff(stamps) % PERIOD == 0), "steps off the grid"
    return stamps


def start_child(out: Path, seconds: float, min_free: int = 0, flush_s: float = 0.5, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, CHILD, str(out), str(seconds), str(min_free), str(flush_s)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def log_steps(log: Path) -> int:
    with sqlite3.connect(log) as con:           # as recover opens it (a hot journal is rolled back)
        return int(con.execute("SELECT count(*) FROM steps").fetchone()[0])


def wait_no_hidden(folder: Path, timeout: float = 60.0) -> list[str]:
    """Hidden files left in ``folder`` once builders still running (orphans of a killed process) are done."""
    end = time.monotonic() + timeout
    while True:
        hidden = sorted(p.name for p in folder.iterdir() if p.name.startswith("."))
        if not hidden or time.monotonic() > end:
            return hidden
        time.sleep(0.2)


@dataclass
class Trial:
    must: int            # steps that had to survive
    kept: int            # of those, how many are in the episode
    detail: str = ""

    @property
    def share(self) -> float:
        return 1.0 if self.must == 0 else self.kept / self.must


def disk_full_trial(disk, min_free: int, filler: bool = False) -> Trial:
    """Record on ``disk`` (rdt_core.testing.small_disk) until it is full: the process must live and every
    step it reports kept must be in the episode after stop (or recover, once there is room again)."""
    out = disk.path / "episodes"
    child = start_child(out, 60, min_free, **disk.popen_kwargs())
    assert json.loads(child.stdout.readline()).get("started")
    filler_path = disk.path / "filler.bin"
    if filler:                                    # another process takes the rest of the disk
        time.sleep(1.0)
        try:
            with open(filler_path, "wb") as f:
                while True:
                    f.write(os.urandom(MiB))
        except OSError:                           # full (at the write, or at the close's flush)
            pass
    stdout, stderr = child.communicate(timeout=300)
    ev = events(stdout)
    if child.returncode != 0 or not ev.get("alive"):
        return Trial(1, 0, f"the recorder died ({child.returncode}): {stderr.strip().splitlines()[-1:]}")
    final = out / "episode_0.hdf5"
    how = "stop built it"
    if not ev["kept"]:
        assert "free at least" in ev["message"] and "recover" in ev["message"], ev
        filler_path.unlink(missing_ok=True)
        recover(temp_path_for(final))             # (with the size limit: recover runs without it)
        how = "recover built it"
    filler_path.unlink(missing_ok=True)
    return Trial(ev["steps"], len(episode_stamps(final)), f"{ev['steps']} steps kept, {how}; {ev['message'][:80]}")


def kill_trial(tmp: Path, phase: str, delay: float, record_s: float = 2.0) -> Trial:
    """SIGKILL the recorder ``delay`` s into ``phase``: "record" (every step older than 1 s must survive)
    or "stop" after ``record_s`` of recording (every step older than 1 s when the stop began); then recover."""
    out = tmp / f"{phase}_{delay:.3f}"
    child = start_child(out, record_s if phase == "stop" else 60)
    try:
        said = [json.loads(child.stdout.readline())]
        t0 = said[0]["t_ns"]
        if phase == "stop":
            while "stopping" not in said[-1]:
                said.append(json.loads(child.stdout.readline()))
            cut_ns = said[-1]["t_ns"]
            time.sleep(delay)
        else:
            time.sleep(delay)
            cut_ns = time.time_ns()
        child.send_signal(signal.SIGKILL)
        killed_ns = time.time_ns()
        said += [json.loads(line) for line in child.stdout.read().splitlines() if line.startswith("{")]
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    # grid steps the recorder itself skipped (stale inputs under load) before it was killed were never recorded
    skipped = max([e["skipped"] for e in said if "skipped" in e and e["t_ns"] <= killed_ns] or [0])
    final = out / "episode_0.hdf5"
    log = temp_path_for(final)
    built_by = "recover" if log.exists() else "the recorder"
    if log.exists():
        recover(log)
    stamps = episode_stamps(final)
    cut = cut_ns - 1_000_000_000
    expected = max(0, int((cut - int(stamps[0])) // PERIOD) + 1) if len(stamps) else 0
    kept = int(np.sum(stamps <= cut))
    late_start = (int(stamps[0]) - t0) / 1e9 if len(stamps) else float("inf")
    leftovers = wait_no_hidden(out)
    detail = f"{len(stamps)} steps in the episode (built by {built_by}), the first {late_start:.2f} s after start"
    if late_start > 0.5:                       # steps lost at the start would hide behind a late first step
        expected += int(late_start * 25)
    expected = max(0, expected - skipped)
    if skipped:
        detail += f"; the recorder skipped {skipped} steps itself (stale inputs)"
    return Trial(expected, min(kept, expected), detail + (f"; left behind: {leftovers}" if leftovers else ""))


def kill_recover_trial(tmp: Path, delays=(0.05, 0.3)) -> Trial:
    """A recording killed mid-episode, then ``recover`` killed (after each delay), then recover again: every
    committed step must be in the episode and nothing hidden left."""
    out = tmp / "recover"
    child = start_child(out, 60)
    assert json.loads(child.stdout.readline()).get("started")
    time.sleep(2.5)
    child.kill()
    child.wait(timeout=30)
    log = temp_path_for(out / "episode_0.hdf5")
    committed = log_steps(log)
    for delay in delays:
        p = subprocess.Popen([sys.executable, "-m", "rdt_recorder.recover", str(out)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        time.sleep(delay)
        p.kill()
        p.wait(timeout=30)
    if log.exists():
        done = subprocess.run([sys.executable, "-m", "rdt_recorder.recover", str(out)], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    leftovers = wait_no_hidden(out)
    kept = len(episode_stamps(out / "episode_0.hdf5"))
    return Trial(committed, kept, f"{committed} committed steps" + (f"; left behind: {leftovers}" if leftovers else ""))
