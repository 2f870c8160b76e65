"""Fine-tune RDT on recorded episodes (console scripts ``rdt-train`` / ``ros2 run rdt_training train``).

Built on accelerate: one process on CPU or one GPU as is; many GPUs / nodes with ``accelerate launch``
(``accelerate launch --num_processes N --module rdt_training.train EPISODES ... --deepspeed zero2``:
DeepSpeed ZeRO-2 with the config shipped in ``rdt_training/configs/zero2.json``). bf16 mixed precision on GPU, gradient
accumulation, checkpoints every N steps with a retention limit, resume from the last one, cosine or
constant LR, optional EMA, 8-bit Adam when bitsandbytes is installed. Checkpoints hold safetensors and JSON
only (``rdt_training.checkpointing``): resuming never unpickles a file of the run folder. Several processes
(``accelerate launch``, or ``ACCELERATE_USE_CPU=true torchrun`` on CPU) form one group; processes that do
not (each a world of one, writing into the same ``--output-dir``) are stopped with how to launch instead of
racing. The SigLIP tower is frozen: its
features are computed per batch, or once per dataset into a disk cache. The language embeddings are
precomputed (``rdt-encode-instruction``). Loss and the official held-out ``overall_avg_sample_mse`` go to
TensorBoard. At the end the model is exported in the layout ``RDTPolicy.from_paths`` loads.

Python: ``train(TrainConfig(...)) -> TrainResult`` (the demo trains the tiny model for a minute with it).
"""
from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rdt_core.checkpoint import (CheckpointError, load_runner, load_state_dict, save_pretrained,
                                 sizes_from_state_dict)
from rdt_core.encoders.vision import VisionEncoder
from rdt_core.model import RDTRunner, rdt_config
from rdt_core.robots import load_profile

from .checkpointing import UnsafeCheckpointError, check_resumable, load_tree, rng_state, save_tree, set_rng_state
from .configs import config_path
from .dataset import EXCLUDED_BY_CURATION, DatasetError, EpisodeDataset, collate, index_episodes
from .export import export_model
from .features import FeatureStore, batch_image_tokens
from .instructions import InstructionBank
from .stats import compute_stats

log = logging.getLogger("rdt_training")

CHECKPOINTS_SUBDIR = "checkpoints"
STATE_FILE = "trainer_state.json"
OOM_ADVICE = ("out of memory. Try, in this order: a smaller --batch-size with --grad-accum to keep the "
              "effective batch; --cache-features (no SigLIP pass per step); --use-8bit-adam (pip install "
              "bitsandbytes); ZeRO-2 over several GPUs (accelerate launch --num_processes N --module "
              "rdt_training.train ... --deepspeed zero2); "
              "the 170m model (--init 170m or the rdt-170m checkpoint) instead of 1b.")


class TrainingError(RuntimeError):
    """Training cannot start or continue; the message names the problem and the fix."""


@dataclass
class TrainConfig:
    """Everything a run needs; every field is also a ``rdt-train`` option (underscores -> dashes)."""
    data: list                              # episode folders / files
    output_dir: str = "runs/rdt"
    instructions: str | None = None         # folder of .pt (rdt-encode-instruction --out) or one .pt
    empty_instruction: str | None = None    # T5 embedding of "" for language masking (default: the
                                            # folder's empty_lang_embed.pt, if any)
    init: str = "tiny"                      # "tiny"|"170m"|"1b" (from scratch), an HF dir, a DeepSpeed .pt /
                                            # checkpoint dir, or a previous run's output dir
    vision: str = "tiny"                    # SigLIP dir (google/siglip-so400m-patch14-384) or "tiny"
    profile: str | None = None              # profile for every episode and the export (default: episodes' robot)
    profile_map: dict | None = None         # {episode folder: profile} to mix robots (then --profile = export's)
    max_steps: int = 1000
    max_minutes: float | None = None        # training-loop wall-clock budget (setup not counted); stops and exports
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 1e-4
    lr_scheduler: str = "constant"          # "constant" | "cosine" (any diffusers get_scheduler name)
    warmup_steps: int = 0
    weight_decay: float = 0.01
    adam_betas: tuple = (0.9, 0.999)
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"           # "auto" (bf16 on CUDA, else off) | "no" | "bf16" | "fp16"
    deepspeed: str | None = None            # None | "zero2" | a DeepSpeed JSON config
    use_8bit_adam: str = "auto"             # "auto" (when bitsandbytes and CUDA) | "yes" | "no"
    ema: bool = False
    checkpoint_every: int = 500
    checkpoints_total_limit: int = 3
    resume: bool = False                    # continue from the last checkpoint in output_dir
    sample_every: int = 100                 # held-out sample MSE every N steps (0 = only at the end)
    sample_batches: int = 2
    sample_batch_size: int = 8
    heldout_episodes: int = 1               # last N episodes held out for the sample MSE
    num_inference_steps: int | None = None
    cache_features: bool = False            # SigLIP features computed once per dataset to disk
    feature_cache_dir: str | None = None    # default <output_dir>/feature_cache
    image_aug: bool = False
    cond_mask_prob: float = 0.1             # official condition masking (state, images, freq, language)
    state_noise_snr: float | None = 40.0    # official fine-tuning (finetune.sh): state noise at 40 dB SNR
    skip_still: bool = True
    still_threshold: float = 1e-2
    min_steps: int = 2
    num_workers: int = 0
    cpu_threads: int | None = None          # torch intra-op threads (1-2 is fastest for the tiny model on
                                            # a busy CPU); None = torch's default
    seed: int = 0
    log_with: str | None = "tensorboard"    # "tensorboard" | "wandb" | None
    export_dir: str | None = None           # default <output_dir>/export
    progress: bool = True
    log_every: int = 10
    trace: bool = False                     # per-process JSON lines in <output_dir>/trace (see HELP)


