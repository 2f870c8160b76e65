"""Checkpoint I/O in the official layouts (Hugging Face dir, DeepSpeed mp_rank_00_model_states.pt).

Never unpickles untrusted data: safetensors, or torch.load(weights_only=True).

Layouts read:
- Hugging Face (``rdt-1b``/``rdt-170m`` and our exports): ``config.json`` + ``model.safetensors`` (optionally
  sharded with ``model.safetensors.index.json``) or ``pytorch_model.bin``. ``config.json`` holds the
  RDTRunner keyword arguments at top level (official) or under ``rdt_runner_kwargs``; ``norm_formula`` is
  ours and optional.
- DeepSpeed (official fine-tuning, ``checkpoint-N/pytorch_model/mp_rank_00_model_states.pt``): weights under
  ``module``. The config comes from a ``config.json`` beside it, in the checkpoint folder or its ``ema/``
  export, or from ``config=``.
"""
# CONTRACT:
# class CheckpointError(ValueError)   # one message listing every difference (missing/unexpected keys, shapes, config)
# def read_config(path) -> dict        # config.json of an HF dir (or beside a .pt)
# def load_state_dict(path, device="cpu") -> dict[str, Tensor]   # model.safetensors | pytorch_model.bin | mp_rank_00_model_states.pt ("module")
# class WeightsFile(path, device): .shapes (meta tensors), .read(name, dtype)   # one tensor at a time, to the device
# def load_runner(path, *, config=None, device="cpu", dtype=None, norm_formula=None) -> RDTRunner
# def save_pretrained(runner, out_dir, *, extra_json: dict[str, dict] | None = None) -> Path
from __future__ import annotations

import inspect
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from rdt_core.model import RDTRunner
from rdt_core.model.norm import DEFAULT_NORM_FORMULA, check_norm_formula
from rdt_core.model.runner import dtype_name, parse_dtype

CONFIG_NAME = "config.json"
SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX_NAME = "model.safetensors.index.json"
BIN_NAME = "pytorch_model.bin"
DEEPSPEED_NAME = "mp_rank_00_model_states.pt"
# Where a weights file is looked for inside a folder, in order of preference.
_WEIGHT_CANDIDATES = (SAFETENSORS_NAME, SAFETENSORS_INDEX_NAME, BIN_NAME, DEEPSPEED_NAME,
                      f"pytorch_model/{DEEPSPEED_NAME}")
_SHOWN = 8  # differences shown per category before "... and N more"


class CheckpointError(ValueError):
    """A checkpoint cannot be used as is; the message lists every difference found."""


_RUNNER_KWARGS = tuple(p for p in inspect.signature(RDTRunner.__init__).parameters if p != "self")
_REQUIRED_KWARGS = tuple(p for p, v in inspect.signature(RDTRunner.__init__).parameters.items()
                         if p != "self" and v.default is inspect.Parameter.empty)


# ---------------------------------------------------------------------- config
def _config_candidates(path: Path) -> list[Path]:
    """config.json beside the weights; for DeepSpeed also in the checkpoint folder and its ema/ export."""
    found: list[Path] = [path / CONFIG_NAME, path / "ema" / CONFIG_NAME] if path.is_dir() else []
    try:
        weights = find_weights(path)
    except CheckpointError:
        return found or [path.parent / CONFIG_NAME]
    folders = [weights.parent] + ([weights.parent.parent] if weights.name == DEEPSPEED_NAME else [])
    for folder in folders:
        for candidate in (folder / CONFIG_NAME, folder / "ema" / CONFIG_NAME):
            if candidate not in found:
                found.append(candidate)
    return found


# Keys of the released config.json that are RDTRunner arguments only; every other key belongs to the
# model config (``config=``). The token widths appear in both, as in the official configs.
_TOP_LEVEL_ONLY = ("action_dim", "pred_horizon", "max_lang_cond_len", "img_cond_len", "lang_pos_embed_config",
                   "img_pos_embed_config", "dtype", "torch_dtype", "norm_formula")


