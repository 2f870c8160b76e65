"""Lock-step episodes in sim time: latency is simulated, results do not depend on the machine, frames are
rendered only when a policy reads them, and the official synchronous loop really waits for inference."""
import time

import numpy as np
import pytest

from rdt_sim.aloha import AlohaSim
from rdt_sim.experts import ChunkedExpert, demonstrate
from rdt_sim.loop import ImagePredictor, SimLatencyInference, run_episode
from rdt_sim.rendering import RenderSettings


@pytest.fixture(scope="module")
def sim():
    s = AlohaSim("transfer_cube", render=RenderSettings(32, 40, shadows=False))
    yield s
    s.close()


@pytest.fixture(scope="module")
def demo():
    return demonstrate("transfer_cube", 0)


def test_a_chunk_requested_at_t_arrives_at_t_plus_latency():
    clock = {"t": 2.0}
    inf = SimLatencyInference(lambda images, qpos, stamp: np.full((4, 2), stamp), 0.3, lambda: clock["t"])
    fut = inf.submit(None, None, 1.9, None)
    for t in (2.0, 2.1, 2.28):
        inf.advance(t)
        assert not fut.done()
    inf.advance(2.3)
    assert fut.done() and fut.result()[0, 0] == 1.9
    failing = SimLatencyInference(lambda *a: 1 / 0, 0.1, lambda: clock["t"])
    bad = failing.submit(None, None, 0.0, None)
    failing.advance(2.1)
    assert isinstance(bad.exception(), ZeroDivisionError)
    with pytest.raises(ValueError, match="latency"):
        SimLatencyInference(lambda *a: None, -0.1, lambda: 0.0)


def test_results_do_not_depend_on_how_long_inference_takes_on_this_machine(sim, demo):
    def slow(images, qpos, stamp, inpaint_actions=None, _expert=ChunkedExpert(demo)):
        time.sleep(0.03)  # wall time the sim never sees
        return _expert(images, qpos, stamp)

    fast = run_episode(sim, 0, "ours", predictor=ChunkedExpert(demo), latency_s=0.2, duration_s=3.0)
    slow_run = run_episode(sim, 0, "ours", predictor=slow, latency_s=0.2, duration_s=3.0)
    assert np.array_equal(np.array(fast.commands), np.array(slow_run.commands))
    assert fast.command_times == slow_run.command_times
    # the first chunk arrives 0.2 s after the first request (t = 0): nothing moves before
    first_move = next(t for t, s in fast.states if s == "MOVING_TO_START")
    assert first_move == pytest.approx(0.2, abs=1e-9)


def test_chunked_expert_through_our_runtime_and_the_sync_loop(sim, demo):
    ours = run_episode(sim, 0, "ours", predictor=ChunkedExpert(demo), latency_s=0.3)
    sync = run_episode(sim, 0, "sync", predictor=ChunkedExpert(demo), latency_s=0.3)
    direct = run_episode(sim, 0, "expert", demo=demo)
    for log in (ours, sync, direct):
        assert log.success, log.mode
    m_ours, m_sync = ours.metrics(sim.control_period), sync.metrics(sim.control_period)
    assert m_ours["max_command_gap_s"] == pytest.approx(sim.control_period)  # a command every period
    assert m_sync["max_command_gap_s"] >= 0.3  # the robot waited for every inference
    assert direct.time_to_success < ours.time_to_success < sync.time_to_success
    assert m_ours["chunk_switches"] >= 3 and m_sync["chunk_switches"] >= 3


def test_frames_are_rendered_only_for_a_policy_that_reads_them(sim, demo, monkeypatch):
    rendered = []
    real = AlohaSim.render_state
    monkeypatch.setattr(AlohaSim, "render_state", lambda self, st, cam: rendered.append(cam) or real(self, st, cam))
    run_episode(sim, 0, "ours", predictor=ChunkedExpert(demo), duration_s=1.0)
    assert rendered == []  # the chunked expert reads no images: physics speed
    seen = []

    def looks(images, qpos, stamp, inpaint_actions=None, _expert=ChunkedExpert(demo)):
        seen.append([None if f is None else f.shape for f in images])
        return _expert(images, qpos, stamp)

    log = run_episode(sim, 0, "ours", predictor=ImagePredictor(looks), latency_s=0.2, duration_s=1.0,
                      camera_rate_hz=25.0)
    published = 25 * 3  # 1 s of three cameras
    assert seen and len(rendered) <= 3 * 2 * len(seen) < published
    assert all(s == (32, 40, 3) for step in seen for s in step if s is not None)
    assert len(seen[0]) == 6 and seen[0][:3] == [None] * 3  # the first window has no t-1 frames
