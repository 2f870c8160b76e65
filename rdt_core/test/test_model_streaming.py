"""StreamingSampler: the per-frame condition cache gives RDTRunner.predict_action's chunks, with less work.

A stream of chunks the way a robot produces them: each chunk's window is [frames t-1, frames t] of three
cameras, the t frames of one chunk are the t-1 frames of the next; a camera goes missing (the background
frame), the instruction changes. Every chunk is compared with the uncached official path (every condition
projected at every step) on the same noise.
"""
from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from rdt_core.encoders.vision import BACKGROUND
from rdt_core.model import StreamingSampler

ATOL = RTOL = 1e-5


@pytest.fixture()
def runner(make_runner):
    return make_runner(seed=4)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


class Stream:
    """Frames of three cameras at steps 0, 1, 2, ... as SigLIP-like feature tensors, keyed (camera, step)."""

    def __init__(self, runner, seed=0):
        self.runner, self.seed = runner, seed
        self.patches = runner.num_patches
        self.background = torch.randn(self.patches, runner.img_token_dim, generator=_gen(seed + 999))

    def frame(self, camera, step):
        return torch.randn(self.patches, self.runner.img_token_dim, generator=_gen(self.seed + 100 * step + camera))

    def window(self, step, missing=None):
        """(img_tokens (1, N, D), frame keys) of the window ending at ``step``; ``missing``: step -> the
        cameras missing then (their frames are the background)."""
        feats, keys = [], []
        for s in (step - 1, step):
            for cam in range(self.runner.num_cameras):
                if cam in (missing or {}).get(s, ()):
                    feats.append(self.background)
                    keys.append(BACKGROUND)
                else:
                    feats.append(self.frame(cam, s))
                    keys.append((cam, s))
        return torch.cat(feats).unsqueeze(0), keys


def _common(runner, lang, seed):
    mask = torch.zeros(1, 1, runner.action_dim)
    mask[..., [0, 1, 2, 3, 4, 5, 6, 10]] = 1
    state = torch.randn(1, 1, runner.state_token_dim, generator=_gen(seed)) * mask
    noise = torch.randn(1, runner.pred_horizon, runner.action_dim, generator=_gen(seed + 1))
    lang_mask = torch.ones(1, lang.shape[1], dtype=torch.bool)
    return dict(lang_tokens=lang, lang_attn_mask=lang_mask, state_tokens=state, action_mask=mask,
                ctrl_freqs=torch.tensor([25]), noise=noise)


@pytest.mark.parametrize("fold", [True, False], ids=["adaptor folded", "adaptor run"])
def test_a_stream_of_chunks_equals_the_uncached_official_path(runner, fold):
    """Changing frames, a camera that goes missing and comes back, an instruction switch: every chunk as the
    uncached path gives it; each new frame projected once in its life, the language once per instruction;
    with the image adaptor's last Linear folded into the projections (the CPU default) or run."""
    sampler = StreamingSampler(runner, fold_adaptor=fold)
    assert StreamingSampler(runner).fold_adaptor  # the default on CPU
    stream = Stream(runner)
    lang_a = torch.randn(1, 5, runner.lang_token_dim, generator=_gen(50))
    lang_b = torch.randn(1, 7, runner.lang_token_dim, generator=_gen(51))
    missing = {3: (2,), 4: (2,), 8: (0, 1)}  # step -> cameras without a frame then
    plan = [(1, lang_a), (2, lang_a), (3, lang_a), (4, lang_a), (5, lang_a), (6, lang_b), (7, lang_b), (8, lang_b)]
    projected, language = [], []
    for step, lang in plan:
        img, keys = stream.window(step, missing)
        inputs = dict(_common(runner, lang, seed=step), img_tokens=img)
        before = dict(sampler.stats)
        got = sampler.predict_action(**inputs, frame_keys=keys)
        want = runner.predict_action(**inputs, use_cache=False)
        assert want.abs().max() > 0.1  # a real, non-trivial chunk
        torch.testing.assert_close(got, want, atol=ATOL, rtol=RTOL, msg=f"step {step}")
        projected.append(sampler.stats["frames_projected"] - before["frames_projected"])
        language.append(sampler.stats["language_projected"] - before["language_projected"])
    # first window: six frames; then the new ones: step 3 two frames + the background, step 4 two (the
    # background is reused, in both of its slots), step 5 three (its t-1 background is still there),
    # step 8 one frame + the background, which fills two slots
    assert projected == [6, 3, 3, 2, 3, 3, 3, 2]
    assert language == [1, 0, 0, 0, 0, 1, 0, 0]  # only when the instruction changes
    assert sampler.stats["chunks"] == len(plan)


