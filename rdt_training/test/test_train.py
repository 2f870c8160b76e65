"""End to end on CPU: fake-robot episodes -> train a tiny RDT -> resume -> export -> RDTPolicy predicts."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rdt_core.checkpoint import load_state_dict
from rdt_core.encoders.vision import VisionEncoder
from rdt_core.policy import RDTPolicy

from rdt_training.train import TrainConfig, TrainingError, build_runner, checkpoint_dirs, main, train


def _config(episodes_dir, instructions_dir, out, **kw):
    base = dict(data=[str(episodes_dir)], output_dir=str(out), instructions=str(instructions_dir),
                batch_size=8, lr=1e-3, sample_every=15, sample_batches=1, checkpoint_every=15,
                checkpoints_total_limit=2, progress=False, cond_mask_prob=0.0)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def first_run(episodes_dir, instructions_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    result = train(_config(episodes_dir, instructions_dir, out, max_steps=45, ema=True))
    return out, result


def test_training_lowers_the_loss_and_logs(first_run):
    out, r = first_run
    assert r.steps == 45 and r.steps_this_run == 45 and r.stopped_by == "max_steps"
    losses = np.array(r.losses)
    assert len(losses) == 45 and np.isfinite(losses).all()
    assert losses[-10:].mean() < 0.7 * losses[:5].mean()
    # held-out sample MSE every 15 steps (official overall_avg_sample_mse), in TensorBoard too
    assert [s for s, _ in r.sample_mse_history] == [15, 30, 45]
    assert all(np.isfinite(m) and m > 0 for _, m in r.sample_mse_history)
    assert list((out / "logs").rglob("events.out.tfevents*"))


def test_checkpoints_are_kept_to_the_limit_and_loadable(first_run):
    out, r = first_run
    assert [d.name for d in checkpoint_dirs(out)] == ["checkpoint-30", "checkpoint-45"]
    last = checkpoint_dirs(out)[-1]
    assert (last / "config.json").is_file() and (last / "model.safetensors").is_file()
    assert json.loads((last / "trainer_state.json").read_text())["step"] == 45


def test_resume_continues_from_the_last_checkpoint_then_export_loads_in_the_policy(
        first_run, episodes_dir, instructions_dir, kinova):
    out, first = first_run
    before = load_state_dict(checkpoint_dirs(out)[-1])
    r = train(_config(episodes_dir, instructions_dir, out, max_steps=55, resume=True, ema=True))
    assert r.steps == 55 and r.steps_this_run == 10
    assert r.loss_history[:45] == first.loss_history          # history carried over
    assert [d.name for d in checkpoint_dirs(out)] == ["checkpoint-45", "checkpoint-55"]
    # it trained on from the checkpoint's weights: the optimizer moved them a little, not from scratch
    after = load_state_dict(checkpoint_dirs(out)[-1])
    drift = max((after[k].float() - before[k].float()).abs().max().item() for k in before)
    assert 0 < drift < 0.1

    export = r.export_dir
    assert {"config.json", "model.safetensors", "profile.json", "dataset_stats.json"} <= {
        p.name for p in export.iterdir()}
    stats = json.loads((export / "dataset_stats.json").read_text())
    assert stats["dataset_name"] == "kinova_gen3" and len(stats["state_mean"]) == 128
    instr = sorted((export / "instructions").glob("*.pt"))
    assert len(instr) == 2
    policy = RDTPolicy.from_paths(export, export / "vision", None, instr[0])
    assert policy.profile.name == "kinova_gen3" and not policy.untrained
    frames = [np.full((48, 64, 3), 90, np.uint8)] * policy.window_size
    chunk = policy.predict(frames, np.zeros(kinova.dof), noise=None)
    assert chunk.shape == (64, kinova.dof) and np.isfinite(chunk).all()


def test_time_budget_cached_features_and_ema(episodes_dir, instructions_dir, tmp_path):
    cfg = _config(episodes_dir, instructions_dir, tmp_path / "run", max_steps=1000, max_minutes=0.02,
                  cache_features=True, ema=True, sample_every=0, checkpoint_every=0, lr_scheduler="cosine",
                  warmup_steps=2)
    r = train(cfg)
    assert r.stopped_by == "time_budget" and 2 <= r.steps < 1000
    assert len(list((tmp_path / "run" / "feature_cache").glob("*.h5"))) == 4
    # the export holds the EMA weights, which differ from the raw weights of the final checkpoint
    ema_w = load_state_dict(r.export_dir)
    raw_w = load_state_dict(r.last_checkpoint)
    assert any(not torch.equal(ema_w[k], raw_w[k]) for k in raw_w)


def test_init_from_a_previous_run_and_mismatch_errors(first_run):
    out, _ = first_run
    vision = VisionEncoder.tiny()
    runner = build_runner(str(out), vision, lang_dim=32, max_lang_len=8)
    exported = load_state_dict(out / "export")
    assert all(torch.equal(runner.state_dict()[k], exported[k]) for k in exported)
    # a bare DeepSpeed file (weights under "module", no config.json): the config comes from the weights
    ds_dir = out.parent / (out.name + "_ds")
    ds_dir.mkdir(exist_ok=True)
    torch.save({"module": exported}, ds_dir / "mp_rank_00_model_states.pt")
    from_ds = build_runner(str(ds_dir / "mp_rank_00_model_states.pt"), vision, lang_dim=32, max_lang_len=8)
    assert all(torch.equal(from_ds.state_dict()[k], exported[k]) for k in exported)
    with pytest.raises(TrainingError, match="vision encoder gives 16"):
        build_runner(str(out), VisionEncoder.tiny(hidden_size=16), lang_dim=32, max_lang_len=8)
    with pytest.raises(TrainingError, match="instruction embeddings are 64 wide"):
        build_runner(str(out), vision, lang_dim=64, max_lang_len=8)
    with pytest.raises(TrainingError, match="no such file"):
        build_runner(str(out / "nope"), vision, lang_dim=32, max_lang_len=8)


def test_bad_setups_are_refused_clearly(episodes_dir, instructions_dir, tmp_path, capsys):
    with pytest.raises(TrainingError, match="rdt-encode-instruction"):
        train(_config(episodes_dir, instructions_dir, tmp_path, instructions=None, max_steps=1))
    with pytest.raises(TrainingError, match="cannot be combined"):
        train(_config(episodes_dir, instructions_dir, tmp_path, cache_features=True, image_aug=True))
    assert main([str(tmp_path / "missing"), "--instructions", str(instructions_dir),
                 "--output-dir", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err


def test_defaults_are_the_official_fine_tuning_recipe():
    # finetune.sh + main.py of the official repository
    from rdt_training.train import _parser
    cfg = TrainConfig(data=[])
    assert (cfg.lr, cfg.lr_scheduler, cfg.weight_decay, tuple(cfg.adam_betas), cfg.adam_eps, cfg.max_grad_norm) == \
        (1e-4, "constant", 1e-2, (0.9, 0.999), 1e-8, 1.0)
    assert cfg.cond_mask_prob == 0.1 and cfg.state_noise_snr == 40.0 and cfg.ema is False
    args = _parser().parse_args(["eps/", "--state-noise-snr", "none"])
    assert args.state_noise_snr is None
    assert _parser().parse_args(["eps/", "--state-noise-snr", "30"]).state_noise_snr == 30.0


def test_ema_follows_the_official_schedule_update_by_update():
    from rdt_training.train import OFFICIAL_EMA, make_ema

    def official_decay(n_done):          # models/ema_model.py get_decay(optimization_step), before its += 1
        step = max(0, n_done - OFFICIAL_EMA["update_after_step"] - 1)
        if step <= 0:
            return 0.0
        value = 1 - (1 + step / OFFICIAL_EMA["inv_gamma"]) ** -OFFICIAL_EMA["power"]
        return max(OFFICIAL_EMA["min_value"], min(value, OFFICIAL_EMA["max_value"]))

    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    ema = make_ema([p])
    want = torch.zeros(3, dtype=torch.float64)
    for n in range(12):
        with torch.no_grad():
            p.fill_(float(n + 1) ** 2)                      # the optimizer moved the weights
        ema.step([p])
        d = official_decay(n)
        want = d * want + (1 - d) * p.detach()
        torch.testing.assert_close(ema.shadow_params[0], want)


def test_export_carries_the_control_frequency_the_model_was_trained_with(tmp_path, kinova, instructions_dir):
    # episodes recorded at 10 Hz with a kinova profile: the model saw ctrl_freq 10, so the policy must feed 10
    from rdt_core.robots import RobotProfile

    from conftest import record_episode
    slow = RobotProfile.from_dict({**kinova.to_dict(), "control_frequency": 10.0})
    for k in range(2):
        record_episode(tmp_path / "eps" / f"e{k}.hdf5", slow, steps=10, seed=k)
    r = train(_config(tmp_path / "eps", instructions_dir, tmp_path / "run", max_steps=1, sample_every=0,
                      checkpoint_every=0, batch_size=4, log_with=None))
    assert json.loads((r.export_dir / "profile.json").read_text())["control_frequency"] == 10.0
    policy = RDTPolicy.from_paths(r.export_dir, r.export_dir / "vision", None,
                                  sorted((r.export_dir / "instructions").glob("*.pt"))[0])
    assert policy.control_frequency == 10.0 and policy._ctrl_freqs.tolist() == [10]


def test_warmup_is_not_dropped_with_the_constant_schedule():
    from rdt_training.train import make_lr_scheduler

    def lrs(**kw):
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
        sched = make_lr_scheduler(opt, TrainConfig(data=[], max_steps=10, **kw))
        out = []
        for _ in range(5):
            out.append(sched.get_last_lr()[0])
            opt.step()
            sched.step()
        return out

    assert lrs(lr_scheduler="constant") == [1e-4] * 5                       # official default: no warm-up
    np.testing.assert_allclose(lrs(lr_scheduler="constant", warmup_steps=4), [0, 2.5e-5, 5e-5, 7.5e-5, 1e-4])
    assert lrs(lr_scheduler="cosine", warmup_steps=2)[:3] == [0, 5e-5, 1e-4]
