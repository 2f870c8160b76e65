"""RDTRunner: condition adaptors + the RDT denoiser + the diffusers schedulers (training loss and sampling).

Checkpoint-compatible with the official thu-ml RDTRunner: same constructor keywords, same state-dict keys.
Sampling projects the cross-attention keys/values of the (step-invariant) conditions once per chunk.
"""
from __future__ import annotations

import copy
import re
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler
from torch import nn

from .norm import DEFAULT_NORM_FORMULA, check_norm_formula
from .rdt import RDT

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


def parse_dtype(dtype: torch.dtype | str | None, default: torch.dtype = torch.bfloat16) -> torch.dtype:
    """torch dtype from a dtype or its name ("bfloat16", "torch.float32", "fp16", ...)."""
    if dtype is None:
        return default
    if isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).lower().removeprefix("torch.")
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(set(_DTYPES))}")
    return _DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def build_condition_adapter(projector_type: str, in_features: int, out_features: int) -> nn.Module:
    """'linear' or 'mlp<N>x_gelu' (N Linears with GELU(tanh) between them), as the official configs name them."""
    if projector_type == "linear":
        return nn.Linear(in_features, out_features)
    match = re.fullmatch(r"mlp(\d+)x_gelu", str(projector_type))
    if not match:
        raise ValueError(f"unknown adaptor type {projector_type!r}; use 'linear' or 'mlp<N>x_gelu'")
    layers: list[nn.Module] = [nn.Linear(in_features, out_features)]
    for _ in range(1, int(match.group(1))):
        layers += [nn.GELU(approximate="tanh"), nn.Linear(out_features, out_features)]
    return nn.Sequential(*layers)


