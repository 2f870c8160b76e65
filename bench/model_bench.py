#!/usr/bin/env python3
"""RDT deployment step, the official algorithm vs ours, interleaved in one run (issue 12).

A step is what the robot asks for every chunk: a window of 2 steps x 3 cameras of 480x640 RGB frames (the t
frames of one chunk are the t-1 frames of the next, so 3 frames are new), the joint state, a 32-token
instruction -> a 64-action chunk (5 DPM-Solver steps, batch 1), random weights built from the configs.
The variants see the same frames, state and noise, chunk after chunk, in a rotating order:

  (i)   official: scripts/agilex_model.py's step with our modules: PIL pad + processor and SigLIP on all
        six frames, every condition key/value re-projected at every step (predict_action(use_cache=False))
  (ii)  ours before issue 12: SigLIP only on the new frames, condition keys/values once per chunk
  (iii) ours: RDTPolicy.predict (+ the per-frame condition cache: each frame's image adaptor and key/value
        projections once in its life, language ones once per instruction), float32, exact; on CPU its
        float32 Linear layers run on oneDNN, not MKL (rdt_core.model.cpu_linear)
  (iv)  (iii) in bfloat16 (on CPU: oneDNN's bf16 matmuls, fast where the CPU has AVX512-BF16 or AMX)
  (v)   --device cuda only: the GPU fast path (bf16, SDPA, the chunk as a CUDA graph, preprocessing on the GPU)

For each: p50 / p90 of the step latency over the steady chunks (the first window is a warm-up), the ratio
of p50s to (i), and the largest difference of the chunk from (i)'s in robot units. On CUDA the variants
run on the GPU in bfloat16 (the official deployment's dtype). --parts startup: RDTPolicy.from_paths on a
saved checkpoint in a fresh process: load times, time to the first chunk, peak RSS and peak GPU memory.

The vision tower is SigLIP with the so400m geometry (384 px, patch 14: 729 tokens of 1152) cut to
--vision-layers layers (default 1 on CPU, the 27 of so400m on CUDA); --parts so400m times the full tower.

    .venv/bin/python bench/model_bench.py [--sizes 170m 1b] [--chunks 6] [--device cpu|cuda] [--threads N]
                                          [--parts compare so400m startup]
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import multiprocessing
import queue as queue_module
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import SiglipVisionConfig, SiglipVisionModel

from rdt_core.encoders.language import InstructionEmbedding, save_instruction_embedding
from rdt_core.encoders.vision import HistoryImageEncoder, VisionEncoder, _SiglipProcessorClass
from rdt_core.model import RDTRunner, rdt_config
from rdt_core.model.cpu_linear import OneDnnLinear, onednn_linear_applies
from rdt_core.policy import RDTPolicy
from rdt_core.robots import load_profile

PROFILE = "agilex"  # the official deployment (scripts/agilex_model.py): 3 cameras, 25 Hz
FRAME_SHAPE = (480, 640, 3)
LANG_LEN = 32
SO400M_LAYERS = 27


def cpu_bf16_support() -> tuple[bool, str]:
    """(whether the CPU has bf16 matmul instructions, a sentence saying which)."""
    try:
        flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return False, "CPU flags unknown (no /proc/cpuinfo): bf16 speed is whatever this CPU gives"
    amx, avx = "amx_bf16" in flags, "avx512_bf16" in flags
    if amx:
        return True, "this CPU has AMX-BF16 (and AVX512-BF16): oneDNN runs bf16 matmuls on the tile units"
    if avx:
        return True, "this CPU has AVX512-BF16 but no AMX: oneDNN runs bf16 matmuls with vdpbf16ps"
    return False, ("this CPU has neither AVX512-BF16 nor AMX: bf16 matmuls are converted in software, "
                   "so (iv) is expected to be slower than (iii); the ratio is printed as measured")


def siglip(layers: int, seed: int = 0) -> VisionEncoder:
    """A random SigLIP vision tower with the so400m geometry and widths, ``layers`` deep, and its processor."""
    config = SiglipVisionConfig(hidden_size=1152, intermediate_size=4304, num_hidden_layers=layers,
                                num_attention_heads=16, image_size=384, patch_size=14)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SiglipVisionModel(config).eval()
    processor = _SiglipProcessorClass(size={"height": 384, "width": 384}, image_mean=[0.5] * 3,
                                      image_std=[0.5] * 3, resample=3, do_resize=True, do_rescale=True,
                                      do_normalize=True)
    return VisionEncoder(model, processor, preprocess_on_device=False)


def random_runner(size: str, seed: int = 0) -> RDTRunner:
    torch.manual_seed(seed)
    geometry = {"img_token_dim": 1152, "num_patches": 729} if size == "tiny" else {}  # the so400m tower's tokens
    runner = RDTRunner(**rdt_config(size, dtype="float32", **geometry)).eval()
    with torch.no_grad():  # the official init zeroes the output layer: give it weights so outputs mean something
        fc2 = runner.model.final_layer.ffn_final.fc2.weight
        fc2.normal_(std=fc2.shape[1] ** -0.5)
    return runner


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Weights:
    """One copy of the runner and the tower per (device, dtype), shared by the variants (none changes them;
    the 1B config in float32 is 4.9 GB)."""

    def __init__(self, runner, vision):
        self.runner, self.vision, self.copies = runner, vision, {}

    def get(self, device, dtype):
        key = (str(device), dtype)
        if device == self.runner.device and dtype == self.runner.dtype:
            return self.runner, self.vision.model
        if key not in self.copies:
            self.copies[key] = (copy.deepcopy(self.runner).to(device=device, dtype=dtype),
                                copy.deepcopy(self.vision.model).to(device=device, dtype=dtype))
        return self.copies[key]


class Official:
    """(i): the official deployment step, every frame encoded and every key/value projected at every step."""

    def __init__(self, weights, processor, profile, instruction, device, dtype, use_cache=False, history=False):
        self.runner, tower = weights.get(device, dtype)
        self.vision = VisionEncoder(tower, processor, device=device, dtype=dtype, preprocess_on_device=False)
        self.history = HistoryImageEncoder(self.vision) if history else None
        self.profile, self.device, self.dtype, self.use_cache = profile, device, dtype, use_cache
        self.lang = instruction.embeddings.to(device, dtype)
        self.lang_mask = torch.ones(self.lang.shape[:2], dtype=torch.bool, device=device)
        self.mask = torch.from_numpy(profile.unified_mask()).to(device, dtype).view(1, 1, -1)
        self.ctrl = torch.tensor([int(profile.control_frequency)], device=device)

    @torch.inference_mode()
    def predict(self, frames, qpos, noise, image_keys):
        if self.history is None:
            img = self.vision.encode(frames).reshape(1, -1, self.vision.hidden_size)
        else:
            img = self.history.encode(frames, keys=image_keys)
        state = torch.from_numpy(self.profile.qpos_to_unified(qpos)).to(self.device, self.dtype).view(1, 1, -1)
        out = self.runner.predict_action(self.lang, self.lang_mask, img.to(self.dtype), state, self.mask, self.ctrl,
                                         noise=noise.unsqueeze(0).to(self.device, self.dtype),
                                         use_cache=self.use_cache)
        return self.profile.unified_to_action(out[0].float().cpu().numpy())


class Ours:
    """(iii)-(v): RDTPolicy.predict on its own copy of the weights."""

    def __init__(self, weights, processor, profile, instruction, device, dtype, graphs=False, gpu_preprocess=False):
        runner, tower = weights.get(device, dtype)
        vision = VisionEncoder(tower, processor, device=device, dtype=dtype, preprocess_on_device=gpu_preprocess)
        self.policy = RDTPolicy(runner, vision, profile, instruction, device=device, dtype=dtype, graphs=graphs,
                                preprocess_on_device=gpu_preprocess)

    def predict(self, frames, qpos, noise, image_keys):
        return self.policy.predict(frames, qpos, noise=noise, image_keys=image_keys)


def variants(size: str, device: torch.device, vision_layers: int, gpu_path: bool | None = None):
    """The variants to compare; ``gpu_path`` (default: on CUDA) builds the CUDA set, which also runs on the
    CPU, each piece falling back as it does without a GPU (how the tests exercise it)."""
    runner, vision = random_runner(size), siglip(vision_layers)
    profile = load_profile(PROFILE)
    gen = torch.Generator().manual_seed(1)
    instruction = InstructionEmbedding("bench", "bench", torch.randn(1, LANG_LEN, runner.lang_token_dim, generator=gen))
    args = (Weights(runner, vision), vision.processor, profile, instruction, device)
    if device.type == "cuda" if gpu_path is None else gpu_path:
        bf16 = torch.bfloat16
        return {"(i) official": Official(*args, bf16),
                "(ii) before": Official(*args, bf16, use_cache=True, history=True),
                "(iii) ours eager": Ours(*args, bf16),
                "(v) GPU fast path": Ours(*args, bf16, graphs=True, gpu_preprocess=True)}, runner, profile
    return {"(i) official": Official(*args, torch.float32),
            "(ii) before": Official(*args, torch.float32, use_cache=True, history=True),
            "(iii) ours": Ours(*args, torch.float32),
            "(iv) ours bf16": Ours(*args, torch.bfloat16)}, runner, profile


def bench(size: str, device: torch.device, chunks: int, vision_layers: int, bf16_note: str,
          gpu_path: bool | None = None) -> dict[str, dict[str, float]]:
    """Print the comparison; return each variant's p50 (s), ratio to (i) and max difference (robot units)."""
    built, runner, profile = variants(size, device, vision_layers, gpu_path)
    n_params = sum(p.numel() for p in runner.parameters()) / 1e6
    print(f"\n{size}: RDT {n_params:.0f}M params, {runner.img_cond_len} image tokens, {runner.pred_horizon} actions, "
          f"{runner.num_inference_timesteps} steps; SigLIP so400m geometry, {vision_layers} layer(s); {PROFILE} "
          f"profile; device {device}", flush=True)
    rng = np.random.default_rng(0)
    steps = {s: [rng.integers(0, 256, FRAME_SHAPE, dtype=np.uint8) for _ in profile.cameras] for s in range(chunks + 2)}
    names = list(built)
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    diffs: dict[str, float] = {n: 0.0 for n in names}
    unified_diffs: dict[str, float] = {n: 0.0 for n in names}
    parts: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    for k in range(1, chunks + 2):  # k = 1: the first window, every frame new (warm-up, not timed)
        frames = steps[k - 1] + steps[k]
        keys = [(c, k - 1) for c in range(len(profile.cameras))] + [(c, k) for c in range(len(profile.cameras))]
        qpos = profile.lower + (0.3 + 0.02 * k) * (profile.upper - profile.lower)
        noise = torch.randn(runner.pred_horizon, 128, generator=torch.Generator().manual_seed(k))
        outs = {}
        for name in names[k % len(names):] + names[:k % len(names)]:  # rotate: no variant always runs first
            sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            outs[name] = built[name].predict(frames, qpos, noise, keys)
            sync(device)
            if k > 1:
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
                info = getattr(getattr(built[name], "policy", None), "last_info", None)
                if info:
                    parts[name].append((info["encode_s"], info["sample_s"]))
        for name in names:
            diffs[name] = max(diffs[name], float(np.abs(outs[name] - outs[names[0]]).max()))
            unified = profile.action_to_unified(outs[name]) - profile.action_to_unified(outs[names[0]])
            unified_diffs[name] = max(unified_diffs[name], float(np.abs(unified).max()))
        if k > 1:
            print(f"  chunk {k - 1}: " + ", ".join(f"{n.split()[0]} {times[n][-1]:.2f} s" for n in names), flush=True)
    base, base_cpu = statistics.median(times[names[0]]), statistics.median(cpu[names[0]])
    summary: dict[str, dict[str, float]] = {}
    print(f"{'variant':<20} {'p50':>9} {'p90':>9} {'x (i)':>7} {'cpu p50':>9} {'x (i)':>7} "
          f"{'max|diff| robot':>15} {'unified':>9}  notes")
    for name in names:
        t = sorted(times[name])
        p50, p90 = statistics.median(t), t[min(len(t) - 1, int(round(0.9 * (len(t) - 1))))]
        c50 = statistics.median(cpu[name])
        note = ""
        if parts[name]:
            enc = statistics.median(e for e, _ in parts[name])
            note = f"SigLIP+preprocessing {enc * 1e3:.0f} ms ({enc / p50:.0%})"
        summary[name] = {"p50_s": p50, "ratio": base / p50, "max_diff": diffs[name],
                         "unified_diff": unified_diffs[name]}
        print(f"{name:<20} {p50 * 1e3:>7.0f}ms {p90 * 1e3:>7.0f}ms {base / p50:>6.2f}x {c50:>8.2f}s "
              f"{base_cpu / c50:>6.2f}x {diffs[name]:>15.2e} {unified_diffs[name]:>9.2e}  {note}", flush=True)
    if "(iv) ours bf16" in built:
        print(f"  (iv): {bf16_note}")
    print("  cpu = process CPU seconds of the step (all threads): less sensitive than wall time to other "
          "processes on a shared machine; 'robot' = robot units, 'unified' = the model's output space")
    budget = runner.pred_horizon / profile.control_frequency
    for name in names[2:]:
        p90 = sorted(times[name])[min(len(times[name]) - 1, int(round(0.9 * (len(times[name]) - 1))))]
        verdict = "under" if p90 < budget else "OVER"
        print(f"  {name}: p90 {p90:.2f} s is {verdict} the {budget:.2f} s that {runner.pred_horizon} actions last at "
              f"{profile.control_frequency:g} Hz (with this vision tower)")
    graphs = [b.policy.sampler.graph_status for b in built.values() if hasattr(b, "policy")]
    preprocessing = [b.policy.vision.preprocessing for b in built.values() if hasattr(b, "policy")]
    linear = [b.policy.linear for b in built.values() if hasattr(b, "policy")]
    print(f"  ours: sampler {sorted(set(graphs))}; preprocessing {sorted(set(preprocessing))}; "
          f"linear layers {sorted(set(linear))}")
    return summary