def normalize_config(config: dict) -> dict[str, Any]:
    """RDTRunner kwargs (+ optional norm_formula) from a config.json dict in any of the layouts we meet:

    - the released rdt-1b/rdt-170m file (huggingface_hub's mixin merges the ``config`` argument into the top
      level: ``rdt``, ``noise_scheduler``, adaptors, ``ema`` sit beside ``action_dim``, ``pred_horizon`` ...);
    - the kwargs themselves (``config`` is a nested object), optionally under ``rdt_runner_kwargs``.
    """
    if not isinstance(config, dict):
        raise CheckpointError(f"a checkpoint config must be a JSON object, got {type(config).__name__}")
    kwargs = dict(config.get("rdt_runner_kwargs", config))
    if "norm_formula" in config and "norm_formula" not in kwargs:
        kwargs["norm_formula"] = config["norm_formula"]
    if not isinstance(kwargs.get("config"), dict) and "rdt" in kwargs:  # the released, merged layout
        flat = kwargs
        kwargs = {k: flat[k] for k in _RUNNER_KWARGS if k in flat and k != "config"}
        kwargs["config"] = {k: v for k, v in flat.items() if k not in _TOP_LEVEL_ONLY}
        if "torch_dtype" in flat:
            kwargs["torch_dtype"] = flat["torch_dtype"]
    if "torch_dtype" in kwargs:  # ours: the dtype it was saved in, not an official argument
        torch_dtype = kwargs.pop("torch_dtype")
        kwargs.setdefault("dtype", torch_dtype)
    return kwargs


def official_config(runner: RDTRunner) -> dict[str, Any]:
    """config.json content in the released layout (loadable by the official RDTRunner.from_pretrained):
    the model config merged with the constructor arguments, no ``dtype`` (the official loader would pass
    it through as a string); ours adds ``norm_formula`` and an informational ``torch_dtype``."""
    kwargs = dict(runner.config)
    inner = kwargs.pop("config")
    dtype = kwargs.pop("dtype", None)
    merged = {**inner, **kwargs, "norm_formula": runner.norm_formula}
    if dtype is not None:
        merged["torch_dtype"] = dtype
    return dict(sorted(merged.items()))


def read_config(path: str | Path) -> dict[str, Any]:
    """The RDTRunner kwargs stored in the config.json of an HF dir, or beside/above a weights file."""
    path = Path(path)
    looked = _config_candidates(path)
    for candidate in looked:
        if candidate.is_file():
            try:
                return normalize_config(json.loads(candidate.read_text()))
            except json.JSONDecodeError as err:
                raise CheckpointError(f"{candidate} is not valid JSON ({err}); restore it from the original "
                                      f"checkpoint") from None
    raise CheckpointError(f"no {CONFIG_NAME} for checkpoint {path} (looked at: "
                          f"{', '.join(str(p) for p in looked)}); put the model's config.json beside the weights "
                          f"or pass config=rdt_config('1b'|'170m') / the training config")


