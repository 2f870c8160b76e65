"""Closed loop without ROS: the runtime drives rdt_core's FakeRobot with real threads and clocks."""
import re
import time

import numpy as np
import pytest

from rdt_core.robots import load_profile
from rdt_policy_node.config import PolicyConfig
from rdt_policy_node.closed_loop import main, plot_closed_loop, read_chunks, read_csv_table, run_closed_loop
from rdt_policy_node.runtime import (HOLDING, MOVING_TO_START, RUNNING, ProcessInference, make_controller)
from rdt_policy_node.scripted import ScriptedPolicy, make_scripted_policy


@pytest.fixture(scope="module")
def kinova():
    return load_profile("kinova_gen3")


def assert_commands_safe(profile, commands, publish_rate):
    """Every command inside the position limits, every tick within the velocity limit."""
    q = commands[:, 1:]
    assert np.all(np.isfinite(q))
    assert np.all(q >= profile.lower - 1e-9) and np.all(q <= profile.upper + 1e-9)
    steps = np.abs(np.diff(q, axis=0))
    assert np.all(steps <= profile.max_velocity / publish_rate + 1e-9)


TRACKING = "behind its command"


def states_after(ticks, t):
    return [s for (tt, s, _) in ticks if tt >= t]


def test_tiny_model_with_300ms_inference_never_misses_a_tick(kinova, tmp_path):
    from rdt_core.policy import RDTPolicy

    policy = RDTPolicy.tiny(kinova)
    assert policy.untrained
    # until four chunks are used, however long the machine takes (duration is only the upper bound)
    res = run_closed_loop(kinova, "tiny", latency=0.3, duration=300.0, out=tmp_path, predictor=policy.predict,
                          execute_horizon=16, start_move_duration_s=0.3, start_velocity_scale=1.0,
                          stop_when=lambda st: sum(ch["status"] == "used" for ch in st["chunks"]) >= 4)
    c = res.commands
    assert len(c) > 0
    # the control timer published on every tick after the first command, and kept publishing while each
    # inference (>= 300 ms) ran: inference never blocked it
    first = c[0, 0]
    ticks_after_first = [t for (t, _, _) in res.ticks if t >= first]
    assert len(c) == len(ticks_after_first)
    for ch in res.chunks:
        if ch["request_time"] > first:
            during = (c[:, 0] > ch["request_time"]) & (c[:, 0] < ch["ready_time"])
            assert during.sum() >= 2, f"no command while the chunk requested at {ch['request_time']:.2f} s ran"
    used = [ch for ch in res.chunks if ch["status"] == "used"]
    assert len(used) >= 3 and all(ch["latency_s"] >= 0.3 for ch in used)
    assert all(ch["first_action_index"] >= 7 for ch in used)  # >= 300 ms at 25 Hz were dropped as past
    assert RUNNING in [s for _, s, _ in res.ticks]
    assert_commands_safe(kinova, c, 25.0)  # continuous across every chunk switch, inside the limits
    assert not any(TRACKING in r for _, _, r in res.ticks)  # the tracking watchdog (on by default) is quiet
    assert (tmp_path / "commands.csv").exists() and (tmp_path / "chunks.csv").exists()


