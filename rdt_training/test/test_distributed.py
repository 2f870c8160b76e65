"""Two training processes on CPU (gloo), launched as the README says: they form one group, see different
samples, hold identical gradients and weights after every step, only rank 0 writes checkpoints and the export,
and --resume continues in two processes. A launch whose processes do not form a group is stopped."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rdt_core.checkpoint import load_state_dict
from rdt_training.checkpointing import load_tree
from rdt_training.train import OutputLock, TrainConfig, TrainingError, checkpoint_dirs, train


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(episodes_dir, instructions_dir, out, *extra, use_cpu=True, nproc=2, timeout=600):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "PYTEST_"))}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    if use_cpu:
        env["ACCELERATE_USE_CPU"] = "true"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "rdt_training.train",
           str(episodes_dir), "--instructions", str(instructions_dir), "--output-dir", str(out),
           "--batch-size", "4", "--lr", "1e-3", "--sample-every", "0", "--sample-batches", "1",
           "--heldout-episodes", "1", "--cond-mask-prob", "0", "--log-with", "none", "--no-progress",
           "--cpu-threads", "1", "--trace", *map(str, extra)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def read_trace(out: Path, rank: int) -> list[dict]:
    return [json.loads(ln) for ln in (out / "trace" / f"rank{rank}.jsonl").read_text().splitlines()]


def steps_of(trace):
    return {e["step"]: e for e in trace if "step" in e}


@pytest.fixture(scope="module")
def two_process_run(episodes_dir, instructions_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_run")
    proc = launch(episodes_dir, instructions_dir, out, "--max-steps", "4", "--checkpoint-every", "2", "--ema")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return out


def test_two_processes_form_one_group_and_share_the_work(two_process_run):
    out = two_process_run
    r0, r1 = read_trace(out, 0), read_trace(out, 1)
    s0, s1 = steps_of(r0), steps_of(r1)
    assert sorted(s0) == sorted(s1) == [1, 2, 3, 4]
    for step in s0:
        a, b = s0[step], s1[step]
        assert a["world"] == b["world"] == 2
        assert a["samples"] and b["samples"]
        assert not {tuple(x) for x in a["samples"]} & {tuple(x) for x in b["samples"]}, step  # different samples
        assert a["grad_checksum"] == b["grad_checksum"]           # gradients agree after the all-reduce
        assert a["param_checksum"] == b["param_checksum"]         # so do the weights after the step
        assert a["loss"] == b["loss"]                             # the gathered loss
    assert len({s0[1]["grad_checksum"], s0[2]["grad_checksum"]}) == 2


def test_only_rank_0_writes_checkpoints_and_the_export(two_process_run):
    out = two_process_run
    wrote0 = [e["path"] for e in read_trace(out, 0) if e.get("event") == "wrote"]
    wrote1 = [e["path"] for e in read_trace(out, 1) if e.get("event") == "wrote"]
    assert wrote0 == ["checkpoints/checkpoint-2", "checkpoints/checkpoint-4", "export"] and wrote1 == []
    assert [d.name for d in checkpoint_dirs(out)] == ["checkpoint-2", "checkpoint-4"]
    assert not [p for p in out.rglob("*") if p.name.endswith(".partial")]
    exported = load_state_dict(out / "export")
    assert exported and (out / "export" / "profile.json").is_file()
    state = json.loads((checkpoint_dirs(out)[-1] / "trainer_state.json").read_text())
    assert state["step"] == 4 and state["num_processes"] == 2
    assert sorted(load_tree(checkpoint_dirs(out)[-1], "rng")) == ["0", "1"]      # both ranks' generators


def test_resume_continues_in_two_processes(two_process_run, episodes_dir, instructions_dir):
    out = two_process_run
    proc = launch(episodes_dir, instructions_dir, out, "--max-steps", "6", "--checkpoint-every", "2", "--ema",
                  "--resume")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert "resumed from" in proc.stdout + proc.stderr
    s0, s1 = steps_of(read_trace(out, 0)), steps_of(read_trace(out, 1))
    assert sorted(s0) == sorted(s1) == [1, 2, 3, 4, 5, 6]
    assert s0[6]["param_checksum"] == s1[6]["param_checksum"]
    state = json.loads((checkpoint_dirs(out)[-1] / "trainer_state.json").read_text())
    assert state["step"] == 6 and [s for s, _ in state["loss_history"]] == [1, 2, 3, 4, 5, 6]


def test_processes_that_do_not_form_a_group_are_stopped_with_how_to_launch(episodes_dir, instructions_dir,
                                                                           tmp_path):
    out = tmp_path / "raced"
    proc = launch(episodes_dir, instructions_dir, out, "--max-steps", "2", use_cpu=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "did not form one group" in text and "ACCELERATE_USE_CPU=true torchrun" in text
    assert not (out / "export").exists() and not checkpoint_dirs(out)


def test_a_second_run_into_the_same_folder_is_stopped(episodes_dir, instructions_dir, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    held = OutputLock(out)                    # another rdt-train holds the folder
    try:
        with pytest.raises(TrainingError, match=r"another rdt-train \(pid \d+\) is writing into"):
            train(TrainConfig(data=[str(episodes_dir)], output_dir=str(out), instructions=str(instructions_dir),
                              max_steps=1, progress=False, log_with=None))
    finally:
        held.release()
    assert not checkpoint_dirs(out)
