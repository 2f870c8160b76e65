"""What a joint_trajectory_controller does with the node's trajectories, without ROS.

The real runtime (make_controller, a worker thread, simulated time) feeds TrajectoryStream, whose
trajectories go to rdt_core's model of ros2_controllers' joint_trajectory_controller (Jazzy), taken up a
random delivery delay after they are sent. The arm follows the controller's reference exactly. Checked:
every trajectory's points (finite differences equal the sent velocities, inside the limits, at rest at the
end), and the controller's reference over the whole run, switches included (never above the velocity
limit, never outside the position limits, C1: its velocity changes no faster than the acceleration
limit, but for the one update period the real controller skips at a switch).
"""
import numpy as np
import pytest

from rdt_core.joint_trajectory import SplineTrajectory, TrajectoryController
from rdt_core.robots import load_profile
from rdt_policy_node.config import PolicyConfig
from rdt_policy_node.runtime import RUNNING, make_controller
from rdt_policy_node.runtime.streaming import TrajectoryStream

KHZ = 0.001  # the controller's update period (ros2_kortex: 1 kHz)


@pytest.fixture(scope="module")
def kinova():
    return load_profile("kinova_gen3")


class Jumpy:
    """Chunks like the random tiny model's: a wild walk through the limits (the runtime limits speed);
    with ``broken``, now and then a chunk with a NaN, far outside the limits, of the wrong shape, or an
    inference error."""

    def __init__(self, profile, seed, broken=False):
        self.profile, self.rng, self.broken = profile, np.random.default_rng(seed), broken

    def __call__(self, images, qpos, stamp, inpaint_actions=None):
        p, rng = self.profile, self.rng
        walk = np.clip(np.cumsum(rng.normal(0, 0.15, (64, p.dof)), axis=0) + np.asarray(qpos), p.lower, p.upper)
        kind = rng.integers(10) if self.broken else 9
        if kind == 0:
            walk[rng.integers(64), rng.integers(p.dof)] = np.nan
        elif kind == 1:
            walk[rng.integers(64):] = 1e6
        elif kind == 2:
            return walk[:, :-1]
        elif kind == 3:
            raise RuntimeError("CUDA error")
        elif kind == 4:
            return walk[: rng.integers(1, 64)]
        return walk


def run(profile, *, seconds=6.0, rate=100.0, period=0.0, compensate=None, delays=(0.0005, 0.005), seed=0,
        lead=0.1, pause_at=None, fuzz=False):
    """Simulate node + controller; returns (trajectories sent as (sent_at, SplineTrajectory), reference
    samples (t, positions, velocities) of the controller's command at 1 kHz, states seen). ``fuzz``:
    broken chunks, cameras going stale, pauses, late and early ticks, and the clock stepping back (the
    controller then starts over where it is; samples after a step back start a new run, t resets)."""
    rng = np.random.default_rng(seed)
    clock = {"t": 100.0}
    arm = np.flatnonzero(~profile.gripper_mask)
    ctl = make_controller(profile, Jumpy(profile, seed, broken=fuzz), PolicyConfig(
        publish_rate_hz=rate, execute_horizon=12, blend_steps=3, start_move_duration_s=0.3, start_velocity_scale=1.0,
        initial_latency_s=0.05, tracking_watchdog=False), arrival_clock=lambda: clock["t"])
    stream = TrajectoryStream(ctl.safety, step_s=1.0 / rate, horizon_s=0.5, lead_s=lead,
                              controller_period_s=period if compensate is None else compensate, joints=arm)
    q = np.clip(np.zeros(profile.dof), profile.lower, profile.upper)
    jtc = TrajectoryController(q[arm], update_period=period)
    sent, samples, pending, states, last_delivery = [], [], [], set(), 0.0
    t_ctl = now = clock["t"]
    muted, elapsed = set(), 0.0
    try:
        while elapsed < seconds:
            if pause_at is not None and pause_at[0] <= now - 100.0 < pause_at[0] + 1.0 / rate:
                ctl.pause()
            if pause_at is not None and pause_at[1] <= now - 100.0 < pause_at[1] + 1.0 / rate:
                ctl.resume()
            if fuzz:
                if rng.random() < (0.02 if muted else 0.003):
                    muted ^= {str(rng.choice(ctl.window.cameras))}  # a camera goes stale, or comes back
                if rng.random() < (0.02 if ctl.safety.paused else 0.002):
                    (ctl.resume if ctl.safety.paused else ctl.pause)()
            for role in ctl.window.cameras:
                if role not in muted:
                    ctl.window.add_image(role, np.zeros((8, 8, 3), np.uint8), now)
            ctl.window.add_joints("joints", q, now)
            ctl.scheduler.wait(5.0)
            res = ctl.tick(now)
            states.add(res.state)
            traj = stream.next(now, res, ctl)
            if traj is not None:
                sent.append((now, traj))
                last_delivery = max(now + rng.uniform(*delays), last_delivery)  # one topic: in order
                pending.append((last_delivery, traj))
            step = 1.0 / rate
            if fuzz:
                r = rng.random()
                step *= 1.0 if r < 0.9 else 0.3 if r < 0.94 else 3.0 if r < 0.99 else -rng.uniform(2, 40)
            nxt = now + step
            if nxt < now:  # the clock stepped back: the trajectory controller too starts over where it is
                pending, last_delivery = [], 0.0
                jtc = TrajectoryController(samples[-1][1] if samples else q[arm], update_period=period)
                samples.append(None)  # a new run
                t_ctl = nxt
            while t_ctl < nxt:  # the controller's updates
                while pending and pending[0][0] <= t_ctl:
                    tr = pending.pop(0)[1]
                    jtc.receive(type(tr)(tr.start, tr.times, tr.positions[:, arm], tr.velocities[:, arm]), t_ctl)
                command = jtc.desired(t_ctl + period)  # what it writes: sampled one period ahead
                samples.append((t_ctl, command.positions.copy(), command.velocities.copy()))
                t_ctl += KHZ
            q = q.copy()
            if samples and samples[-1] is not None:
                q[arm] = samples[-1][1]  # the arm is where it was commanded
            if res.command is not None:
                q[profile.gripper_mask] = res.command[profile.gripper_mask]
            elapsed += abs(step)
            now = nxt
            clock["t"] += abs(step)  # the arrival clock is monotonic
    finally:
        ctl.close()
    runs, run_ = [], []
    for sample in samples + [None]:
        if sample is None:
            if run_:
                runs.append(tuple(np.array([x[i] for x in run_]) for i in range(3)))
            run_ = []
        else:
            run_.append(sample)
    return sent, runs if fuzz else runs[0], states


