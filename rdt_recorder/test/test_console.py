"""Keyboard commands and the status line, on a real recorder (ROS-free part of the terminal control)."""
import time

import pytest

from rdt_core.robots import load_profile
from rdt_recorder.console import apply_command, parse_key, status_line
from rdt_recorder.streams import StreamPlan
from rdt_recorder.writer import EpisodeRecorder, RecorderStatus
from recorder_testdata import LiveFeeder


def test_keys_map_to_commands():
    assert [parse_key(k) for k in "sSdrqx"] == ["toggle", "toggle", "discard", "rerecord", "quit", None]
    assert parse_key("") is None


def test_keyboard_commands_drive_the_recorder(tmp_path):
    rec = EpisodeRecorder(StreamPlan.from_profile(load_profile("kinova_gen3")), tmp_path)
    try:
        with LiveFeeder(rec):
            assert apply_command(rec, "discard") == "nothing to discard: not recording"
            assert "recording" in apply_command(rec, "toggle")
            time.sleep(0.4)
            text = apply_command(rec, "rerecord")
            assert "discarded" in text and "recording again" in text
            time.sleep(0.4)
            line = status_line(rec.status())
            assert line.startswith("[REC] episode 0") and "steps" in line and "Hz" in line
            text = apply_command(rec, "toggle")
            assert "steps recorded, writing episode_0.hdf5" in text
            assert "recording" in apply_command(rec, "toggle")     # the next one starts while 0 is built
            time.sleep(0.4)
            assert "writing episode_1.hdf5" in apply_command(rec, "toggle")
            assert "quitting" == apply_command(rec, "quit")
        assert rec.wait_for_builds(timeout=60)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["episode_0.hdf5", "episode_1.hdf5"]
        line = status_line(rec.status())
        assert line.startswith("[IDLE] keys: [s] start/stop") and "episode saved to" in line
    finally:
        rec.close()


def test_status_line_shows_rate_and_drops():
    s = RecorderStatus(state="RECORDING", episode_index=3, path="x", steps=250, duration=10.0, rate=24.9,
                       dropped_steps=2, dropped_frames=5)
    assert status_line(s) == "[REC] episode 3  steps 250    10.0 s   24.9 Hz  skipped 2  dropped 5"
    err = RecorderStatus(state="ERROR", episode_index=3, path="", steps=0, duration=0, rate=0, dropped_steps=0,
                         dropped_frames=0, message="disk full")
    assert status_line(err).endswith("last: disk full")


def test_unknown_command_is_an_error(tmp_path):
    rec = EpisodeRecorder(StreamPlan.from_profile(load_profile("kinova_gen3")), tmp_path)
    try:
        with pytest.raises(ValueError, match="unknown command"):
            apply_command(rec, "fly")
    finally:
        rec.close()