def _first_param_dtype(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


class RDTRunner(nn.Module):
    """The RDT policy network: adapt conditions, then denoise a chunk of ``pred_horizon`` actions."""

    def __init__(self, *, action_dim: int, pred_horizon: int, config: dict, lang_token_dim: int,
                 img_token_dim: int, state_token_dim: int, max_lang_cond_len: int, img_cond_len: int,
                 lang_pos_embed_config=None, img_pos_embed_config=None,
                 dtype: torch.dtype | str = torch.bfloat16, norm_formula: str = DEFAULT_NORM_FORMULA):
        super().__init__()
        dtype = parse_dtype(dtype)
        self.norm_formula = check_norm_formula(norm_formula)
        # The official keyword arguments, JSON-serialisable: what save_pretrained writes to config.json.
        self.config: dict[str, Any] = {
            "action_dim": action_dim, "pred_horizon": pred_horizon, "config": copy.deepcopy(config),
            "lang_token_dim": lang_token_dim, "img_token_dim": img_token_dim, "state_token_dim": state_token_dim,
            "max_lang_cond_len": max_lang_cond_len, "img_cond_len": img_cond_len,
            "lang_pos_embed_config": copy.deepcopy(lang_pos_embed_config),
            "img_pos_embed_config": copy.deepcopy(img_pos_embed_config),
            "dtype": dtype_name(dtype),
        }
        rdt_cfg = config["rdt"]
        hidden_size = rdt_cfg["hidden_size"]
        self.model = RDT(output_dim=action_dim, horizon=pred_horizon, hidden_size=hidden_size,
                         depth=rdt_cfg["depth"], num_heads=rdt_cfg["num_heads"],
                         max_lang_cond_len=max_lang_cond_len, img_cond_len=img_cond_len,
                         lang_pos_embed_config=lang_pos_embed_config, img_pos_embed_config=img_pos_embed_config,
                         dtype=dtype, norm_formula=self.norm_formula)
        # Adaptors stay float32 whatever ``dtype`` is, as in the official code.
        self.lang_adaptor = build_condition_adapter(config["lang_adaptor"], lang_token_dim, hidden_size)
        self.img_adaptor = build_condition_adapter(config["img_adaptor"], img_token_dim, hidden_size)
        # A state token is a 128-dim value plus its 0/1 availability mask.
        self.state_adaptor = build_condition_adapter(config["state_adaptor"], state_token_dim * 2, hidden_size)

        sched = config["noise_scheduler"]
        with torch.device("cpu"):  # scheduler tables are plain CPU data, even when the net is built on meta
            self._build_schedulers(sched)
        self._sample_templates: dict[int, DPMSolverMultistepScheduler] = {}
        self.num_train_timesteps = sched["num_train_timesteps"]
        self.num_inference_timesteps = sched["num_inference_timesteps"]
        self.prediction_type = sched["prediction_type"]

        self.action_dim = action_dim
        self.pred_horizon = pred_horizon
        self.state_token_dim = state_token_dim
        self.lang_token_dim = lang_token_dim
        self.img_token_dim = img_token_dim
        self.max_lang_cond_len = max_lang_cond_len
        self.img_cond_len = img_cond_len
        self.img_history_size, self.num_cameras, self.num_patches = self._image_layout(
            img_pos_embed_config, img_cond_len)

    def _build_schedulers(self, sched: dict) -> None:
        """DDPM adds training noise; DPM-Solver++ (2nd order, official settings) samples."""
        self.noise_scheduler = DDPMScheduler(
            num_train_timesteps=sched["num_train_timesteps"], beta_schedule=sched["beta_schedule"],
            prediction_type=sched["prediction_type"], clip_sample=sched["clip_sample"])
        self.noise_scheduler_sample = DPMSolverMultistepScheduler(
            num_train_timesteps=sched["num_train_timesteps"], beta_schedule=sched["beta_schedule"],
            prediction_type=sched["prediction_type"])

    @staticmethod
    def _image_layout(img_pos_embed_config, img_cond_len: int) -> tuple[int, int, int]:
        """(history, cameras, patches) from the official [["image", [2, 3, -729]]] config."""
        if img_pos_embed_config:
            for name, size in img_pos_embed_config:
                if name == "image" and isinstance(size, (list, tuple)) and len(size) == 3:
                    history, cams, patches = (abs(int(s)) for s in size)
                    return history, cams, patches
        return 1, 1, img_cond_len

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_pretrained(cls, path: str | Path, **overrides) -> "RDTRunner":
        """Load an HF dir / DeepSpeed checkpoint (see :func:`rdt_core.checkpoint.load_runner`)."""
        from rdt_core.checkpoint import load_runner
        return load_runner(path, **overrides)

    def save_pretrained(self, out_dir: str | Path, **kwargs) -> Path:
        from rdt_core.checkpoint import save_pretrained
        return save_pretrained(self, out_dir, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.model.x_pos_embed.device

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the denoiser (adaptors stay float32)."""
        return self.model.dtype

    # ------------------------------------------------------------------ conditions
    def adapt_conditions(self, lang_tokens: torch.Tensor, img_tokens: torch.Tensor, state_tokens: torch.Tensor,
                         action_mask: torch.Tensor | None = None):
        """Project language (B,L,lang_dim), image (B,N,img_dim) and state tokens to the hidden size.

        ``state_tokens`` are (B,T,2*state_dim) = value ++ mask as in the official code; with ``action_mask``
        given, (B,T,state_dim) values are concatenated with it here.
        """
        if action_mask is not None:
            state_tokens = torch.cat([state_tokens, action_mask.to(state_tokens.dtype).expand(
                -1, state_tokens.shape[1], -1)], dim=2)
        if state_tokens.shape[-1] != 2 * self.state_token_dim:
            raise ValueError(f"state tokens have {state_tokens.shape[-1]} features; the state adaptor takes "
                             f"{2 * self.state_token_dim} (values ++ 0/1 mask): pass action_mask")
        lang_c = self.lang_adaptor(lang_tokens.to(_first_param_dtype(self.lang_adaptor)))
        img_c = self.img_adaptor(img_tokens.to(_first_param_dtype(self.img_adaptor)))
        state_c = self.state_adaptor(state_tokens.to(_first_param_dtype(self.state_adaptor)))
        return lang_c, img_c, state_c

    def _check_inputs(self, lang_tokens, lang_attn_mask, img_tokens, state_tokens, action_mask, ctrl_freqs):
        B = state_tokens.shape[0]
        problems = []
        if lang_tokens.ndim != 3 or lang_tokens.shape[0] != B or lang_tokens.shape[2] != self.lang_token_dim:
            problems.append(f"lang_tokens {tuple(lang_tokens.shape)} should be (B={B}, L, {self.lang_token_dim})")
        elif lang_tokens.shape[1] > self.max_lang_cond_len:
            problems.append(f"lang_tokens have {lang_tokens.shape[1]} tokens, at most {self.max_lang_cond_len}")
        if lang_attn_mask is not None and tuple(lang_attn_mask.shape) != tuple(lang_tokens.shape[:2]):
            problems.append(f"lang_attn_mask {tuple(lang_attn_mask.shape)} should be {tuple(lang_tokens.shape[:2])}")
        if tuple(img_tokens.shape) != (B, self.img_cond_len, self.img_token_dim):
            problems.append(f"img_tokens {tuple(img_tokens.shape)} should be "
                            f"({B}, {self.img_cond_len}, {self.img_token_dim})")
        if state_tokens.ndim != 3 or state_tokens.shape[2] != self.state_token_dim:
            problems.append(f"state_tokens {tuple(state_tokens.shape)} should be (B, 1, {self.state_token_dim})")
        if action_mask.ndim != 3 or action_mask.shape[0] != B or action_mask.shape[2] != self.action_dim:
            problems.append(f"action_mask {tuple(action_mask.shape)} should be ({B}, 1, {self.action_dim})")
        if ctrl_freqs.reshape(-1).shape[0] != B:
            problems.append(f"ctrl_freqs {tuple(ctrl_freqs.shape)} should hold one frequency per sample ({B})")
        if problems:
            raise ValueError("RDTRunner inputs do not match the model: " + "; ".join(problems))

    # ------------------------------------------------------------------ sampling
    def new_sample_scheduler(self, num_inference_steps: int | None = None) -> DPMSolverMultistepScheduler:
        """A fresh DPM-Solver++ scheduler with its timesteps set (schedulers hold per-chunk solver state).

        Copies a per-step-count template, so the timestep/sigma tables are computed once, not every chunk.
        """
        steps = int(num_inference_steps or self.num_inference_timesteps)
        if steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {steps}")
        template = self._sample_templates.get(steps)
        if template is None:
            template = DPMSolverMultistepScheduler.from_config(self.noise_scheduler_sample.config)
            with warnings.catch_warnings():  # diffusers + numpy 2 DeprecationWarning about __array__(copy=)
                warnings.filterwarnings("ignore", message=r"__array__ implementation", category=DeprecationWarning)
                template.set_timesteps(steps)
            self._sample_templates[steps] = template
        return copy.deepcopy(template)

    @torch.no_grad()
    def predict_action(self, lang_tokens: torch.Tensor, lang_attn_mask: torch.Tensor | None,
                       img_tokens: torch.Tensor, state_tokens: torch.Tensor, action_mask: torch.Tensor,
                       ctrl_freqs: torch.Tensor, noise: torch.Tensor | None = None,
                       num_inference_steps: int | None = None, use_cache: bool = True,
                       inpaint: tuple[torch.Tensor, int] | None = None) -> torch.Tensor:
        """Sample a (B, pred_horizon, action_dim) chunk, multiplied by ``action_mask``.

        ``use_cache`` projects the conditions' cross-attention keys/values once instead of at every step
        (same result). ``inpaint=(known_actions (B,>=K,action_dim), K)`` pins the first K actions to known
        values at every solver step (real-time chunking); they are returned exactly as given.
        A stream of chunks of one robot is faster through :class:`rdt_core.model.StreamingSampler`.
        """
        ctrl_freqs = torch.as_tensor(ctrl_freqs, device=self.device).reshape(-1)
        self._check_inputs(lang_tokens, lang_attn_mask, img_tokens, state_tokens, action_mask, ctrl_freqs)
        B, H = state_tokens.shape[0], self.pred_horizon
        lang_c, img_c, state_traj = self.adapt_conditions(
            lang_tokens, img_tokens, torch.cat([state_tokens, action_mask.to(state_tokens.dtype)], dim=2))
        dtype, device = state_traj.dtype, state_traj.device
        noise = self.initial_noise(noise, B, dtype, device)
        mask = action_mask.to(dtype).expand(-1, H, -1)
        pinned, known = self.inpaint_target(inpaint, B, dtype, device)
        cond_kv = None
        if use_cache:
            cond_kv, lang_c, img_c = self.model.condition_kv(lang_c, img_c), None, None
        return self.denoise(self.new_sample_scheduler(num_inference_steps), noise, state_traj, mask, ctrl_freqs,
                            lang_attn_mask, cond_kv=cond_kv, lang_c=lang_c, img_c=img_c, pinned=pinned, known=known)

    def denoise(self, scheduler: DPMSolverMultistepScheduler, noise: torch.Tensor, state_traj: torch.Tensor,
                mask: torch.Tensor, ctrl_freqs: torch.Tensor, lang_mask: torch.Tensor | None, *,
                cond_kv=None, lang_c=None, img_c=None, pinned=None, known=None,
                timesteps: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The sampling loop: ``scheduler``'s steps from ``noise`` (B,H,A) to the masked chunk.

        ``state_traj`` is the adapted state token, ``mask`` the (B,H,A) action mask, the conditions either
        ``cond_kv`` (projected once) or ``lang_c``/``img_c``. ``pinned`` (B|1,H,1) bool marks the actions
        held at ``known`` (B,H,A) (inpainting). ``timesteps``: the scheduler's timesteps as (1,) tensors
        already on the device (a CUDA graph cannot copy them there while it is captured).
        """
        B, dtype = noise.shape[0], noise.dtype
        if timesteps is None:
            timesteps = [t.reshape(1).to(noise.device) for t in scheduler.timesteps]
        x = noise
        for t, t_device in zip(scheduler.timesteps, timesteps):
            if pinned is not None:
                x = torch.where(pinned, self.noise_scheduler.add_noise(known, noise, t_device.expand(B)), x)
            action_traj = self.state_adaptor(torch.cat([x, mask], dim=2))
            model_output = self.model(torch.cat([state_traj, action_traj], dim=1), ctrl_freqs, t_device,
                                      lang_c, img_c, lang_mask=lang_mask, cond_kv=cond_kv)
            x = scheduler.step(model_output, t, x).prev_sample.to(dtype)
        x = x * mask
        if pinned is not None:
            x = torch.where(pinned, known, x)
        return x

    def initial_noise(self, noise: torch.Tensor | None, batch: int, dtype, device) -> torch.Tensor:
        """The chunk's starting noise: ``noise`` checked and cast, or a fresh ``torch.randn`` draw."""
        shape = (batch, self.pred_horizon, self.action_dim)
        if noise is None:
            return torch.randn(shape, dtype=dtype, device=device)
        if tuple(noise.shape) != shape:
            raise ValueError(f"noise {tuple(noise.shape)} should be {shape}")
        return noise.to(device=device, dtype=dtype)

    def inpaint_target(self, inpaint, batch: int, dtype, device):
        """(pinned (1,H,1) bool, known (B,H,A)) from ``inpaint=(known_actions, K)``, or (None, None)."""
        if inpaint is None:
            return None, None
        known, num_known = inpaint
        num_known = int(num_known)
        if not 0 <= num_known <= self.pred_horizon:
            raise ValueError(f"inpaint: num_known={num_known} must be within 0..{self.pred_horizon}")
        if num_known == 0:
            return None, None
        known = torch.as_tensor(known)
        if known.ndim == 2:
            known = known.unsqueeze(0).expand(batch, -1, -1)
        if known.ndim != 3 or known.shape[0] != batch or known.shape[1] < num_known \
                or known.shape[2] != self.action_dim:
            raise ValueError(f"inpaint: known_actions {tuple(known.shape)} should be ({batch}, >={num_known}, "
                             f"{self.action_dim}) in the unified action space")
        known = known[:, :num_known].to(device=device, dtype=dtype)
        if not torch.isfinite(known).all():
            raise ValueError("inpaint: known_actions contain NaN or inf")
        full = torch.zeros((batch, self.pred_horizon, self.action_dim), dtype=dtype, device=device)
        full[:, :num_known] = known
        pinned = torch.zeros((1, self.pred_horizon, 1), dtype=torch.bool, device=device)
        pinned[:, :num_known] = True
        return pinned, full

    # ------------------------------------------------------------------ training
    def compute_loss(self, lang_tokens: torch.Tensor, lang_attn_mask: torch.Tensor | None,
                     img_tokens: torch.Tensor, state_tokens: torch.Tensor, action_gt: torch.Tensor,
                     action_mask: torch.Tensor, ctrl_freqs: torch.Tensor, noise: torch.Tensor | None = None,
                     timesteps: torch.Tensor | None = None) -> torch.Tensor:
        """Denoising loss: MSE between the prediction and the target (x0 for prediction_type 'sample') over
        all dims and steps. ``noise`` and ``timesteps`` are drawn (in that order) when not given."""
        B, device = lang_tokens.shape[0], lang_tokens.device
        if noise is None:
            noise = torch.randn(action_gt.shape, dtype=action_gt.dtype, device=device)
        if timesteps is None:
            timesteps = torch.randint(0, self.num_train_timesteps, (B,), device=device).long()
        noisy_action = self.noise_scheduler.add_noise(action_gt, noise, timesteps)
        state_action = torch.cat([state_tokens, noisy_action], dim=1)
        mask = action_mask.to(state_action.dtype).expand(-1, state_action.shape[1], -1)
        lang_c, img_c, state_action = self.adapt_conditions(
            lang_tokens, img_tokens, torch.cat([state_action, mask], dim=2))
        pred = self.model(state_action, ctrl_freqs, timesteps, lang_c, img_c, lang_mask=lang_attn_mask)
        if self.prediction_type == "epsilon":
            target = noise
        elif self.prediction_type == "sample":
            target = action_gt
        else:
            raise ValueError(f"unsupported prediction_type {self.prediction_type!r}")
        return F.mse_loss(pred.float(), target.float())

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.compute_loss(*args, **kwargs)
