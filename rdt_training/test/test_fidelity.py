"""Training and deployment give the model the same inputs, and both follow the official RDT code.

A model fine-tuned with rdt-train and run with RDTPolicy must see at deployment exactly what a training
sample gave it: the unified state and its mask, the control frequency, the six-frame image window (with
the background where a frame is missing), and the instruction with every token attended. The AgileX
numbers are written out from the official data/hdf5_vla_dataset.py and scripts/agilex_model.py.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rdt_core.episode import EpisodeReader
from rdt_core.policy import RDTPolicy
from rdt_core.robots import load_profile

from conftest import INSTRUCTIONS, record_episode
from rdt_training.dataset import EpisodeDataset, collate
from rdt_training.instructions import InstructionBank
from rdt_training.train import _model_inputs

# official AGILEX_STATE_INDICES: left arm joints 0-5, left gripper, right arm joints 0-5, right gripper
AGILEX_INDICES = [50, 51, 52, 53, 54, 55, 60, 0, 1, 2, 3, 4, 5, 10]
AGILEX_STATE_DIV = np.array([1, 1, 1, 1, 1, 1, 4.7908, 1, 1, 1, 1, 1, 1, 4.7888])
AGILEX_ACTION_DIV = np.array([1, 1, 1, 1, 1, 1, 11.8997, 1, 1, 1, 1, 1, 1, 13.9231])
# (the deployment side, scripts/agilex_model.py, is checked in rdt_core/test/test_policy.py)


def _spy(policy) -> dict:
    """Record the inputs (and the output) of the policy's real sampler (RDTRunner.predict_action's arguments)."""
    seen = {}
    original = policy.sampler.predict_action

    def predict_action(**kwargs):
        seen.update(kwargs)
        seen["out"] = original(**kwargs)
        return seen["out"]

    policy.sampler.predict_action = predict_action
    return seen


def _window(reader, ep, step):
    """What the runtime hands the policy: frames t-1 and t per slot, None for a missing camera or before
    the first observation."""
    frames = []
    for idx in (step - 1, step):
        for role in ep.cameras:
            frames.append(reader.image(role, idx) if role is not None and idx >= ep.start else None)
    return frames


@pytest.mark.parametrize("which", ["first", "later"])
def test_training_sample_and_deployment_feed_the_model_the_same_inputs(episodes_dir, kinova, which):
    policy = RDTPolicy.tiny(kinova, seed=3)
    bank = InstructionBank({INSTRUCTIONS[0]: policy.instruction.embeddings,
                            INSTRUCTIONS[1]: policy.instruction.embeddings})
    ds = EpisodeDataset(episodes_dir, chunk_size=policy.horizon, instructions=bank)
    ep = ds.episodes[0]
    step = ep.start if which == "first" else ep.start + 5
    index = step - ep.start
    assert ds.locate(index) == (0, step)
    train_in = _model_inputs(collate([ds[index]]), policy.vision, torch.device("cpu"), torch.float32)

    seen = _spy(policy)
    with EpisodeReader(ep.path) as reader:
        policy.predict(_window(reader, ep, step), ep.qpos[step].astype(np.float64))
    torch.testing.assert_close(seen["state_tokens"], train_in["state_tokens"], atol=1e-6, rtol=0)
    torch.testing.assert_close(seen["action_mask"], train_in["action_mask"])
    assert seen["ctrl_freqs"].tolist() == train_in["ctrl_freqs"].tolist() == [kinova.control_frequency]
    torch.testing.assert_close(seen["img_tokens"], train_in["img_tokens"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(seen["lang_tokens"], train_in["lang_tokens"])
    assert seen["lang_attn_mask"].all() and train_in["lang_attn_mask"].all()


def test_agilex_training_sample_is_the_official_loader(tmp_path):
    """data/hdf5_vla_dataset.py: state = qpos[t] / state divisors, actions = action[t:t+64] / action divisors
    (padded with the last), state_std/mean/norm over the whole episode's scaled qpos."""
    agilex = load_profile("agilex")
    record_episode(tmp_path / "e0.hdf5", agilex, steps=20, seed=0)
    ds = EpisodeDataset(tmp_path, chunk_size=64)
    ep = ds.episodes[0]
    with EpisodeReader(ep.path) as r:
        qpos, action = np.asarray(r.qpos, np.float64), np.asarray(r.action, np.float64)
    step = ep.start + 4
    s = ds[step - ep.start]
    assert s["step"] == step

    def fill(values):
        out = np.zeros(values.shape[:-1] + (128,))
        out[..., AGILEX_INDICES] = values
        return out

    scaled = qpos / AGILEX_STATE_DIV
    chunk = action[step:step + 64] / AGILEX_ACTION_DIV
    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], 64 - len(chunk), 0)])
    np.testing.assert_allclose(s["state"], fill(scaled[step:step + 1]), atol=1e-6)
    np.testing.assert_allclose(s["actions"], fill(chunk), atol=1e-6)
    np.testing.assert_array_equal(s["state_elem_mask"], fill(np.ones(14)))
    np.testing.assert_allclose(s["state_std"], fill(scaled.std(0)), atol=1e-5)
    np.testing.assert_allclose(s["state_mean"], fill(scaled.mean(0)), atol=1e-5)
    np.testing.assert_allclose(s["state_norm"], fill(np.sqrt((scaled ** 2).mean(0))), atol=1e-5)
