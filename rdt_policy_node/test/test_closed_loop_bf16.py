"""The opt-in bfloat16 CPU path (issue 12) driving the FakeRobot: every command inside the profile's limits."""
import numpy as np
import torch

from rdt_core.policy import RDTPolicy
from rdt_core.robots import load_profile
from rdt_policy_node.closed_loop import run_closed_loop
from test_closed_loop import assert_commands_safe


def test_bfloat16_policy_commands_stay_inside_the_limits(tmp_path):
    kinova = load_profile("kinova_gen3")
    policy = RDTPolicy.tiny(kinova, dtype=torch.bfloat16)
    assert policy.dtype == torch.bfloat16 and policy.fast_path["dtype"] == "bfloat16"
    res = run_closed_loop(kinova, "tiny", latency=0.1, duration=240.0, out=tmp_path, predictor=policy.predict,
                          execute_horizon=16, start_move_duration_s=0.3, start_velocity_scale=1.0,
                          stop_when=lambda st: sum(ch["status"] == "used" for ch in st["chunks"]) >= 2)
    used = [ch for ch in res.chunks if ch["status"] == "used"]
    assert len(used) >= 2
    assert_commands_safe(kinova, res.commands, 25.0)
    # the bf16 chunk is the float32 one up to bf16 rounding (same weights, inputs and noise)
    fp32 = RDTPolicy.tiny(kinova)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(6)]
    q = kinova.lower + 0.4 * (kinova.upper - kinova.lower)
    noise = torch.randn(64, 128, generator=torch.Generator().manual_seed(0))
    a, b = policy.predict(frames, q, noise=noise), fp32.predict(frames, q, noise=noise)
    assert 0 < np.abs(a - b).max() < 0.1 * np.abs(b).max()
