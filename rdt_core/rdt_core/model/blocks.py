"""Building blocks of the RDT denoiser, with the official module names (state-dict keys depend on them)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .norm import RmsNorm


def gelu_tanh() -> nn.Module:
    return nn.GELU(approximate="tanh")


class TimestepEmbedder(nn.Module):
    """Sinusoidal embedding (cat(cos, sin), 256 dims) of a scalar per sample, then Linear-SiLU-Linear.

    Used for both the diffusion timestep and the control frequency.
    """

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )

    @staticmethod
    def sinusoid(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t.reshape(-1, 1).float() * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return emb

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        weight = self.mlp[0].weight
        return self.mlp(self.sinusoid(t, self.frequency_embedding_size).to(weight.dtype))


class Mlp(nn.Module):
    """fc1 -> GELU(tanh) -> fc2 (timm's Mlp key names)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = gelu_tanh()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Self-attention: fused qkv (split q|k|v then heads), per-head RmsNorm on q and k, no mask."""

    def __init__(self, dim: int, num_heads: int, norm_formula: str):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_size {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.q_norm = RmsNorm(self.head_dim, norm_formula=norm_formula)
        self.k_norm = RmsNorm(self.head_dim, norm_formula=norm_formula)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


def cross_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v. PyTorch's fused CPU kernel has no bfloat16 fast path without AMX (it ran
    the 67 x 4374-key image attention of RDT-170M no faster than float32 on an AVX512-BF16 CPU), so bfloat16
    inference on CPU without a mask runs it as two oneDNN bf16 matmuls around a softmax (14 % off the whole
    chunk there); everything else goes to scaled_dot_product_attention."""
    if mask is None and q.dtype == torch.bfloat16 and q.device.type == "cpu" and not torch.is_grad_enabled():
        return torch.matmul(torch.softmax(torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-1, -2)), -1), v)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class CrossAttention(nn.Module):
    """Attention from the action tokens to a condition (language or image tokens).

    :meth:`project_condition` computes the condition's keys/values; it depends only on the condition, so a
    sampler can compute it once per chunk and pass it back in through ``kv`` at every denoising step.
    """

    def __init__(self, dim: int, num_heads: int, norm_formula: str):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_size {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.q_norm = RmsNorm(self.head_dim, norm_formula=norm_formula)
        self.k_norm = RmsNorm(self.head_dim, norm_formula=norm_formula)
        self.proj = nn.Linear(dim, dim)

    def project_condition(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, C) condition -> normalised keys and values, each (B, heads, L, head_dim), contiguous (the
        CPU attention kernels run ~30 % faster on contiguous keys/values, which are reused every step)."""
        B, L, _ = c.shape
        kv = self.kv(c).reshape(B, L, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).contiguous()
        return self.k_norm(kv[0]), kv[1]

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        B, N, C = x.shape
        k, v = kv if kv is not None else self.project_condition(c)
        if k.shape[0] == 1 and B > 1:
            k, v = k.expand(B, -1, -1, -1), v.expand(B, -1, -1, -1)
        q = self.q_norm(self.q(x).reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2))
        attn_mask = None
        if mask is not None:
            attn_mask = mask.to(torch.bool).reshape(mask.shape[0], 1, 1, k.shape[2])  # False = ignored
        return self.proj(cross_attention(q, k, v, attn_mask).transpose(1, 2).reshape(B, N, C))


class RDTBlock(nn.Module):
    """Pre-norm residual block: self-attention, cross-attention to one condition, MLP.

    Modules are registered in the official order (norm1, attn, cross_attn, norm2, ffn, norm3) so that
    state_dict() lists keys exactly like the released checkpoints; norm2 feeds cross_attn, norm3 feeds ffn.
    """

    def __init__(self, hidden_size: int, num_heads: int, norm_formula: str):
        super().__init__()
        self.norm1 = RmsNorm(hidden_size, norm_formula=norm_formula)
        self.attn = Attention(hidden_size, num_heads, norm_formula)
        self.cross_attn = CrossAttention(hidden_size, num_heads, norm_formula)
        self.norm2 = RmsNorm(hidden_size, norm_formula=norm_formula)
        self.ffn = Mlp(hidden_size, hidden_size)
        self.norm3 = RmsNorm(hidden_size, norm_formula=norm_formula)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        x = x + self.cross_attn(self.norm2(x), c, mask, kv=kv)
        return x + self.ffn(self.norm3(x))


class FinalLayer(nn.Module):
    """RmsNorm -> Linear -> GELU(tanh) -> Linear to the action dimension."""

    def __init__(self, hidden_size: int, out_channels: int, norm_formula: str):
        super().__init__()
        self.norm_final = RmsNorm(hidden_size, norm_formula=norm_formula)
        self.ffn_final = Mlp(hidden_size, hidden_size, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn_final(self.norm_final(x))