# ---------------------------------------------------------------------- weights
def find_weights(path: str | Path) -> Path:
    """The weights file of a checkpoint given as a file, an HF dir or a DeepSpeed checkpoint dir."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"checkpoint path {path} does not exist")
    for name in _WEIGHT_CANDIDATES:
        if (path / name).is_file():
            return path / name
    raise CheckpointError(f"no weights in {path}: expected one of {', '.join(_WEIGHT_CANDIDATES)}")


def _torch_load(file: Path) -> Any:
    """torch.load of tensors only, memory-mapped where the file allows it (no read of the whole file)."""
    try:
        try:
            return torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):  # the legacy (pre-zip) format cannot be mapped: read it whole
                raise
            return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"refusing to unpickle {file}: it holds objects other than tensors and plain "
                              f"containers ({str(err).splitlines()[0]}). Re-save only the state dict, or convert "
                              f"it to model.safetensors in a trusted environment") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"cannot read {file}: {err}") from None


def _strip_prefix(names) -> dict[str, str]:
    """name without the wrapper prefix every name shares (DDP 'module.', torch.compile '_orig_mod.') -> name."""
    names = list(names)
    mapping = {n: n for n in names}
    for prefix in ("module.", "_orig_mod."):
        if mapping and all(k.startswith(prefix) for k in mapping):
            mapping = {k[len(prefix):]: v for k, v in mapping.items()}
    return mapping


_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}


class WeightsFile:
    """The tensors of a checkpoint's weights, by (prefix-free) name, read one at a time when asked.

    ``shapes`` holds meta tensors (shape + dtype, no data) to validate a checkpoint before reading it.
    Safetensors are read tensor by tensor straight to ``device`` (no CPU copy of the model on the way to
    a GPU); .bin / DeepSpeed .pt files are memory-mapped and each tensor is copied to ``device`` when read.
    """

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        self.file = find_weights(path)
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device
        self._readers: dict[str, tuple[Any, str]] = {}  # name -> (source, key in source)
        self.shapes: dict[str, torch.Tensor] = {}
        if self.file.name.endswith(".safetensors"):
            self._add_safetensors(self.file)
        elif self.file.name == SAFETENSORS_INDEX_NAME:
            try:
                weight_map = json.loads(self.file.read_text()).get("weight_map", {})
            except json.JSONDecodeError as err:
                raise CheckpointError(f"{self.file} is not valid JSON ({err})") from None
            for shard in sorted(set(weight_map.values())):
                self._add_safetensors(self.file.parent / shard)
        else:
            self._add_torch(self.file)
        mapping = _strip_prefix(self._readers)
        self._readers = {name: self._readers[key] for name, key in mapping.items()}
        self.shapes = {name: self.shapes[key] for name, key in mapping.items()}

    def _add_safetensors(self, file: Path) -> None:
        try:
            handle = safe_open(str(file), framework="pt", device=str(self.device))
            for key in handle.keys():
                info = handle.get_slice(key)
                self.shapes[key] = torch.empty(info.get_shape(), dtype=_SAFETENSORS_DTYPES[info.get_dtype()],
                                               device="meta")
                self._readers[key] = (handle, key)
        except Exception as err:  # safetensors raises its own error types
            raise CheckpointError(f"cannot read {file}: {err}") from None

    def _add_torch(self, file: Path) -> None:
        obj = _torch_load(file)
        if isinstance(obj, dict) and "module" in obj and isinstance(obj["module"], dict):
            obj = obj["module"]  # DeepSpeed model states
        elif isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise CheckpointError(f"{file} does not hold a state dict (name -> tensor) nor a DeepSpeed "
                                  f"'module' entry")
        for key, tensor in obj.items():
            self.shapes[key] = torch.empty(tensor.shape, dtype=tensor.dtype, device="meta")
            self._readers[key] = (obj, key)

    def read(self, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        """One tensor on the device, cast to ``dtype`` (None: as stored)."""
        source, key = self._readers[name]
        tensor = source.get_tensor(key) if hasattr(source, "get_tensor") else source[key].to(self.device)
        return tensor if dtype is None else tensor.to(dtype)


def load_state_dict(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Tensors of model.safetensors (or its shards), pytorch_model.bin, or a DeepSpeed file's ``module``."""
    weights = WeightsFile(path, device)
    return {name: weights.read(name) for name in weights.shapes}


