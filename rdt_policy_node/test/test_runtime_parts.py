"""Unit tests of each runtime part (observation window, interpolation, safety, scheduler) on real profiles."""
import threading
import time

import numpy as np
import pytest

from rdt_core.robots import load_profile
from rdt_policy_node.runtime import (Chunk, ChunkScheduler, Interpolator, ObservationWindow, Plan, Safety,
                                     TrackingWatchdog, interpolate_action, jpeg_roundtrip)
from rdt_policy_node.runtime.observation import Observation, materialize


@pytest.fixture(scope="module")
def kinova():
    return load_profile("kinova_gen3")


def img(v, shape=(8, 10, 3)):
    return np.full(shape, v, dtype=np.uint8)


# ---------------------------------------------------------------- ObservationWindow
def test_window_aligns_like_the_official_deployment_and_pads_first_history(kinova):
    w = ObservationWindow.from_profile(kinova)
    assert w.camera_slots == ["cam_high", "cam_right_wrist", None]  # Gen3 has no left wrist camera
    assert not w.step()  # nothing yet
    w.add_image("cam_high", img(1), 1.00)
    w.add_image("cam_high", img(2), 1.05)
    w.add_image("cam_right_wrist", img(3), 1.02)
    assert not w.step()  # no joints yet
    w.add_joints("joints", np.arange(8) * 0.1, 1.01)  # older than the frame time 1.02 -> not enough
    assert not w.step()
    w.add_joints("joints", np.arange(8) * 0.2, 1.03)
    assert w.step()
    obs = w.observation()
    # frame time = oldest newest-camera stamp (1.02); each stream uses its first message at or after it
    assert obs.stamp == pytest.approx(1.02)
    images = materialize(obs.images)
    assert images[:3] == [None, None, None]  # first step: the t-1 slots are empty, as officially
    assert images[3][0, 0, 0] == 2 and images[4][0, 0, 0] == 3 and images[5] is None
    np.testing.assert_allclose(obs.qpos, np.arange(8) * 0.2)
    assert obs.camera_skew == pytest.approx(0.03)
    assert not w.step()  # queues consumed
    for role, v, t in [("cam_high", 5, 1.09), ("cam_right_wrist", 6, 1.10)]:
        w.add_image(role, img(v), t)
    w.add_joints("joints", np.ones(8), 1.12)
    assert w.step()
    obs2 = w.observation()
    images2 = materialize(obs2.images)
    assert images2[0][0, 0, 0] == 2 and images2[1][0, 0, 0] == 3  # t-1 = previous step
    assert images2[0] is images[3]  # a frame used at two steps is converted once (the encoder's cache key)
    assert images2[3][0, 0, 0] == 5 and images2[4][0, 0, 0] == 6 and obs2.step == 1
    ages = w.ages(1.20)
    assert ages["cam_high"] == pytest.approx(0.11) and ages["joints"] == pytest.approx(0.08)


def test_window_reports_missing_streams_and_bad_input(kinova):
    w = ObservationWindow.from_profile(kinova)
    assert w.ages(0.0)["cam_high"] == np.inf
    with pytest.raises(KeyError, match="cam_left_wrist"):
        w.add_image("cam_left_wrist", img(0), 0.0)
    with pytest.raises(ValueError, match="expected 8"):
        w.add_joints("joints", [0.0] * 7, 0.0)
    with pytest.raises(ValueError, match="exactly once"):
        ObservationWindow(["a", None, None], {"j": [0, 1]}, 3)


def test_jpeg_roundtrip_is_lossy_but_close():
    rng = np.random.default_rng(0)
    x = (rng.random((32, 32, 3)) * 40 + np.linspace(0, 200, 32)[None, :, None]).astype(np.uint8)
    y = jpeg_roundtrip(x)
    assert y.shape == x.shape and y.dtype == np.uint8
    assert 0 < np.abs(y.astype(int) - x).mean() < 10
    # the same bytes a recorded episode stores for this frame, decoded as training decodes them
    from rdt_core.episode import decode_jpeg, encode_jpeg
    np.testing.assert_array_equal(y, decode_jpeg(encode_jpeg(x), "rgb"))


