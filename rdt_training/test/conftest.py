"""Shared fixtures: real episodes recorded from the fake robot (small images), real instruction files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rdt_core.encoders.language import InstructionEmbedding, save_instruction_embedding
from rdt_core.episode import EpisodeMeta, encode_jpeg, write_episode
from rdt_core.fake_robot import FakeRobot
from rdt_core.robots import load_profile

# Tiny models on 2 shared cores: one intra-op thread is several times faster than oversubscribed ones.
torch.set_num_threads(1)

IMAGE_SIZE = (48, 64)   # (H, W): small frames keep the suite fast
LANG_DIM = 32           # the tiny RDT's language width
INSTRUCTIONS = ("reach the red marker", "touch the target")


def record_episode(path: Path, profile, *, steps: int, seed: int, still_steps: int = 3,
                   instruction: str = INSTRUCTIONS[0]) -> Path:
    """Drive the fake robot with its scripted expert for ``steps`` steps (holding still first) and write
    the episode with rdt_core.episode, as the recorder does."""
    robot = FakeRobot(profile, seed=seed, image_size=IMAGE_SIZE)
    robot.reset()
    dt = 1.0 / profile.control_frequency
    stamps, qpos, action = [], [], []
    frames = {c.role: [] for c in profile.cameras}
    for t in range(steps):
        q = robot.joint_positions().copy()
        a = q.copy() if t < still_steps else robot.expert_action()
        images = robot.render()
        stamps.append(int(t * dt * 1e9))
        qpos.append(q)
        action.append(a)
        for role, img in images.items():
            frames[role].append(encode_jpeg(img))
        robot.command(a)
        robot.step(dt)
    meta = EpisodeMeta(robot=profile.name, joint_names=profile.joint_names,
                       camera_names=[c.role for c in profile.cameras],
                       control_frequency=profile.control_frequency, instruction=instruction)
    return write_episode(path, meta, stamps, np.array(qpos), np.array(action), frames)


def idle_episode(path, profile, *, still_start: int, moving: int, still_end: int, seed: int = 0,
                 instruction: str = INSTRUCTIONS[0], extra: dict | None = None, damage=None) -> Path:
    """Fake-robot episode that holds still, moves with the expert, then holds still again (``extra``: the
    episode's attributes, e.g. a recorder's quality report; ``damage(qpos, action, frames)`` spoils steps
    before they reach the writer: a frozen camera, a NaN joint, a frame that does not decode)."""
    robot = FakeRobot(profile, seed=seed, image_size=IMAGE_SIZE)
    robot.reset()
    dt = 1.0 / profile.control_frequency
    stamps, qpos, action, frames = [], [], [], {c.role: [] for c in profile.cameras}
    for t in range(still_start + moving + still_end):
        q = robot.joint_positions().copy()
        a = robot.expert_action() if still_start <= t < still_start + moving else q.copy()
        stamps.append(int(t * dt * 1e9))
        qpos.append(q)
        action.append(a)
        for role, img in robot.render().items():
            frames[role].append(encode_jpeg(img))
        robot.command(a)
        robot.step(dt)
    meta = EpisodeMeta(robot=profile.name, joint_names=profile.joint_names,
                       camera_names=[c.role for c in profile.cameras],
                       control_frequency=profile.control_frequency, instruction=instruction,
                       extra=dict(extra or {}))
    if damage is not None:
        damage(qpos, action, frames)
    return write_episode(path, meta, stamps, np.array(qpos), np.array(action), frames)


def write_instructions(folder: Path, texts=INSTRUCTIONS, dim: int = LANG_DIM) -> Path:
    """Official instruction .pt files (stand-ins for T5 outputs: fixed random tokens per text)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(texts):
        g = torch.Generator().manual_seed(100 + i)
        emb = torch.randn(1, 5 + i, dim, generator=g)
        save_instruction_embedding(folder / f"instr_{i}.pt", InstructionEmbedding(f"t{i}", text, emb))
    return folder


@pytest.fixture(scope="session")
def kinova():
    return load_profile("kinova_gen3")


@pytest.fixture(scope="session")
def episodes_dir(tmp_path_factory, kinova) -> Path:
    """Four kinova episodes of 30-36 steps, two instructions."""
    folder = tmp_path_factory.mktemp("episodes")
    for k in range(4):
        record_episode(folder / f"episode_{k}.hdf5", kinova, steps=30 + 2 * k, seed=k,
                       instruction=INSTRUCTIONS[k % 2])
    return folder


@pytest.fixture(scope="session")
def instructions_dir(tmp_path_factory) -> Path:
    return write_instructions(tmp_path_factory.mktemp("instructions"))