def so400m_frames(device: torch.device, dtypes) -> None:
    """What the full so400m tower costs for the three new frames of a step."""
    vision = siglip(SO400M_LAYERS)
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, FRAME_SHAPE, dtype=np.uint8) for _ in range(3)]
    for dtype in dtypes:
        enc = VisionEncoder(copy.deepcopy(vision.model), vision.processor, device=device, dtype=dtype,
                            preprocess_on_device=device.type == "cuda")
        # the Linear kernels RDTPolicy picks (oneDNN for float32 on CPU)
        onednn = onednn_linear_applies(device, dtype)
        with OneDnnLinear() if onednn else contextlib.nullcontext():
            enc.encode(frames[:1])  # warm-up
            sync(device)
            start = time.perf_counter()
            enc.encode(frames)
            sync(device)
        print(f"SigLIP so400m (27 layers), 3 new frames, {str(dtype).removeprefix('torch.')}"
              f"{' (oneDNN Linear layers)' if onednn else ''}: {time.perf_counter() - start:.2f} s", flush=True)
        del enc


# ---------------------------------------------------------------------------------------------- start-up
def peak_rss_gb() -> float:
    """This process's peak resident memory (VmHWM: since its exec, unlike ru_maxrss, which a spawned child
    inherits from its parent)."""
    try:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 2**20
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _startup_child(ckpt: str, vision_dir: str, instruction: str, device: str, dtype: str, threads: int,
                   queue) -> None:
    torch.set_num_threads(threads)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    policy = RDTPolicy.from_paths(ckpt, vision_dir, PROFILE, instruction, device=dev, dtype=dtype)
    profile = policy.profile
    rng = np.random.default_rng(2)
    frames = lambda: [rng.integers(0, 256, FRAME_SHAPE, dtype=np.uint8) for _ in profile.cameras]  # noqa: E731
    window = frames() + frames()
    policy.predict(window, (profile.lower + profile.upper) / 2)
    for _ in range(3):  # a few steady chunks: the peak includes the frame cache and the graph's memory
        window = window[3:] + frames()
        policy.predict(window, (profile.lower + profile.upper) / 2)
    peak_gpu = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
    queue.put(dict(policy.startup, rss_gb=peak_rss_gb(),
                   gpu_gb=None if peak_gpu is None else peak_gpu / 2**30,
                   graph=policy.sampler.graph_status, preprocessing=policy.vision.preprocessing))


