"""The training dataset on real episode files recorded from the fake robot."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from rdt_core.encoders.vision import VisionEncoder
from rdt_core.episode import EpisodeReader
from rdt_core.robots import load_profile

from conftest import INSTRUCTIONS, record_episode, write_instructions
from rdt_training.augment import additive_noise, augment_image, color_jitter, corrupt
from rdt_training.dataset import DatasetError, EpisodeDataset, collate, index_episodes
from rdt_training.features import FeatureStore


def test_every_step_from_each_start_is_one_index(episodes_dir):
    ds = EpisodeDataset(episodes_dir, chunk_size=16)
    # the expert holds still for 3 commands, so qpos first moves at step 4; sampling starts one before
    # the first moving step (official)
    assert [e.start for e in ds.episodes] == [3, 3, 3, 3]
    assert len(ds) == sum(e.num_steps - 3 for e in ds.episodes)
    seen = {ds.locate(i) for i in range(len(ds))}
    expected = {(k, s) for k, e in enumerate(ds.episodes) for s in range(e.start, e.num_steps)}
    assert seen == expected


def test_sample_holds_state_chunk_images_and_masks(episodes_dir, kinova, instructions_dir):
    ds = EpisodeDataset(episodes_dir, chunk_size=16, instructions=instructions_dir)
    ep = ds.episodes[1]
    last = int(ds._ends[1]) - 1                       # last step of episode 1
    s = ds[last]
    step = ep.num_steps - 1
    assert s["episode"] == 1 and s["step"] == step
    np.testing.assert_allclose(s["state"], kinova.qpos_to_unified(ep.qpos[step:step + 1]), atol=1e-6)
    # past the end the chunk repeats the last action
    want_last = kinova.action_to_unified(ep.action[-1])
    assert s["actions"].shape == (16, 128)
    np.testing.assert_allclose(s["actions"], np.repeat(want_last[None], 16, 0), atol=1e-6)
    np.testing.assert_array_equal(s["state_elem_mask"], kinova.unified_mask())
    assert s["ctrl_freq"] == kinova.control_frequency
    # kinova has exterior + right wrist; the left-wrist slot is always missing
    assert s["image_mask"].tolist() == [True, True, False, True, True, False]
    with EpisodeReader(ep.path) as r:
        np.testing.assert_array_equal(s["images"][3], r.image("cam_high", step))
        np.testing.assert_array_equal(s["images"][1], r.image("cam_right_wrist", step - 1))
    assert s["images"][2] is None and s["images"][5] is None
    assert s["lang_embed"].shape == (6, 32)          # episode 1 has the second instruction (5 + 1 tokens)
    # per-episode statistics as the official loader: over the whole episode's unified states
    uni = kinova.qpos_to_unified(ep.qpos)
    np.testing.assert_allclose(s["state_std"], uni.std(0), atol=1e-5)
    np.testing.assert_allclose(s["state_norm"], np.sqrt((uni ** 2).mean(0)), atol=1e-5)


def test_first_sample_has_no_history(episodes_dir):
    ds = EpisodeDataset(episodes_dir)
    s = ds[0]
    assert s["step"] == ds.episodes[0].start
    assert s["image_mask"].tolist() == [False, False, False, True, True, False]
    assert s["images"][0] is None                     # not decoded at all


def test_collate_pads_language_and_keeps_frames(episodes_dir, instructions_dir):
    ds = EpisodeDataset(episodes_dir, chunk_size=8, instructions=instructions_dir)
    b = collate([ds[0], ds[int(ds._ends[0])]])         # episodes 0 and 1: 5 and 6 language tokens
    assert b["states"].shape == (2, 1, 128) and b["actions"].shape == (2, 8, 128)
    assert b["lang_embeds"].shape == (2, 6, 32)
    assert b["lang_attn_mask"].sum(1).tolist() == [5, 6]
    assert b["image_mask"].shape == (2, 6) and len(b["images"]) == 2 and len(b["images"][0]) == 6


def test_still_frame_rule_is_configurable_and_still_episodes_are_skipped(tmp_path, kinova):
    record_episode(tmp_path / "moving.hdf5", kinova, steps=12, seed=1, still_steps=5)
    record_episode(tmp_path / "still.hdf5", kinova, steps=8, seed=2, still_steps=8)
    ds = EpisodeDataset(tmp_path)
    assert [e.path.name for e in ds.episodes] == ["moving.hdf5"]
    assert ds.episodes[0].start == 5
    assert "never moves" in ds.skipped[0][1]
    ds_all = EpisodeDataset(tmp_path, skip_still=False)
    assert [e.start for e in ds_all.episodes] == [0, 0] and len(ds_all) == 20


def test_no_valid_episodes_is_a_clear_error(tmp_path, kinova):
    with pytest.raises(DatasetError, match="not found"):
        EpisodeDataset(tmp_path / "nowhere")
    record_episode(tmp_path / "still.hdf5", kinova, steps=6, seed=2, still_steps=6)
    (tmp_path / "broken.hdf5").write_bytes(b"not an hdf5 file")
    with pytest.raises(DatasetError, match="no valid episodes") as err:
        EpisodeDataset(tmp_path)
    assert "broken.hdf5" in str(err.value) and "never moves" in str(err.value)


def test_mixed_robots_need_a_mapping(tmp_path, kinova):
    aloha = load_profile("aloha")
    (tmp_path / "k").mkdir()
    (tmp_path / "a").mkdir()
    record_episode(tmp_path / "k" / "e0.hdf5", kinova, steps=8, seed=0)
    record_episode(tmp_path / "a" / "e0.hdf5", aloha, steps=8, seed=0)
    with pytest.raises(DatasetError, match="mixes episodes of different robots"):
        EpisodeDataset([tmp_path / "k", tmp_path / "a"])
    ds = EpisodeDataset([tmp_path / "k", tmp_path / "a"],
                        profiles={tmp_path / "k": "kinova_gen3", tmp_path / "a": aloha})
    assert ds.robots == ["aloha", "kinova_gen3"]
    # each episode goes through its own profile into the unified vector
    s = ds[len(ds) - 1]
    np.testing.assert_array_equal(s["state_elem_mask"], aloha.unified_mask())
    assert s["image_mask"][3:].tolist() == [True, True, True]


def test_episode_that_does_not_fit_the_profile_is_an_error(tmp_path, kinova):
    record_episode(tmp_path / "e0.hdf5", kinova, steps=8, seed=0)
    with pytest.raises(DatasetError, match="joint names do not match"):
        EpisodeDataset(tmp_path, profiles="aloha")


def test_missing_instruction_embedding_is_named(episodes_dir, tmp_path):
    only_first = write_instructions(tmp_path / "emb", texts=INSTRUCTIONS[:1])
    with pytest.raises(DatasetError, match="touch the target"):
        EpisodeDataset(episodes_dir, instructions=only_first)


def test_dataloader_workers_open_their_own_files(episodes_dir, instructions_dir):
    ds = EpisodeDataset(episodes_dir, chunk_size=8, instructions=instructions_dir)
    ds[0]                                            # the parent has a handle open before the fork
    loader = torch.utils.data.DataLoader(ds, batch_size=16, shuffle=True, num_workers=2, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(0))
    pairs = set()
    for batch in loader:
        pairs |= set(zip(batch["episode"].tolist(), batch["step"].tolist()))
        assert all(img is not None for imgs, m in zip(batch["images"], batch["image_mask"])
                   for img, ok in zip(imgs, m.tolist()) if ok)
    assert len(pairs) == len(ds)


def test_augmentation_changes_pixels_not_shape():
    rng = np.random.default_rng(0)
    img = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    for fn in (color_jitter, corrupt):
        out = fn(img, np.random.default_rng(3))
        assert out.shape == img.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - img).mean() > 0.5
    outs = [augment_image(img, rng) for _ in range(40)]
    changed = sum(not np.array_equal(o, img) for o in outs)
    assert 8 < changed < 32                            # about half of the frames are augmented


def test_augmented_dataset_differs_from_plain(episodes_dir):
    torch.manual_seed(0)
    plain = EpisodeDataset(episodes_dir)
    aug = EpisodeDataset(episodes_dir, image_aug=True)
    diffs = [not np.array_equal(plain[i]["images"][3], aug[i]["images"][3]) for i in range(10)]
    assert any(diffs)


def test_condition_masking_replaces_conditions(episodes_dir, instructions_dir):
    torch.manual_seed(0)
    ds = EpisodeDataset(episodes_dir, cond_mask_prob=1.0, instructions=instructions_dir)
    s = ds[5]
    assert s["ctrl_freq"] == 0.0 and not s["state_elem_mask"].any() and not s["image_mask"].any()
    np.testing.assert_allclose(s["state"][0], ds.state_mean)


def test_feature_cache_matches_on_the_fly_encoding(episodes_dir, tmp_path):
    vision = VisionEncoder.tiny()
    plain = EpisodeDataset(episodes_dir)
    store = FeatureStore(tmp_path / "cache", vision)
    assert store.build(plain.episodes) == 4
    assert FeatureStore(tmp_path / "cache", vision).build(plain.episodes) == 0     # cached once per dataset
    cached = EpisodeDataset(episodes=plain.episodes, feature_store=store)
    for i in (0, 7, len(plain) - 1):
        s, c = plain[i], cached[i]
        want = vision.encode(s["images"]).float().numpy()
        assert c["image_features"].shape == want.shape
        np.testing.assert_allclose(c["image_features"], want, atol=2e-2, rtol=1e-2)   # float16 storage
    # another encoder -> another cache key: nothing stale is reused
    assert FeatureStore(tmp_path / "cache", VisionEncoder.tiny(seed=1)).build(plain.episodes) == 4


def test_poisson_noise_has_a_random_sign_as_imgaug():
    # imgaug's AdditivePoissonNoise adds RandomSign(Poisson(lam)): |noise| is about lam, mean 0
    grey = np.full((64, 64, 3), 128, np.uint8)
    out = additive_noise(grey, np.random.default_rng(0), kind="poisson", scale=10.0).astype(float) - 128
    assert 8.5 < np.abs(out).mean() < 11.5
    assert abs(out.mean()) < 1.0


def test_corruption_runs_noise_and_blur_in_random_order(monkeypatch):
    import rdt_training.augment as aug
    calls = []
    monkeypatch.setattr(aug, "additive_noise", lambda img, rng: calls.append("noise") or img)
    monkeypatch.setattr(aug, "random_blur", lambda img, rng: calls.append("blur") or img)
    rng = np.random.default_rng(0)
    orders = set()
    for _ in range(20):
        calls.clear()
        aug.corrupt(np.zeros((4, 4, 3), np.uint8), rng)
        orders.add(tuple(calls))
    assert orders == {("noise", "blur"), ("blur", "noise")}      # imgaug Sequential(random_order=True)


def test_state_noise_at_the_official_snr(episodes_dir, kinova):
    # official state_noise_snr: state += N(0, state_std / sqrt(10^(snr/10))), per filled dimension
    torch.manual_seed(0)
    ds = EpisodeDataset(episodes_dir, state_noise_snr=20.0)
    clean = EpisodeDataset(episodes_dir)
    i = 7
    noise = np.stack([ds[i]["state"][0] - clean[i]["state"][0] for _ in range(400)])
    ep = ds.episodes[ds.locate(i)[0]]
    idx = kinova.unified_indices
    moving = idx[ep.state_std[idx] > 1e-3]
    np.testing.assert_allclose(noise[:, moving].std(0), ep.state_std[moving] / 10.0, rtol=0.2)
    assert np.abs(noise[:, moving].mean(0)).max() < 0.3 * ep.state_std[moving].max() / 10.0 + 1e-6
    unfilled = np.setdiff1d(np.arange(128), idx)
    assert not noise[:, unfilled].any()


def test_masked_state_is_the_mean_of_its_own_robot(tmp_path, kinova):
    # official: a masked state becomes dataset_stat.json's state_mean of the sample's own dataset
    aloha = load_profile("aloha")
    for sub, prof in (("k", kinova), ("a", aloha)):
        for k in range(2):
            record_episode(tmp_path / sub / f"e{k}.hdf5", prof, steps=8, seed=k)
    profiles = {tmp_path / "k": kinova, tmp_path / "a": aloha}
    ds = EpisodeDataset([tmp_path / "k", tmp_path / "a"], profiles=profiles, cond_mask_prob=1.0)
    for robot, prof in (("kinova_gen3", kinova), ("aloha", aloha)):
        eps = [e for e in ds.episodes if e.robot == robot]
        want = np.concatenate([e.unified_states() for e in eps]).mean(0)
        i = next(i for i in range(len(ds)) if ds.episodes[ds.locate(i)[0]].robot == robot)
        np.testing.assert_allclose(ds[i]["state"][0], want, atol=1e-6)
        unfilled = np.setdiff1d(np.arange(128), prof.unified_indices)
        assert not ds[i]["state"][0][unfilled].any()       # nothing of the other robot's slots