@dataclass
class TrainResult:
    output_dir: Path
    export_dir: Path | None
    steps: int                               # optimizer steps done in total (including resumed ones)
    steps_this_run: int
    loss_history: list = field(default_factory=list)        # (step, loss) per optimizer step
    sample_mse_history: list = field(default_factory=list)  # (step, overall_avg_sample_mse)
    stopped_by: str = "max_steps"            # "max_steps" | "time_budget"
    elapsed_s: float = 0.0
    last_checkpoint: Path | None = None

    @property
    def losses(self) -> list[float]:
        return [l for _, l in self.loss_history]


# ------------------------------------------------------------------------------------------- helpers


def checkpoint_dirs(output_dir) -> list[Path]:
    """The run's checkpoints, oldest first."""
    root = Path(output_dir) / CHECKPOINTS_SUBDIR
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        if d.is_dir() and d.name.startswith("checkpoint-") and d.name.split("-")[-1].isdigit():
            found.append(d)
    return sorted(found, key=lambda d: int(d.name.split("-")[-1]))


def _model_source(init: str) -> tuple[str, Path | None]:
    """("size", None) for from-scratch sizes, else ("path", resolved weights path)."""
    if init.lower() in ("tiny", "170m", "1b"):
        return "size", None
    path = Path(init).expanduser()
    if not path.exists():
        raise TrainingError(f"--init {init}: no such file or directory; give tiny|170m|1b, an HF checkpoint "
                            f"dir (config.json + weights), a DeepSpeed .pt or a previous run's output dir")
    if path.is_dir() and not (path / "config.json").is_file():
        ckpts = checkpoint_dirs(path)                      # a previous run: its export, else its last checkpoint
        if (path / "export" / "config.json").is_file():
            return "path", path / "export"
        if ckpts:
            return "path", ckpts[-1]
    return "path", path


def _runner_kwargs(size: str, vision, lang_dim: int, max_lang_len: int) -> dict:
    kw = rdt_config(size, img_token_dim=vision.hidden_size, num_patches=vision.num_patches,
                    lang_token_dim=lang_dim, dtype="float32")
    if max_lang_len > kw["max_lang_cond_len"]:
        kw = rdt_config(size, img_token_dim=vision.hidden_size, num_patches=vision.num_patches,
                        lang_token_dim=lang_dim, dtype="float32", max_lang_cond_len=max_lang_len)
    return kw