def test_frames_are_converted_in_the_worker_only_those_an_observation_uses(kinova, monkeypatch):
    """Neither add_image (the sensor callback) nor step (the control tick) converts or JPEG-codes a frame:
    materialize (the inference worker) does, for the frames of the observation only."""
    import rdt_core.images as images_module
    import rdt_policy_node.runtime.observation as observation
    from rdt_core.images import RawImage

    rng = np.random.default_rng(0)
    frames = [(rng.random((24, 32, 3)) * 255).astype(np.uint8) for _ in range(10)]
    w = ObservationWindow.from_profile(kinova, jpeg=True)
    real_jpeg, real_to_rgb = observation.jpeg_roundtrip, images_module.to_rgb

    def not_here(*a, **k):
        raise AssertionError("frame conversion in add_image() or step()")
    monkeypatch.setattr(observation, "jpeg_roundtrip", not_here)
    monkeypatch.setattr(images_module, "to_rgb", not_here)
    for k, frame in enumerate(frames):   # 10 frames per camera arrive (as message fields for one camera)
        w.add_image("cam_high", RawImage("bgr8", 24, 32, 96, frame[:, :, ::-1].tobytes()), 1.0 + 0.01 * k)
        w.add_image("cam_right_wrist", frame, 1.0 + 0.01 * k)
    w.add_joints("joints", np.zeros(8), 1.1)
    assert w.step()
    obs = w.observation()

    converted, coded = [], []
    monkeypatch.setattr(observation, "jpeg_roundtrip", lambda im, q: coded.append(q) or real_jpeg(im, q))
    monkeypatch.setattr(images_module, "to_rgb", lambda f: converted.append(f) or real_to_rgb(f))
    got = materialize(obs.images)
    # the two frames of the newest step only (its t-1 slots are still empty): the message converted, the array
    # used as it is, both JPEG round-tripped
    assert len(converted) == 1 and isinstance(converted[0], RawImage) and len(coded) == 2
    assert materialize(obs.images)[3] is got[3] and len(coded) == 2   # kept: converted once
    np.testing.assert_array_equal(got[3], real_jpeg(frames[-1]))  # the round-tripped frame, as trained
    np.testing.assert_array_equal(got[4], real_jpeg(frames[-1]))
    assert not np.array_equal(got[4], frames[-1])


# ---------------------------------------------------------------- interpolation
def test_plan_samples_linearly_and_holds_outside():
    p = Plan([0.0, 1.0, 2.0], [[0.0], [1.0], [3.0]])
    np.testing.assert_allclose(p.sample(np.array([-1, 0.5, 1.5, 5.0])), [[0], [0.5], [2.0], [3.0]])
    with pytest.raises(ValueError, match="increase"):
        Plan([0.0, 0.0], [[0.0], [1.0]])


def test_official_interpolate_action_and_max_step_interpolator():
    steps = np.array([0.01, 0.01, 0.2])
    sub = interpolate_action(np.zeros(3), np.array([0.035, -0.01, 0.1]), steps)
    assert sub.shape == (4, 3)  # ceil(0.035 / 0.01) = 4 equal sub-steps
    np.testing.assert_allclose(sub[-1], [0.035, -0.01, 0.1])
    np.testing.assert_allclose(sub[0], [0.035 / 4, -0.01 / 4, 0.025])
    assert interpolate_action(np.zeros(3), np.array([0.005, 0, 0]), steps).shape == (1, 3)
    it = Interpolator("max_step", [0.01, 0.2], dof=4)  # per-arm values tiled to both arms
    plan = Plan.hold([1.0, 1.0, 1.0, 1.0], 0.0)
    prev = np.zeros(4)
    for _ in range(5):
        nxt = it.command(plan, 0.0, prev)
        assert np.all(np.abs(nxt - prev) <= np.array([0.01, 0.2, 0.01, 0.2]) + 1e-12)
        prev = nxt
    with pytest.raises(ValueError, match="arm_steps_length"):
        Interpolator("max_step", [0.1, 0.1, 0.1], dof=4)


