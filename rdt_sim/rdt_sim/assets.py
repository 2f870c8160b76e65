"""Where the MuJoCo ALOHA comes from: the model files the ``gym-aloha`` package ships (Apache-2.0).

Found through the installed package's location without importing it (its ``__init__`` registers gymnasium
environments, which the simulator does not need). The task facts gym-aloha defines (object pose ranges,
the start pose, the follower finger's open/closed positions) are read from its modules, not copied.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

INSTALL_HINT = "pip install gym-aloha (it brings mujoco and dm_control), or make venv in this workspace"


class SimUnavailableError(RuntimeError):
    """A part of the simulator (gym-aloha's model files, mujoco, a renderer) is not installed here."""


def asset_dir() -> Path:
    """The folder of gym-aloha's MJCF files and meshes."""
    spec = importlib.util.find_spec("gym_aloha")
    if spec is None or not spec.submodule_search_locations:
        raise SimUnavailableError(f"the MuJoCo ALOHA model files come from the gym-aloha package, which is not "
                                  f"installed: {INSTALL_HINT}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "assets"
    if not folder.is_dir():
        raise SimUnavailableError(f"gym-aloha is installed at {folder.parent} but has no assets/ folder; "
                                  f"reinstall it ({INSTALL_HINT})")
    return folder


def model_file(name: str) -> Path:
    """One of gym-aloha's MJCF files, e.g. ``bimanual_viperx_transfer_cube.xml``."""
    path = asset_dir() / name
    if not path.is_file():
        raise SimUnavailableError(f"gym-aloha's assets lack {name} ({path}); this gym-aloha version does not "
                                  f"ship the model rdt_sim needs: pip install 'gym-aloha>=0.1.1,<0.2'")
    return path


def gym_aloha_constants():
    """gym_aloha.constants (START_ARM_POSE, PUPPET_GRIPPER_POSITION_OPEN/CLOSE, DT)."""
    try:
        from gym_aloha import constants
    except ImportError as e:
        raise SimUnavailableError(f"cannot import gym_aloha ({e}): {INSTALL_HINT}") from e
    return constants


def gym_aloha_samplers():
    """gym_aloha.utils (sample_box_pose, sample_insertion_pose): the object pose ranges of the tasks."""
    try:
        from gym_aloha import utils
    except ImportError as e:
        raise SimUnavailableError(f"cannot import gym_aloha ({e}): {INSTALL_HINT}") from e
    return utils
