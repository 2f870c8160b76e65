"""The RDT network and runner (checkpoint-compatible with the official thu-ml implementation).

Layout: ``norm`` (RmsNorm, both timm formulas), ``pos_embed`` (sin-cos init), ``blocks`` (attention, MLP,
timestep embedder), ``rdt`` (the denoiser), ``runner`` (adaptors + schedulers + sampler), ``streaming`` (a
stream of chunks: per-frame condition cache, static buffers, CUDA graph), ``config`` (sizes).
"""
# CONTRACT (see ../shared/conformance/README.md "What the project exposes"):
# class RDTRunner(nn.Module):
#     def __init__(self, *, action_dim, pred_horizon, config, lang_token_dim, img_token_dim, state_token_dim,
#                  max_lang_cond_len, img_cond_len, lang_pos_embed_config=None, img_pos_embed_config=None,
#                  dtype=torch.bfloat16, norm_formula="variance")
#     config: dict (the official kwargs, for save_pretrained); pred_horizon; action_dim
#     img_history_size / num_cameras / num_patches (from img_pos_embed_config)
#     model: RDT (the denoiser); lang_adaptor / img_adaptor / state_adaptor
#     @classmethod from_pretrained(dir, **overrides) -> RDTRunner   (delegates to rdt_core.checkpoint)
#     def adapt_conditions(lang_tokens, img_tokens, state_tokens) -> (lang_c, img_c, state_c)
#     def predict_action(lang_tokens, lang_attn_mask, img_tokens, state_tokens, action_mask, ctrl_freqs,
#                        noise=None, num_inference_steps=None, use_cache=True, inpaint=None) -> (B, H, action_dim)
#         # inpaint (optional, real-time chunking): (known_actions (B,K,128) in unified space, K) — the first K
#         # actions are pinned to the known ones at every solver step (guided/inpainting sampling)
#     def compute_loss(lang_tokens, lang_attn_mask, img_tokens, state_tokens, action_gt, action_mask, ctrl_freqs,
#                      noise=None, timesteps=None) -> scalar tensor
#     def forward(*args, **kwargs) -> compute_loss(...)
# RDT.forward(x, freq, t, lang_c, img_c, lang_mask=None, img_mask=None) -> (B, H, out_channels)
# def rdt_config(size: str = "tiny"|"170m"|"1b", **overrides) -> dict   # RDTRunner kwargs for a size
# class StreamingSampler(runner, *, graphs=None, fold_adaptor=None):
#     .predict_action(<predict_action's arguments>, frame_keys=None)
#     # batch 1, a stream of chunks: per-frame condition cache, static buffers, CUDA graph on CUDA,
#     # the image adaptor's last Linear folded into the key/value projections on CPU
from .config import rdt_config
from .norm import NORM_FORMULAS, RmsNorm
from .rdt import RDT
from .runner import RDTRunner, parse_dtype
from .streaming import StreamingSampler

__all__ = ["RDTRunner", "RDT", "rdt_config", "RmsNorm", "NORM_FORMULAS", "parse_dtype", "StreamingSampler"]
