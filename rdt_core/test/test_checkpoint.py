"""Checkpoint I/O: round trips through every official layout (real files) and every error path."""
from __future__ import annotations

import collections
import json

import pytest
import torch

from rdt_core.checkpoint import (CheckpointError, load_runner, load_state_dict, official_config, read_config,
                                 save_pretrained)
from rdt_core.model import RDTRunner

DEEPSPEED = "mp_rank_00_model_states.pt"


@pytest.fixture
def runner(make_runner):
    return make_runner(seed=3)


def _official_config(runner) -> dict:
    """config.json as the released rdt-1b ships it (written by huggingface_hub's mixin): the model config
    merged into the top level with the other constructor arguments, no dtype, no norm_formula."""
    kwargs = {k: v for k, v in runner.config.items() if k not in ("config", "dtype")}
    return {**runner.config["config"], **kwargs}


def _same_weights(a, b, atol=0.0):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        torch.testing.assert_close(sa[k].float(), sb[k].float(), atol=atol, rtol=0, msg=k)


def _predict(runner, make_inputs, seed=0):
    return runner.predict_action(**make_inputs(runner, seed=seed),
                                 noise=torch.randn(2, runner.pred_horizon, runner.action_dim,
                                                   generator=torch.Generator().manual_seed(seed)))


def test_save_pretrained_round_trip_keeps_weights_outputs_and_extras(runner, tmp_path, make_inputs):
    out = save_pretrained(runner, tmp_path / "export", extra_json={"profile": {"name": "kinova_gen3"},
                                                                     "dataset_stats.json": {"n": 3}})
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "dataset_stats.json", "model.safetensors",
                                                     "profile.json"]
    config = json.loads((out / "config.json").read_text())
    # the released layout (loadable by the official code) plus our norm_formula and torch_dtype
    assert config == {**_official_config(runner), "norm_formula": "variance", "torch_dtype": "float32"}
    assert json.loads((out / "profile.json").read_text()) == {"name": "kinova_gen3"}
    loaded = RDTRunner.from_pretrained(out)
    _same_weights(runner, loaded)
    torch.testing.assert_close(_predict(loaded, make_inputs), _predict(runner, make_inputs), atol=0, rtol=0)
    assert not any(p.name.endswith(".tmp") for p in out.iterdir())


def test_from_pretrained_reads_norm_formula_else_uses_the_released_one(tmp_path, make_runner, make_inputs):
    ms = make_runner(seed=4, norm_formula="mean_square")
    save_pretrained(ms, tmp_path / "ms")
    assert RDTRunner.from_pretrained(tmp_path / "ms").norm_formula == "mean_square"
    reloaded = RDTRunner.from_pretrained(tmp_path / "ms")
    torch.testing.assert_close(_predict(reloaded, make_inputs), _predict(ms, make_inputs))
    config = json.loads((tmp_path / "ms" / "config.json").read_text())
    del config["norm_formula"]
    (tmp_path / "ms" / "config.json").write_text(json.dumps(config))
    assert RDTRunner.from_pretrained(tmp_path / "ms").norm_formula == "variance"
    assert load_runner(tmp_path / "ms", norm_formula="mean_square").norm_formula == "mean_square"


def test_official_hf_layout_with_pytorch_model_bin_in_bfloat16(runner, tmp_path, make_inputs):
    """rdt-1b ships config.json (kwargs at top level) + a bfloat16 pytorch_model.bin."""
    folder = tmp_path / "rdt-tiny"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(_official_config(runner)))
    torch.save(collections.OrderedDict((k, v.to(torch.bfloat16)) for k, v in runner.state_dict().items()),
               folder / "pytorch_model.bin")
    as_released = load_runner(folder)  # dtype from config: bfloat16 net, float32 adaptors
    assert as_released.model.dtype == torch.bfloat16
    assert {p.dtype for p in as_released.lang_adaptor.parameters()} == {torch.float32}
    assert torch.isfinite(_predict(as_released, make_inputs)).all()
    in_fp32 = load_runner(folder, dtype="float32")
    assert {p.dtype for p in in_fp32.parameters()} == {torch.float32}
    _same_weights(in_fp32, runner, atol=0.01)  # bf16 rounding of weights ~0.5