def startup(size: str, device: torch.device, vision_layers: int) -> None:
    dtype = "bfloat16" if device.type == "cuda" else "float32"
    with tempfile.TemporaryDirectory(prefix="model_bench_") as tmp:
        runner = random_runner(size).to(getattr(torch, dtype))
        lang_dim = runner.lang_token_dim
        ckpt = runner.save_pretrained(Path(tmp) / "ckpt")
        file_gb = (ckpt / "model.safetensors").stat().st_size / 2**30
        del runner
        vision = siglip(vision_layers)
        vision.model.save_pretrained(Path(tmp) / "siglip")
        vision.processor.save_pretrained(Path(tmp) / "siglip")
        del vision
        gen = torch.Generator().manual_seed(0)
        save_instruction_embedding(Path(tmp) / "instr.pt", InstructionEmbedding(
            "bench", "bench", torch.randn(1, LANG_LEN, lang_dim, generator=gen).to(torch.bfloat16)))
        ctx = multiprocessing.get_context("spawn")  # a fresh process: its peak RSS is the start-up's
        queue = ctx.Queue()
        child = ctx.Process(target=_startup_child, args=(str(ckpt), str(Path(tmp) / "siglip"),
                                                         str(Path(tmp) / "instr.pt"), str(device), dtype,
                                                         torch.get_num_threads(), queue))
        child.start()
        result = None
        while result is None:  # a child that dies (out of memory, an exception) must not hang the bench
            try:
                result = queue.get(timeout=1.0)
            except queue_module.Empty:
                if not child.is_alive():
                    raise SystemExit(f"start-up {size}: the measuring process exited with code {child.exitcode} "
                                     f"before reporting (its error is printed above)")
        child.join()
    gpu = f", peak GPU memory {result['gpu_gb']:.2f} GiB (goal <= 6 GB)" if result["gpu_gb"] is not None else ""
    print(f"\nstart-up {size} ({dtype} on {device}, checkpoint {file_gb:.2f} GiB safetensors, SigLIP {vision_layers} "
          f"layer(s)): runner {result['load_runner_s']:.2f} s, vision {result['load_vision_s']:.2f} s, first chunk "
          f"{result['first_chunk_s']:.2f} s after the start (its own latency {result['first_chunk_latency_s']:.2f} s); "
          f"peak RSS {result['rss_gb']:.2f} GiB{gpu}; sampler: {result['graph']}; preprocessing: "
          f"{result['preprocessing']}", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=None, choices=["tiny", "170m", "1b"],
                        help="default: 170m on CPU, 170m and 1b on CUDA")
    parser.add_argument("--chunks", type=int, default=6, help="timed chunks per variant (after one warm-up)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (adds the GPU fast path)")
    parser.add_argument("--vision-layers", type=int, default=None, help="default: 1 on CPU, 27 (so400m) on CUDA")
    parser.add_argument("--parts", nargs="+", default=["compare"], choices=["compare", "so400m", "startup"],
                        help="compare: (i)-(v); so400m: the full so400m tower on 3 frames; startup: "
                             "RDTPolicy.from_paths start-up and memory in a fresh process")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    sizes = args.sizes or (["170m", "1b"] if device.type == "cuda" else ["170m"])
    layers = args.vision_layers or (SO400M_LAYERS if device.type == "cuda" else 1)
    _, bf16_note = cpu_bf16_support()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"RDT deployment step, batch 1: {name}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{bf16_note}", flush=True)
    if "compare" in args.parts:
        for size in sizes:
            bench(size, device, args.chunks, layers, bf16_note)
    if "so400m" in args.parts:
        so400m_frames(device, [torch.bfloat16] if device.type == "cuda" else [torch.float32, torch.bfloat16])
    if "startup" in args.parts:
        for size in sizes:
            startup(size, device, layers)


if __name__ == "__main__":
    main()
