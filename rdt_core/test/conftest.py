"""Shared test helpers for rdt_core: where the RDT conformance fixtures live.

The fixtures (../shared/conformance beside the repository, or $RDT_CONFORMANCE_DIR) are data produced by the
official RDT code. Without them the conformance tests skip, unless RDT_REQUIRE_CONFORMANCE=1 (CI), where
their absence is a failure.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def find_conformance_dir() -> tuple[Path | None, list[Path]]:
    """(the fixture folder or None, every place looked at)."""
    if os.environ.get("RDT_CONFORMANCE_DIR"):  # an explicit choice is never silently replaced
        candidates = [Path(os.environ["RDT_CONFORMANCE_DIR"]).expanduser()]
    else:
        candidates = [REPO_ROOT.parent / "shared" / "conformance"]
    for path in candidates:
        if (path / "tiny" / "config.json").is_file():
            return path, candidates
    return None, candidates


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    """Folder of the official-RDT conformance fixtures; skips (or fails in CI) when it is missing."""
    path, looked = find_conformance_dir()
    if path is None:
        where = ", ".join(str(p) for p in looked)
        message = (f"RDT conformance fixtures not found (looked in: {where}); set RDT_CONFORMANCE_DIR to the "
                   f"folder holding tiny/config.json")
        if os.environ.get("RDT_REQUIRE_CONFORMANCE") == "1":
            pytest.fail(message + " — required because RDT_REQUIRE_CONFORMANCE=1", pytrace=False)
        pytest.skip(message)
    return path


def build_random_runner(seed: int = 0, norm_formula: str = "variance", **overrides):
    """A tiny RDTRunner whose every weight is perturbed, so that outputs are non-zero (the official init
    zeroes the last projection) and differ between inputs."""
    import torch

    from rdt_core.model import RDTRunner, rdt_config

    cfg = rdt_config("tiny", **{"pred_horizon": 8, "num_patches": 2, "max_lang_cond_len": 8,
                                "lang_token_dim": 16, "img_token_dim": 12, **overrides})
    torch.manual_seed(seed)
    runner = RDTRunner(**cfg, norm_formula=norm_formula)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in runner.parameters():
            p.add_(torch.randn(p.shape, generator=gen).to(p.dtype) * 0.05)
        fc2 = runner.model.final_layer.ffn_final.fc2.weight
        fc2.copy_(torch.randn(fc2.shape, generator=gen) / fc2.shape[1] ** 0.5)
    return runner.eval()


def random_inputs(runner, batch: int = 2, seed: int = 0, lang_len: int | None = None):
    """Keyword inputs of predict_action for ``runner``: random tokens, a padded language mask, a mask of
    the first 7 unified dims and the gripper, control frequencies."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    L = lang_len or runner.max_lang_cond_len
    lang_mask = torch.ones(batch, L, dtype=torch.bool)
    lang_mask[1:, L // 2:] = False
    action_mask = torch.zeros(batch, 1, runner.action_dim)
    action_mask[:, :, [0, 1, 2, 3, 4, 5, 6, 10]] = 1
    return dict(
        lang_tokens=torch.randn(batch, L, runner.lang_token_dim, generator=gen),
        lang_attn_mask=lang_mask,
        img_tokens=torch.randn(batch, runner.img_cond_len, runner.img_token_dim, generator=gen),
        state_tokens=torch.randn(batch, 1, runner.state_token_dim, generator=gen) * action_mask,
        action_mask=action_mask,
        ctrl_freqs=torch.tensor([25] * batch),
    )


@pytest.fixture(scope="session")
def make_runner():
    """Factory fixture: :func:`build_random_runner` (tests take it as a fixture, not by importing conftest,
    so that several packages' conftest.py files can run in one pytest session)."""
    return build_random_runner


@pytest.fixture(scope="session")
def make_inputs():
    """Factory fixture: :func:`random_inputs`."""
    return random_inputs
