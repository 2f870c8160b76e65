"""Chunk after chunk for one robot: a per-frame condition cache, static buffers and (on CUDA) a CUDA graph.

Everything RDT computes from an image before attention is per token: the SigLIP features, the image adaptor
and each image cross-attention layer's ``kv`` projection. The only slot-dependent term is the positional
embedding p added before ``kv``, and ``kv`` is linear: kv(a + p) = W a + (W p + b). So a frame's W a is
computed once per layer when the frame is new and reused when it becomes the t-1 frame of the next chunk;
(W p + b) per slot and layer is a constant of the weights. The language keys/values are recomputed only
when the instruction changes. What is left per chunk (assemble the image keys/values, normalise the keys,
the state adaptor and the denoising steps) reads only static buffers, so on CUDA it is captured once as a
CUDA graph and replayed; on CPU (or when capture fails, which is said) the same function runs eagerly.
Results equal :meth:`RDTRunner.predict_action` up to float rounding.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Hashable, Sequence

import torch
import torch.nn.functional as F

__all__ = ["StreamingSampler"]


@dataclass
class _Buffers:
    """Static inputs and output of one chunk function (one per step count x instruction length)."""
    lang_kv: list[tuple[torch.Tensor, torch.Tensor]]
    lang_mask: torch.Tensor | None
    rows: torch.Tensor          # (slots,) int64: the store row holding each window slot's frame
    state: torch.Tensor         # (1, 1, state_dim)
    action_mask: torch.Tensor   # (1, 1, action_dim)
    ctrl_freqs: torch.Tensor    # (1,) float32
    noise: torch.Tensor         # (1, H, action_dim)
    known: torch.Tensor         # (1, H, action_dim): pinned actions (inpainting)
    pinned: torch.Tensor        # (1, H, 1) bool
    timesteps: list[torch.Tensor]
    steps: int
    graph: object | None = None
    out: torch.Tensor | None = None
    lang_source: object = field(default=None, repr=False)


def _version(tensor: torch.Tensor):
    try:
        return tensor._version
    except RuntimeError:  # inference tensors have no version counter
        return None


class StreamingSampler:
    """:meth:`RDTRunner.predict_action` for a stream of chunks of one robot (batch 1), with less work per chunk.

    ``frame_keys`` (one hashable per window slot, e.g. camera + header stamp; equal keys = equal frames)
    lets a frame seen in the previous chunk reuse its projections. ``graphs``: capture the chunk as a CUDA
    graph (default: on CUDA). ``stats`` counts frames projected / reused, language projections, graph replays;
    ``graph_status`` says whether the graph is used and, if not, why.
    """

    def __init__(self, runner, *, graphs: bool | None = None):
        self.runner = runner
        model = runner.model
        self.image_blocks = [i for i in range(len(model.blocks)) if model.attends_to_image(i)]
        self._image_layer = {block: layer for layer, block in enumerate(self.image_blocks)}
        self.slots = runner.img_history_size * runner.num_cameras
        self.patches = runner.img_cond_len // self.slots
        self.want_graphs = graphs
        self.stats = {"chunks": 0, "frames_projected": 0, "frames_reused": 0, "language_projected": 0,
                      "graph_captures": 0, "graph_replays": 0}
        self._capture_failed = self._warned = False
        if graphs is False:
            self.graph_status = "eager: CUDA graphs switched off"
        elif self.device.type != "cuda":
            self.graph_status = f"eager: CUDA graphs need a CUDA device (this runner is on {self.device})"
        else:
            self.graph_status = "CUDA graph (captured at the first chunk)"
        self._signature = None
        self.reset()

    @property
    def device(self) -> torch.device:
        return self.runner.device

    def forget_frames(self) -> None:
        """Forget the frames seen (a new episode: its keys, e.g. stamps, may repeat with other pictures)."""
        self._rows.clear()

    def reset(self) -> None:
        """Forget frames, instruction, buffers and graphs (other weights)."""
        self._rows: dict[Hashable, int] = {}
        # W a of each frame and W p + b of each slot, per image layer, in the (k|v, heads, slots, patches,
        # head_dim) layout attention reads, so that a chunk gathers its keys/values in one contiguous copy
        self._store: torch.Tensor | None = None      # (image layers, 2, heads, slots, patches, head_dim)
        self._slot_bias: list[torch.Tensor] = []     # per image layer (2, heads, slots, patches, head_dim)
        self._lang = None                            # (tokens, version, mask-free kv list)
        self._buffers: dict[tuple, _Buffers] = {}

    # ---------------------------------------------------------------- the public call
    @torch.inference_mode()
    def predict_action(self, lang_tokens: torch.Tensor, lang_attn_mask: torch.Tensor | None,
                       img_tokens: torch.Tensor, state_tokens: torch.Tensor, action_mask: torch.Tensor,
                       ctrl_freqs, noise: torch.Tensor | None = None, num_inference_steps: int | None = None,
                       inpaint: tuple[torch.Tensor, int] | None = None,
                       frame_keys: Sequence[Hashable] | None = None) -> torch.Tensor:
        """Same arguments and result as :meth:`RDTRunner.predict_action` (batch 1), plus ``frame_keys``."""
        runner = self.runner
        device = self.device
        ctrl_freqs = torch.as_tensor(ctrl_freqs, device=device).reshape(-1)
        runner._check_inputs(lang_tokens, lang_attn_mask, img_tokens, state_tokens, action_mask, ctrl_freqs)
        if state_tokens.shape[0] != 1:
            raise ValueError(f"StreamingSampler serves one robot (batch 1), got a batch of {state_tokens.shape[0]}; "
                             f"use RDTRunner.predict_action for batches")
        if frame_keys is None:
            frame_keys = [object() for _ in range(self.slots)]  # no key: no reuse across chunks
        elif len(frame_keys) != self.slots:
            raise ValueError(f"got {len(frame_keys)} frame keys for {self.slots} image slots; give one per slot")
        self._check_weights()
        steps = int(num_inference_steps or runner.num_inference_timesteps)
        bufs = self._buffers_for(steps, lang_tokens.shape[1], lang_attn_mask is not None)
        self._set_language(bufs, lang_tokens, lang_attn_mask)
        self._set_frames(bufs, img_tokens, list(frame_keys))

        adaptor_dtype = runner.state_adaptor[0].weight.dtype
        bufs.state.copy_(state_tokens)
        bufs.action_mask.copy_(action_mask)
        bufs.ctrl_freqs.copy_(ctrl_freqs)
        if noise is None:
            bufs.noise.normal_()  # the draw torch.randn makes in RDTRunner.predict_action
        else:
            bufs.noise.copy_(runner.initial_noise(noise, 1, adaptor_dtype, device))
        pinned, known = runner.inpaint_target(inpaint, 1, adaptor_dtype, device)
        if pinned is None:
            bufs.pinned.zero_()
        else:
            bufs.pinned.copy_(pinned)
            bufs.known.copy_(known)
        out = self._run(bufs)
        self.stats["chunks"] += 1
        return out.clone()

    # ---------------------------------------------------------------- conditions
    def _check_weights(self) -> None:
        """Cached projections belong to the weights they came from: changed weights drop them."""
        signature = tuple((id(p), p.data_ptr(), _version(p), p.dtype, p.device) for p in self.runner.parameters())
        if signature != self._signature:
            self.reset()
            self._signature = signature
            self._slot_bias = [self._heads_layout(self.runner.model.blocks[i].cross_attn.kv(
                self.runner.model.img_cond_pos_embed)[0]) for i in self.image_blocks]

    def _heads_layout(self, kv: torch.Tensor) -> torch.Tensor:
        """(frames * patches, 2 * hidden) output of a ``kv`` Linear -> (2, heads, frames, patches, head_dim)."""
        attn = self.runner.model.blocks[self.image_blocks[0]].cross_attn
        return kv.reshape(-1, self.patches, 2, attn.num_heads, attn.head_dim).permute(2, 3, 0, 1, 4).contiguous()

    def _set_language(self, bufs: _Buffers, lang_tokens: torch.Tensor, lang_mask: torch.Tensor | None) -> None:
        cached = self._lang
        same = cached is not None and cached[0].shape == lang_tokens.shape and (
            (cached[0] is lang_tokens and cached[1] is not None and cached[1] == _version(lang_tokens))
            or torch.equal(cached[0], lang_tokens.to(cached[0].device)))
        if not same:
            runner = self.runner
            lang_c = runner.model.position_language(
                runner.lang_adaptor(lang_tokens.to(runner.lang_adaptor[0].weight.dtype)))
            kv = [block.cross_attn.project_condition(lang_c)
                  for i, block in enumerate(runner.model.blocks) if not runner.model.attends_to_image(i)]
            self._lang = (lang_tokens, _version(lang_tokens), kv)
            self.stats["language_projected"] += 1
        if bufs.lang_source is not self._lang:
            for (k_buf, v_buf), (k, v) in zip(bufs.lang_kv, self._lang[2]):
                k_buf.copy_(k)
                v_buf.copy_(v)
            bufs.lang_source = self._lang
        if lang_mask is not None:
            bufs.lang_mask.copy_(lang_mask)

    def _set_frames(self, bufs: _Buffers, img_tokens: torch.Tensor, keys: list[Hashable]) -> None:
        """Project the frames not seen before into free store rows; point each slot at its frame's row."""
        runner = self.runner
        for key in [k for k in self._rows if k not in keys]:  # leaving the window: free its row
            del self._rows[key]
        new: dict[Hashable, int] = {}
        for slot, key in enumerate(keys):
            if key in self._rows or key in new:
                self.stats["frames_reused"] += 1
            else:
                new[key] = slot
        if new:
            if self._store is None:
                self._store = torch.empty((len(self.image_blocks), *self._slot_bias[0].shape),
                                          dtype=runner.model.dtype, device=self.device)
            free = sorted(set(range(self.slots)) - set(self._rows.values()))
            features = img_tokens[0].reshape(self.slots, self.patches, -1)[list(new.values())]
            adapted = runner.img_adaptor(features.to(device=self.device, dtype=runner.img_adaptor[0].weight.dtype))
            adapted = adapted.to(runner.model.dtype).reshape(-1, adapted.shape[-1])
            rows = free[:len(new)]
            index = torch.tensor(rows, device=self.device)
            for layer, block in enumerate(self.image_blocks):
                projected = F.linear(adapted, runner.model.blocks[block].cross_attn.kv.weight)
                self._store[layer].index_copy_(2, index, self._heads_layout(projected))
            self._rows.update(zip(new, rows))
            self.stats["frames_projected"] += len(new)
        bufs.rows.copy_(torch.tensor([self._rows[k] for k in keys]))

    # ---------------------------------------------------------------- the chunk function
    def _buffers_for(self, steps: int, lang_len: int, with_mask: bool) -> _Buffers:
        key = (steps, lang_len, with_mask)
        if key not in self._buffers:
            runner, device = self.runner, self.device
            model_dtype, dtype = runner.model.dtype, runner.state_adaptor[0].weight.dtype
            heads = runner.model.blocks[0].cross_attn.num_heads
            head_dim = runner.model.hidden_size // heads
            n_lang = len(runner.model.blocks) - len(self.image_blocks)

            def zeros(*shape, dtype=dtype):
                return torch.zeros(shape, dtype=dtype, device=device)

            H, A = runner.pred_horizon, runner.action_dim
            scheduler = runner.new_sample_scheduler(steps)
            self._buffers[key] = _Buffers(
                lang_kv=[(zeros(1, heads, lang_len, head_dim, dtype=model_dtype),
                          zeros(1, heads, lang_len, head_dim, dtype=model_dtype)) for _ in range(n_lang)],
                lang_mask=zeros(1, lang_len, dtype=torch.bool) if with_mask else None,
                rows=torch.arange(self.slots, device=device), state=zeros(1, 1, runner.state_token_dim),
                action_mask=zeros(1, 1, A), ctrl_freqs=zeros(1, dtype=torch.float32), noise=zeros(1, H, A),
                known=zeros(1, H, A), pinned=zeros(1, H, 1, dtype=torch.bool),
                timesteps=[t.reshape(1).to(device) for t in scheduler.timesteps], steps=steps)
        return self._buffers[key]

    def _chunk(self, bufs: _Buffers) -> torch.Tensor:
        """One chunk from the static buffers only (what a CUDA graph captures)."""
        runner = self.runner
        blocks = runner.model.blocks
        cond_kv, lang = [], iter(bufs.lang_kv)
        for i, block in enumerate(blocks):
            if runner.model.attends_to_image(i):
                layer = self._image_layer[i]
                kv = self._store[layer].index_select(2, bufs.rows)  # (2, heads, slots, patches, head_dim)
                kv += self._slot_bias[layer]
                kv = kv.reshape(2, 1, kv.shape[1], runner.img_cond_len, kv.shape[-1])
                cond_kv.append((block.cross_attn.k_norm(kv[0]), kv[1]))
            else:
                cond_kv.append(next(lang))
        state_traj = runner.state_adaptor(torch.cat([bufs.state, bufs.action_mask], dim=2))
        mask = bufs.action_mask.expand(-1, runner.pred_horizon, -1)
        return runner.denoise(runner.new_sample_scheduler(bufs.steps), bufs.noise, state_traj, mask,
                              bufs.ctrl_freqs, bufs.lang_mask, cond_kv=cond_kv, pinned=bufs.pinned,
                              known=bufs.known, timesteps=bufs.timesteps)

    def _use_graphs(self) -> bool:
        if self.want_graphs is False:
            return False
        if self.device.type != "cuda":
            if self.want_graphs and not self._warned:
                warnings.warn(f"StreamingSampler: {self.graph_status}", RuntimeWarning, stacklevel=3)
                self._warned = True
            return False
        return True

    def _run(self, bufs: _Buffers) -> torch.Tensor:
        if self._capture_failed or not self._use_graphs():
            return self._chunk(bufs)
        if bufs.graph is None:
            try:
                bufs.graph, bufs.out = self._capture(bufs)
                self.stats["graph_captures"] += 1
                self.graph_status = "CUDA graph (captured)"
            except Exception as err:  # any capture problem: run eagerly, and say why
                self._capture_failed = True
                self.graph_status = f"eager: CUDA graph capture failed ({type(err).__name__}: {err})"
                warnings.warn(f"StreamingSampler: {self.graph_status}", RuntimeWarning, stacklevel=3)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                return self._chunk(bufs)
        bufs.graph.replay()
        self.stats["graph_replays"] += 1
        return bufs.out

    def _capture(self, bufs: _Buffers):
        """Warm up on a side stream (kernel selection, workspaces), then capture one chunk."""
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._chunk(bufs)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = self._chunk(bufs)
        return graph, out
