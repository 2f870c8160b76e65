"""rdt-dataset-edit's curation.json on real episode files, honoured by the dataset, training, stats and info;
the episode files are never rewritten."""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

from rdt_core.encoders.vision import VisionEncoder
from rdt_core.episode import EpisodeReader

from rdt_training.curation import Curation, CurationError, trim_from_seconds
from rdt_training.dataset import (DatasetError, EpisodeDataset, first_moving_step, idle_window, index_episodes,
                                  last_moving_step)
from rdt_training.edit import main as edit_main
from rdt_training.features import FeatureStore
from rdt_training.info import main as info_main
from rdt_training.stats import compute_stats, dataset_stats, main as stats_main
from rdt_training.train import TrainConfig, train

from conftest import idle_episode


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.hdf5"))}


@pytest.fixture()
def folder(episodes_dir, tmp_path):
    """A copy of the four shared episodes plus one with idle steps at both ends (episode_4)."""
    d = tmp_path / "eps"
    shutil.copytree(episodes_dir, d)
    return d


def test_still_frame_rule_from_both_ends_matches_the_official_start_rule():
    q = np.zeros((20, 2))
    q[5:15, 0] = np.linspace(0.1, 1.0, 10)
    q[15:, 0] = 1.0
    assert first_moving_step(q, 1e-2) == 5            # official: first step differing from step 0 by > EPS
    assert last_moving_step(q, 1e-2) == 13            # last step differing from the last one by > EPS
    assert idle_window(q, 1e-2) == (4, 15)            # one still step kept at each end, as the loader keeps one
    assert idle_window(np.zeros((5, 2)), 1e-2) is None