# ---------------------------------------------------------------------- validation
def sizes_from_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, int]:
    """Model sizes implied by the weights (only those whose tensors are present)."""
    sizes: dict[str, int] = {}
    shape = {k: tuple(v.shape) for k, v in state_dict.items()}
    if len(shape.get("model.x_pos_embed", ())) == 3:
        sizes["pred_horizon"] = shape["model.x_pos_embed"][1] - 3
        sizes["hidden_size"] = shape["model.x_pos_embed"][2]
    if len(shape.get("model.lang_cond_pos_embed", ())) == 3:
        sizes["max_lang_cond_len"] = shape["model.lang_cond_pos_embed"][1]
    if len(shape.get("model.img_cond_pos_embed", ())) == 3:
        sizes["img_cond_len"] = shape["model.img_cond_pos_embed"][1]
    blocks = {k.split(".")[2] for k in state_dict if k.startswith("model.blocks.")}
    if blocks:
        sizes["depth"] = len(blocks)
    head_dim = shape.get("model.blocks.0.attn.q_norm.weight")
    if head_dim and "hidden_size" in sizes and head_dim[0]:
        sizes["num_heads"] = sizes["hidden_size"] // head_dim[0]
    if len(shape.get("model.final_layer.ffn_final.fc2.weight", ())) == 2:
        sizes["action_dim"] = shape["model.final_layer.ffn_final.fc2.weight"][0]
    for name, key in (("lang_token_dim", "lang_adaptor.0.weight"), ("img_token_dim", "img_adaptor.0.weight")):
        if len(shape.get(key, ())) == 2:
            sizes[name] = shape[key][1]
    if len(shape.get("state_adaptor.0.weight", ())) == 2:
        sizes["state_token_dim"] = shape["state_adaptor.0.weight"][1] // 2
    return sizes


def _sizes_from_config(kwargs: dict) -> dict[str, Any]:
    rdt = (kwargs.get("config") or {}).get("rdt", {})
    sizes = {k: kwargs.get(k) for k in ("pred_horizon", "max_lang_cond_len", "img_cond_len", "action_dim",
                                        "lang_token_dim", "img_token_dim", "state_token_dim")}
    sizes.update({k: rdt.get(k) for k in ("hidden_size", "depth", "num_heads")})
    return sizes


def _listing(title: str, items: list[str]) -> str:
    shown = items[:_SHOWN]
    more = f" ... and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return f"{title} ({len(items)}): " + ", ".join(shown) + more


def check_config(kwargs: dict) -> list[str]:
    """Problems with the constructor kwargs themselves (unknown or missing keys, bad values)."""
    problems = []
    unknown = sorted(set(kwargs) - set(_RUNNER_KWARGS))
    missing = sorted(set(_REQUIRED_KWARGS) - set(kwargs))
    if unknown:
        problems.append(f"config has unknown keys {unknown} (RDTRunner takes {list(_RUNNER_KWARGS)})")
    if missing:
        problems.append(f"config lacks required keys {missing}")
    inner = kwargs.get("config")
    if "config" in kwargs:
        if not isinstance(inner, dict):
            problems.append("config['config'] must be the official model config object")
        else:
            for key in ("rdt", "lang_adaptor", "img_adaptor", "state_adaptor", "noise_scheduler"):
                if key not in inner:
                    problems.append(f"config['config'] lacks '{key}'")
    for key, check in (("dtype", parse_dtype), ("norm_formula", check_norm_formula)):
        if kwargs.get(key) is not None:
            try:
                check(kwargs[key])
            except ValueError as err:
                problems.append(str(err))
    return problems