def test_scripted_run_is_continuous_and_logs_are_readable(kinova, tmp_path):
    res = run_closed_loop(kinova, "scripted", latency=0.15, duration=120.0, out=tmp_path, execute_horizon=20,
                          start_move_duration_s=0.3, chunking_mode="rtc",
                          stop_when=lambda st: sum(ch["status"] == "used" for ch in st["chunks"]) >= 6)
    header, cmd = read_csv_table(tmp_path / "commands.csv")
    assert header == ["time_s", *kinova.joint_names]
    np.testing.assert_allclose(cmd, res.commands, atol=1e-5)
    chunks = read_chunks(tmp_path / "chunks.csv")
    switches = [c["ready_time"] for c in chunks if c["status"] == "used"][1:]
    assert len(switches) >= 3
    assert_commands_safe(kinova, cmd, 25.0)
    # no kink at chunk switches: around a switch (the new chunk drives the command from the tick after the one
    # that polled it) each command step equals what the step before it, continued at its velocity over this
    # tick's real interval, predicts, to far less than the velocity limit allows per tick. Over the ticks' real
    # times, not per tick: on a loaded machine ticks come late and then early, and a plain second difference
    # would see the timing, not the commands. Joints at or near their velocity limit are left out: there the
    # limiter clamps or releases with the tick timing (a late tick gets one period's worth of motion), which
    # is the limiter working, not a discontinuity. (res.commands: the CSV is rounded.)
    # Without blending (crossfade, blend_steps=0) these kinks reach 1.1-1.4 x the limit on this scenario.
    # Arm joints only: the scripted gripper often runs at its (low) velocity limit, and the limiter
    # switching on or off kinks the command wherever that happens, switch or not.
    arm = ~kinova.gripper_mask
    vmax = kinova.max_velocity[arm]
    t, q = res.commands[:, 0], res.commands[:, 1:][:, arm]
    step, dt = np.diff(q, axis=0), np.diff(t)
    limited = np.abs(step) >= 0.9 * vmax * np.minimum(dt, 1 / 25.0)[:, None]
    judged = 0
    for s in switches[1:]:
        i = np.searchsorted(t, s)
        for j in range(max(i, 2), min(i + 3, len(t))):   # step j-1 goes from t[j-1] to t[j]
            free = ~(limited[j - 1] | limited[j - 2])
            predicted = step[j - 2] / dt[j - 2] * dt[j - 1]
            kink = np.abs(step[j - 1] - predicted)[free]
            assert np.all(kink < 0.25 * vmax[free] / 25.0), (s, j, dt[j - 2:j], kink)
            judged += int(free.sum())
    assert judged > 0
    png = plot_closed_loop(tmp_path)
    assert png.stat().st_size > 10_000


def test_stale_camera_holds_within_one_tick_and_recovers(kinova):
    events = [(2.5, lambda st: st["sensors"].muted.add("cam_right_wrist")),
              (3.5, lambda st: st["sensors"].muted.discard("cam_right_wrist"))]
    res = run_closed_loop(kinova, "scripted", latency=0.05, duration=5.5, events=events,
                          max_observation_age_s=0.2, start_move_duration_s=0.3)
    ticks = [t for (t, _s, _r) in res.ticks]
    muted_at = min(t for t in ticks if t >= 2.5)  # events run from the control loop, at its first tick >= 2.5 s
    holds = [(t, r) for (t, s, r) in res.ticks if s == HOLDING and "cam_right_wrist" in r and t >= muted_at]
    assert holds, "muting a camera must make the controller hold"
    t_hold = holds[0][0]
    # held at the first tick past the age limit: the tick before it came no later than 0.2 s after the last
    # frame, which was taken before the mute (judged on the ticks' real times: a loaded machine ticks late)
    assert max(t for t in ticks if t < t_hold) <= muted_at + 0.2 + 1e-6, (muted_at, t_hold)
    c = res.commands
    i = np.searchsorted(c[:, 0], t_hold)
    j = np.searchsorted(c[:, 0], holds[-1][0])
    assert np.ptp(c[i - 1:j + 1, 1:], axis=0).max() == 0.0  # the hold tick repeats the last command
    after = states_after(res.ticks, 3.5)
    assert MOVING_TO_START in after and RUNNING in after  # fresh again: slow move, then running


class NaNOnCall:
    def __init__(self, predict, bad_calls):
        self.predict, self.bad, self.n = predict, set(bad_calls), 0

    def __call__(self, images, qpos, stamp, inpaint_actions=None):
        out = np.array(self.predict(images, qpos, stamp), dtype=np.float64)
        self.n += 1
        if self.n in self.bad:
            out[10:, 2] = np.nan
        return out


