"""rdt-dataset-stats and rdt-dataset-info on real episode files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rdt_training.dataset import index_episodes
from rdt_training.info import episode_info, format_table, main as info_main, skew_summary
from rdt_training.stats import compute_stats, main as stats_main

from conftest import record_episode


def test_stats_follow_the_official_formulas(episodes_dir, kinova):
    episodes, _ = index_episodes(episodes_dir)
    rec = compute_stats(episodes)
    states = np.concatenate([kinova.qpos_to_unified(e.qpos[e.start:]) for e in episodes]).astype(np.float64)
    assert rec["dataset_name"] == "kinova_gen3" and rec["num_steps"] == len(states)
    np.testing.assert_allclose(rec["state_mean"], states.mean(0), atol=1e-6)
    np.testing.assert_allclose(rec["state_min"], states.min(0), atol=1e-6)
    np.testing.assert_allclose(rec["state_max"], states.max(0), atol=1e-6)
    # official std: second moment over the non-zero entries only; dims the robot lacks stay 0
    idx = kinova.unified_indices
    nz = np.maximum((np.abs(states) > 1e-8).sum(0), 1)
    want = np.sqrt(np.maximum((states ** 2).sum(0) / nz - states.mean(0) ** 2 * (len(states) / nz), 0))
    np.testing.assert_allclose(rec["state_std"], want, atol=1e-6)
    unused = np.setdiff1d(np.arange(128), idx)
    assert not np.any(np.array(rec["state_std"])[unused]) and not np.any(np.array(rec["state_mean"])[unused])
    assert np.all(np.array(rec["state_std"])[idx[:7]] > 0)       # the arm joints move
    assert rec["joint_names"] == kinova.joint_names and len(rec["qpos_mean"]) == kinova.dof


def test_stats_cli_merges_into_the_official_file(episodes_dir, tmp_path, capsys):
    out = tmp_path / "dataset_stat.json"
    out.write_text(json.dumps({"agilex": {"dataset_name": "agilex", "state_mean": [0.0] * 128}}))
    assert stats_main([str(episodes_dir), "--out", str(out), "--name", "my_kinova"]) == 0
    table = json.loads(out.read_text())
    assert set(table) == {"agilex", "my_kinova"} and len(table["my_kinova"]["state_std"]) == 128
    before = out.read_text()
    assert stats_main([str(episodes_dir), "--out", str(out), "--name", "my_kinova", "--skip-exist"]) == 0
    assert out.read_text() == before and "left untouched" in capsys.readouterr().out
    assert stats_main([str(tmp_path / "nothing_here"), "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err


def test_info_table_and_plot(episodes_dir, tmp_path, capsys):
    assert info_main([str(episodes_dir), "--plot", "1", "--plot-out", str(tmp_path / "ep.png"),
                      "--frames", "3"]) == 0
    out = capsys.readouterr().out
    assert "episode_0.hdf5" in out and "episode_3.hdf5" in out and "4 episodes (4 usable)" in out
    assert "reach the red marker" in out and "cam_high,cam_right_wrist" in out
    png = (tmp_path / "ep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    info = episode_info(episodes_dir / "episode_0.hdf5")
    assert info.steps == 30 and info.still_steps == 3
    assert info.rate_hz == pytest.approx(25.0, rel=1e-3) and info.duration_s == pytest.approx(29 / 25, rel=1e-3)


def test_info_reports_problems_and_skew(tmp_path, kinova, capsys):
    record_episode(tmp_path / "still.hdf5", kinova, steps=5, seed=0, still_steps=5)
    (tmp_path / "junk.hdf5").write_bytes(b"\0" * 64)
    text = format_table([episode_info(p) for p in sorted(tmp_path.glob("*.hdf5"))])
    assert "unreadable" in text and "robot never moves" in text and "(0 usable)" in text
    assert skew_summary({"alignment": {"skew_max_ms": {"cam_high": 12.5, "joints": 3.0},
                                       "misses": {"cam_high": 2}}}) == "max 12.5 ms, 2 misses"
    assert skew_summary({}) == "-"
    assert info_main([str(tmp_path), "--plot", "9"]) == 2


@pytest.fixture
def damaged_dir(tmp_path, kinova):
    """Episodes from elsewhere (written before the writer's bad-data policy, or by another tool): one with a
    NaN joint value at step 7, one with an undecodable cam_high frame at step 5, one good."""
    import h5py
    folder = tmp_path / "damaged"
    for i in range(3):
        record_episode(folder / f"episode_{i}.hdf5", kinova, steps=12, seed=i)
    with h5py.File(folder / "episode_0.hdf5", "r+") as f:
        f["observations/qpos"][7, 2] = np.nan
    with h5py.File(folder / "episode_1.hdf5", "r+") as f:
        f["observations/images/cam_high"][5] = np.frombuffer(b"\xff\xd8 not a real frame", np.uint8)
    return folder


def test_stats_leave_out_non_finite_episodes_naming_file_and_step_and_never_write_nan(damaged_dir, tmp_path, capsys):
    out = tmp_path / "dataset_stat.json"
    assert stats_main([str(damaged_dir), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "episode_0.hdf5" in err and "first at step 7 (joint_3 = nan)" in err
    text = out.read_text()
    assert "NaN" not in text and "Infinity" not in text
    record = json.loads(text)["kinova_gen3"]
    assert record["num_episodes"] == 2 and np.isfinite(record["state_std"]).all()


def test_info_names_the_bad_file_and_step(damaged_dir, capsys):
    assert info_main([str(damaged_dir)]) == 0
    out = capsys.readouterr().out
    assert "3 episodes (1 usable)" in out
    assert f"{damaged_dir / 'episode_0.hdf5'}: /observations/qpos has 1 non-finite value(s), first at step 7" in out
    assert f"{damaged_dir / 'episode_1.hdf5'}: camera cam_high: frame 5 does not decode as JPEG" in out


def test_the_dataset_refuses_a_bad_frame_naming_file_camera_and_step(damaged_dir):
    from rdt_training.dataset import DatasetError, EpisodeDataset
    ds = EpisodeDataset(damaged_dir, chunk_size=4, skip_still=False)
    assert [e.path.name for e in ds.episodes] == ["episode_1.hdf5", "episode_2.hdf5"]   # the NaN one is left out
    assert "first at step 7" in dict((p.name, r) for p, r in ds.skipped)["episode_0.hdf5"]
    ds[4]                                          # steps 3 and 4: good frames
    with pytest.raises(DatasetError, match=r"episode_1.hdf5: camera 'cam_high', step 5: could not decode"):
        ds[5]


def test_info_judges_only_the_steps_a_trim_keeps_and_names_steps_as_in_the_file(damaged_dir, capsys):
    from rdt_training.dataset import EpisodeDataset
    from rdt_training.edit import main as edit_main
    # episode_0's NaN (step 7) is cut off by keeping steps 0-6; episode_1's bad frame (step 5) stays in its trim
    assert edit_main([str(damaged_dir), "trim", "episode_0", "--end", "0.2"]) == 0      # 30 Hz: steps 0-6
    assert edit_main([str(damaged_dir), "trim", "episode_1", "--start", "0.1"]) == 0    # steps 3-11
    capsys.readouterr()
    assert info_main([str(damaged_dir)]) == 0
    out = capsys.readouterr().out
    assert "3 episodes (2 usable)" in out and "non-finite" not in out
    assert f"{damaged_dir / 'episode_1.hdf5'}: camera cam_high: frame 5 does not decode as JPEG" in out
    # a NaN inside the kept steps is named by its step in the file, by info and by the training dataset alike
    assert edit_main([str(damaged_dir), "trim", "episode_0", "--start", "0.1"]) == 0
    capsys.readouterr()
    assert info_main([str(damaged_dir)]) == 0
    assert "/observations/qpos has 1 non-finite value(s), first at step 7" in capsys.readouterr().out
    ds = EpisodeDataset(damaged_dir, chunk_size=4, skip_still=False)
    assert "first at step 7 (joint_3 = nan)" in dict((p.name, r) for p, r in ds.skipped)["episode_0.hdf5"]
