"""RDTPolicy: (checkpoint, vision encoder, profile, instruction) -> 64 future actions in robot units.

The deployment step of the official scripts (scripts/agilex_model.py ``step``), robot-independent:
the profile maps joint positions into the unified 128-dim state (state token + availability mask), the
SigLIP features of the image window come from a history cache (a new step encodes only the new frames),
the instruction embedding is loaded once, the chunk is sampled by a :class:`StreamingSampler` (each frame's
adaptor and key/value projections computed once in its life, the language ones once per instruction) and
mapped back to robot units.
Safety (limits, rate, staleness) is not done here: the control runtime applies it to what this returns.
"""
from __future__ import annotations

import contextlib
import json
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Hashable, Sequence

import numpy as np
import torch

from rdt_core.encoders.language import InstructionEmbedding, load_instruction_embedding
from rdt_core.encoders.vision import HistoryImageEncoder, VisionEncoder
from rdt_core.model.cpu_linear import OneDnnLinear, onednn_linear_status
from rdt_core.model.streaming import StreamingSampler
from rdt_core.robots import load_profile

__all__ = ["RDTPolicy", "NonFiniteActionError", "default_dtype", "attention_kernels", "PROFILE_FILE"]

PROFILE_FILE = "profile.json"


class NonFiniteActionError(RuntimeError):
    """The model returned NaN/inf actions; the chunk must not be executed."""


def default_dtype(device) -> torch.dtype:
    """bfloat16 on CUDA (as the official deployment) where the GPU supports it, else float32 (float16 risks
    NaNs); float32 on CPU (bfloat16 there is opt-in: fast only with AVX512-BF16 / AMX, see bench/README.md)."""
    device = torch.device(device)
    if device.type != "cuda":
        return torch.float32
    if not torch.cuda.is_bf16_supported():
        warnings.warn(f"{torch.cuda.get_device_name(device)} has no bfloat16 support: running the policy in "
                      f"float32 (slower, twice the memory)", RuntimeWarning, stacklevel=3)
        return torch.float32
    return torch.bfloat16


