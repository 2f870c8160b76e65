"""bench/model_bench.py's CUDA variant set and start-up part, run on the CPU: what can be checked without a GPU
(the GPU figures themselves are not measured here; see bench/README.md)."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "bench" / "model_bench.py"


@pytest.fixture(scope="module")
def model_bench():
    if not BENCH.exists():
        pytest.skip(f"{BENCH} is not in this checkout (an installed package without the bench folder)")
    sys.path.insert(0, str(BENCH.parent))  # the start-up part's spawned child imports the bench by name
    spec = importlib.util.spec_from_file_location("model_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["model_bench"] = module
    spec.loader.exec_module(module)
    return module


def test_gpu_variant_set_runs_on_cpu_and_agrees_with_the_official_step(model_bench, capsys):
    """(i)-(iii) and (v) as built for CUDA: bf16, the CUDA-graph sampler and device preprocessing, each
    falling back on the CPU and saying so; every variant's chunk stays within bf16 rounding of (i)'s."""
    summary = model_bench.bench("tiny", torch.device("cpu"), chunks=2, vision_layers=1, bf16_note="",
                                gpu_path=True)
    out = capsys.readouterr().out
    assert list(summary) == ["(i) official", "(ii) before", "(iii) ours eager", "(v) GPU fast path"]
    for name, row in summary.items():
        assert row["p50_s"] > 0 and row["ratio"] > 0, name
        # bf16 throughout, computed in different orders: rounding-sized in the model's unified space
        assert row["unified_diff"] < 0.05, (name, row)
    assert "CUDA graphs need a CUDA device" in out
    assert "(v) GPU fast path" in out and "x (i)" in out


def test_startup_part_reports_load_times_first_chunk_and_memory(model_bench, capsys):
    model_bench.startup("tiny", torch.device("cpu"), vision_layers=1)
    out = capsys.readouterr().out
    assert "start-up tiny (float32 on cpu" in out
    for words in ("runner ", "vision ", "first chunk ", "peak RSS "):
        assert words in out, words
    assert "peak GPU memory" not in out  # only on CUDA
