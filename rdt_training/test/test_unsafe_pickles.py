"""Every loader of a file from elsewhere refuses a pickle that would run code: checkpoints (HF .bin, DeepSpeed
.pt, --init of a run folder), instruction embeddings, the vision folder, the policy's export, and --resume.
The payload creates a file when unpickled; the tests check it never appears (and first that it would)."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from rdt_core.checkpoint import CheckpointError, load_runner, load_state_dict
from rdt_core.encoders.language import InstructionFileError, load_instruction_embedding
from rdt_core.encoders.vision import VisionEncoder
from rdt_training.checkpointing import load_tree, pickles_in, save_tree
from rdt_training.instructions import InstructionBank
from rdt_training.train import TrainConfig, TrainingError, build_runner, checkpoint_dirs, train


class CreatesFile:
    """Unpickling this calls open(path, "w"): the file appears if a loader runs the pickle."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def payload(tmp_path):
    """(write(file, wrap) -> None, marker): ``wrap`` puts the payload where a loader looks (state dict, ...)."""
    marker = tmp_path / "PWNED"
    probe = tmp_path / "probe.pt"                 # the payload is real: an unsafe load creates the file
    torch.save({"x": CreatesFile(tmp_path / "probe_marker")}, probe)
    torch.load(probe, weights_only=False)
    assert (tmp_path / "probe_marker").exists()

    def write(path, wrap=lambda p: p):
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(wrap(CreatesFile(marker)), path)
    return write, marker


def test_checkpoint_files_with_a_payload_are_refused(payload, tmp_path):
    write, marker = payload
    write(tmp_path / "hf" / "pytorch_model.bin", lambda p: {"model.x_pos_embed": torch.zeros(1), "evil": p})
    write(tmp_path / "ds" / "pytorch_model" / "mp_rank_00_model_states.pt", lambda p: {"module": {"evil": p}})
    write(tmp_path / "bare.pt", lambda p: {"module": p})
    for target in (tmp_path / "hf", tmp_path / "ds", tmp_path / "bare.pt"):
        with pytest.raises(CheckpointError, match="refusing to unpickle"):
            load_state_dict(target)
    (tmp_path / "hf" / "config.json").write_text("{}")
    with pytest.raises(CheckpointError):
        load_runner(tmp_path / "hf")
    assert not marker.exists()


def test_instruction_files_and_folders_with_a_payload_are_refused(payload, tmp_path):
    write, marker = payload
    write(tmp_path / "lang" / "evil.pt", lambda p: {"name": "x", "instruction": "pick", "embeddings": p})
    with pytest.raises(InstructionFileError, match="not a safe torch file"):
        load_instruction_embedding(tmp_path / "lang" / "evil.pt")
    with pytest.raises(InstructionFileError):
        InstructionBank.load(tmp_path / "lang")
    assert not marker.exists()


def test_a_vision_folder_with_a_payload_is_refused(payload, tmp_path):
    write, marker = payload
    vision = VisionEncoder.tiny()
    folder = tmp_path / "siglip"
    vision.model.save_pretrained(folder)
    vision.processor.save_pretrained(folder)
    (folder / "model.safetensors").unlink()                   # only a pickled weights file is left
    write(folder / "pytorch_model.bin", lambda p: {**vision.model.state_dict(), "evil": p})
    with pytest.raises(ValueError, match="refusing to unpickle"):
        VisionEncoder.from_pretrained(folder)
    assert not marker.exists()


@pytest.fixture(scope="module")
def small_run(episodes_dir, instructions_dir, tmp_path_factory):
    """A 2-step run with EMA and a checkpoint: (config maker, output folder)."""
    out = tmp_path_factory.mktemp("small_run")

    def config(**kw):
        base = dict(data=[str(episodes_dir)], output_dir=str(out), instructions=str(instructions_dir),
                    batch_size=4, max_steps=2, checkpoint_every=2, sample_every=0, sample_batches=1,
                    progress=False, ema=True, cond_mask_prob=0.0, log_with=None)
        base.update(kw)
        return TrainConfig(**base)
    train(config())
    return config, out


