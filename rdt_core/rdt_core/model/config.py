"""RDTRunner keyword arguments for the model sizes the suite uses.

"1b" is the released RDT-1B config. "170m" follows the rdt-170m model card (hidden 1024, depth 14: half of
RDT-1B; 32 heads as RDT-1B). "tiny" is a random-weight test/demo model with the deployment layout
(64-step horizon, 2 history steps x 3 cameras) but tiny widths.
"""
from __future__ import annotations

from typing import Any

_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden_size=64, depth=2, num_heads=4, lang_token_dim=32, img_token_dim=24, num_patches=4,
                 max_lang_cond_len=32, dtype="float32"),
    "170m": dict(hidden_size=1024, depth=14, num_heads=32, lang_token_dim=4096, img_token_dim=1152,
                 num_patches=729, max_lang_cond_len=1024, dtype="bfloat16"),
    "1b": dict(hidden_size=2048, depth=28, num_heads=32, lang_token_dim=4096, img_token_dim=1152,
               num_patches=729, max_lang_cond_len=1024, dtype="bfloat16"),
}
_COMMON: dict[str, Any] = dict(action_dim=128, pred_horizon=64, state_token_dim=128, img_history_size=2,
                               num_cameras=3, num_inference_timesteps=5)
OVERRIDABLE = tuple(sorted(set(_SIZES["tiny"]) | set(_COMMON)))


def rdt_config(size: str = "tiny", **overrides) -> dict[str, Any]:
    """RDTRunner(**rdt_config(size)) kwargs; overrides: any of :data:`OVERRIDABLE` (e.g. img_token_dim,
    num_patches, pred_horizon, dtype)."""
    key = str(size).lower()
    if key not in _SIZES:
        raise ValueError(f"unknown RDT size {size!r}; choose one of {sorted(_SIZES)}")
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise ValueError(f"rdt_config: unknown override(s) {unknown}; allowed: {list(OVERRIDABLE)}")
    p = {**_COMMON, **_SIZES[key], **overrides}
    img_cond_len = p["img_history_size"] * p["num_cameras"] * p["num_patches"]
    return {
        "action_dim": p["action_dim"],
        "pred_horizon": p["pred_horizon"],
        "config": {
            "lang_adaptor": "mlp2x_gelu",
            "img_adaptor": "mlp2x_gelu",
            "state_adaptor": "mlp3x_gelu",
            "lang_token_dim": p["lang_token_dim"],
            "img_token_dim": p["img_token_dim"],
            "state_token_dim": p["state_token_dim"],
            "rdt": {"hidden_size": p["hidden_size"], "depth": p["depth"], "num_heads": p["num_heads"],
                    "cond_pos_embed_type": "multimodal"},
            "noise_scheduler": {"type": "ddpm", "num_train_timesteps": 1000,
                                "num_inference_timesteps": p["num_inference_timesteps"],
                                "beta_schedule": "squaredcos_cap_v2", "prediction_type": "sample",
                                "clip_sample": False},
            "ema": {"update_after_step": 0, "inv_gamma": 1.0, "power": 0.75, "min_value": 0.0,
                    "max_value": 0.9999},
        },
        "lang_token_dim": p["lang_token_dim"],
        "img_token_dim": p["img_token_dim"],
        "state_token_dim": p["state_token_dim"],
        "max_lang_cond_len": p["max_lang_cond_len"],
        "img_cond_len": img_cond_len,
        "img_pos_embed_config": [["image", [p["img_history_size"], p["num_cameras"], -p["num_patches"]]]],
        "lang_pos_embed_config": [["lang", -p["max_lang_cond_len"]]],
        "dtype": p["dtype"],
    }