def test_edit_records_every_action_in_one_sidecar_and_never_touches_the_episodes(folder, kinova, capsys):
    idle_episode(folder / "episode_4.hdf5", kinova, still_start=12, moving=30, still_end=20)
    before = digest(folder)
    assert edit_main([str(folder), "exclude", "episode_1", "--reason", "missed grasp"]) == 0
    assert edit_main([str(folder), "trim", "episode_2.hdf5", "--start", "0.2", "--end", "1.0"]) == 0
    assert edit_main([str(folder), "trim-idle", "episode_4", "--tolerance", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "episode_1.hdf5: excluded: missed grasp" in out and "trim 0.20-1.00 s" in out
    # still until step 12 (commands move the arm from step 13), still again from step 37 (within 0.01)
    assert "episode_4.hdf5: trim 0.48-1.48 s (trim-idle), keeps 26 of 62 steps" in out
    data = json.loads((folder / "curation.json").read_text())
    assert data["episodes"]["episode_1.hdf5"] == {"excluded": True, "reason": "missed grasp"}
    assert data["episodes"]["episode_2.hdf5"]["trim"] == {"start_step": 5, "end_step": 26, "start_s": 0.2,
                                                          "end_s": 1.0, "by": "trim", "tolerance": None}
    assert data["episodes"]["episode_4.hdf5"]["trim"]["start_step"] == 12      # one still step before moving
    assert data["episodes"]["episode_4.hdf5"]["trim"]["end_step"] == 38        # and one after
    assert [h["action"] for h in data["history"]] == ["exclude", "trim", "trim-idle"]
    # trim-idle again is a no-op; include undoes exclude; --clear drops the trim
    assert edit_main([str(folder), "trim-idle"]) == 0
    assert "episode_4.hdf5: no idle steps at either end; unchanged" in capsys.readouterr().out
    assert edit_main([str(folder), "include", "episode_1"]) == 0
    assert edit_main([str(folder), "trim", "episode_2", "--clear"]) == 0
    data = json.loads((folder / "curation.json").read_text())
    # the shared episodes hold still for 3 steps: trim-idle cut them too; episode_2's trim was cleared
    assert set(data["episodes"]) == {"episode_0.hdf5", "episode_1.hdf5", "episode_3.hdf5", "episode_4.hdf5"}
    assert data["episodes"]["episode_1.hdf5"]["trim"]["start_step"] == 3 and "excluded" not in data["episodes"]["episode_1.hdf5"]
    assert [h["action"] for h in data["history"]][3:] == ["trim-idle"] * 3 + ["include", "trim-clear"]
    assert digest(folder) == before                     # the episode files are never rewritten


def test_edit_refuses_clearly(folder, capsys):
    assert edit_main([str(folder), "exclude", "episode_9", "--reason", "x"]) == 2
    err = capsys.readouterr().err
    assert "no episode 'episode_9'" in err and "episodes: episode_0.hdf5, episode_1.hdf5" in err
    assert edit_main([str(folder), "exclude", "episode_0", "--reason", "  "]) == 2
    assert "say why" in capsys.readouterr().err
    assert edit_main([str(folder), "trim", "episode_0", "--start", "0.5", "--end", "0.5"]) == 2
    assert "need 0 <= start < end" in capsys.readouterr().err
    assert edit_main([str(folder), "trim", "episode_0", "--start", "1.15", "--end", "1.17"]) == 2
    assert "keep at least 2" in capsys.readouterr().err
    assert edit_main([str(folder), "trim", "episode_0"]) == 2
    assert "--start and/or --end" in capsys.readouterr().err
    assert edit_main([str(folder / "nope"), "include", "episode_0"]) == 2
    assert not (folder / "curation.json").exists()      # nothing written by a refused edit


def test_trim_from_seconds_picks_the_steps_in_the_interval():
    stamps = (np.arange(10) * 40_000_000 + 123).astype(np.int64)
    t = trim_from_seconds(stamps, 0.1, 0.2)
    assert (t.start_step, t.end_step, t.start_s, t.end_s) == (3, 6, 0.12, 0.2)
    t = trim_from_seconds(stamps, None, 0.08)
    assert (t.start_step, t.end_step) == (0, 3)
    with pytest.raises(CurationError, match="past the episode's last step"):
        trim_from_seconds(stamps, 5.0, None)


def test_dataset_honours_exclusion_and_trim_frame_for_frame(folder):
    cur = Curation.load(folder)
    cur.exclude(folder / "episode_1.hdf5", "camera froze")
    stamps = EpisodeReader(folder / "episode_2.hdf5").timestamps
    cur.set_trim(folder / "episode_2.hdf5", trim_from_seconds(stamps, 0.4, 1.0))   # steps 10..25
    cur.save()
    episodes, skipped = index_episodes(folder)
    assert [e.path.name for e in episodes] == ["episode_0.hdf5", "episode_2.hdf5", "episode_3.hdf5"]
    assert [(p.name, why.split(":")[-1].strip()) for p, why in skipped] == [("episode_1.hdf5", "camera froze")]
    ep = episodes[1]
    with EpisodeReader(ep.path) as r:
        np.testing.assert_array_equal(ep.qpos, r.qpos[10:26].astype(np.float32))
        np.testing.assert_array_equal(ep.timestamps, r.timestamps[10:26])
        assert ep.frame_offset == 10 and ep.num_steps == 16 and ep.start == 0   # moving from the first kept step
        ds = EpisodeDataset(episodes=episodes, chunk_size=8)
        i = int(ds._ends[0]) + 3                                # 4th sample of the trimmed episode
        s = ds[i]
        assert (s["episode"], s["step"]) == (1, 3)
        # the frames are those of the file's steps 12 and 13; the last action chunk pads with the trim's last
        np.testing.assert_array_equal(s["images"][3], r.image(ep.cameras[0], 13))
        np.testing.assert_array_equal(s["images"][0], r.image(ep.cameras[0], 12))
        last = ds[int(ds._ends[1]) - 1]
        want = ep.profile.action_to_unified(np.repeat(r.action[25:26], 8, axis=0))
        np.testing.assert_allclose(last["actions"], want, atol=1e-6)
    # per-episode statistics are of the kept steps
    uni = ep.profile.qpos_to_unified(ep.qpos).astype(np.float64)
    np.testing.assert_allclose(ep.state_mean, uni.mean(0), atol=1e-6)
    # cached features follow the trim too (the cache is keyed by the frames it holds)
    vision = VisionEncoder.tiny()
    store = FeatureStore(folder / "cache", vision)
    assert store.build(episodes) == 3
    cached = EpisodeDataset(episodes=episodes, chunk_size=8, feature_store=store)
    want = vision.encode(s["images"]).float().numpy()
    np.testing.assert_allclose(cached[i]["image_features"], want, atol=2e-2, rtol=1e-2)
    cur.set_trim(folder / "episode_2.hdf5", None)
    cur.save()
    untrimmed, _ = index_episodes(folder)
    assert store.build(untrimmed) == 1                  # another window of episode_2: encoded anew
    # curation=False reads every episode whole
    assert len(index_episodes(folder, curation=False)[0]) == 4


def test_broken_curation_names_the_file_and_the_fix(folder):
    (folder / "curation.json").write_text("{not json")
    with pytest.raises(DatasetError, match="curation.json cannot be read as JSON.*move it away"):
        index_episodes(folder)
    (folder / "curation.json").write_text(json.dumps({"episodes": {"episode_0.hdf5": {
        "trim": {"start_step": 5, "end_step": 500, "start_s": 0.2, "end_s": 20.0}}}}))
    with pytest.raises(DatasetError, match="keeps steps 5..500 but the episode has 30 steps.*--clear"):
        index_episodes(folder)


def test_stats_and_info_honour_curation(folder, capsys):
    assert edit_main([str(folder), "exclude", "episode_3", "--reason", "teleoperator paused"]) == 0
    assert edit_main([str(folder), "trim", "episode_0", "--start", "0.4"]) == 0
    capsys.readouterr()
    rec = dataset_stats(folder)
    want, _ = index_episodes(folder)
    assert rec["num_episodes"] == 3 and rec["num_steps"] == sum(e.num_samples for e in want)
    with EpisodeReader(folder / "episode_0.hdf5") as r:
        kept = r.qpos[10:]
    # the trimmed episode contributes exactly its kept steps
    others = compute_stats([e for e in want if e.path.name != "episode_0.hdf5"])
    assert rec["num_steps"] == others["num_steps"] + len(kept)
    assert rec["curation"] == {"excluded": [str(folder / "episode_3.hdf5")], "trimmed": [str(folder / "episode_0.hdf5")]}
    assert stats_main([str(folder), "--out", str(folder / "stat.json")]) == 0
    assert "(curation.json: 1 excluded, 1 trimmed)" in capsys.readouterr().out
    assert info_main([str(folder)]) == 0
    out = capsys.readouterr().out
    row0 = next(l for l in out.splitlines() if l.startswith("episode_0.hdf5"))
    row3 = next(l for l in out.splitlines() if l.startswith("episode_3.hdf5"))
    assert " 20 " in row0 and "trim 0.40-1.16 s" in row0           # 30 steps, 20 kept
    assert "excluded: teleoperator paused" in row3
    assert "4 episodes (3 usable, 1 excluded by curation)" in out


def test_training_honours_curation(folder, instructions_dir, tmp_path, capsys):
    assert edit_main([str(folder), "exclude", "episode_1", "--reason", "missed grasp"]) == 0
    assert edit_main([str(folder), "trim", "episode_2", "--start", "0.4", "--end", "1.0"]) == 0
    torch.manual_seed(0)
    r = train(TrainConfig(data=[str(folder)], output_dir=str(tmp_path / "run"), instructions=str(instructions_dir),
                          batch_size=4, max_steps=2, sample_every=0, checkpoint_every=0, progress=False,
                          heldout_episodes=0, cond_mask_prob=0.0))
    assert "1 skipped (1 excluded by curation.json)" in capsys.readouterr().out
    stats = json.loads((r.export_dir / "dataset_stats.json").read_text())
    want, _ = index_episodes(folder)
    assert stats["num_episodes"] == 3 and stats["num_steps"] == sum(e.num_samples for e in want)
    assert stats["num_steps"] < sum(e.num_samples for e in index_episodes(folder, curation=False)[0]) - 30