def test_nan_chunk_makes_it_hold_and_report(kinova):
    pred = NaNOnCall(ScriptedPolicy(kinova), bad_calls={4})
    res = run_closed_loop(kinova, "scripted", predictor=pred, duration=4.0, execute_horizon=10,
                          start_move_duration_s=0.3)
    rejected = [c for c in res.chunks if c["status"] == "non-finite action in chunk"]
    assert len(rejected) == 1
    holds = [t for (t, s, r) in res.ticks if s == HOLDING and r == "non-finite action in chunk"]
    assert holds and abs(holds[0] - rejected[0]["ready_time"]) < 1e-6
    c = res.commands
    i = np.searchsorted(c[:, 0], holds[0])
    j = np.searchsorted(c[:, 0], holds[-1])
    assert np.ptp(c[i - 1:j + 1, 1:], axis=0).max() == 0.0
    assert RUNNING in states_after(res.ticks, holds[-1])
    assert_commands_safe(kinova, c, 25.0)


def test_fuzzed_chunks_never_leave_the_limits(kinova):
    rng = np.random.default_rng(1)
    D = kinova.dof

    def fuzz(images, qpos, stamp, inpaint_actions=None):
        kind = rng.integers(6)
        if kind == 0:
            return rng.normal(0, 1e6, (64, D))
        if kind == 1:
            a = rng.normal(0, 2, (64, D))
            a[rng.integers(64), rng.integers(D)] = [np.nan, np.inf, -np.inf][rng.integers(3)]
            return a
        if kind == 2:
            return np.zeros((rng.integers(1, 70), D + rng.choice([-1, 1])))
        if kind == 3:  # in range or a little outside it (clipped), any number of rows
            return rng.uniform(kinova.lower * 1.2, kinova.upper * 1.2, (rng.integers(1, 65), D))
        if kind == 4:
            return np.full((64, D), rng.choice([1e6, -1e6]))  # rejected: far outside the limits
        return rng.normal(0, 3, (64, D)) if rng.random() < 0.3 else rng.uniform(kinova.lower, kinova.upper, (64, D))

    publish_rate = 50.0
    ctl = make_controller(kinova, fuzz, PolicyConfig(publish_rate_hz=publish_rate, execute_horizon=4, blend_steps=2,
                                                     start_move_duration_s=0.05, start_velocity_scale=1.0,
                                                     max_observation_age_s=10.0))
    img = np.zeros((8, 8, 3), np.uint8)
    now, cmds, states = 0.0, [], set()
    for k in range(1500):
        now = k / publish_rate
        for role in ctl.window.cameras:
            ctl.window.add_image(role, img, now)
        ctl.window.add_joints("joints", cmds[-1] if cmds else np.zeros(D), now)
        res = ctl.tick(now)
        states.add(res.state)
        if res.command is not None:
            cmds.append(res.command)
        if k % 5 == 0:
            time.sleep(0.001)  # let the worker run
    ctl.close()
    assert len(cmds) > 1000 and {RUNNING, HOLDING, MOVING_TO_START} <= states
    assert_commands_safe(kinova, np.c_[np.zeros(len(cmds)), np.array(cmds)], publish_rate)


def test_pause_holds_and_resume_restarts_with_a_slow_move(kinova):
    events = [(2.0, lambda st: st["controller"].pause()), (3.0, lambda st: st["controller"].resume())]
    res = run_closed_loop(kinova, "scripted", duration=4.5, events=events, start_move_duration_s=0.3)
    paused = [t for (t, s, _) in res.ticks if s == "PAUSED"]
    assert paused and 2.0 <= paused[0] < 2.1 and paused[-1] < 3.05
    c = res.commands
    i, j = np.searchsorted(c[:, 0], paused[0]), np.searchsorted(c[:, 0], paused[-1])
    assert np.ptp(c[i - 1:j + 1, 1:], axis=0).max() == 0.0
    assert [MOVING_TO_START, RUNNING] == sorted({s for s in states_after(res.ticks, 3.0)} & {MOVING_TO_START, RUNNING})


def test_sync_baseline_stalls_for_the_whole_inference(kinova):
    res = run_closed_loop(kinova, "scripted", latency=0.3, duration=4.0, mode="sync")
    gaps = np.diff(res.commands[:, 0])
    assert gaps.max() >= 0.3  # the robot waited for inference, as the official script does
    assert len(res.chunks) >= 2 and all(c["first_action_index"] == 0 for c in res.chunks)