def attention_kernels(device) -> str:
    """Which fused attention kernels scaled_dot_product_attention can use on ``device``, in words."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"{device.type}: PyTorch's fused CPU attention"
    major, minor = torch.cuda.get_device_capability(device)
    flash = torch.backends.cuda.flash_sdp_enabled() and major >= 8
    why = "" if flash else (" (flash attention needs compute capability 8.0+, this GPU is "
                            f"{major}.{minor})" if major < 8 else " (flash attention is disabled in torch.backends)")
    return ("flash attention for self- and image attention, memory-efficient attention for the masked "
            "language attention" if flash else f"memory-efficient attention{why}")


def _as_dtype(dtype, device) -> torch.dtype:
    if dtype is None:
        return default_dtype(device)
    if isinstance(dtype, torch.dtype):
        return dtype
    from rdt_core.model import parse_dtype
    return parse_dtype(dtype)


class RDTPolicy:
    """Predicts an action chunk (horizon x D, robot units) from the image window and the joint positions.

    ``graphs`` / ``preprocess_on_device``: the chunk as a CUDA graph and the image preprocessing on the GPU
    (default: both on CUDA). ``onednn_linear``: float32 Linear layers through oneDNN instead of MKL (default:
    on CPU in float32; see :mod:`rdt_core.model.cpu_linear`). ``fast_path`` says what runs and why a piece
    fell back.
    """

    def __init__(self, runner, vision: VisionEncoder, profile, instruction=None, *, device="cpu", dtype=None,
                 control_frequency: float | None = None, num_inference_steps: int | None = None,
                 untrained: bool = False, graphs: bool | None = None, preprocess_on_device: bool | None = None,
                 onednn_linear: bool | None = None):
        self._started_at = time.perf_counter()  # from_paths moves it back to when loading began
        self.startup: dict[str, float | None] = {"first_chunk_s": None}
        self.device = torch.device(device)
        self.dtype = _as_dtype(dtype, self.device)
        self.profile = load_profile(profile)
        self.untrained = bool(untrained)
        # Whole runner in one dtype, as the official deployment casts it (adaptors included).
        self.runner = runner.to(device=self.device, dtype=self.dtype).eval()
        on_device = self.device.type == "cuda" if preprocess_on_device is None else bool(preprocess_on_device)
        if vision.device != self.device or vision.dtype != self.dtype or vision.preprocess_requested != on_device:
            vision = VisionEncoder(vision.model, vision.processor, device=self.device, dtype=self.dtype,
                                   preprocess_on_device=on_device)
        self.vision = vision

        self.horizon = int(runner.pred_horizon)
        self.img_history_size = int(runner.img_history_size)
        self.num_cameras = int(runner.num_cameras)
        self.window_size = self.img_history_size * self.num_cameras
        self.num_patches = int(runner.num_patches)
        problems = []
        if vision.num_patches != self.num_patches:
            problems.append(f"the vision encoder gives {vision.num_patches} patches per image, the checkpoint "
                            f"expects {self.num_patches}")
        if vision.hidden_size != runner.img_token_dim:
            problems.append(f"the vision encoder's features are {vision.hidden_size} wide, the checkpoint's "
                            f"image adaptor takes {runner.img_token_dim}")
        if runner.action_dim != 128 or runner.state_token_dim != 128:
            problems.append(f"the checkpoint's action/state width is {runner.action_dim}/{runner.state_token_dim}, "
                            f"the unified vector is 128")
        if problems:
            raise ValueError("vision encoder and checkpoint do not match: " + "; ".join(problems)
                             + " (RDT-1B/170M use google/siglip-so400m-patch14-384: 729 patches x 1152)")
        self.images = HistoryImageEncoder(vision, history=self.img_history_size, num_cameras=self.num_cameras)
        self.sampler = StreamingSampler(self.runner, graphs=graphs)
        self.linear = self._choose_linear(onednn_linear)

        self.control_frequency = float(control_frequency or self.profile.control_frequency)
        if not self.control_frequency > 0:
            raise ValueError(f"control frequency must be > 0 Hz, got {self.control_frequency}")
        freq = int(self.control_frequency) if self.control_frequency.is_integer() else self.control_frequency
        self._ctrl_freqs = torch.tensor([freq], device=self.device)
        self.num_inference_steps = num_inference_steps
        mask = torch.from_numpy(np.asarray(self.profile.unified_mask(), dtype=np.float32))
        self._action_mask = mask.to(self.device, self.dtype).view(1, 1, -1)

        self._lock = threading.Lock()         # one inference at a time (held for the whole chunk)
        self._instruction_lock = threading.Lock()   # the instruction fields: held for microseconds
        self.instruction: InstructionEmbedding | None = None
        self._lang: torch.Tensor | None = None
        self._lang_mask: torch.Tensor | None = None
        if instruction is not None:
            self.set_instruction(instruction)
        self.last_stamp = None
        self.last_info: dict[str, Any] = {}

    def _choose_linear(self, wanted: bool | None) -> str:
        """Which kernels run the Linear layers, in words (and whether predict wraps itself in OneDnnLinear)."""
        self._linear_mode = False
        if self.device.type != "cpu" or self.dtype != torch.float32:
            return f"PyTorch's default for {self.device.type} {str(self.dtype).removeprefix('torch.')}"
        if wanted is False:
            return "PyTorch's default float32 matmul (oneDNN switched off)"
        usable, words = onednn_linear_status()
        if wanted and not usable:
            warnings.warn(f"RDTPolicy: oneDNN linear asked for but unavailable: {words}", RuntimeWarning,
                          stacklevel=3)
        self._linear_mode = usable
        return words

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_paths(cls, checkpoint, vision_encoder, profile, instruction, *, device="cpu", dtype=None,
                   **kwargs) -> "RDTPolicy":
        """Load a checkpoint (HF dir, .pt/.safetensors/.bin, DeepSpeed dir), a local SigLIP dir and an
        instruction .pt. ``profile`` = a RobotProfile, a shipped name, a YAML path, or None for the
        profile.json that rdt_training exports beside the checkpoint. ``vision_encoder`` = None uses the
        tower an rdt_training export carries (``vision/``) or names (training.json ``vision_encoder``).

        Weights go straight to ``device`` in ``dtype`` (safetensors tensor by tensor, .bin/.pt memory-mapped);
        T5 is never loaded (the instruction is its stored embedding). ``startup`` records the seconds spent
        loading the runner and the tower, and (after the first :meth:`predict` or :meth:`warmup`) the time
        from the start of loading to the first chunk."""
        from rdt_core.checkpoint import load_runner

        started = time.perf_counter()
        device = torch.device(device)
        dtype = _as_dtype(dtype, device)
        if profile is None:
            profile = cls._exported_profile(checkpoint)
        profile = load_profile(profile)
        if vision_encoder is None:
            vision_encoder = cls._exported_vision(checkpoint)
        runner = load_runner(checkpoint, device=device, dtype=dtype)
        loaded_runner = time.perf_counter()
        vision = VisionEncoder.from_pretrained(vision_encoder, device=device, dtype=dtype)
        loaded_vision = time.perf_counter()
        policy = cls(runner, vision, profile, instruction, device=device, dtype=dtype, **kwargs)
        policy._started_at = started
        policy.startup.update(load_runner_s=loaded_runner - started, load_vision_s=loaded_vision - loaded_runner,
                              ready_s=time.perf_counter() - started)
        return policy

    @staticmethod
    def _exported_profile(checkpoint):
        from rdt_core.robots import RobotProfile, available_profiles
        ckpt = Path(checkpoint).expanduser()
        path = (ckpt if ckpt.is_dir() else ckpt.parent) / PROFILE_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"no robot profile given and no {PROFILE_FILE} beside the checkpoint ({path}); pass the profile "
                f"the model was fine-tuned for (shipped: {available_profiles()}, or a YAML path)")
        try:
            return RobotProfile.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    @staticmethod
    def _exported_vision(checkpoint) -> Path:
        ckpt = Path(checkpoint).expanduser()
        folder = ckpt if ckpt.is_dir() else ckpt.parent
        candidates = [folder / "vision"]
        info = folder / "training.json"
        if info.is_file():
            try:
                named = json.loads(info.read_text(encoding="utf-8")).get("vision_encoder")
            except (OSError, ValueError, AttributeError):
                named = None
            if named:
                candidates.append(Path(named).expanduser())
        for path in candidates:
            if (path / "config.json").is_file():
                return path
        raise FileNotFoundError(
            f"no vision encoder given and none beside the checkpoint (looked at {[str(c) for c in candidates]}); "
            f"pass the local SigLIP folder (google/siglip-so400m-patch14-384) the model was trained with")

    @classmethod
    def tiny(cls, profile, *, seed: int = 0, pred_horizon: int = 64, device="cpu", dtype=None,
             instruction_length: int = 8) -> "RDTPolicy":
        """A random tiny RDT + tiny SigLIP + a random instruction: UNTRAINED, for tests and demos only.

        The official init zeroes the last projection (every output would be 0), so seeded noise is added
        to every weight to make the chunk depend on its inputs, as a trained model's does.
        """
        from rdt_core.model import RDTRunner, rdt_config

        vision = VisionEncoder.tiny(seed=seed)
        cfg = rdt_config("tiny", img_token_dim=vision.hidden_size, num_patches=vision.num_patches,
                         pred_horizon=pred_horizon, dtype="float32")
        gen = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            runner = RDTRunner(**cfg)
        with torch.no_grad():
            for p in runner.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        text = torch.randn(1, instruction_length, cfg["lang_token_dim"], generator=gen)
        instruction = InstructionEmbedding("untrained_random", "(random embedding of an untrained demo model)", text)
        return cls(runner, vision, profile, instruction, device=device, dtype=dtype, untrained=True)

    # ---------------------------------------------------------------- instruction
    def set_instruction(self, instruction) -> None:
        """Use another instruction: an InstructionEmbedding, a (1, L, D) / (L, D) tensor, or a .pt path."""
        if isinstance(instruction, InstructionEmbedding):
            emb = instruction
        elif isinstance(instruction, torch.Tensor):
            emb = InstructionEmbedding("tensor", "", instruction)
        elif isinstance(instruction, (str, Path)):
            emb = load_instruction_embedding(instruction)
        else:
            raise TypeError(f"instruction must be an InstructionEmbedding, a tensor or a .pt path, "
                            f"got {type(instruction).__name__}")
        if emb.dim != self.runner.lang_token_dim:
            raise ValueError(f"instruction {emb.name!r} has width {emb.dim}, the checkpoint's language adaptor takes "
                             f"{self.runner.lang_token_dim} (RDT uses T5-v1.1-XXL embeddings, 4096 wide)")
        if emb.length > self.runner.max_lang_cond_len:
            raise ValueError(f"instruction {emb.name!r} has {emb.length} tokens, the checkpoint takes at most "
                             f"{self.runner.max_lang_cond_len}; shorten the instruction")
        lang = emb.embeddings.to(device=self.device, dtype=self.dtype)
        # Not the inference lock: a caller (the node's service, on the thread that also runs the control
        # tick) must never wait seconds for a running chunk; the next chunk takes the new instruction.
        with self._instruction_lock:
            self.instruction = emb
            self._lang = lang
            self._lang_mask = torch.ones(lang.shape[:2], dtype=torch.bool, device=self.device)

    # ---------------------------------------------------------------- inference
    def reset(self) -> None:
        """Forget cached image features (call at the start of an episode)."""
        with self._lock:
            self.images.reset()
            self.sampler.forget_frames()

    def warmup(self) -> float:
        """Run one chunk on background frames at mid-range joints (kernel selection, CUDA graph capture), so
        that the first real chunk is not the slow one; returns its seconds. Needs an instruction."""
        start = time.perf_counter()
        self.predict([None] * self.window_size, (self.profile.lower + self.profile.upper) / 2,
                     noise=torch.zeros(self.horizon, 128))
        self.reset()
        return time.perf_counter() - start

    def _state_tokens(self, qpos) -> torch.Tensor:
        q = np.asarray(qpos, dtype=np.float64)
        if q.shape != (self.profile.dof,):
            raise ValueError(f"qpos has shape {q.shape}; profile {self.profile.name!r} expects ({self.profile.dof},) "
                             f"in the order {self.profile.joint_names}")
        if not np.isfinite(q).all():
            raise ValueError(f"qpos contains NaN/inf: {q.tolist()}")
        state = self.profile.qpos_to_unified(q)
        return torch.from_numpy(np.asarray(state, dtype=np.float32)).to(self.device, self.dtype).view(1, 1, -1)

    def _noise(self, noise) -> torch.Tensor | None:
        if noise is None:
            return None
        n = torch.as_tensor(noise)
        if n.ndim == 2:
            n = n.unsqueeze(0)
        if tuple(n.shape) != (1, self.horizon, 128):
            raise ValueError(f"noise has shape {tuple(n.shape)}; expected ({self.horizon}, 128) or (1, {self.horizon}, 128)")
        return n.to(self.device, self.dtype)

    def _inpaint(self, actions):
        if actions is None:
            return None
        a = np.asarray(actions, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != self.profile.dof or not 0 < a.shape[0] <= self.horizon:
            raise ValueError(f"inpaint_actions has shape {a.shape}; expected (K, {self.profile.dof}) robot-unit "
                             f"actions with 1 <= K <= {self.horizon}")
        known = torch.from_numpy(np.asarray(self.profile.action_to_unified(a), dtype=np.float32))
        return known.to(self.device, self.dtype).unsqueeze(0), a.shape[0]

    @torch.inference_mode()
    def predict(self, images: Sequence[np.ndarray | None], qpos, stamp=None, *, noise=None,
                image_keys: Sequence[Hashable] | None = None, inpaint_actions=None) -> np.ndarray:
        """(horizon, D) float32 actions in robot units.

        images: ``window_size`` RGB uint8 frames, oldest step first, each step [exterior, right wrist,
        left wrist] (None = missing camera); image_keys: one id per frame (e.g. header stamps) so that
        frames seen at the previous step are not encoded again (default: array identity).
        noise: (horizon, 128) initial noise for a reproducible chunk. inpaint_actions: (K, D) actions
        already committed, pinned as the start of the chunk (real-time chunking).
        """
        if len(images) != self.window_size:
            raise ValueError(
                f"got {len(images)} images; this checkpoint takes {self.window_size} = {self.img_history_size} steps "
                f"x {self.num_cameras} cameras, ordered [ext_(t-1), right_(t-1), left_(t-1), ext_t, right_t, left_t]")
        state = self._state_tokens(qpos)
        noise_t = self._noise(noise)
        inpaint = self._inpaint(inpaint_actions)
        kernels = OneDnnLinear() if self._linear_mode else contextlib.nullcontext()
        with self._lock, kernels:
            with self._instruction_lock:
                lang, lang_mask = self._lang, self._lang_mask
            if lang is None:
                raise RuntimeError("no instruction set; call set_instruction(<embedding .pt>) first")
            t0 = time.perf_counter()
            before = self.images.stats["frames_encoded"]
            projected = self.sampler.stats["frames_projected"]
            img_tokens = self.images.encode(images, keys=image_keys).to(self.dtype)
            t1 = time.perf_counter()
            out = self.sampler.predict_action(
                lang_tokens=lang, lang_attn_mask=lang_mask, img_tokens=img_tokens,
                state_tokens=state, action_mask=self._action_mask, ctrl_freqs=self._ctrl_freqs,
                noise=noise_t, num_inference_steps=self.num_inference_steps, inpaint=inpaint,
                frame_keys=self.images.window_keys)
            chunk = out[0].float().cpu().numpy()
            t2 = time.perf_counter()
            self.last_stamp = stamp
            self.last_info = {"stamp": stamp, "encode_s": t1 - t0, "sample_s": t2 - t1,
                              "frames_encoded": self.images.stats["frames_encoded"] - before,
                              "frames_projected": self.sampler.stats["frames_projected"] - projected}
            if self.startup["first_chunk_s"] is None:
                self.startup.update(first_chunk_s=t2 - self._started_at, first_chunk_latency_s=t2 - t0)
        bad = ~np.isfinite(chunk)
        if bad.any():
            raise NonFiniteActionError(
                f"the model returned {int(bad.sum())} non-finite values (NaN/inf) in the {self.horizon}-step chunk "
                f"(stamp {stamp}); the chunk is discarded. Check the checkpoint, the inputs, and avoid float16 "
                f"(use bfloat16 or float32)")
        return np.asarray(self.profile.unified_to_action(chunk), dtype=np.float32)

    @property
    def fast_path(self) -> dict[str, str]:
        """What runs the chunk, piece by piece, and for a piece that is not the fast one, why."""
        return {"device": str(self.device), "dtype": str(self.dtype).removeprefix("torch."),
                "attention": attention_kernels(self.device), "sampler": self.sampler.graph_status,
                "preprocessing": self.vision.preprocessing, "linear": self.linear}

    def __repr__(self) -> str:
        flag = ", UNTRAINED" if self.untrained else ""
        return (f"RDTPolicy(profile={self.profile.name}, horizon={self.horizon}, window={self.window_size}, "
                f"device={self.device}, dtype={str(self.dtype).removeprefix('torch.')}{flag})")
