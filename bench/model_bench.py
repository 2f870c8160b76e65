#!/usr/bin/env python3
"""Chunk latency of RDTRunner.predict_action with vs without the condition caches.

The language and image conditions are identical at every denoising step, so the runner projects their
cross-attention keys/values once per chunk (use_cache=True) instead of once per step (use_cache=False,
the official code path). This prints both latencies (best of the interleaved runs) and the speed-up, measured in one run, for a
170M-sized and a tiny config with random weights: batch 1, 64-step horizon, the config's number of
DPM-Solver steps, 2 history steps x 3 cameras of SigLIP-sized image tokens. It also prints the largest
difference between the two outputs (the cache must not change results).

    .venv/bin/python bench/model_bench.py [--sizes 170m tiny] [--repeats 2] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import time

import torch

from rdt_core.model import RDTRunner, rdt_config


def _inputs(runner: RDTRunner, device, lang_len: int, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros(1, 1, runner.action_dim)
    mask[..., :8] = 1
    inputs = dict(
        lang_tokens=torch.randn(1, lang_len, runner.lang_token_dim, generator=gen),
        lang_attn_mask=torch.ones(1, lang_len, dtype=torch.bool),
        img_tokens=torch.randn(1, runner.img_cond_len, runner.img_token_dim, generator=gen),
        state_tokens=torch.randn(1, 1, runner.state_token_dim, generator=gen) * mask,
        action_mask=mask,
        ctrl_freqs=torch.tensor([25]),
        noise=torch.randn(1, runner.pred_horizon, runner.action_dim, generator=gen),
    )
    return {k: v.to(device) for k, v in inputs.items()}


def _time_chunk(runner, inputs, use_cache: bool, device) -> tuple[float, torch.Tensor]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = runner.predict_action(**inputs, use_cache=use_cache)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def _measure(runner, inputs, repeats: int, device):
    """Best latency of each variant (the least disturbed run: other processes only ever add time);
    runs alternate so both variants see the same machine load."""
    runner.predict_action(**inputs, num_inference_steps=1)  # warm-up: every kernel once, one solver step
    times: dict[bool, list[float]] = {False: [], True: []}
    outs = {}
    for _ in range(repeats):
        for use_cache in (False, True):
            seconds, outs[use_cache] = _time_chunk(runner, inputs, use_cache, device)
            times[use_cache].append(seconds)
    return min(times[False]), min(times[True]), outs[False], outs[True]


def bench(size: str, device: torch.device, dtype: str, repeats: int, lang_len: int) -> dict:
    torch.manual_seed(0)
    runner = RDTRunner(**rdt_config(size, dtype=dtype)).to(device).eval()
    with torch.no_grad():  # the official init zeroes the output layer; give it weights so outputs mean something
        fc2 = runner.model.final_layer.ffn_final.fc2.weight
        fc2.normal_(std=fc2.shape[1] ** -0.5)
    inputs = _inputs(runner, device, min(lang_len, runner.max_lang_cond_len))
    n_params = sum(p.numel() for p in runner.parameters())
    repeats = repeats if n_params > 50e6 else max(repeats, 5)  # tiny chunks are cheap: more samples
    plain_s, cached_s, plain, cached = _measure(runner, inputs, repeats, device)
    return dict(size=size, params_m=n_params / 1e6, steps=runner.num_inference_timesteps,
                horizon=runner.pred_horizon, img_tokens=runner.img_cond_len, plain_s=plain_s, cached_s=cached_s,
                speedup=plain_s / cached_s, max_diff=(plain.float() - cached.float()).abs().max().item())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["170m", "tiny"], choices=["tiny", "170m", "1b"])
    parser.add_argument("--repeats", type=int, default=2, help="timed chunks per variant (at least 5 for small configs)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="net dtype (default: float32 on CPU, bfloat16 on CUDA)")
    parser.add_argument("--lang-len", type=int, default=32, help="instruction tokens")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    dtype = args.dtype or ("bfloat16" if device.type == "cuda" else "float32")
    print(f"RDT chunk latency, batch 1, device={device}, dtype={dtype}, torch threads={torch.get_num_threads()}")
    print(f"{'config':>6} {'params':>8} {'steps':>5} {'H':>3} {'img tok':>7} {'no cache':>10} {'cache':>10} "
          f"{'speed-up':>8} {'max |diff|':>10}")
    for size in args.sizes:
        r = bench(size, device, dtype, args.repeats, args.lang_len)
        print(f"{r['size']:>6} {r['params_m']:>7.1f}M {r['steps']:>5} {r['horizon']:>3} {r['img_tokens']:>7} "
              f"{r['plain_s'] * 1e3:>8.1f}ms {r['cached_s'] * 1e3:>8.1f}ms {r['speedup']:>7.2f}x "
              f"{r['max_diff']:>10.2e}", flush=True)


if __name__ == "__main__":
    main()