# ---------------------------------------------------------------- safety
def test_safety_limits_position_velocity_and_non_finite(kinova):
    s = Safety.from_profile(kinova, publish_rate=50.0)
    prev = np.zeros(8)
    cmd, why = s.limit(np.full(8, 1e6), prev)
    assert why is None
    np.testing.assert_allclose(cmd, kinova.max_velocity / 50.0)
    cmd, why = s.limit(np.r_[np.nan, np.zeros(7)], prev + 0.1)
    assert why == "non-finite command"
    np.testing.assert_allclose(cmd, s.clip(prev + 0.1))
    far = np.full(8, 2.9)
    for _ in range(400):
        far, _ = s.limit(np.full(8, 1e6), far)
    np.testing.assert_allclose(far, kinova.upper)
    cmd, why = s.limit(np.zeros(3), prev)
    assert "shape" in why


def test_safety_margins(kinova):
    tight = Safety.from_profile(kinova, publish_rate=25.0, chunk_range_margin=0.0)
    loose = Safety.from_profile(kinova, publish_rate=25.0)
    a = np.zeros((64, kinova.dof))
    a[5, 2] = kinova.upper[2] + 0.1  # a little past joint_3's limit: clipped by the default margin, not by 0
    assert loose.chunk_problem(a) is None and "joint_3" in tight.chunk_problem(a)
    assert Safety.from_profile(kinova, publish_rate=25.0, resync_tolerance_s=0.2).resync_tolerance[0] == \
        pytest.approx(0.2 * kinova.max_velocity[0])


# ---------------------------------------------------------------- TrackingWatchdog
def ramp_watchdog(lag_s=0.3, timeout_s=0.5, rate=50.0, v=0.5, delay_s=0.0, stop_at=None, until=3.0, **kw):
    """Commands ramp joint 0 at ``v`` rad/s; the measured joint follows ``delay_s`` behind, or stops at
    ``stop_at`` seconds. Returns (first trip time or None, its reason)."""
    w = TrackingWatchdog(["a", "b"], kw.pop("tolerance", 0.1), lag_s=lag_s, timeout_s=timeout_s, **kw)
    for k in range(int(until * rate)):
        t = k / rate
        q = np.array([v * max(t - delay_s, 0.0), 0.0])
        if stop_at is not None:
            q[0] = v * min(t, stop_at)
        why = w.check(t, q, 0.0)
        if why:
            return t, why
        w.record(t, np.array([v * t, 0.0]))
    return None, None


def test_watchdog_allows_the_lag_and_trips_after_the_timeout():
    # following 0.5 s behind: within the 0.3 s lag (+ a tick) + 0.1 rad / 0.5 rad/s; 0.6 s behind is not
    assert ramp_watchdog(delay_s=0.5) == (None, None)
    assert ramp_watchdog(delay_s=0.6)[0] is not None
    # stopped at 1 s: further than 0.1 rad from every command of the last 0.3 s from 1.5 s on, so it
    # trips 0.5 s later (within a tick), naming the joint, its error and how long
    t, why = ramp_watchdog(stop_at=1.0)
    assert 2.0 <= t <= 2.0 + 1.5 / 50
    assert why.startswith("a is 0.50 rad behind its command for 0.5 s") and "collision" in why and "resume" in why
    assert ramp_watchdog(stop_at=1.0, timeout_s=0.0)[0] == pytest.approx(1.5, abs=1.5 / 50)
    assert ramp_watchdog(stop_at=1.0, lag_s=1.0)[0] == pytest.approx(2.7, abs=1.5 / 50)
    # a per-joint floor, one publish tick of motion (lead) on top, unwatched or disabled joints never trip
    assert ramp_watchdog(stop_at=1.0, tolerance=[0.35, 0.1])[0] == pytest.approx(2.5, abs=1.5 / 50)
    assert ramp_watchdog(stop_at=1.0, lead=0.25)[0] == pytest.approx(2.5, abs=1.5 / 50)
    assert ramp_watchdog(stop_at=1.0, monitored=[False, True]) == (None, None)
    assert ramp_watchdog(stop_at=1.0, enabled=False) == (None, None)


