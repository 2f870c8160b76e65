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
    candidates = []
    if os.environ.get("RDT_CONFORMANCE_DIR"):
        candidates.append(Path(os.environ["RDT_CONFORMANCE_DIR"]).expanduser())
    candidates.append(REPO_ROOT.parent / "shared" / "conformance")
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
