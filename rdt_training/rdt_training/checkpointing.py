"""Resumable training state in safe formats only: tensors in safetensors, everything else in JSON.

accelerate's ``save_state`` / ``load_state`` pickle the optimizer, the LR scheduler, the RNG states and every
registered object (the EMA is unpickled with ``weights_only=False``), so a crafted file in a run folder would
run code on ``--resume``; run folders are copied between machines and shared. A checkpoint folder here holds:

  config.json, model.safetensors   the model in the Hugging Face layout (``--init`` and RDTPolicy load it)
  optimizer.json/.safetensors      the optimizer's state_dict
  scheduler.json                   the LR scheduler's state_dict
  ema.json/.safetensors            the EMA (diffusers EMAModel.state_dict), with ``--ema``
  rng.json/.safetensors            python / numpy / torch (and CUDA) generators of every rank
  trainer_state.json               step, loss and sample-MSE histories

``save_tree`` / ``load_tree`` store a nested structure of dicts, lists, tuples, numbers, strings, tensors and
numpy arrays: the structure goes to JSON with each tensor replaced by a reference into the safetensors file.
Nothing here unpickles; a pickle in a checkpoint folder is never opened.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

PICKLE_SUFFIXES = (".pkl", ".pickle", ".bin", ".pt", ".pth")


class UnsafeCheckpointError(ValueError):
    """A checkpoint that could only be resumed by unpickling (or not at all); the message says what to do."""


def _encode(obj: Any, tensors: dict, where: str):
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj).copy())
        return {"__ndarray__": key}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if isinstance(obj, dict):
        for k in obj:
            if not (k is None or isinstance(k, (bool, int, float, str))):
                raise TypeError(f"{where}: a dict key of type {type(k).__name__} cannot be saved safely")
        return {"__dict__": [[k, _encode(v, tensors, f"{where}[{k!r}]")] for k, v in obj.items()]}
    raise TypeError(f"{where} is a {type(obj).__name__}: only tensors, arrays, numbers, strings, lists, "
                    "tuples and dicts are saved (safetensors + JSON, never pickle)")


def _decode(obj: Any, tensors: dict):
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return tensors[obj["__ndarray__"]].numpy()
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        if "__dict__" in obj:
            return {k: _decode(v, tensors) for k, v in obj["__dict__"]}
        raise ValueError(f"unexpected entry {sorted(obj)} in a saved structure")
    return obj


def save_tree(tree: Any, folder: str | Path, name: str) -> None:
    """``folder/name.json`` (+ ``name.safetensors`` when the structure holds tensors)."""
    folder = Path(folder)
    tensors: dict = {}
    skeleton = _encode(tree, tensors, name)
    if tensors:
        save_file(tensors, str(folder / f"{name}.safetensors"))
    (folder / f"{name}.json").write_text(json.dumps({"format": "rdt-tree/1", "tree": skeleton}))


def load_tree(folder: str | Path, name: str) -> Any:
    folder = Path(folder)
    doc = json.loads((folder / f"{name}.json").read_text())
    if doc.get("format") != "rdt-tree/1":
        raise ValueError(f"{folder / (name + '.json')} is not a saved training state (format {doc.get('format')!r})")
    tensors_file = folder / f"{name}.safetensors"
    tensors = load_file(str(tensors_file)) if tensors_file.is_file() else {}
    return _decode(doc["tree"], tensors)


# ------------------------------------------------------------------------------------------- RNG
def rng_state() -> dict:
    """This process's generators: python, numpy, torch CPU and (when present) CUDA."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------- checks
def pickles_in(folder: str | Path) -> list[str]:
    """Names of files in ``folder`` (one level) that only pickle could read."""
    return sorted(p.name for p in Path(folder).iterdir() if p.suffix in PICKLE_SUFFIXES)


def check_resumable(folder: str | Path, needed: list[str]) -> list[str]:
    """Raise UnsafeCheckpointError unless ``folder`` has the safe files ``needed`` (names without
    suffix, each ``.json``); returns the pickle files present beside them, which are ignored."""
    folder = Path(folder)
    missing = [n for n in needed if not (folder / f"{n}.json").is_file()]
    if not (folder / "model.safetensors").is_file():
        missing.insert(0, "model.safetensors")
    pickles = pickles_in(folder)
    if missing:
        found = f"; it holds {', '.join(pickles)}, which only unpickling could read" if pickles else ""
        raise UnsafeCheckpointError(
            f"{folder} cannot be resumed safely: {', '.join(missing)} missing{found} (written by an older rdt-train "
            "or another tool; unpickling a file from a run folder can run any code, so it is never done). Start "
            f"a new run from its weights instead: --init {folder} (model.safetensors, no pickle), or delete the "
            "checkpoint to resume from the one before it")
    return pickles