def test_without_keys_every_frame_is_projected_and_results_are_the_same(runner):
    sampler = StreamingSampler(runner)
    img, _ = Stream(runner).window(3)
    inputs = dict(_common(runner, torch.randn(1, 4, runner.lang_token_dim, generator=_gen(3)), 9), img_tokens=img)
    for _ in range(2):
        torch.testing.assert_close(sampler.predict_action(**inputs), runner.predict_action(**inputs),
                                   atol=ATOL, rtol=RTOL)
    assert sampler.stats["frames_projected"] == 12 and sampler.stats["language_projected"] == 1


def test_only_slots_whose_frame_changed_are_rewritten(runner):
    """The image keys/values are written into their buffers per slot, only where the slot's frame changed:
    a shifted window rewrites all six slots (each frame's keys depend on its slot), the same window again
    none, a camera that repeats its frame in the same slot none of its slot."""
    sampler = StreamingSampler(runner)
    stream = Stream(runner)
    lang = torch.randn(1, 5, runner.lang_token_dim, generator=_gen(5))
    written = []
    windows = [stream.window(1), stream.window(2), stream.window(2)]
    img3, keys3 = stream.window(3)
    img3 = img3.clone()
    # camera 0 gave no new frame at step 3: its t slot holds the step-2 frame again, as in the last window
    img3[0, 3 * runner.num_patches:4 * runner.num_patches] = stream.frame(0, 2)
    keys3 = list(keys3)
    keys3[3] = (0, 2)
    windows.append((img3, keys3))
    for step, (img, keys) in enumerate(windows, 1):
        inputs = dict(_common(runner, lang, seed=step), img_tokens=img)
        before = sampler.stats["slots_written"]
        got = sampler.predict_action(**inputs, frame_keys=keys)
        torch.testing.assert_close(got, runner.predict_action(**inputs, use_cache=False), atol=ATOL, rtol=RTOL)
        written.append(sampler.stats["slots_written"] - before)
    assert written == [6, 6, 0, 5]