def test_checkpoints_hold_no_pickle(small_run):
    _, out = small_run
    ckpt = checkpoint_dirs(out)[-1]
    assert pickles_in(ckpt) == []
    names = {p.name for p in ckpt.iterdir()}
    assert {"model.safetensors", "optimizer.json", "optimizer.safetensors", "scheduler.json", "ema.json",
            "ema.safetensors", "rng.json", "trainer_state.json"} <= names
    assert not list(out.rglob("*.pkl")) and not list(out.rglob("*.bin"))


def test_resume_never_runs_a_crafted_file_of_the_run_folder(small_run, payload):
    """accelerate's names for its pickles (custom_checkpoint_0.pkl held the EMA, unpickled with
    weights_only=False): planted beside our safe files they are ignored, and resume continues."""
    write, marker = payload
    config, out = small_run
    ckpt = checkpoint_dirs(out)[-1]
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin", "scheduler.bin",
                 "sampler.bin", "pytorch_model.bin"):
        write(ckpt / name)
    result = train(config(max_steps=3, resume=True))
    assert result.steps == 3 and result.steps_this_run == 1
    assert not marker.exists()


def test_a_checkpoint_that_only_pickles_could_restore_is_refused(small_run, payload, tmp_path):
    write, marker = payload
    config, out = small_run
    old_run = tmp_path / "old_run"
    shutil.copytree(out / "checkpoints", old_run / "checkpoints")
    ckpt = checkpoint_dirs(old_run)[-1]
    for name in ("optimizer.json", "optimizer.safetensors", "ema.json", "ema.safetensors", "rng.json",
                 "rng.safetensors", "scheduler.json"):
        (ckpt / name).unlink(missing_ok=True)
    write(ckpt / "custom_checkpoint_0.pkl")                    # as accelerate's save_state wrote the EMA
    write(ckpt / "optimizer.bin")
    with pytest.raises(TrainingError, match=r"cannot be resumed safely.*custom_checkpoint_0.pkl.*--init"):
        train(config(output_dir=str(old_run), max_steps=4, resume=True))
    assert not marker.exists()


def test_init_from_a_run_folder_with_a_payload_is_refused(small_run, payload, tmp_path):
    write, marker = payload
    _, out = small_run
    run = tmp_path / "shared_run"
    shutil.copytree(out / "export", run / "export")
    (run / "export" / "model.safetensors").unlink()
    write(run / "export" / "pytorch_model.bin", lambda p: {"evil": p})
    with pytest.raises(TrainingError, match="refusing to unpickle"):
        build_runner(str(run), VisionEncoder.tiny(), lang_dim=32, max_lang_len=8)
    from rdt_core.policy import RDTPolicy
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        RDTPolicy.from_paths(run / "export", run / "export" / "vision", None, None)
    assert not marker.exists()


def test_the_safe_tree_format_round_trips_and_refuses_other_objects(tmp_path):
    import numpy as np
    tree = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.arange(4.0)}},
            "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": [0]}],
            "numpy": ("MT19937", np.arange(5, dtype=np.uint32), 2, 0, 0.0), "none": None}
    save_tree(tree, tmp_path, "t")
    back = load_tree(tmp_path, "t")
    assert back["param_groups"] == tree["param_groups"] and list(back["state"]) == [0]
    assert torch.equal(back["state"][0]["exp_avg"], tree["state"][0]["exp_avg"])
    assert back["numpy"][0] == "MT19937" and (back["numpy"][1] == np.arange(5)).all()
    assert json.loads((tmp_path / "t.json").read_text())["format"] == "rdt-tree/1"
    with pytest.raises(TypeError, match=r"t\['x'\] is a CreatesFile"):
        save_tree({"x": CreatesFile(tmp_path / "never")}, tmp_path, "t")
