"""RDT: the diffusion transformer that denoises an action chunk given language and image conditions."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .blocks import FinalLayer, RDTBlock, TimestepEmbedder
from .norm import DEFAULT_NORM_FORMULA, check_norm_formula
from .pos_embed import cond_pos_embed_init, x_pos_embed_init

ConditionKV = list[tuple[torch.Tensor, torch.Tensor]]


class RDT(nn.Module):
    """Token sequence [timestep, ctrl_freq, state, H actions]; even blocks cross-attend to language (with its
    padding mask), odd blocks to image tokens. Returns the last H tokens projected to ``output_dim``."""

    def __init__(self, output_dim: int = 128, horizon: int = 32, hidden_size: int = 1152, depth: int = 28,
                 num_heads: int = 16, max_lang_cond_len: int = 1024, img_cond_len: int = 4096,
                 lang_pos_embed_config: Sequence | None = None, img_pos_embed_config: Sequence | None = None,
                 dtype: torch.dtype = torch.bfloat16, norm_formula: str = DEFAULT_NORM_FORMULA):
        super().__init__()
        self.horizon = horizon
        self.hidden_size = hidden_size
        self.max_lang_cond_len = max_lang_cond_len
        self.img_cond_len = img_cond_len
        self.lang_pos_embed_config = lang_pos_embed_config
        self.img_pos_embed_config = img_pos_embed_config
        self.norm_formula = check_norm_formula(norm_formula)

        self.t_embedder = TimestepEmbedder(hidden_size)
        self.freq_embedder = TimestepEmbedder(hidden_size)
        self.x_pos_embed = nn.Parameter(torch.zeros(1, horizon + 3, hidden_size))
        self.lang_cond_pos_embed = nn.Parameter(torch.zeros(1, max_lang_cond_len, hidden_size))
        self.img_cond_pos_embed = nn.Parameter(torch.zeros(1, img_cond_len, hidden_size))
        self.blocks = nn.ModuleList(RDTBlock(hidden_size, num_heads, self.norm_formula) for _ in range(depth))
        self.final_layer = FinalLayer(hidden_size, output_dim, self.norm_formula)
        self.initialize_weights()
        self.to(dtype)

    def initialize_weights(self) -> None:
        """The official init: xavier Linears, sin-cos positional embeddings, N(0, 0.02) timestep MLPs and a
        zeroed last projection (so an untrained model outputs zeros)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.x_pos_embed.copy_(self._as_param(x_pos_embed_init(self.hidden_size, self.horizon)))
            self.lang_cond_pos_embed.copy_(self._as_param(cond_pos_embed_init(
                self.hidden_size, self.max_lang_cond_len, self.lang_pos_embed_config)))
            self.img_cond_pos_embed.copy_(self._as_param(cond_pos_embed_init(
                self.hidden_size, self.img_cond_len, self.img_pos_embed_config)))
        for embedder in (self.t_embedder, self.freq_embedder):
            nn.init.normal_(embedder.mlp[0].weight, std=0.02)
            nn.init.normal_(embedder.mlp[2].weight, std=0.02)
        nn.init.zeros_(self.final_layer.ffn_final.fc2.weight)
        nn.init.zeros_(self.final_layer.ffn_final.fc2.bias)

    def _as_param(self, values) -> torch.Tensor:
        return torch.from_numpy(values).float().unsqueeze(0).to(self.x_pos_embed.device)

    @property
    def dtype(self) -> torch.dtype:
        return self.x_pos_embed.dtype

    @staticmethod
    def attends_to_image(block_index: int) -> bool:
        """Even blocks cross-attend to language, odd blocks to the image tokens."""
        return block_index % 2 == 1

    def condition_kv(self, lang_c: torch.Tensor, img_c: torch.Tensor) -> ConditionKV:
        """Keys/values of every block's cross-attention. They depend only on the conditions, so a sampler
        computes them once per chunk and passes them to :meth:`forward` at every denoising step."""
        lang_c, img_c = self.position_language(lang_c), self.position_image(img_c)
        return [block.cross_attn.project_condition(img_c if self.attends_to_image(i) else lang_c)
                for i, block in enumerate(self.blocks)]

    def position_language(self, lang_c: torch.Tensor) -> torch.Tensor:
        """Adapted language tokens -> the model dtype, plus their positional embedding."""
        if lang_c.shape[1] > self.max_lang_cond_len:
            raise ValueError(f"language condition has {lang_c.shape[1]} tokens but the model takes at most "
                             f"{self.max_lang_cond_len}; truncate the instruction embedding")
        return lang_c.to(self.dtype) + self.lang_cond_pos_embed[:, :lang_c.shape[1]]

    def position_image(self, img_c: torch.Tensor) -> torch.Tensor:
        """Adapted image tokens -> the model dtype, plus their positional embedding."""
        if img_c.shape[1] != self.img_cond_len:
            raise ValueError(f"image condition has {img_c.shape[1]} tokens but the model expects "
                             f"{self.img_cond_len} (img_history_size x cameras x patches); check the encoder")
        return img_c.to(self.dtype) + self.img_cond_pos_embed

    def forward(self, x: torch.Tensor, freq: torch.Tensor, t: torch.Tensor, lang_c: torch.Tensor | None,
                img_c: torch.Tensor | None, lang_mask: torch.Tensor | None = None,
                img_mask: torch.Tensor | None = None, cond_kv: ConditionKV | None = None) -> torch.Tensor:
        """x (B, H+1, hidden) = adapted [state, actions]; freq (B,); t (B,) or (1,) -> (B, H, output_dim).

        With ``cond_kv`` (from :meth:`condition_kv`) the conditions are not projected again and
        ``lang_c``/``img_c`` may be None.
        """
        x = x.to(self.dtype)
        t = self.t_embedder(t).unsqueeze(1)
        freq = self.freq_embedder(freq).unsqueeze(1)
        if t.shape[0] == 1 and x.shape[0] > 1:
            t = t.expand(x.shape[0], -1, -1)
        x = torch.cat([t, freq, x], dim=1) + self.x_pos_embed
        if cond_kv is None:
            lang_c, img_c = self.position_language(lang_c), self.position_image(img_c)
        for i, block in enumerate(self.blocks):
            image = self.attends_to_image(i)
            mask = img_mask if image else lang_mask
            if cond_kv is None:
                x = block(x, img_c if image else lang_c, mask)
            else:
                x = block(x, mask=mask, kv=cond_kv[i])
        return self.final_layer(x)[:, -self.horizon:]