@pytest.mark.parametrize("name", ["kinova_gen3", "aloha"])
def test_planned_knots_are_consistent_and_the_controllers_spline_stays_inside_the_limits(name):
    from rdt_policy_node.runtime import Safety

    profile = load_profile(name)
    safety = Safety.from_profile(profile, publish_rate=100.0)
    rng = np.random.default_rng(7)
    vmax, amax, h = profile.max_velocity, profile.max_acceleration, 0.01
    for trial in range(30):
        # anywhere, moving at up to full speed (towards a limit too), after targets far outside the limits
        p0 = rng.uniform(profile.lower, profile.upper)
        if trial % 3 == 0:
            p0 = np.where(rng.random(profile.dof) < 0.5, profile.upper - 0.01, profile.lower + 0.01)
        v0 = rng.uniform(-1, 1, profile.dof) * vmax  # but able to brake before the limits, as every knot is
        brake = lambda room: amax * (np.sqrt(h * h / 4 + 2 * room / amax) - h / 2)  # noqa: E731 (in steps of h)
        v0 = np.clip(v0, -brake(p0 - profile.lower), brake(profile.upper - p0))
        v0 = np.clip(v0, -amax * 0.4, amax * 0.4)  # and to stop within the 0.5 s planned
        targets = rng.uniform(profile.lower - 1, profile.upper + 1, (50, profile.dof))
        q, v = safety.trajectory(p0, v0, targets, h)
        full_q, full_v = np.vstack([p0, q]), np.vstack([v0, v])
        np.testing.assert_allclose(np.diff(full_q, axis=0) / h, (full_v[1:] + full_v[:-1]) / 2, atol=1e-9)
        np.testing.assert_array_equal(v[-1], 0.0)
        assert np.all(np.abs(v) <= vmax + 1e-12)
        assert np.all(np.abs(np.diff(full_v, axis=0)) / h <= amax * (1 + 1e-9))
        # the spline as the controller draws it, at 1 kHz: inside the position and velocity limits
        c = TrajectoryController(p0, update_period=0.0)
        c.receive(SplineTrajectory(1.0, h * np.arange(len(full_q)), full_q, full_v), now=1.0)
        ref = c.sample(1.0 + np.arange(0, len(full_q) * h, 0.001))
        assert np.all(ref.positions >= profile.lower - 1e-9) and np.all(ref.positions <= profile.upper + 1e-9)
        assert np.all(np.abs(ref.velocities) <= vmax * (1 + 1e-9))


def test_a_smooth_plan_is_tracked_without_lag():
    from rdt_policy_node.runtime import Safety

    kinova = load_profile("kinova_gen3")
    safety = Safety.from_profile(kinova, publish_rate=100.0)
    t = 0.01 * np.arange(1, 101)
    arm = ~kinova.gripper_mask
    plan = 0.2 * np.sin(2 * np.pi * 0.5 * t)[:, None] * arm  # 0.63 rad/s at most
    q, v = safety.trajectory(np.zeros(kinova.dof), 0.2 * np.pi * arm, plan, 0.01)
    assert np.abs(q[:80] - plan[:80]).max() < 1e-3  # the last 0.2 s brake to the stop at the end