def test_own_noise_draw_and_inpainting_match_predict_action(runner):
    sampler = StreamingSampler(runner)
    stream = Stream(runner)
    lang = torch.randn(1, 6, runner.lang_token_dim, generator=_gen(8))
    for step, num_known in ((1, 3), (2, 0), (3, runner.pred_horizon), (4, 1)):
        img, keys = stream.window(step)
        inputs = dict(_common(runner, lang, step), img_tokens=img)
        inputs.pop("noise")
        known = torch.randn(1, runner.pred_horizon, runner.action_dim, generator=_gen(step)) * inputs["action_mask"]
        torch.manual_seed(step)
        got = sampler.predict_action(**inputs, inpaint=(known, num_known), frame_keys=keys)
        torch.manual_seed(step)
        want = runner.predict_action(**inputs, inpaint=(known, num_known))
        torch.testing.assert_close(got, want, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(got[:, :num_known], known[:, :num_known], atol=0, rtol=0)


def test_changed_weights_drop_every_cached_projection(runner):
    sampler = StreamingSampler(runner)
    stream = Stream(runner)
    lang = torch.randn(1, 5, runner.lang_token_dim, generator=_gen(1))
    img, keys = stream.window(1)
    inputs = dict(_common(runner, lang, 1), img_tokens=img)
    sampler.predict_action(**inputs, frame_keys=keys)
    with torch.no_grad():  # e.g. a training step between evaluations
        runner.img_adaptor[0].weight.add_(0.1)
        runner.model.blocks[0].cross_attn.kv.bias.add_(0.1)
    got = sampler.predict_action(**inputs, frame_keys=keys)
    torch.testing.assert_close(got, runner.predict_action(**inputs, use_cache=False), atol=ATOL, rtol=RTOL)
    assert sampler.stats["frames_projected"] == 12 and sampler.stats["language_projected"] == 2


def test_forget_frames_starts_an_episode_whose_keys_repeat(runner):
    """Episode 2 reuses the stamps of episode 1 with other pictures: after forget_frames they are new."""
    sampler = StreamingSampler(runner)
    lang = torch.randn(1, 5, runner.lang_token_dim, generator=_gen(1))
    img1, keys = Stream(runner, seed=0).window(1)
    img2, _ = Stream(runner, seed=7).window(1)
    sampler.predict_action(**_common(runner, lang, 1), img_tokens=img1, frame_keys=keys)
    sampler.forget_frames()
    inputs = dict(_common(runner, lang, 1), img_tokens=img2)
    torch.testing.assert_close(sampler.predict_action(**inputs, frame_keys=keys),
                               runner.predict_action(**inputs), atol=ATOL, rtol=RTOL)


def test_inputs_it_cannot_serve_are_named(runner):
    sampler = StreamingSampler(runner)
    img, keys = Stream(runner).window(1)
    inputs = dict(_common(runner, torch.randn(1, 5, runner.lang_token_dim), 1), img_tokens=img)
    with pytest.raises(ValueError, match="one per slot"):
        sampler.predict_action(**inputs, frame_keys=keys[:5])
    batch = {k: torch.cat([v, v]) if k != "ctrl_freqs" else torch.tensor([25, 25]) for k, v in inputs.items()}
    with pytest.raises(ValueError, match="batch 1"):
        sampler.predict_action(**batch)
    with pytest.raises(ValueError, match="img_tokens"):
        sampler.predict_action(**dict(inputs, img_tokens=img[:, :-1]))


def test_graphs_on_cpu_say_why_they_are_not_used(runner):
    sampler = StreamingSampler(runner, graphs=True)
    img, keys = Stream(runner).window(1)
    with pytest.warns(RuntimeWarning, match="CUDA graphs need a CUDA device"):
        sampler.predict_action(**_common(runner, torch.randn(1, 5, runner.lang_token_dim), 1), img_tokens=img,
                               frame_keys=keys)
    assert sampler.graph_status.startswith("eager:") and sampler.stats["graph_replays"] == 0
    assert StreamingSampler(runner, graphs=False)._use_graphs() is False


class _Reads(TorchDispatchMode):
    """Every tensor an op reads, and every tensor an op writes (by storage)."""

    def __init__(self):
        super().__init__()
        self.read, self.made = [], set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for a in torch.utils._pytree.tree_leaves((args, kwargs)):
            if isinstance(a, torch.Tensor):
                self.read.append((str(func), a))
        out = func(*args, **kwargs)
        for o in torch.utils._pytree.tree_leaves(out):
            if isinstance(o, torch.Tensor):
                self.made.add(o.untyped_storage().data_ptr())
        return out


def test_the_chunk_function_reads_only_static_buffers(runner):
    """What a CUDA graph needs (checked here with capture off): the chunk function reads nothing but its
    static buffers, the weights, the image keys/values buffers, its own intermediates and 0-dim
    scheduler scalars, and the buffers stay the same memory from chunk to chunk; so writing the next
    chunk's inputs into the buffers and replaying gives the next chunk."""
    sampler = StreamingSampler(runner)
    stream = Stream(runner)
    lang = torch.randn(1, 5, runner.lang_token_dim, generator=_gen(2))
    img, keys = stream.window(1)
    known = torch.randn(1, runner.pred_horizon, runner.action_dim, generator=_gen(3))
    first = sampler.predict_action(**_common(runner, lang, 1), img_tokens=img, frame_keys=keys, inpaint=(known, 2))
    (bufs,) = sampler._buffers.values()
    static = [bufs.state, bufs.action_mask, bufs.ctrl_freqs, bufs.noise, bufs.known, bufs.pinned,
              bufs.lang_mask, *[t for kv in sampler._kv for t in kv], *bufs.timesteps,
              *[t for kv in bufs.lang_kv for t in kv], *runner.parameters(), runner.noise_scheduler.alphas_cumprod]
    ptrs = {t.untyped_storage().data_ptr() for t in static}
    before = {id(t): t.data_ptr() for t in static}

    with torch.inference_mode(), _Reads() as reads:
        replayed = sampler._chunk(bufs)
    strays = [(op, tuple(t.shape)) for op, t in reads.read
              if t.dim() > 0 and t.untyped_storage().data_ptr() not in ptrs | reads.made]
    assert not strays, f"the chunk function reads tensors outside its static buffers: {strays[:5]}"

    img2, keys2 = stream.window(2)
    inputs2 = dict(_common(runner, lang, 2), img_tokens=img2)
    second = sampler.predict_action(**inputs2, frame_keys=keys2)
    assert sampler._buffers[next(iter(sampler._buffers))] is bufs
    assert {id(t): t.data_ptr() for t in static} == before  # same memory: a captured graph stays valid
    torch.testing.assert_close(second, runner.predict_action(**inputs2), atol=ATOL, rtol=RTOL)
    # the "replay" above (the chunk function run again on chunk 1's buffers) gave chunk 1 again
    torch.testing.assert_close(replayed, first, atol=0, rtol=0)


class _ReplayGraph:
    """Stands in for a captured CUDA graph on CPU: replay() runs the captured function again on the same
    static buffers and writes into the same output tensor, which is all a graph replay does."""

    def __init__(self, sampler, bufs):
        self.sampler, self.bufs = sampler, bufs
        self.out = sampler._chunk(bufs)
        self.replays = 0

    def replay(self):
        self.out.copy_(self.sampler._chunk(self.bufs))
        self.replays += 1


def test_the_graph_path_replays_static_buffers_chunk_after_chunk(runner, monkeypatch):
    """The CUDA-graph code path with capture replaced by _ReplayGraph: one capture per step count x
    instruction length, then replays only; every chunk as predict_action gives it; outputs are copies."""
    sampler = StreamingSampler(runner, graphs=True)
    graphs = []

    def capture(bufs):
        graphs.append(_ReplayGraph(sampler, bufs))
        return graphs[-1], graphs[-1].out

    monkeypatch.setattr(sampler, "_use_graphs", lambda: True)
    monkeypatch.setattr(sampler, "_capture", capture)
    stream = Stream(runner)
    lang_a = torch.randn(1, 5, runner.lang_token_dim, generator=_gen(1))
    lang_b = torch.randn(1, 6, runner.lang_token_dim, generator=_gen(2))
    outs = []
    for step, lang in ((1, lang_a), (2, lang_a), (3, lang_a), (4, lang_b), (5, lang_b), (6, lang_a)):
        img, keys = stream.window(step, {3: (1,)})
        inputs = dict(_common(runner, lang, step), img_tokens=img)
        got = sampler.predict_action(**inputs, frame_keys=keys)
        torch.testing.assert_close(got, runner.predict_action(**inputs, use_cache=False), atol=ATOL, rtol=RTOL)
        outs.append(got)
    assert len(graphs) == 2 and sampler.stats["graph_captures"] == 2  # one per instruction length
    assert sampler.stats["graph_replays"] == 6 and [g.replays for g in graphs] == [4, 2]
    assert outs[0].data_ptr() != outs[1].data_ptr()  # a replay does not overwrite a chunk already returned
    assert sampler.graph_status == "CUDA graph (captured)"


def test_a_failed_capture_runs_eagerly_and_says_why(runner, monkeypatch):
    sampler = StreamingSampler(runner, graphs=True)

    def capture(bufs):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(sampler, "_use_graphs", lambda: True)
    monkeypatch.setattr(sampler, "_capture", capture)
    img, keys = Stream(runner).window(1)
    inputs = dict(_common(runner, torch.randn(1, 5, runner.lang_token_dim), 1), img_tokens=img)
    with pytest.warns(RuntimeWarning, match="capture failed .*not permitted"):
        got = sampler.predict_action(**inputs, frame_keys=keys)
    torch.testing.assert_close(got, runner.predict_action(**inputs), atol=ATOL, rtol=RTOL)
    assert "capture failed (RuntimeError" in sampler.graph_status
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second attempt, no second warning
        sampler.predict_action(**inputs, frame_keys=keys)
    assert sampler.stats["graph_captures"] == 0 and sampler.stats["graph_replays"] == 0
