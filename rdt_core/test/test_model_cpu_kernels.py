"""CPU kernel choices: float32 Linear layers through oneDNN, bfloat16 cross-attention as matmuls; same numbers."""
import numpy as np
import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from rdt_core.model.blocks import cross_attention
from rdt_core.model.cpu_linear import OneDnnLinear, onednn_linear_status
from rdt_core.policy import RDTPolicy

usable, why = onednn_linear_status()
needs_onednn = pytest.mark.skipif(not usable, reason=why)


def _ops_run(fn) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {event.key for event in prof.key_averages()}


@needs_onednn
@pytest.mark.parametrize("shape", [(7, 48), (2, 5, 48), (1, 1, 48)])
@pytest.mark.parametrize("bias", [True, False])
def test_onednn_linear_equals_f_linear_and_runs_the_onednn_op(shape, bias):
    torch.manual_seed(0)
    layer, x = nn.Linear(48, 40, bias=bias), torch.randn(shape)
    with torch.inference_mode():
        want = layer(x)
        with OneDnnLinear():
            got = layer(x)
            ops = _ops_run(lambda: layer(x))
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert "mkldnn::_linear_pointwise" in ops and "aten::addmm" not in ops and "aten::mm" not in ops


@needs_onednn
def test_training_and_other_dtypes_are_left_to_pytorch():
    """With autograd on, the layer must stay differentiable; bfloat16 already goes to oneDNN in PyTorch."""
    layer = nn.Linear(16, 8)
    x = torch.randn(3, 16, requires_grad=True)
    with OneDnnLinear():
        assert "mkldnn::_linear_pointwise" not in _ops_run(lambda: layer(x))
        layer(x).sum().backward()
        with torch.inference_mode():
            half = layer.to(torch.bfloat16)(torch.randn(3, 16, dtype=torch.bfloat16))
    assert x.grad is not None and x.grad.shape == (3, 16)
    assert half.dtype == torch.bfloat16


@needs_onednn
def test_policy_uses_onednn_on_cpu_float32_and_gives_the_same_chunk():
    frames = [np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8) for i in range(6)]
    noise = torch.randn(64, 128, generator=torch.Generator().manual_seed(0))
    on = RDTPolicy.tiny("kinova_gen3", seed=0)
    off = RDTPolicy(on.runner, on.vision, on.profile, on.instruction, onednn_linear=False)
    assert "oneDNN" in on.fast_path["linear"] and "switched off" in off.fast_path["linear"]
    qpos = on.profile.lower + 0.4 * (on.profile.upper - on.profile.lower)
    np.testing.assert_allclose(on.predict(frames, qpos, noise=noise), off.predict(frames, qpos, noise=noise),
                               rtol=1e-4, atol=1e-5)
    bf16 = RDTPolicy.tiny("kinova_gen3", seed=0, dtype="bfloat16")
    assert "default" in bf16.fast_path["linear"]


@pytest.mark.parametrize("keys", [4374, 32])
def test_bfloat16_cpu_cross_attention_is_attention(keys):
    """The bf16 CPU path (two matmuls around a softmax) computes the same attention as float32 SDPA, within
    bfloat16 rounding; with a mask, or with autograd on, it is SDPA itself."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 4, n, 32, generator=gen) for n in (67, keys, keys))
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    with torch.inference_mode():
        got = cross_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), None)
        ops = _ops_run(lambda: cross_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), None))
    assert got.dtype == torch.bfloat16 and got.shape == want.shape
    assert (got.float() - want).abs().max() < 0.02 * want.abs().max() + 2e-3
    assert not any("scaled_dot_product" in op for op in ops)
    mask = torch.ones(1, 1, 1, keys, dtype=torch.bool)
    with torch.inference_mode():
        ops = _ops_run(lambda: cross_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask))
    assert any("scaled_dot_product" in op for op in ops)
