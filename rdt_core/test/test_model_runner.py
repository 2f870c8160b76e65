"""RDTRunner behaviour beyond the fixtures: the condition cache, batching, inpainting, inputs, dtypes."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def runner(make_runner):
    return make_runner(seed=11)


@pytest.fixture(scope="module")
def random_inputs(make_inputs):
    return make_inputs


def _noise(runner, batch=2, seed=5):
    return torch.randn(batch, runner.pred_horizon, runner.action_dim, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("lang_len", [3, 8])
def test_cached_and_uncached_sampling_agree(runner, lang_len, random_inputs):
    inputs = random_inputs(runner, lang_len=lang_len)
    cached = runner.predict_action(**inputs, noise=_noise(runner), use_cache=True)
    plain = runner.predict_action(**inputs, noise=_noise(runner), use_cache=False)
    assert cached.abs().max() > 0.1  # a real, non-trivial output
    torch.testing.assert_close(cached, plain, atol=1e-6, rtol=1e-6)


def test_the_batch_is_one_pass_equal_to_per_sample_runs(runner, random_inputs):
    inputs = random_inputs(runner, batch=3)
    noise = _noise(runner, batch=3)
    batched = runner.predict_action(**inputs, noise=noise)
    for i in range(3):
        single = runner.predict_action(**{k: v[i:i + 1] for k, v in inputs.items()}, noise=noise[i:i + 1])
        torch.testing.assert_close(batched[i:i + 1], single, atol=1e-5, rtol=1e-5)


def test_output_is_masked_and_depends_on_the_conditions(runner, random_inputs):
    inputs = random_inputs(runner)
    out = runner.predict_action(**inputs, noise=_noise(runner))
    assert out.shape == (2, runner.pred_horizon, runner.action_dim)
    assert torch.all(out[:, :, inputs["action_mask"][0, 0] == 0] == 0)
    other = dict(inputs, img_tokens=inputs["img_tokens"] + 1.0)
    assert not torch.allclose(runner.predict_action(**other, noise=_noise(runner)), out, atol=1e-3)
    # the padded language slots are ignored: changing them changes nothing
    padded = inputs["lang_tokens"].clone()
    padded[1, ~inputs["lang_attn_mask"][1]] = 100.0
    torch.testing.assert_close(runner.predict_action(**dict(inputs, lang_tokens=padded), noise=_noise(runner)),
                               out, atol=1e-6, rtol=1e-6)


def test_num_inference_steps_override_and_own_noise(runner, random_inputs):
    inputs = random_inputs(runner)
    five = runner.predict_action(**inputs, noise=_noise(runner))
    ten = runner.predict_action(**inputs, noise=_noise(runner), num_inference_steps=10)
    assert torch.isfinite(ten).all() and not torch.allclose(five, ten)
    torch.manual_seed(0)
    a = runner.predict_action(**inputs)
    torch.manual_seed(0)
    torch.testing.assert_close(runner.predict_action(**inputs), a)
    with pytest.raises(ValueError, match="num_inference_steps"):
        runner.predict_action(**inputs, num_inference_steps=-1)


@pytest.mark.parametrize("use_cache", [True, False])
def test_inpainting_pins_the_known_prefix(runner, use_cache, random_inputs):
    inputs = random_inputs(runner)
    K = 3
    known = torch.randn(2, 5, runner.action_dim, generator=torch.Generator().manual_seed(1)) * inputs["action_mask"]
    free = runner.predict_action(**inputs, noise=_noise(runner), use_cache=use_cache)
    pinned = runner.predict_action(**inputs, noise=_noise(runner), use_cache=use_cache, inpaint=(known, K))
    torch.testing.assert_close(pinned[:, :K], known[:, :K], atol=0, rtol=0)
    assert torch.isfinite(pinned).all()
    assert torch.all(pinned[:, K:, inputs["action_mask"][0, 0] == 0] == 0)
    # the known prefix steers the rest of the chunk
    assert not torch.allclose(pinned[:, K:], free[:, K:], atol=1e-3)
    # K = 0 is plain sampling
    torch.testing.assert_close(runner.predict_action(**inputs, noise=_noise(runner), inpaint=(known, 0)), free)


def test_inpainting_rejects_bad_known_actions(runner, random_inputs):
    inputs = random_inputs(runner)
    with pytest.raises(ValueError, match="num_known"):
        runner.predict_action(**inputs, inpaint=(torch.zeros(2, 4, 128), runner.pred_horizon + 1))
    with pytest.raises(ValueError, match="known_actions .* should be"):
        runner.predict_action(**inputs, inpaint=(torch.zeros(2, 2, 128), 3))
    with pytest.raises(ValueError, match="NaN"):
        runner.predict_action(**inputs, inpaint=(torch.full((2, 3, 128), float("nan")), 3))


def test_wrong_input_shapes_are_all_named(runner, random_inputs):
    inputs = random_inputs(runner)
    bad = dict(inputs, img_tokens=inputs["img_tokens"][:, :-1], lang_tokens=inputs["lang_tokens"][..., :-1],
               ctrl_freqs=torch.tensor([25]))
    with pytest.raises(ValueError) as err:
        runner.predict_action(**bad)
    message = str(err.value)
    assert "img_tokens" in message and "lang_tokens" in message and "ctrl_freqs" in message
    too_long = random_inputs(runner, lang_len=runner.max_lang_cond_len + 1)
    with pytest.raises(ValueError, match="at most"):
        runner.predict_action(**too_long)
    with pytest.raises(ValueError, match="pass action_mask"):
        runner.adapt_conditions(inputs["lang_tokens"], inputs["img_tokens"], inputs["state_tokens"])
    with pytest.raises(ValueError, match="noise"):
        runner.predict_action(**inputs, noise=torch.zeros(2, 3, 128))


def test_adapt_conditions_can_concatenate_the_mask(runner, random_inputs):
    inputs = random_inputs(runner)
    joined = torch.cat([inputs["state_tokens"], inputs["action_mask"]], dim=2)
    a = runner.adapt_conditions(inputs["lang_tokens"], inputs["img_tokens"], joined)
    b = runner.adapt_conditions(inputs["lang_tokens"], inputs["img_tokens"], inputs["state_tokens"],
                                action_mask=inputs["action_mask"])
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)


def test_compute_loss_trains(random_inputs, make_runner):
    runner = make_runner(seed=2).train()
    inputs = random_inputs(runner)
    action_gt = torch.randn(2, runner.pred_horizon, runner.action_dim) * inputs["action_mask"]
    args = (inputs["lang_tokens"], inputs["lang_attn_mask"], inputs["img_tokens"], inputs["state_tokens"],
            action_gt, inputs["action_mask"], inputs["ctrl_freqs"])
    noise, t = torch.randn_like(action_gt), torch.tensor([10, 900])
    optim = torch.optim.SGD(runner.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        loss = runner(*args, noise=noise, timesteps=t)  # forward == compute_loss
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert loss.ndim == 0 and losses[-1] < losses[0]
    assert all(p.grad is not None for p in runner.parameters())
    assert runner.model.final_layer.ffn_final.fc2.weight.grad.abs().sum() > 0


def test_bfloat16_net_with_float32_adaptors_samples(random_inputs, make_runner):
    runner = make_runner(seed=7, dtype="bfloat16")
    assert runner.model.dtype == torch.bfloat16
    assert runner.state_adaptor[0].weight.dtype == torch.float32
    fp32 = make_runner(seed=7, dtype="float32")
    inputs = random_inputs(runner)
    out = runner.predict_action(**inputs, noise=_noise(runner))
    ref = fp32.predict_action(**inputs, noise=_noise(runner))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert (out - ref).abs().max() < 0.25 * ref.abs().max()  # same model up to bf16 rounding