def test_process_inference_option(kinova):
    inference = ProcessInference(make_scripted_policy, ("kinova_gen3",))
    ctl = make_controller(kinova, inference, PolicyConfig(start_move_duration_s=0.05))
    try:
        img = np.zeros((8, 8, 3), np.uint8)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 180:
            now = time.monotonic()
            for role in ctl.window.cameras:
                ctl.window.add_image(role, img, now)
            ctl.window.add_joints("joints", np.zeros(kinova.dof), now)
            r = ctl.tick(now)
            if r.chunk is not None:
                # the first chunk carries the child's start-up; on a loaded machine it can come too late to
                # use, which the scheduler reports as such: any other error is a failure of the process path
                if r.chunk.error is not None and "past its last action" in r.chunk.error:
                    continue
                assert r.chunk.error is None and r.chunk.actions.shape == (64, kinova.dof)
                break
            time.sleep(0.02)
        else:
            raise AssertionError("no chunk from the inference process")
    finally:
        ctl.close()


def test_cli_writes_logs_and_plot(tmp_path, capsys):
    rc = main(["--profile", "aloha", "--checkpoint", "scripted", "--duration", "2.5", "--latency", "0.05",
               "--out", str(tmp_path), "--plot"])
    assert rc == 0
    for name in ("commands.csv", "chunks.csv", "joints.csv", "ticks.csv", "policy.png"):
        assert (tmp_path / name).stat().st_size > 0
    header, cmd = read_csv_table(tmp_path / "commands.csv")
    assert len(header) == 1 + load_profile("aloha").dof and len(cmd) > 10
    assert main(["--checkpoint", "/nonexistent", "--out", str(tmp_path / "x")]) == 2
    assert "vision encoder" in capsys.readouterr().err  # a clear message, no traceback


# ---------------------------------------------------------------- tracking-error watchdog, real FakeRobot
class Sweep:
    """Chunks that agree with each other: every arm joint sweeps at ``speed`` rad/s from where the first
    observation found it, on the clock, so a blocked joint's commands keep moving away from it; grippers
    stay."""

    def __init__(self, profile, speed):
        self.profile, self.speed = profile, speed
        self.t0 = self.q0 = None

    def __call__(self, images, qpos, stamp, inpaint_actions=None):
        p = self.profile
        if self.t0 is None:
            self.t0, self.q0 = stamp, np.asarray(qpos, dtype=np.float64)
        t = stamp - self.t0 + np.arange(64)[:, None] / p.control_frequency
        v = np.where(p.gripper_mask, 0.0, self.speed)
        return np.clip(self.q0 + v * t, p.lower, p.upper)