def test_watchdog_timer_restarts_and_the_measurement_age_counts():
    w = TrackingWatchdog(["a"], 0.1, lag_s=0.0, timeout_s=0.5)
    w.record(0.0, [1.0])
    assert w.check(0.1, [0.0]) is None and w.check(0.5, [0.0]) is None
    assert w.check(0.55, [1.0]) is None  # back on track: the spell ends
    assert w.check(0.6, [0.0]) is None and w.check(1.05, [0.0]) is None
    assert "for 0.5 s" in w.check(1.1, [0.0])
    w.reset_timer()
    assert w.check(1.2, [0.0]) is None
    # a 0.5 s old measurement is compared with the commands in effect 0.5 s ago too
    w = TrackingWatchdog(["a"], 0.1, lag_s=0.0, timeout_s=0.0)
    w.record(0.0, [0.0])
    w.record(1.0, [1.0])
    assert w.check(1.2, [0.0], measured_age=0.5) is None
    assert w.check(1.2, [0.0], measured_age=0.1) is not None
    w.clear()
    assert w.check(1.3, [0.0]) is None  # no commands: nothing to compare


def test_safety_staleness_and_start_move(kinova):
    s = Safety.from_profile(kinova, publish_rate=25.0, max_observation_age_s=0.2, start_move_duration_s=1.0)
    assert s.stale_reason({"cam_high": 0.1, "joints": 0.05}) is None
    reason = s.stale_reason({"cam_high": 0.5, "joints": np.inf})
    assert "joints" in reason and "no message yet" in reason and "+1 more" in reason
    target = np.r_[np.full(7, 1.0), 0.4]
    move = s.start_move(np.zeros(8), target, now=10.0)
    slow = kinova.max_velocity * s.start_velocity_scale
    assert move.end_time - move.start_time == pytest.approx(max(1.0, (target / slow).max()))
    np.testing.assert_allclose(move.sample(100.0), np.r_[np.full(7, 1.0), 0.4])


# ---------------------------------------------------------------- scheduler
class Recorder:
    """A predictor that returns a known chunk and remembers what it was given."""

    def __init__(self, chunk, delay=0.0):
        self.chunk, self.delay, self.calls = chunk, delay, []

    def __call__(self, images, qpos, stamp, inpaint_actions=None):
        self.calls.append((stamp, None if inpaint_actions is None else np.array(inpaint_actions)))
        time.sleep(self.delay)
        return self.chunk(stamp) if callable(self.chunk) else self.chunk


