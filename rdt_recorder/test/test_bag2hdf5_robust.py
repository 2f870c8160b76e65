"""bag2hdf5 against malformed bags (the catalogue in malformed_bags.py: exit code, a message naming bag, topic,
time and fix, nothing under a final name), runs into the same --out at once, a run killed with SIGKILL, and
an --out that cannot be written."""
import signal
import subprocess
import sys
import time

import pytest

from rdt_core.episode import EpisodeReader, validate_episode
from rdt_core.testing import read_only_folder
from malformed_bags import CASES, run_case
from recorder_testdata import kinova_bag_messages, write_bag


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_bag(case, tmp_path):
    r = run_case(case, tmp_path)
    assert r["code"] == case.code, r["text"]
    assert not r["missing_words"], f"message lacks {r['missing_words']}:\n{r['text']}"
    assert not r["hidden"], f"left behind {r['hidden']}"
    assert len(r["finals"]) == case.episodes, r["text"]
    for path in r["finals"]:
        assert validate_episode(path).ok
        with EpisodeReader(path) as ep:
            assert ep.meta.extra["rejected_steps"]["count"] >= case.rejected


def test_catalogue_has_at_least_twenty_malformed_inputs():
    assert len(CASES) >= 20


def cli(*args, **popen):
    return subprocess.Popen([sys.executable, "-m", "rdt_recorder.bag2hdf5", *map(str, args), "--profile",
                             "kinova_gen3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def staging_folders(out):
    return sorted(p.name for p in out.glob(".bag2hdf5-*")) if out.exists() else []


def start_and_pause(bag, out):
    """A bag2hdf5 run stopped (SIGSTOP) while it converts: its staging folder exists, it publishes nothing."""
    run = cli(bag, "--out", out)
    end = time.monotonic() + 120
    while not staging_folders(out) and run.poll() is None and time.monotonic() < end:
        time.sleep(0.005)
    run.send_signal(signal.SIGSTOP)
    assert staging_folders(out), "the run finished before it could be paused"
    return run


def test_two_runs_into_one_folder_at_once_keep_each_others_episodes(tmp_path):
    long_bag = write_bag(tmp_path / "long", kinova_bag_messages(seconds=3.9, compressed_wrist=False)[0])
    short_bag = write_bag(tmp_path / "short", kinova_bag_messages(seconds=0.5)[0])
    out = tmp_path / "out"
    slow = start_and_pause(long_bag, out)
    try:
        mine = staging_folders(out)
        fast = cli(short_bag, "--out", out)
        f_out, f_err = fast.communicate(timeout=300)
        assert fast.returncode == 0, f_err
        assert staging_folders(out) == mine                 # the short run left the long run's folder alone
        assert "interrupted" not in f_err
    finally:
        slow.send_signal(signal.SIGCONT)
    s_out, s_err = slow.communicate(timeout=600)
    assert slow.returncode == 0, s_err
    eps = sorted(out.glob("episode_*.hdf5"))
    assert [p.name for p in eps] == ["episode_0.hdf5", "episode_1.hdf5"]
    with EpisodeReader(eps[0]) as a, EpisodeReader(eps[1]) as b:
        assert (a.meta.extra["bag"], b.meta.extra["bag"]) == ("short", "long")
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_killed_runs_staging_folder_is_removed_and_reported_by_the_next_run(tmp_path):
    bag = write_bag(tmp_path / "long", kinova_bag_messages(seconds=3.9, compressed_wrist=False)[0])
    out = tmp_path / "out"
    run = start_and_pause(bag, out)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    left = staging_folders(out)
    assert len(left) == 1 and not list(out.glob("episode_*.hdf5"))
    small = write_bag(tmp_path / "small", kinova_bag_messages(seconds=0.5)[0])
    again = cli(small, "--out", out)
    o, e = again.communicate(timeout=300)
    assert again.returncode == 0, e
    assert f"removed {left[0]}, left by an interrupted bag2hdf5 run" in e and "convert them again" in e
    assert not staging_folders(out) and [p.name for p in out.glob("episode_*.hdf5")] == ["episode_0.hdf5"]


def test_an_out_folder_that_cannot_be_written_is_a_sentence(tmp_path):
    bag = write_bag(tmp_path / "b", kinova_bag_messages(seconds=0.5)[0])
    with read_only_folder(tmp_path) as ro:
        if ro is None:
            pytest.skip("no read-only folder here: root may write anywhere and mount is not permitted")
        for out in (ro, ro / "new_sub_folder"):
            p = cli(bag, "--out", out)
            o, e = p.communicate(timeout=120)
            assert p.returncode == 2 and "Traceback" not in e, e
            assert f"--out {out} cannot be written" in e and "choose a folder you can write to" in e