def _config_from_weights(path: Path) -> dict:
    """RDTRunner kwargs implied by a checkpoint without config.json (e.g. a bare DeepSpeed .pt)."""
    sizes = sizes_from_state_dict(load_state_dict(path))
    needed = ("hidden_size", "depth", "num_heads", "lang_token_dim", "img_token_dim", "max_lang_cond_len",
              "pred_horizon", "img_cond_len")
    missing = [k for k in needed if k not in sizes]
    if missing:
        raise TrainingError(f"{path} has no config.json and its weights do not show {missing}; put the "
                            f"config.json of the model it was trained from beside it")
    layout = 2 * 3
    if sizes["img_cond_len"] % layout:
        raise TrainingError(f"{path}: {sizes['img_cond_len']} image tokens is not 2 history steps x 3 cameras "
                            f"x patches; put its config.json beside it")
    return rdt_config("1b", hidden_size=sizes["hidden_size"], depth=sizes["depth"], num_heads=sizes["num_heads"],
                      lang_token_dim=sizes["lang_token_dim"], img_token_dim=sizes["img_token_dim"],
                      max_lang_cond_len=sizes["max_lang_cond_len"], pred_horizon=sizes["pred_horizon"],
                      num_patches=sizes["img_cond_len"] // layout, dtype="float32")


def build_runner(init: str, vision, lang_dim: int, max_lang_len: int) -> RDTRunner:
    """The model to train, in float32 (mixed precision is accelerate's autocast), checked against the
    vision encoder and the instruction embeddings."""
    kind, path = _model_source(init)
    if kind == "size":
        runner = RDTRunner(**{**_runner_kwargs(init.lower(), vision, lang_dim, max_lang_len),
                              "dtype": torch.float32})
    else:
        has_config = (path / "config.json").is_file() if path.is_dir() else (path.parent / "config.json").is_file()
        try:
            if has_config:
                runner = load_runner(path, dtype=torch.float32)
            else:   # a bare DeepSpeed .pt: the config its weights imply
                runner = load_runner(path, config=_config_from_weights(path), dtype=torch.float32)
        except CheckpointError as exc:
            raise TrainingError(f"the checkpoint {path} does not fit the model config: {exc}") from exc
    problems = []
    if runner.img_token_dim != vision.hidden_size:
        problems.append(f"image tokens of width {runner.img_token_dim} but the vision encoder gives "
                        f"{vision.hidden_size} (use the SigLIP tower the checkpoint was trained with, --vision)")
    if runner.num_patches != vision.num_patches:
        problems.append(f"{runner.num_patches} patches per frame but the vision encoder gives {vision.num_patches}")
    if runner.lang_token_dim != lang_dim:
        problems.append(f"language tokens of width {runner.lang_token_dim} but the instruction embeddings are "
                        f"{lang_dim} wide (encode with the matching T5)")
    if max_lang_len > runner.max_lang_cond_len:
        problems.append(f"instruction embeddings up to {max_lang_len} tokens but the model takes "
                        f"{runner.max_lang_cond_len}")
    if runner.num_cameras != 3:
        problems.append(f"{runner.num_cameras} camera slots (the dataset feeds 3)")
    if problems:
        raise TrainingError(f"the model from --init {init} does not fit this setup: " + "; ".join(problems))
    return runner.float()


def build_vision(spec: str, device, dtype) -> tuple[VisionEncoder, str]:
    if spec == "tiny" or spec.startswith("tiny:"):
        seed = int(spec.split(":", 1)[1]) if ":" in spec else 0
        return VisionEncoder.tiny(seed=seed, device=device, dtype=dtype), spec
    path = Path(spec).expanduser()
    return VisionEncoder.from_pretrained(path, device=device, dtype=dtype), str(path.resolve())


def _mixed_precision(choice: str) -> str:
    if choice == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return choice


def _optimizer(params, cfg: TrainConfig, device: torch.device):
    want = str(cfg.use_8bit_adam).lower()
    kwargs = dict(lr=cfg.lr, betas=tuple(cfg.adam_betas), weight_decay=cfg.weight_decay, eps=cfg.adam_eps)
    if want in ("yes", "true", "1", "auto"):
        try:
            import bitsandbytes as bnb
        except ImportError:
            if want != "auto":
                raise TrainingError("--use-8bit-adam yes needs bitsandbytes: pip install bitsandbytes") from None
        else:
            if device.type == "cuda":
                return bnb.optim.AdamW8bit(params, **kwargs), "AdamW8bit"
            if want != "auto":
                raise TrainingError("8-bit Adam needs a CUDA device")
    return torch.optim.AdamW(params, **kwargs), "AdamW"


OFFICIAL_EMA = {"update_after_step": 0, "inv_gamma": 1.0, "power": 0.75, "min_value": 0.0, "max_value": 0.9999}


def make_ema(parameters, settings: dict | None = None):
    """diffusers' EMAModel on the official schedule (configs/base.yaml ``model.ema``, models/ema_model.py):
    decay = 1 - (1 + n / inv_gamma) ** -power after n = updates - update_after_step - 1, 0 until then,
    within [min_value, max_value]. The official model counts updates before incrementing, diffusers
    after, so diffusers gets update_after_step + 1 to give the same decay at every update."""
    from diffusers.training_utils import EMAModel
    e = {**OFFICIAL_EMA, **(settings or {})}
    return EMAModel(parameters, decay=e["max_value"], min_decay=e["min_value"],
                    update_after_step=int(e["update_after_step"]) + 1, use_ema_warmup=True,
                    inv_gamma=e["inv_gamma"], power=e["power"])


def _profile_at_training_frequency(profile, episodes):
    """The export's profile with the control frequency the model was trained with.

    RDTPolicy feeds the profile's control_frequency to the model (ctrl_freqs) and the runtime steps
    through the chunk at it; the dataset fed each episode's recorded frequency. When they differ the
    recorded one is what the actions mean, so the exported profile carries it."""
    from rdt_core.robots import RobotProfile
    mine = [e for e in episodes if e.robot == profile.name] or list(episodes)
    freqs = sorted({float(e.ctrl_freq) for e in mine})
    if len(freqs) > 1:
        log.warning("the episodes were recorded at %s Hz; the export keeps the profile's %s Hz, which the "
                    "policy feeds the model", freqs, profile.control_frequency)
        return profile
    if freqs and freqs[0] != float(profile.control_frequency):
        log.warning("the episodes were recorded at %s Hz, the %s profile says %s Hz: the exported profile "
                    "carries %s Hz (the model learned actions %s s apart)", freqs[0], profile.name,
                    profile.control_frequency, freqs[0], 1.0 / freqs[0])
        return RobotProfile.from_dict({**profile.to_dict(), "control_frequency": freqs[0]})
    return profile


def _state_means(episodes, stats: dict) -> dict:
    """{robot: mean unified state over all its episodes}: what state condition masking puts in place of the
    state (official: the dataset's state_mean in dataset_stat.json, one dataset per robot)."""
    robots = sorted({e.robot for e in episodes})
    if len(robots) == 1:
        return {robots[0]: np.asarray(stats["state_mean"], np.float32)}
    return {r: np.asarray(compute_stats([e for e in episodes if e.robot == r])["state_mean"], np.float32)
            for r in robots}


def make_lr_scheduler(optimizer, cfg: TrainConfig, num_processes: int = 1):
    """diffusers' get_scheduler in optimizer steps. accelerate steps a prepared scheduler once per process
    at every optimizer step, hence the factor. diffusers' "constant" ignores warm-up (the official
    default --lr_warmup_steps 500 has no effect with its constant schedule); a warm-up asked for with
    "constant" is given with "constant_with_warmup" instead of being dropped silently."""
    from diffusers.optimization import get_scheduler
    name = cfg.lr_scheduler
    if name == "constant" and cfg.warmup_steps > 0:
        log.info("--warmup-steps %d with --lr-scheduler constant: using constant_with_warmup", cfg.warmup_steps)
        name = "constant_with_warmup"
    return get_scheduler(name, optimizer=optimizer, num_warmup_steps=cfg.warmup_steps * num_processes,
                         num_training_steps=cfg.max_steps * num_processes)


def _split_episodes(episodes, heldout: int):
    if heldout > 0 and len(episodes) > heldout:
        return episodes[:-heldout], episodes[-heldout:]
    if heldout > 0:
        log.warning("only %d episode(s): the sample MSE is measured on training episodes", len(episodes))
    return episodes, episodes


def _batches_forever(loader):
    epoch = 0
    while True:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        for batch in loader:
            yield batch
        epoch += 1


def _model_inputs(batch, vision, device, dtype):
    return dict(
        lang_tokens=batch["lang_embeds"].to(device=device, dtype=dtype),
        lang_attn_mask=batch["lang_attn_mask"].to(device),
        img_tokens=batch_image_tokens(vision, batch, device=device, dtype=dtype),
        state_tokens=batch["states"].to(device=device, dtype=dtype),
        action_mask=batch["state_elem_mask"].unsqueeze(1).to(device=device, dtype=dtype),
        ctrl_freqs=batch["ctrl_freqs"].to(device),
    )


@torch.no_grad()
def sample_mse(runner, loader, vision, accelerator, *, num_batches: int, num_inference_steps=None) -> dict:
    """The official sample metrics: masked MSE (overall_avg_sample_mse) and the norm-relative L2 error of
    sampled action chunks against the recorded ones, averaged over ``num_batches`` held-out batches."""
    runner.eval()
    mse_sum = l2_sum = 0.0
    n = 0
    device = accelerator.device
    for batch in loader:
        if n >= num_batches:
            break
        inputs = _model_inputs(batch, vision, device, torch.float32)
        with accelerator.autocast():
            pred = runner.predict_action(**inputs, num_inference_steps=num_inference_steps).float()
        actions = batch["actions"].to(device)
        mask = batch["state_elem_mask"].to(device).unsqueeze(1).expand_as(actions)
        norm = batch["state_norm"].to(device).unsqueeze(1).expand_as(actions)
        err = (pred - actions) ** 2
        mse = (err * mask).sum() / mask.sum()
        l2 = ((err.sqrt() / (norm + 1e-3)) * mask).sum() / mask.sum()
        mse_sum += accelerator.gather(mse[None]).mean().item()
        l2_sum += accelerator.gather(l2[None]).mean().item()
        n += 1
    runner.train()
    return {"overall_avg_sample_mse": mse_sum / max(n, 1), "overall_avg_sample_l2err": l2_sum / max(n, 1)}


# ------------------------------------------------------------------------------------------- processes, checkpoints

LAUNCH_ADVICE = ("launch several processes as one group: on CPU `ACCELERATE_USE_CPU=true torchrun --nproc_per_node N "
                 "-m rdt_training.train ...` (or `accelerate launch --cpu --num_processes N --module "
                 "rdt_training.train ...`), on GPUs `accelerate launch --num_processes N --module rdt_training.train ...`")


def check_process_group(accelerator, out: Path) -> None:
    """Stop a launch whose processes did not form one group: each would train alone into ``out`` and race
    on its checkpoints and export (plain torchrun on CPU, without ACCELERATE_USE_CPU=true, does this)."""
    launched = int(os.environ.get("WORLD_SIZE") or 1)
    if launched > 1 and accelerator.num_processes != launched:
        raise TrainingError(
            f"this is process {os.environ.get('RANK', '?')} of {launched} started by the launcher (WORLD_SIZE="
            f"{launched}), but they did not form one group (accelerate sees {accelerator.num_processes}): each "
            f"would train alone into {out} and overwrite the others' checkpoints and export. Stopped; {LAUNCH_ADVICE}")


class OutputLock:
    """An exclusive lock on the run folder, held by the main process while it trains: a second rdt-train
    into the same --output-dir stops with a message instead of racing. The OS drops it when the process ends."""

    NAME = ".rdt-train.lock"

    def __init__(self, out: Path):
        self._fd = os.open(out / self.NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            raise TrainingError(f"another rdt-train (pid {holder}) is writing into {out}: wait for it to finish or "
                                f"give this run its own --output-dir; to train one model in several processes, "
                                f"{LAUNCH_ADVICE}") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)          # closing the descriptor drops the lock
            self._fd = None


class Trace:
    """``<output_dir>/trace/rank<k>.jsonl``: one JSON line per event of this process (``--trace``)."""

    def __init__(self, out: Path, rank: int, enabled: bool):
        self.rank, self.file = rank, None
        if enabled:
            (out / "trace").mkdir(parents=True, exist_ok=True)
            self.file = open(out / "trace" / f"rank{rank}.jsonl", "a")

    def __call__(self, **event) -> None:
        if self.file is not None:
            self.file.write(json.dumps({"rank": self.rank, **event}) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _gradient_checksum(model) -> float:
    return float(sum(p.grad.double().sum().item() for p in model.parameters() if p.grad is not None))


def write_checkpoint(ckpt: Path, accelerator, runner, optimizer, lr_scheduler, ema, trainer_state: dict,
                     deepspeed: bool) -> None:
    """Every process calls this; the main one writes the checkpoint folder (safetensors + JSON, see
    rdt_training.checkpointing) under a hidden name and renames it when complete."""
    from accelerate.utils import gather_object
    rngs = gather_object([rng_state()])          # every rank's generators, in rank order
    if accelerator.is_main_process:
        tmp = ckpt.with_name(f".{ckpt.name}.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        save_pretrained(accelerator.unwrap_model(runner), tmp)
        if not deepspeed:     # ZeRO shards the optimizer state across ranks: not saved (resume says so)
            save_tree(optimizer.state_dict(), tmp, "optimizer")
        save_tree(lr_scheduler.state_dict(), tmp, "scheduler")
        if ema is not None:
            save_tree(ema.state_dict(), tmp, "ema")
        save_tree({str(rank): state for rank, state in enumerate(rngs)}, tmp, "rng")
        (tmp / STATE_FILE).write_text(json.dumps(trainer_state))
        if ckpt.exists():
            shutil.rmtree(ckpt)
        tmp.rename(ckpt)
    accelerator.wait_for_everyone()


def load_checkpoint(ckpt: Path, accelerator, runner, optimizer, lr_scheduler, ema, deepspeed: bool) -> dict:
    """Restore what write_checkpoint wrote, reading only safetensors and JSON; returns the trainer state.
    A checkpoint without those files (an older rdt-train's pickles) is refused, never unpickled."""
    needed = ["scheduler", "rng"] + ([] if deepspeed else ["optimizer"]) + (["ema"] if ema is not None else [])
    try:
        ignored = check_resumable(ckpt, needed)
    except UnsafeCheckpointError as exc:
        raise TrainingError(str(exc)) from None
    if ignored:
        log.warning("%s: ignoring %s (pickle files are never loaded)", ckpt, ", ".join(ignored))
    accelerator.unwrap_model(runner).load_state_dict(load_state_dict(ckpt / "model.safetensors"))
    if deepspeed:
        log.warning("%s: DeepSpeed's optimizer state is not in the checkpoint; the optimizer moments restart",
                    ckpt)
    else:
        optimizer.load_state_dict(load_tree(ckpt, "optimizer"))
    lr_scheduler.load_state_dict(load_tree(ckpt, "scheduler"))
    if ema is not None:
        ema.load_state_dict(load_tree(ckpt, "ema"))
        ema.to(accelerator.device)
    rngs = load_tree(ckpt, "rng")
    mine = rngs.get(str(accelerator.process_index))
    if mine is not None:
        set_rng_state(mine)
    else:
        log.warning("%s was saved by %d process(es); process %d starts fresh random generators", ckpt, len(rngs),
                    accelerator.process_index)
    return json.loads((ckpt / STATE_FILE).read_text())


# ------------------------------------------------------------------------------------------- training


def train(config: TrainConfig) -> TrainResult:
    """Run (or continue) a fine-tuning run; returns the loss history and where the export is."""
    from accelerate import Accelerator
    from accelerate.utils import DeepSpeedPlugin, ProjectConfiguration, set_seed

    cfg = config
    t_start = time.monotonic()
    out = Path(cfg.output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    if cfg.instructions is None:
        raise TrainingError("no instruction embeddings: encode the dataset's instructions once with "
                            "`rdt-encode-instruction --model T5_DIR --dataset EPISODES --out EMB_DIR` and pass "
                            "--instructions EMB_DIR")
    if cfg.cache_features and cfg.image_aug:
        raise TrainingError("--cache-features stores features of the un-augmented frames; it cannot be "
                            "combined with --image-aug (drop one)")

    ds_plugin = None
    if cfg.deepspeed:
        ds_file = config_path("zero2") if cfg.deepspeed == "zero2" else Path(cfg.deepspeed)
        ds_plugin = DeepSpeedPlugin(hf_ds_config=str(ds_file), gradient_accumulation_steps=cfg.grad_accum,
                                    gradient_clipping=cfg.max_grad_norm or None)
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.grad_accum, mixed_precision=_mixed_precision(cfg.mixed_precision),
        log_with=cfg.log_with, deepspeed_plugin=ds_plugin,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")))
    check_process_group(accelerator, out)
    set_seed(cfg.seed)
    if cfg.cpu_threads:
        torch.set_num_threads(int(cfg.cpu_threads))
    lock = OutputLock(out) if accelerator.is_main_process else None
    trace = Trace(out, accelerator.process_index, cfg.trace)
    try:
        return _train(cfg, accelerator, out, t_start, trace)
    finally:
        trace.close()
        if lock is not None:
            lock.release()


def _train(cfg: TrainConfig, accelerator, out: Path, t_start: float, trace: Trace) -> TrainResult:
    """train() once the processes, the lock and the trace are set up."""
    from tqdm.auto import tqdm
    device = accelerator.device
    main = accelerator.is_main_process

    # ---- data
    bank = InstructionBank.load(cfg.instructions, empty=cfg.empty_instruction)
    profiles = cfg.profile_map or cfg.profile or None
    episodes, skipped = index_episodes(cfg.data, profiles=profiles, skip_still=cfg.skip_still,
                                       still_threshold=cfg.still_threshold, min_steps=cfg.min_steps)
    train_eps, heldout_eps = _split_episodes(episodes, cfg.heldout_episodes)
    stats = compute_stats(episodes)
    robots = sorted({e.robot for e in episodes})
    if cfg.profile:
        profile = load_profile(cfg.profile)
    elif len(robots) == 1:
        profile = episodes[0].profile
    else:
        raise TrainingError(f"the episodes come from {robots}; name the robot the export is for with --profile")
    profile = _profile_at_training_frequency(profile, episodes)

    vis_dtype = torch.bfloat16 if accelerator.mixed_precision == "bf16" else torch.float32
    vision, vision_source = build_vision(cfg.vision, device, vis_dtype)
    store = None
    if cfg.cache_features:
        store = FeatureStore(cfg.feature_cache_dir or out / "feature_cache", vision)
        with accelerator.main_process_first():
            store.build(episodes, progress=cfg.progress and main)

    common = dict(chunk_size=None, img_history_size=None, instructions=bank, feature_store=store,
                  state_mean=_state_means(episodes, stats))
    texts_len = max(bank.get(e.instruction).shape[0] for e in episodes)
    runner = build_runner(cfg.init, vision, bank.dim, texts_len)
    common["chunk_size"], common["img_history_size"] = runner.pred_horizon, runner.img_history_size
    train_ds = EpisodeDataset(episodes=train_eps, image_aug=cfg.image_aug, cond_mask_prob=cfg.cond_mask_prob,
                              state_noise_snr=cfg.state_noise_snr, **common)
    sample_ds = EpisodeDataset(episodes=heldout_eps, **common)
    loader_kw = dict(collate_fn=collate, num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0)
    train_loader = torch.utils.data.DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True,
                                               drop_last=len(train_ds) >= cfg.batch_size, **loader_kw)
    sample_loader = torch.utils.data.DataLoader(sample_ds, batch_size=cfg.sample_batch_size, shuffle=True,
                                                **loader_kw)

    # ---- model, optimizer, schedule
    optimizer, opt_name = _optimizer([p for p in runner.parameters() if p.requires_grad], cfg, device)
    lr_scheduler = make_lr_scheduler(optimizer, cfg, accelerator.num_processes)
    ema = None
    if cfg.ema:
        ema = make_ema(runner.parameters(), runner.config.get("config", {}).get("ema", {}))
        ema.to(device)
    runner, optimizer, train_loader, sample_loader, lr_scheduler = accelerator.prepare(
        runner, optimizer, train_loader, sample_loader, lr_scheduler)
    deepspeed = accelerator.distributed_type.value == "DEEPSPEED"

    # ---- resume
    global_step = 0
    loss_history: list = []
    sample_history: list = []
    if cfg.resume:
        ckpts = checkpoint_dirs(out)
        if ckpts:
            state = load_checkpoint(ckpts[-1], accelerator, runner, optimizer, lr_scheduler, ema, deepspeed)
            global_step = int(state["step"])
            loss_history = [tuple(x) for x in state.get("loss_history", [])]
            sample_history = [tuple(x) for x in state.get("sample_mse_history", [])]
            accelerator.print(f"resumed from {ckpts[-1]} at step {global_step}")
        else:
            accelerator.print(f"no checkpoint in {out / CHECKPOINTS_SUBDIR}; starting a new run")

    hparams = {k: (v if isinstance(v, (int, float, str, bool)) else str(v))
               for k, v in dataclasses.asdict(cfg).items()}
    if cfg.log_with:
        accelerator.init_trackers("rdt_training", config=hparams)
    if main:
        (out / "train_config.json").write_text(json.dumps(hparams, indent=2))
        accelerator.print(
            f"training {sum(p.numel() for p in runner.parameters()) / 1e6:.2f}M params on {device} "
            f"({accelerator.num_processes} process(es), precision {accelerator.mixed_precision}, {opt_name}); "
            f"{len(train_eps)} train / {len(heldout_eps)} held-out episodes, {len(train_ds)} steps; "
            f"{len(skipped)} skipped ({sum(why.startswith(EXCLUDED_BY_CURATION) for _, why in skipped)} "
            f"excluded by curation.json)")

    def save_checkpoint(step: int) -> Path:
        ckpt = out / CHECKPOINTS_SUBDIR / f"checkpoint-{step}"
        trainer_state = {"step": step, "loss_history": loss_history, "sample_mse_history": sample_history,
                         "elapsed_s": time.monotonic() - t_start, "num_processes": accelerator.num_processes}
        write_checkpoint(ckpt, accelerator, runner, optimizer, lr_scheduler, ema, trainer_state, deepspeed)
        if accelerator.is_main_process:
            trace(event="wrote", path=str(ckpt.relative_to(out)))
            for old in checkpoint_dirs(out)[:-max(cfg.checkpoints_total_limit, 1)]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()
        return ckpt

    def run_sampling(step: int):
        metrics = sample_mse(accelerator.unwrap_model(runner), sample_loader, vision, accelerator,
                             num_batches=cfg.sample_batches, num_inference_steps=cfg.num_inference_steps)
        sample_history.append((step, metrics["overall_avg_sample_mse"]))
        accelerator.log(metrics, step=step)
        return metrics

    # ---- loop
    start_step = global_step
    stopped_by = "max_steps"
    last_ckpt = None
    bar = tqdm(total=cfg.max_steps, initial=global_step, desc="rdt-train",
               disable=not (cfg.progress and accelerator.is_local_main_process))
    batches = _batches_forever(train_loader)
    runner.train()
    micro_losses = []
    micro_samples: list = []            # (episode, step) of this step's micro-batches, for --trace
    grad_sum = None
    budget_s = None if cfg.max_minutes is None else cfg.max_minutes * 60.0
    t_loop = time.monotonic()
    try:
        while global_step < cfg.max_steps:
            batch = next(batches)
            with accelerator.accumulate(runner):
                inputs = _model_inputs(batch, vision, device, torch.float32)
                actions = batch["actions"].to(device)
                with accelerator.autocast():
                    loss = runner(action_gt=actions, **inputs)
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(runner.parameters(), cfg.max_grad_norm)
                if cfg.trace and accelerator.sync_gradients:      # after the all-reduce: equal on every rank
                    grad_sum = _gradient_checksum(accelerator.unwrap_model(runner))
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            micro_losses.append(loss.detach().float())
            if cfg.trace:
                micro_samples += [[int(e), int(t)] for e, t in zip(batch["episode"], batch["step"])]
            if not accelerator.sync_gradients:
                continue
            global_step += 1
            if ema is not None and not accelerator.optimizer_step_was_skipped:   # official: updated weights only
                ema.step(accelerator.unwrap_model(runner).parameters())
            step_loss = accelerator.gather(torch.stack(micro_losses).mean()[None]).mean().item()
            micro_losses = []
            if not math.isfinite(step_loss):
                raise TrainingError(f"the loss became {step_loss} at step {global_step}; lower --lr, check the "
                                    f"dataset statistics (rdt-dataset-stats) for huge values")
            loss_history.append((global_step, step_loss))
            if cfg.trace:
                params = float(sum(p.double().sum().item() for p in accelerator.unwrap_model(runner).parameters()))
                trace(step=global_step, world=accelerator.num_processes, samples=micro_samples, loss=step_loss,
                      grad_checksum=grad_sum, param_checksum=params)
                micro_samples = []
            bar.update(1)
            if global_step % max(cfg.log_every, 1) == 0 or global_step == 1:
                accelerator.log({"loss": step_loss, "lr": lr_scheduler.get_last_lr()[0]}, step=global_step)
                bar.set_postfix(loss=f"{step_loss:.4f}")
            if cfg.sample_every and global_step % cfg.sample_every == 0:
                run_sampling(global_step)
            if cfg.checkpoint_every and global_step % cfg.checkpoint_every == 0:
                last_ckpt = save_checkpoint(global_step)
            if budget_s is not None and time.monotonic() - t_loop >= budget_s:
                stopped_by = "time_budget"
                break
    except torch.OutOfMemoryError as exc:
        raise TrainingError(f"{exc}\n{OOM_ADVICE}") from exc
    finally:
        bar.close()

    # ---- wrap up: final sample MSE, checkpoint, export
    if not sample_history or sample_history[-1][0] != global_step:
        run_sampling(global_step)
    if last_ckpt is None or not last_ckpt.name.endswith(f"-{global_step}"):
        last_ckpt = save_checkpoint(global_step)
    export_dir = None
    if main:
        model = accelerator.unwrap_model(runner)
        if ema is not None:
            ema.store(model.parameters())
            ema.copy_to(model.parameters())
        try:
            files = sorted({str(p) for p in _instruction_files(cfg.instructions, episodes)})
            export_dir = export_model(
                model, cfg.export_dir or out / "export", profile=profile, stats=stats, vision=vision,
                vision_source=vision_source, instruction_files=files,
                training={"steps": global_step, "init": cfg.init, "ema": cfg.ema,
                          "final_loss": loss_history[-1][1] if loss_history else None,
                          "sample_mse": sample_history[-1][1] if sample_history else None,
                          "instructions": sorted({e.instruction for e in episodes})})
            trace(event="wrote", path=str(Path(export_dir).relative_to(out)) if out in Path(export_dir).parents
                  else str(export_dir))
        finally:
            if ema is not None:
                ema.restore(model.parameters())
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainResult(output_dir=out, export_dir=export_dir, steps=global_step,
                       steps_this_run=global_step - start_step, loss_history=loss_history,
                       sample_mse_history=sample_history, stopped_by=stopped_by,
                       elapsed_s=time.monotonic() - t_start, last_checkpoint=last_ckpt)


def _instruction_files(source, episodes) -> list[Path]:
    """The instruction .pt files the episodes use (copied into the export)."""
    from rdt_core.encoders.language import load_instruction_embedding
    path = Path(source)
    if path.is_file():
        return [path]
    wanted = {e.instruction.strip().rstrip(".") for e in episodes}
    found = []
    for pt in sorted(path.glob("*.pt")):
        try:
            if load_instruction_embedding(pt).instruction.strip().rstrip(".") in wanted:
                found.append(pt)
        except Exception:
            continue
    return found


# ------------------------------------------------------------------------------------------- CLI


HELP = {
    "output_dir": "run folder: checkpoints/, logs/ (TensorBoard), export/",
    "instructions": "folder of instruction .pt files (rdt-encode-instruction --dataset ... --out DIR) or one .pt",
    "empty_instruction": "T5 embedding of the empty instruction, which condition masking puts in place of the "
                         "instruction (official data/empty_lang_embed.pt; `rdt-encode-instruction --dataset ... "
                         "--out DIR` writes it); default: empty_lang_embed.pt in --instructions",
    "init": "tiny|170m|1b from scratch, an HF checkpoint dir (e.g. robotics-diffusion-transformer/rdt-1b), "
            "a DeepSpeed .pt / checkpoint dir, or a previous run's output dir",
    "vision": "local SigLIP dir (google/siglip-so400m-patch14-384) or 'tiny' (random tiny tower, demos/tests)",
    "profile": "robot profile (name or YAML) for every episode and for the export; default: each episode's robot",
    "profile_map": "FOLDER=PROFILE (repeat) to mix robots: each folder's profile; --profile then names the export's",
    "max_minutes": "training-time budget in minutes (setup not counted); stops, checkpoints and exports",
    "lr_scheduler": "constant | cosine (or any diffusers get_scheduler name)",
    "mixed_precision": "auto (bf16 on CUDA, off on CPU) | no | bf16 | fp16",
    "deepspeed": "zero2 (the shipped rdt_training/configs/zero2.json) or a DeepSpeed JSON; use with accelerate launch",
    "use_8bit_adam": "auto (if bitsandbytes is installed and on CUDA) | yes | no",
    "ema": "keep an EMA of the weights (official schedule) and export it",
    "checkpoint_every": "save a resumable checkpoint every N optimizer steps (0 = only at the end)",
    "checkpoints_total_limit": "keep only the newest N checkpoints",
    "resume": "continue from the newest checkpoint in --output-dir",
    "sample_every": "held-out overall_avg_sample_mse every N steps (0 = only at the end)",
    "heldout_episodes": "the last N episodes are not trained on; the sample MSE is measured on them",
    "cache_features": "compute the frozen SigLIP features once per dataset on disk (no --image-aug)",
    "image_aug": "official colour jitter + corruption on half of the frames",
    "cond_mask_prob": "official condition masking probability (state, frames, control frequency, language)",
    "skip_still": "skip the still frames at the start of each episode (official rule)",
    "state_noise_snr": "Gaussian noise on the input state at this signal-to-noise ratio in dB (std = the "
                       "episode's state std / sqrt(10^(snr/10))), as the official fine-tuning; 'none' = off",
    "log_with": "tensorboard | wandb | none",
    "export_dir": "where the policy-ready export goes (default OUTPUT_DIR/export)",
    "trace": "write OUTPUT_DIR/trace/rank<k>.jsonl per process: each step's samples and gradient checksum, and the "
             "files the process wrote (to check that several processes train as one group)",
}


def _optional_float(text: str) -> float | None:
    return None if text.strip().lower() in ("none", "off", "") else float(text)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rdt-train", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("data", nargs="+", help="episode folders or .hdf5 files")
    defaults = TrainConfig(data=[])
    for f in dataclasses.fields(TrainConfig):
        if f.name == "data":
            continue
        if f.name == "profile_map":
            ap.add_argument("--profile-map", action="append", default=None, metavar="FOLDER=PROFILE",
                            help=HELP["profile_map"])
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        help_text = HELP.get(f.name)
        if f.name == "state_noise_snr":
            ap.add_argument(flag, type=_optional_float, default=default, help=help_text)
        elif isinstance(default, bool):
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif isinstance(default, tuple):
            ap.add_argument(flag, type=float, nargs=len(default), default=default, help=help_text)
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            ap.add_argument(flag, type=type(default), default=default, help=help_text)
        elif f.name == "max_minutes":
            ap.add_argument(flag, type=float, default=None, help=help_text)
        elif f.name in ("num_inference_steps", "cpu_threads"):
            ap.add_argument(flag, type=int, default=None, help=help_text)
        else:
            ap.add_argument(flag, default=default, help=help_text)
    ap.add_argument("--log-level", default="INFO")
    return ap


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("accelerate").setLevel(logging.WARNING)   # one line per saved file otherwise
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    if values["log_with"] in ("none", "None", ""):
        values["log_with"] = None
    if values["profile_map"]:
        pairs = [item.split("=", 1) for item in values["profile_map"]]
        if any(len(p) != 2 or not p[0] or not p[1] for p in pairs):
            print("rdt-train: --profile-map takes FOLDER=PROFILE", file=sys.stderr)
            return 2
        values["profile_map"] = dict(pairs)
    try:
        result = train(TrainConfig(**values))
    except (TrainingError, DatasetError, CheckpointError, FileNotFoundError) as exc:
        print(f"rdt-train: {exc}", file=sys.stderr)
        return 2
    if result.export_dir is None:        # not the main process of a multi-process run
        return 0
    print(f"done: {result.steps} steps ({result.stopped_by}), final loss "
          f"{result.losses[-1] if result.losses else float('nan'):.4f}, "
          f"sample MSE {result.sample_mse_history[-1][1] if result.sample_mse_history else float('nan'):.4f}; "
          f"export: {result.export_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