def compare_state_dict(expected: dict[str, torch.Tensor], loaded: dict[str, torch.Tensor],
                       kwargs: dict | None = None) -> list[str]:
    """Every difference between the model's layout and the loaded weights, grouped by kind."""
    problems = []
    missing = [k for k in expected if k not in loaded]
    unexpected = [k for k in loaded if k not in expected]
    shapes = [f"{k}: checkpoint {tuple(loaded[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in loaded and tuple(loaded[k].shape) != tuple(v.shape)]
    if kwargs is not None:
        from_config = _sizes_from_config(kwargs)
        config_diffs = [f"{name}: config {from_config[name]} vs weights {value}"
                        for name, value in sizes_from_state_dict(loaded).items()
                        if from_config.get(name) is not None and from_config[name] != value]
        if config_diffs:
            problems.append(_listing("config does not match the weights", config_diffs))
    if missing:
        problems.append(_listing("missing keys", missing))
    if unexpected:
        problems.append(_listing("unexpected keys", unexpected))
    if shapes:
        problems.append(_listing("shape mismatches", shapes))
    return problems


# ---------------------------------------------------------------------- loading
def load_runner(path: str | Path, *, config: dict | None = None, device: str | torch.device = "cpu",
                dtype: torch.dtype | str | None = None, norm_formula: str | None = None) -> RDTRunner:
    """An RDTRunner with the checkpoint's weights, validated key by key before anything is loaded.

    ``dtype`` None keeps the config's (bfloat16 by default, as released); with bfloat16 only ``model.*`` is
    bfloat16 and the adaptors stay float32, as in the official code. ``norm_formula`` None uses the
    config's, else "variance" (the released checkpoints' formula).
    """
    path = Path(path)
    kwargs = normalize_config(config) if config is not None else read_config(path)
    kwargs = dict(kwargs)
    problems = check_config(kwargs)
    stored_formula = kwargs.pop("norm_formula", None)
    formula = norm_formula or stored_formula or DEFAULT_NORM_FORMULA
    try:
        model_dtype = parse_dtype(dtype if dtype is not None else kwargs.get("dtype"))
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    weights = WeightsFile(path, device)  # shapes only so far: nothing is read before the layout is checked
    if problems:  # the runner cannot even be built: report the config and what the weights imply
        implied = ", ".join(f"{k}={v}" for k, v in sizes_from_state_dict(weights.shapes).items())
        raise CheckpointError(f"checkpoint {path} cannot be loaded:\n- " + "\n- ".join(problems)
                              + f"\n(the weights imply {implied})")
    kwargs.update(dtype=model_dtype, norm_formula=formula)
    with torch.device("meta"):  # layout only: no memory, no random init for weights about to be replaced
        runner = RDTRunner(**kwargs)
    problems = compare_state_dict(runner.state_dict(), weights.shapes, kwargs)
    if problems:
        raise CheckpointError(f"checkpoint {path} does not match its config:\n- " + "\n- ".join(problems))
    # Tensor by tensor, straight to the device in its final dtype: model.* in the model dtype, the adaptors
    # float32 (as the official code keeps them); the peak is the model plus one tensor.
    state_dict = {name: weights.read(name, model_dtype if name.startswith("model.") else torch.float32)
                  for name in weights.shapes}
    runner.load_state_dict(state_dict, strict=True, assign=True)
    runner.config["dtype"] = dtype_name(model_dtype)
    return runner.to(device).eval()


# ---------------------------------------------------------------------- saving
def _atomic_write(target: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_name(name: str) -> str:
    fname = name if name.endswith(".json") else f"{name}.json"
    if Path(fname).name != fname or fname.startswith(".") or fname == CONFIG_NAME:
        raise CheckpointError(f"extra_json name {name!r} must be a plain file name other than {CONFIG_NAME} "
                              f"(e.g. 'profile.json')")
    return fname


def save_pretrained(runner: RDTRunner, out_dir: str | Path, *,
                    extra_json: dict[str, dict] | None = None) -> Path:
    """Write the HF layout: config.json (released layout, see :func:`official_config`), model.safetensors,
    and extra json files (e.g. profile.json, dataset_stats.json). Each file is written atomically."""
    out = Path(out_dir)
    extra = {_json_name(name): content for name, content in (extra_json or {}).items()}
    extra_text = {}
    for fname, content in extra.items():
        try:
            extra_text[fname] = json.dumps(content, indent=2, sort_keys=False)
        except TypeError as err:
            raise CheckpointError(f"extra_json {fname!r} is not JSON-serialisable: {err}") from None
    out.mkdir(parents=True, exist_ok=True)
    config = official_config(runner)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in runner.state_dict().items()}
    _atomic_write(out / SAFETENSORS_NAME, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
    _atomic_write(out / CONFIG_NAME, lambda p: p.write_text(json.dumps(config, indent=2) + "\n"))
    for fname, text in extra_text.items():
        _atomic_write(out / fname, lambda p, text=text: p.write_text(text + "\n"))
    return out