def wait_poll(sch, now, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        c = sch.poll(now)
        if c is not None:
            return c
        time.sleep(0.002)
    raise AssertionError("the worker never finished")


def obs(stamp, step=0):
    return Observation([None] * 6, np.zeros(2), stamp, step)


def test_scheduler_aligns_to_the_observation_and_crossfades():
    ramp = lambda stamp: np.stack([np.arange(64) * 0.1 + stamp, np.zeros(64)], axis=1)  # noqa: E731
    sch = ChunkScheduler(Recorder(ramp), dof=2, control_frequency=10.0, blend_steps=3, initial_latency_s=0.5)
    assert sch.should_request(0.0)
    sch.request(obs(100.0), now=100.0)
    assert sch.busy and not sch.should_request(100.0)
    c = wait_poll(sch, 100.25)  # 0.25 s after the observation: rows 0..2 are in the past
    assert c.error is None and sch.accept(c, 100.25)
    assert c.first_index == 3 and sch.plan.start_time == pytest.approx(100.3)
    # switch scheduled at execute_horizon, at the latest at the last row (6.3 s: the plan ends there);
    # request once the remaining time ~ measured latency + one step
    assert sch.switch_time == pytest.approx(100.0 + 6.3)
    assert not sch.should_request(100.0 + 6.3 - c.latency - 0.2)
    assert sch.should_request(100.0 + 6.3 - c.latency - 0.05)
    # a second chunk with an offset of 1.0 is blended in over 3 steps: no jump at the switch
    sch.inference.predict.chunk = lambda stamp: ramp(stamp) + [1.0, 0.0]
    sch.request(obs(101.0), now=101.0)
    c2 = wait_poll(sch, 101.0)
    before = sch.plan.sample(101.0)
    assert sch.accept(c2, 101.0) and c2.first_index == 0
    vals = sch.plan.sample(101.0 + np.arange(5) * 0.1)[:, 0]
    np.testing.assert_allclose(vals - (np.arange(5) * 0.1 + 101.0), [0.25, 0.5, 0.75, 1.0, 1.0])
    assert abs(sch.plan.sample(101.0)[0] - before[0]) <= 0.25 + 1e-9


def test_scheduler_rejects_bad_chunks_with_a_reason():
    for bad, msg in [(np.full((64, 3), 0.0), "shape"), (np.full((65, 2), 0.0), "shape"),
                     (np.r_[np.zeros((63, 2)), [[np.inf, 0]]], "non-finite"), ("x", "numeric")]:
        sch = ChunkScheduler(Recorder(bad), dof=2, control_frequency=10.0)
        sch.request(obs(0.0), 0.0)
        assert msg in wait_poll(sch, 0.0).error

    def boom(*a):
        raise RuntimeError("cuda out of memory")
    sch = ChunkScheduler(boom, dof=2, control_frequency=10.0)
    sch.request(obs(0.0), 0.0)
    assert "cuda out of memory" in wait_poll(sch, 0.0).error
    sch = ChunkScheduler(Recorder(np.zeros((64, 2))), dof=2, control_frequency=10.0)
    sch.request(obs(0.0), 0.0)
    c = wait_poll(sch, 0.0)
    assert not sch.accept(c, 7.0) and "past its last action" in c.error


def test_rtc_mode_passes_the_committed_actions():
    pred = Recorder(lambda stamp: np.stack([np.arange(64) * 0.1 + stamp] * 2, axis=1))
    sch = ChunkScheduler(pred, dof=2, control_frequency=10.0, blend_steps=2, mode="rtc", initial_latency_s=0.3)
    sch.request(obs(0.0), 0.0)
    sch.accept(wait_poll(sch, 0.0), 0.0)
    assert pred.calls[0][1] is None  # nothing committed before the first chunk
    sch.request(obs(3.0), 3.05)
    wait_poll(sch, 3.05)
    inpaint = pred.calls[1][1]
    k = int(np.ceil((sch.latency_estimate + 0.1) / 0.1)) + 2
    assert inpaint.shape == (k, 2)
    np.testing.assert_allclose(inpaint[:, 0], 3.0 + np.arange(k) * 0.1, atol=1e-5)  # the old plan at those times


def test_worker_thread_does_not_block_the_caller():
    """request() and poll() return while the predictor is still running (it runs until the test releases it;
    a blocking request would return only after the predictor's 30 s wait, with the chunk ready)."""
    release = threading.Event()

    def predict(images, qpos, stamp):
        release.wait(30)
        return np.zeros((64, 2))

    sch = ChunkScheduler(predict, dof=2, control_frequency=10.0)
    sch.request(obs(0.0), 0.0)
    polled = sch.poll(0.0)
    release.set()
    assert polled is None
    assert wait_poll(sch, 0.0).error is None


def test_close_waits_for_the_running_inference():
    """Exiting while torch runs in the worker aborts the process (exit code -6 under launch): close() lets the
    running inference finish first."""
    from rdt_policy_node.runtime.scheduler import ThreadInference

    started, finished = threading.Event(), threading.Event()

    def slow(images, qpos, stamp):
        started.set()
        time.sleep(0.5)
        finished.set()
        return np.zeros((4, 2))

    worker = ThreadInference(slow)
    running = worker.submit(None, None, 0.0, None)
    assert started.wait(10)
    worker.close()
    assert finished.is_set() and running.done() and not worker._thread.is_alive()


def test_close_says_whether_the_worker_has_ended():
    """The node asks close() not to wait (launch's SIGTERM grace) and leaves without finalisation when the
    worker still runs: close() must say so truthfully."""
    from rdt_policy_node.runtime.scheduler import ThreadInference

    started, release = threading.Event(), threading.Event()

    def blocked(images, qpos, stamp):
        started.set()
        release.wait(30)
        return np.zeros((4, 2))

    worker = ThreadInference(blocked)
    worker.submit(None, None, 0.0, None)
    assert started.wait(10)
    assert worker.close(timeout=0.0) is False
    release.set()
    assert worker.close(timeout=30.0) is True


def test_a_hung_model_does_not_keep_the_process_from_exiting(tmp_path):
    """The node must stop (launch's SIGINT) even while inference never returns."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import threading, time
        from rdt_policy_node.runtime.scheduler import ThreadInference
        started = threading.Event()
        def hung(images, qpos, stamp):
            started.set()
            threading.Event().wait()
        worker = ThreadInference(hung)
        running = worker.submit(None, None, 0.0, None)
        queued = worker.submit(None, None, 0.0, None)
        assert started.wait(10)
        worker.close()
        assert queued.cancelled() and not running.done()
        try:
            worker.submit(None, None, 0.0, None)
        except RuntimeError as exc:
            print("refused:", exc)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "refused: inference worker is closed" in proc.stdout


def test_thread_inference_returns_results_and_exceptions():
    from rdt_policy_node.runtime.scheduler import ThreadInference

    def predict(images, qpos, stamp, inpaint_actions=None):
        if stamp < 0:
            raise ValueError("bad stamp")
        return np.full((4, 2), stamp) if inpaint_actions is None else inpaint_actions

    worker = ThreadInference(predict)
    try:
        assert worker.submit(None, None, 2.0, None).result(10).tolist() == [[2.0, 2.0]] * 4
        assert worker.submit(None, None, 1.0, np.ones((1, 2))).result(10).tolist() == [[1.0, 1.0]]
        with pytest.raises(ValueError, match="bad stamp"):
            worker.submit(None, None, -1.0, None).result(10)
    finally:
        worker.close()


# ---------------------------------------------------------------- clocks: only the caller's
def test_the_runtime_reads_no_clock_but_the_callers(kinova, monkeypatch):
    """Every clock of the time module fails while a whole run goes through warm-up, the slow move to the
    first action, running and a stale-sensor hold: the runtime's only times are the ``now`` of each tick and
    the arrival clock its caller handed in (here a simulated one, advancing 0.02 s a tick)."""
    from rdt_policy_node.config import PolicyConfig
    from rdt_policy_node.runtime import HOLDING, MOVING_TO_START, RUNNING, make_controller

    def predict(images, qpos, stamp, inpaint_actions=None):
        return np.clip(np.asarray(qpos) + np.linspace(0, 0.3, 64)[:, None], kinova.lower, kinova.upper)

    sim = {"t": 100.0}
    ctl = make_controller(kinova, predict, PolicyConfig(start_move_duration_s=0.2, start_velocity_scale=1.0,
                                                        max_observation_age_s=0.2), arrival_clock=lambda: sim["t"])

    def no_clock(*args):
        raise AssertionError("the runtime read a clock of its own")

    for name in ("monotonic", "monotonic_ns", "time", "time_ns", "perf_counter", "perf_counter_ns"):
        monkeypatch.setattr(time, name, no_clock)
    q, states, reasons = np.zeros(kinova.dof), [], []
    try:
        for k in range(150):
            sim["t"] = 100.0 + 0.02 * k
            if k < 100:  # then the sensors stop: the streams go stale in simulated time
                for role in ctl.window.cameras:
                    ctl.window.add_image(role, img(k), sim["t"])
                ctl.window.add_joints("joints", q, sim["t"])
            ctl.scheduler.wait(10.0)  # the chunk is ready at the next tick, however slow this machine is
            res = ctl.tick(sim["t"])
            states.append(res.state)
            reasons.append(res.hold_reason)
            if res.command is not None and res.publish:
                q = res.command.copy()
        status = ctl.status(sim["t"])
    finally:
        ctl.close()
    assert {MOVING_TO_START, RUNNING} <= set(states[:100])
    assert states[-1] == HOLDING and "stale: 1.00 s > 0.20 s" in reasons[-1], reasons[-1]
    assert status["state"] == HOLDING and status["chunks_received"] >= 2