def test_deepspeed_checkpoint_file_and_folder(runner, tmp_path):
    """Official fine-tuning output: checkpoint-N/pytorch_model/mp_rank_00_model_states.pt (+ ema/ export)."""
    ckpt = tmp_path / "checkpoint-100"
    (ckpt / "pytorch_model").mkdir(parents=True)
    states = {"module": runner.state_dict(), "buffer_names": [], "optimizer": None, "global_steps": 100,
              "param_shapes": [collections.OrderedDict((k, v.shape) for k, v in runner.state_dict().items())],
              "ds_config": {"train_micro_batch_size_per_gpu": 32}, "ds_version": "0.14.4"}
    torch.save(states, ckpt / "pytorch_model" / "mp_rank_00_model_states.pt")
    (ckpt / "ema").mkdir()
    (ckpt / "ema" / "config.json").write_text(json.dumps(_official_config(runner)))
    for path in (ckpt, ckpt / "pytorch_model", ckpt / "pytorch_model" / "mp_rank_00_model_states.pt"):
        loaded = load_runner(path, dtype="float32")
        _same_weights(runner, loaded)
    assert set(load_state_dict(ckpt)) == set(runner.state_dict())
    # without any config.json the caller must say which model it is
    (ckpt / "ema" / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json.*pass config="):
        load_runner(ckpt)
    loaded = load_runner(ckpt, config={"rdt_runner_kwargs": runner.config})
    _same_weights(runner, loaded)


def test_released_1b_config_layout_gives_the_official_constructor_kwargs(conformance_dir, tmp_path):
    """The released config.json merges the model config into the top level; reading it must give exactly
    the constructor arguments of the 1B layout file, and what we write for a 1B runner must be that layout."""
    official = json.loads((conformance_dir / "state_dict_rdt1b.json").read_text())["constructor_kwargs"]
    kwargs = {k: v for k, v in official.items() if k not in ("config", "dtype")}
    (tmp_path / "config.json").write_text(json.dumps({**official["config"], **kwargs}, sort_keys=True))
    got = read_config(tmp_path)
    assert got == {k: v for k, v in official.items() if k != "dtype"}
    with torch.device("meta"):
        runner_1b = RDTRunner(**got)
    written = official_config(runner_1b)
    assert written.pop("norm_formula") == "variance" and written.pop("torch_dtype") == "bfloat16"
    assert written == json.loads((tmp_path / "config.json").read_text())


def test_single_file_and_prefixed_keys(runner, tmp_path):
    torch.save({f"module.{k}": v for k, v in runner.state_dict().items()}, tmp_path / "weights.pt")
    (tmp_path / "config.json").write_text(json.dumps(runner.config))
    assert set(load_state_dict(tmp_path / "weights.pt")) == set(runner.state_dict())
    _same_weights(runner, load_runner(tmp_path / "weights.pt"))
    assert read_config(tmp_path / "weights.pt")["pred_horizon"] == runner.pred_horizon


def test_conformance_fixture_folder_is_a_loadable_hf_checkpoint(conformance_dir):
    """The fixture folder (config.json wrapped under rdt_runner_kwargs + model.safetensors) loads and
    reproduces the official sampling output with the default (released) norm formula."""
    from safetensors.torch import load_file
    runner = load_runner(conformance_dir / "tiny")
    fx = load_file(str(conformance_dir / "tiny" / "fixtures.safetensors"))
    want = load_file(str(conformance_dir / "tiny" / "fixtures_timm103.safetensors"))["sample.out"]
    out = runner.predict_action(fx["in.lang_tokens"], fx["in.lang_attn_mask"], fx["in.img_tokens"],
                                fx["in.state_tokens"], fx["in.action_mask"], fx["in.ctrl_freqs"],
                                noise=fx["sample.init_noise"])
    torch.testing.assert_close(out, want, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------- errors
def test_one_error_lists_missing_unexpected_shapes_and_config(runner, tmp_path):
    save_pretrained(runner, tmp_path)
    sd = dict(load_state_dict(tmp_path))
    del sd["model.blocks.0.norm1.weight"], sd["img_adaptor.2.bias"]
    sd["model.extra.weight"] = torch.zeros(3)
    sd["lang_adaptor.0.weight"] = torch.zeros(64, 99)
    torch.save(sd, tmp_path / "pytorch_model.bin")
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError) as err:
        load_runner(tmp_path)
    message = str(err.value)
    for needle in ("missing keys (2)", "model.blocks.0.norm1.weight", "img_adaptor.2.bias",
                   "unexpected keys (1): model.extra.weight", "shape mismatches (1)",
                   "lang_adaptor.0.weight: checkpoint (64, 99) vs model (64, 16)",
                   "config does not match the weights", "lang_token_dim: config 16 vs weights 99"):
        assert needle in message, (needle, message)


def test_a_config_for_another_model_size_is_reported_as_such(runner, tmp_path):
    save_pretrained(runner, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["rdt"]["hidden_size"] = 128
    config["rdt"]["depth"] = 3
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as err:
        load_runner(tmp_path)
    message = str(err.value)
    assert "hidden_size: config 128 vs weights 64" in message and "depth: config 3 vs weights 2" in message
    assert "shape mismatches" in message and "... and" in message  # first few shown, then the count


def test_bad_config_keys_and_values_are_listed(runner, tmp_path):
    save_pretrained(runner, tmp_path)
    kwargs = {k: v for k, v in runner.config.items() if k != "img_cond_len"}
    kwargs["hidden"] = 3
    (tmp_path / "config.json").write_text(json.dumps({"rdt_runner_kwargs": kwargs, "norm_formula": "layernorm"}))
    with pytest.raises(CheckpointError) as err:
        load_runner(tmp_path)
    message = str(err.value)
    assert "unknown keys ['hidden']" in message and "lacks required keys ['img_cond_len']" in message
    assert "norm_formula" in message and "the weights imply" in message and "img_cond_len=" in message
    released = _official_config(runner)
    del released["rdt"]["num_heads"], released["pred_horizon"]
    (tmp_path / "config.json").write_text(json.dumps(released))
    with pytest.raises(CheckpointError, match=r"lacks required keys \['pred_horizon'\]"):
        load_runner(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_runner(tmp_path)


def test_missing_paths_and_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_state_dict(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="no weights in .*model.safetensors"):
        load_state_dict(tmp_path)


class _NotATensor:
    pass


def test_pickles_with_arbitrary_objects_are_refused(runner, tmp_path):
    torch.save({"module": runner.state_dict(), "payload": _NotATensor()}, tmp_path / DEEPSPEED)
    (tmp_path / "config.json").write_text(json.dumps(runner.config))
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_runner(tmp_path)
    torch.save({"weights": [1, 2]}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        load_state_dict(tmp_path / "pytorch_model.bin")
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_state_dict(tmp_path)


def test_bad_extra_json_and_dtype(runner, tmp_path):
    with pytest.raises(CheckpointError, match="plain file name"):
        save_pretrained(runner, tmp_path / "a", extra_json={"../evil": {}})
    with pytest.raises(CheckpointError, match="plain file name"):
        save_pretrained(runner, tmp_path / "a", extra_json={"config": {}})
    with pytest.raises(CheckpointError, match="not JSON-serialisable"):
        save_pretrained(runner, tmp_path / "b", extra_json={"stats": {"x": object()}})
    assert not (tmp_path / "b").exists()  # nothing half-written
    save_pretrained(runner, tmp_path / "c")
    with pytest.raises(CheckpointError, match="unknown dtype"):
        load_runner(tmp_path / "c", dtype="int3")