@pytest.mark.parametrize("profile,joint", [("kinova_gen3", "joint_3"), ("aloha", "right_elbow")])
def test_blocked_joint_holds_where_it_is_until_resume(profile, joint):
    # defaults: tolerance 0.15 rad after 0.3 s of lag, for 0.5 s; 300 ms inference
    robot = load_profile(profile)
    j, v, t_block, t_resume = robot.joint_names.index(joint), 0.3, 1.5, 3.7
    events = [(t_block, lambda st: st["sensors"].block(joint)),
              (t_resume, lambda st: (st["sensors"].unblock(), st["controller"].resume()))]
    res = run_closed_loop(robot, "sweep", predictor=Sweep(robot, v), latency=0.3, duration=5.5, events=events,
                          start_move_duration_s=0.3, start_velocity_scale=1.0)
    ticks, c, meas = res.ticks, res.commands, res.joints
    tick = 1 / robot.control_frequency
    t_b = next(t for t, _, _ in ticks if t >= t_block)  # the event ran just before this tick
    assert [s for t, s, _ in ticks if t < t_b][-1] == RUNNING  # blocked while running
    trips = [(t, r) for t, s, r in ticks if s == HOLDING and TRACKING in r and t < t_resume]
    assert trips, "a blocked joint must make the controller hold"
    assert not any(TRACKING in r for t, _, r in ticks if t < t_b)  # 300 ms inference: no false alarm
    t_trip, reason = trips[0]
    assert re.match(rf"{joint} is \d\.\d\d rad behind its command for 0\.[56] s: ", reason.replace(
        " (tolerance 0.15 rad after 0.3 s of lag)", "")), reason
    # within the configured time: not before its command was 0.15 rad away for 0.5 s; at the latest 0.5 s
    # after every command of the last 0.3 s (+ the joint state's age) was 0.15 rad + one tick away
    q_b = meas[np.searchsorted(meas[:, 0], t_b) + 2, j + 1]
    away = c[(c[:, 0] > t_b) & (np.abs(c[:, j + 1] - q_b) > 0.15), 0]
    lead = robot.max_velocity[j] * tick
    assert away[0] + 0.5 - tick <= t_trip <= t_b + 0.3 + 0.05 + (0.15 + lead) / v + 0.5 + 0.25
    # held where it is measured, and nothing moves (commands nor arm) until resume()
    i = np.searchsorted(c[:, 0], t_trip)
    assert c[i, 0] == pytest.approx(t_trip) and c[i, j + 1] == pytest.approx(q_b, abs=1e-9)
    m = (meas[:, 0] > t_trip + 0.1) & (meas[:, 0] < t_resume)
    assert np.ptp(meas[m, 1:], axis=0).max() < 1e-9
    k = np.searchsorted(c[:, 0], t_resume)
    assert np.ptp(c[i:k, 1:], axis=0).max() == 0.0
    assert all(s == HOLDING and r == reason for t, s, r in ticks if t_trip <= t < t_resume)
    # resume(): the slow move, then running again; every step inside the limits but the one to the arm
    after = states_after(ticks, t_resume)
    assert MOVING_TO_START in after and after[-1] == RUNNING
    assert not any(TRACKING in r for t, _, r in ticks if t > t_trip and r != reason)
    assert_commands_safe(robot, c[:i], robot.control_frequency)
    assert_commands_safe(robot, c[i:], robot.control_frequency)


@pytest.mark.parametrize("profile", ["kinova_gen3", "aloha"])
def test_normal_closed_loop_runs_never_trip_the_tracking_watchdog(profile):
    # 300 ms inference and an arm controller that acts on each command 0.15 s late (a real controller's lag)
    robot = load_profile(profile)
    res = run_closed_loop(robot, "scripted", latency=0.3, duration=3.5, command_delay_s=0.15,
                          start_move_duration_s=0.3, start_velocity_scale=1.0, execute_horizon=24)
    assert RUNNING in [s for _, s, _ in res.ticks]
    assert len([c for c in res.chunks if c["status"] == "used"]) >= 3
    assert not any(TRACKING in r for _, _, r in res.ticks)
    # the arm did lag: measured joints behind the commands by about the delay times the speed
    c, m = res.commands, res.joints
    lagged = np.array([np.interp(c[:, 0] - 0.15, c[:, 0], c[:, k + 1]) for k in range(robot.dof)]).T
    measured = np.array([np.interp(c[:, 0], m[:, 0], m[:, k + 1]) for k in range(robot.dof)]).T
    late = c[:, 0] > 1.0
    assert np.abs(measured - lagged)[late].mean() < np.abs(measured - c[:, 1:])[late].mean()


def test_stopped_arm_controller_holds_with_every_arm_joint_named(kinova):
    # the arm's controller stops (faulted, deactivated, or we publish on a topic nobody listens to):
    # joint states keep coming, nothing moves
    def stop(st):
        st["sensors"].controller_stopped = True

    res = run_closed_loop(kinova, "sweep", predictor=Sweep(kinova, 0.3), latency=0.05, duration=3.5,
                          events=[(1.2, stop)], start_move_duration_s=0.3, start_velocity_scale=1.0)
    trips = [(t, r) for t, s, r in res.ticks if s == HOLDING and TRACKING in r]
    assert trips and 1.2 + 0.5 <= trips[0][0] <= 1.2 + 0.35 + (0.15 + 0.035) / 0.3 + 0.5 + 0.25
    named = set(re.findall(r"joint_\d", trips[0][1]))
    assert named == {f"joint_{k}" for k in range(1, 8)}  # the gripper is not watched
    i = np.searchsorted(res.commands[:, 0], trips[0][0])
    assert np.ptp(res.commands[i:, 1:], axis=0).max() == 0.0
