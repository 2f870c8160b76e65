"""Chunk after chunk for one robot: a per-frame condition cache, static buffers and (on CUDA) a CUDA graph.

Everything RDT computes from an image before attention is per token: the SigLIP features, the image adaptor
and each image cross-attention layer's ``kv`` projection. The only slot-dependent term is the positional
embedding p added before ``kv``, and ``kv`` is linear: kv(a + p) = W a + (W p + b). So a frame's W a is
computed once per layer when the frame is new and reused when it becomes the t-1 frame of the next chunk;
(W p + b) per slot and layer is a constant of the weights. Where the image adaptor ends in a Linear
(a = W2 g + b2, g what comes before it), that Linear is folded into the projections on CPU (``fold_adaptor``):
W a + (W p + b) = (W W2) g + (W (p + b2) + b), so a frame costs one matmul per layer from g, and the
adaptor's last Linear is never run. Each image layer's keys/values live in preallocated buffers in the
layout attention reads; a chunk rewrites only the slots whose frame changed (W a + (W p + b), the keys
normalised in place), straight into them: no gather, no concatenation, no new 4374-token tensors. The
language keys/values are recomputed only when the instruction changes. What is left per chunk (the state
adaptor and the denoising steps) reads only static buffers, so on CUDA it is captured once as a CUDA graph
and replayed; on CPU (or when capture fails, which is said) the same function runs eagerly. Results equal
:meth:`RDTRunner.predict_action` up to float rounding.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Hashable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["StreamingSampler"]


@dataclass
class _Buffers:
    """Static inputs and output of one chunk function (one per step count x instruction length)."""
    lang_kv: list[tuple[torch.Tensor, torch.Tensor]]
    lang_mask: torch.Tensor | None
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
    graph (default: on CUDA). ``fold_adaptor``: fold the image adaptor's last Linear into the key/value
    projections (default: on CPU; same result up to float rounding). ``stats`` counts frames projected /
    reused, slots whose image keys/values were written, language projections, graph replays;
    ``graph_status`` says whether the graph is used and, if not, why.
    """

    def __init__(self, runner, *, graphs: bool | None = None, fold_adaptor: bool | None = None):
        self.runner = runner
        # the fold saves the adaptor's last Linear per frame (compute) for a second copy of the image kv
        # weights (memory): the default takes it on CPU, where the compute is what a chunk waits for
        self.fold_adaptor = runner.device.type == "cpu" if fold_adaptor is None else bool(fold_adaptor)
        model = runner.model
        self.image_blocks = [i for i in range(len(model.blocks)) if model.attends_to_image(i)]
        self._image_layer = {block: layer for layer, block in enumerate(self.image_blocks)}
        self.slots = runner.img_history_size * runner.num_cameras
        self.patches = runner.img_cond_len // self.slots
        self.want_graphs = graphs
        self.stats = {"chunks": 0, "frames_projected": 0, "frames_reused": 0, "slots_written": 0,
                      "language_projected": 0, "graph_captures": 0, "graph_replays": 0}
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
        self._uid.clear()
        self._held = [None] * self.slots

    def reset(self) -> None:
        """Forget frames, instruction, buffers and graphs (other weights)."""
        self._signature = None  # the weight-derived constants are made again at the next chunk
        self._rows: dict[Hashable, int] = {}     # frame key -> its store row
        self._uid: dict[Hashable, int] = {}      # frame key -> its projection's number (rows are refilled)
        self._projections = 0
        # W a of each frame per image layer, in the layout attention reads: (layers, rows, 2, heads, patches, hd)
        self._store: torch.Tensor | None = None
        self._slot_bias: list[torch.Tensor] = []  # per image layer (slots, 2, heads, patches, hd): W p + b
        # per image layer (keys, values), each (1, heads, slots * patches, head_dim): what attention reads
        self._kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._held: list[int | None] = [None] * self.slots  # per slot: the projection its keys/values hold
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
            model, adaptor = self.runner.model, self.runner.img_adaptor
            kv = [model.blocks[i].cross_attn.kv for i in self.image_blocks]
            pos = model.img_cond_pos_embed[0]
            last = adaptor[-1] if isinstance(adaptor, nn.Sequential) and len(adaptor) > 1 else None
            if self.fold_adaptor and isinstance(last, nn.Linear):
                self._img_head = adaptor[:-1]
                self._kv_weights = [(layer.weight.float() @ last.weight.float()).to(model.dtype) for layer in kv]
                if last.bias is not None:
                    pos = pos + last.bias.to(pos.dtype)
            else:
                self._img_head = adaptor
                self._kv_weights = [layer.weight for layer in kv]
            self._slot_bias = [self._heads_layout(layer(pos).reshape(self.slots, self.patches, -1)).contiguous()
                               for layer in kv]

    def _heads_layout(self, projected: torch.Tensor) -> torch.Tensor:
        """(frames, patches, 2 * hidden) as ``kv`` lays it out -> (frames, 2, heads, patches, head_dim)."""
        attn = self.runner.model.blocks[self.image_blocks[0]].cross_attn
        frames = projected.shape[0]
        return projected.view(frames, self.patches, 2, attn.num_heads, attn.head_dim).permute(0, 2, 3, 1, 4)

    def _allocate_frame_buffers(self) -> None:
        model = self.runner.model
        attn = model.blocks[self.image_blocks[0]].cross_attn
        layers, heads, head_dim = len(self.image_blocks), attn.num_heads, attn.head_dim
        self._store = torch.empty((layers, self.slots, 2, heads, self.patches, head_dim), dtype=model.dtype,
                                  device=self.device)
        shape = (1, heads, self.slots * self.patches, head_dim)
        self._kv = [(torch.empty(shape, dtype=model.dtype, device=self.device),
                     torch.empty(shape, dtype=model.dtype, device=self.device)) for _ in range(layers)]

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
        """Project the frames not seen before into free store rows, then write the keys/values of every slot
        whose frame changed into the attention buffers (the others keep theirs)."""
        runner = self.runner
        model = runner.model
        for key in [k for k in self._rows if k not in keys]:  # leaving the window: free its row
            del self._rows[key], self._uid[key]
        new: dict[Hashable, int] = {}
        for slot, key in enumerate(keys):
            if key in self._rows or key in new:
                self.stats["frames_reused"] += 1
            else:
                new[key] = slot
        if self._store is None:
            self._allocate_frame_buffers()
        if new:
            free = sorted(set(range(self.slots)) - set(self._rows.values()))
            rows = free[:len(new)]
            features = img_tokens[0].reshape(self.slots, self.patches, -1)[list(new.values())]
            adaptor_dtype = next(runner.img_adaptor.parameters()).dtype
            adapted = self._img_head(features.to(device=self.device, dtype=adaptor_dtype)).to(model.dtype)
            flat, rows_t = adapted.reshape(-1, adapted.shape[-1]), torch.tensor(rows, device=self.device)
            for layer, weight in enumerate(self._kv_weights):  # F.linear: oneDNN under OneDnnLinear on CPU
                self._store[layer].index_copy_(0, rows_t, self._heads_layout(F.linear(flat, weight).view(
                    len(rows), self.patches, -1)))
            for key, row in zip(new, rows):
                self._rows[key] = row
                self._uid[key] = self._projections
                self._projections += 1
            self.stats["frames_projected"] += len(new)
        for slot, key in enumerate(keys):
            uid = self._uid[key]
            if self._held[slot] == uid:  # the same frame in the same slot: its keys/values are there
                continue
            row = self._rows[key]
            for layer, block in enumerate(self.image_blocks):
                raw, bias = self._store[layer, row], self._slot_bias[layer][slot]  # (2, heads, patches, hd)
                k_buf, v_buf = (t[0].view(t.shape[1], self.slots, self.patches, -1)[:, slot] for t in self._kv[layer])
                torch.add(raw[1], bias[1], out=v_buf)
                torch.add(raw[0], bias[0], out=k_buf)
                model.blocks[block].cross_attn.k_norm.normalize_(k_buf)
            self._held[slot] = uid
            self.stats["slots_written"] += 1

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
                state=zeros(1, 1, runner.state_token_dim),
                action_mask=zeros(1, 1, A), ctrl_freqs=zeros(1, dtype=torch.float32), noise=zeros(1, H, A),
                known=zeros(1, H, A), pinned=zeros(1, H, 1, dtype=torch.bool),
                timesteps=[t.reshape(1).to(device) for t in scheduler.timesteps], steps=steps)
        return self._buffers[key]

    def _chunk(self, bufs: _Buffers) -> torch.Tensor:
        """One chunk from the static buffers only (what a CUDA graph captures)."""
        runner = self.runner
        blocks = runner.model.blocks
        lang = iter(bufs.lang_kv)
        cond_kv = [self._kv[self._image_layer[i]] if runner.model.attends_to_image(i) else next(lang)
                   for i in range(len(blocks))]
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