def check_points(profile, sent, rate):
    arm = ~profile.gripper_mask
    vmax, amax = profile.max_velocity[arm], profile.max_acceleration[arm]
    for at, tr in sent:
        assert tr.start == at and tr.times[0] > 0 and np.all(np.diff(tr.times) > 0)
        q, v = tr.positions[:, arm], tr.velocities[:, arm]
        np.testing.assert_array_equal(v[-1], 0.0)  # at rest at the end: accepted, and the safe stop
        assert np.all(q >= profile.lower[arm] - 1e-9) and np.all(q <= profile.upper[arm] + 1e-9)
        assert np.all(np.abs(v) <= vmax + 1e-9)
        dt = np.diff(tr.times)[:, None]
        # the finite differences of the positions are the sent velocities (their mean over each segment)
        np.testing.assert_allclose(np.diff(q, axis=0) / dt, (v[1:] + v[:-1]) / 2, atol=1e-9)
        assert np.all(np.abs(np.diff(v, axis=0)) / dt <= amax + 1e-6)
        np.testing.assert_allclose(dt, 1.0 / rate, atol=1e-9)


def check_reference(profile, reference, accel_bound):
    t, q, v = reference
    arm = ~profile.gripper_mask
    assert np.all(np.abs(v) <= profile.max_velocity[arm] * (1 + 1e-9)), np.abs(v).max()
    assert np.all(q >= profile.lower[arm] - 1e-9) and np.all(q <= profile.upper[arm] + 1e-9)
    step = np.abs(np.diff(v, axis=0)) / np.diff(t)[:, None]
    assert np.all(step <= accel_bound + 1e-6), step.max()
    return step.max()


def test_an_ideal_controller_splines_the_stream_within_every_limit_and_c1_across_switches(kinova):
    sent, reference, states = run(kinova, period=0.0)
    assert RUNNING in states and len(sent) > 15
    check_points(kinova, sent, 100.0)
    # switches at random moments: the reference is C1 and its acceleration within the limit everywhere
    check_reference(kinova, reference, kinova.max_acceleration[~kinova.gripper_mask])
    assert np.abs(reference[2]).max() > 0.8 * kinova.max_velocity[0]  # the jumpy chunks ask for speed


def test_late_delivery_within_the_lead_is_still_c1(kinova):
    sent, reference, _ = run(kinova, period=0.0, delays=(0.0, 0.095), seed=3, rate=50.0)
    check_points(kinova, sent, 50.0)
    check_reference(kinova, reference, kinova.max_acceleration[~kinova.gripper_mask])


def test_a_real_1khz_controller_needs_the_one_period_shift(kinova):
    amax = kinova.max_acceleration[~kinova.gripper_mask]
    _, shifted, _ = run(kinova, period=KHZ, seed=1)
    # the only velocity step left is the period the controller skips at a switch
    with_shift = check_reference(kinova, shifted, 2 * amax)
    _, unshifted, _ = run(kinova, period=KHZ, compensate=0.0, seed=1)
    t, _, v = unshifted
    without = (np.abs(np.diff(v, axis=0)) / np.diff(t)[:, None]).max()
    assert without > 5 * with_shift  # squeezed into short first segments, that period bends the velocity


def test_a_pause_ends_at_rest_and_is_sent_once(kinova):
    sent, reference, states = run(kinova, period=0.0, seconds=4.0, pause_at=(2.0, 3.0))
    assert "PAUSED" in states
    during = [at for at, tr in sent if 100.0 + 2.0 < at < 100.0 + 3.0]
    # a hold goes out once, and again only until it ends at rest on the hold position (from full speed the
    # controller brakes, overshoots a little and comes back): not every tick
    assert 1 <= len(during) <= 3 and max(during) < 100.0 + 2.7, during
    t, q, v = reference
    paused = np.searchsorted(t, during[0])
    settled = (t > 100.0 + 2.9) & (t < 100.0 + 3.0)
    assert np.abs(v[settled]).max() < 1e-4  # at rest (the last hold trajectory converges onto its point)
    # where the pause found it (the runtime's last command: the reference one tick earlier)
    np.testing.assert_allclose(q[settled][-1], q[paused - 10], atol=1e-5)
    check_reference(kinova, reference, kinova.max_acceleration[~kinova.gripper_mask])


@pytest.mark.parametrize("seed", [0, 1])
def test_fuzz_broken_chunks_stale_cameras_pauses_and_clock_steps_keep_the_reference_c1(kinova, seed):
    sent, runs, states = run(kinova, period=0.0, seconds=8.0, seed=seed, fuzz=True, delays=(0.0, 0.02),
                             pause_at=(3.0, 3.5))
    assert {"RUNNING", "HOLDING", "PAUSED", "MOVING_TO_START"} <= states, states
    check_points(kinova, sent, 100.0)
    for reference in runs:
        if len(reference[0]) > 1:
            check_reference(kinova, reference, kinova.max_acceleration[~kinova.gripper_mask])
