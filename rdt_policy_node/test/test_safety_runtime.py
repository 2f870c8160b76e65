"""Safety audit of the runtime: what reaches the arm when the model, the worker, the sensors or the clock misbehave.

Each test drives the real PolicyController (real worker thread) with simulated time: a Rig feeds sensors
stamped with the simulated clock, waits for the worker before each tick (so results do not depend on the
machine's speed), ticks, and lets the simulated arm follow every published command exactly.
"""
import collections
import threading

import numpy as np
import pytest
import torch

from rdt_core.robots import load_profile
from rdt_policy_node.config import PolicyConfig
from rdt_policy_node.runtime import HOLDING, MOVING_TO_START, PAUSED, RUNNING, WARMING_UP, make_controller


@pytest.fixture(scope="module")
def kinova():
    return load_profile("kinova_gen3")


class SimClock:
    """A settable clock, used as the window's arrival clock (a local monotonic clock)."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class Rig:
    """Controller + simulated arm + sensors, in simulated time. The arm follows every published command
    exactly, ``delay_ticks`` ticks late; joints in ``stuck`` do not move (blocked, or not listening)."""

    def __init__(self, profile, predictor, rate=50.0, q0=None, **kw):
        opts = dict(publish_rate_hz=rate, execute_horizon=16, blend_steps=2, start_move_duration_s=0.2,
                    start_velocity_scale=1.0, max_observation_age_s=0.2, initial_latency_s=0.05)
        opts.update(kw)
        self.ctl = make_controller(profile, predictor, PolicyConfig(**opts))
        self.mono = SimClock()  # local arrival clock: always moves forward with the simulation
        self.ctl.window._arrival_clock = self.mono
        self.profile, self.rate = profile, rate
        self.q = np.clip(np.zeros(profile.dof), profile.lower, profile.upper) if q0 is None else \
            np.asarray(q0, dtype=np.float64)
        self.now = 0.0
        self.log = []  # (now, TickResult)
        self.muted = set()
        self.nan_joints = False  # the joint driver reports NaN positions
        self.sensor_offset = 0.0  # sensor clocks ahead (+) of the node's
        self.fed = {}  # stream -> arrival-clock time of its last good message
        self.stuck = set()
        self.delay_ticks = 0
        self._sent = collections.deque()

    def feed(self):
        for role in self.ctl.window.cameras:
            if role not in self.muted:
                self.ctl.window.add_image(role, np.zeros((8, 8, 3), np.uint8), self.now + self.sensor_offset)
                self.fed[role] = self.mono.t
        for stream, idx in self.ctl.window.joint_streams.items():
            if stream not in self.muted:
                q = self.q[idx].copy()
                if self.nan_joints:
                    q[0] = np.nan
                self.ctl.window.add_joints(stream, q, self.now + self.sensor_offset)
                if not self.nan_joints:
                    self.fed[stream] = self.mono.t

    def tick(self, dt=None, wait=True):
        dt = 1.0 / self.rate if dt is None else dt
        self.now += dt
        self.mono.t += max(dt, 1.0 / self.rate)
        self.feed()
        if wait:
            self.ctl.scheduler.wait(5.0)
        res = self.ctl.tick(self.now)
        self.log.append((self.now, res))
        if res.command is not None and res.publish:
            self._sent.append(res.command.copy())
        while len(self._sent) > self.delay_ticks:
            q = self._sent.popleft()
            for j in self.stuck:
                q[j] = self.q[j]
            self.q = q
        return res

    def run(self, seconds, **kw):
        out = []
        for _ in range(int(round(seconds * self.rate))):
            out.append(self.tick(**kw))
        return out

    def commands(self):
        return np.array([(t, *r.command) for t, r in self.log if r.command is not None and r.publish])

    def close(self):
        self.ctl.close()


def ramp_predictor(profile, speed=0.3):
    """A smooth in-range chunk moving every arm joint at ``speed`` of its velocity limit from qpos."""
    def predict(images, qpos, stamp, inpaint_actions=None):
        t = np.arange(64)[:, None] / profile.control_frequency
        return np.clip(np.asarray(qpos, float) + speed * profile.max_velocity * t, profile.lower, profile.upper)
    return predict


def assert_safe(profile, rig, publish_rate):
    cmd = rig.commands()
    q = cmd[:, 1:]
    assert np.all(np.isfinite(q))
    assert np.all(q >= profile.lower - 1e-12) and np.all(q <= profile.upper + 1e-12)
    steps = np.abs(np.diff(q, axis=0))
    assert np.all(steps <= profile.max_velocity / publish_rate + 1e-9)


# ---------------------------------------------------------------- a worker that hangs or fails
def test_hung_inference_holds_with_a_reason_once_the_chunk_is_used_up(kinova):
    release = threading.Event()
    calls = []

    def predict(images, qpos, stamp, inpaint_actions=None):
        calls.append(stamp)
        if len(calls) > 2:
            release.wait(30)  # the third inference never returns (a hung GPU, a deadlock)
        return ramp_predictor(kinova)(images, qpos, stamp)

    rig = Rig(kinova, predict)
    try:
        for _ in range(int(4.0 * rig.rate)):
            rig.tick(wait=len(calls) <= 2)
        states = [r.state for _, r in rig.log]
        assert RUNNING in states and states[-1] == HOLDING
        # the chunk running when the worker hung: its last row is at obs + 63 / 25 s; hold on the next tick
        running = [t for t, r in rig.log if r.state == RUNNING]
        first_hold = next(t for t, r in rig.log if r.state == HOLDING and t > running[0])
        assert first_hold - running[-1] == pytest.approx(1 / rig.rate)
        reasons = [r.hold_reason for t, r in rig.log if t >= first_hold]
        assert all("ended with no new chunk ready" in r for r in reasons)
        assert "inference has not returned for" in reasons[-1]  # after the timeout the status says it hung
        c = rig.commands()
        after = c[c[:, 0] >= first_hold, 1:]
        assert np.ptp(after, axis=0).max() == 0.0  # standing still, not wandering on an old chunk
    finally:
        release.set()
        rig.close()


def test_chunk_arriving_after_its_horizon_never_sets_the_start_target(kinova):
    # the very first inference on a GPU can take seconds (lazy CUDA init, autotuning): the chunk then
    # describes a world several seconds old and must not pick the target of the slow move
    rig = Rig(kinova, ramp_predictor(kinova))
    try:
        rig.tick()  # request on the first observation
        assert rig.ctl.scheduler.busy
        rig.ctl.scheduler.wait(5.0)
        rig.now += 4.0  # 4 s > 64 rows at 25 Hz
        rig.mono.t += 4.0
        res = rig.tick()
        assert res.chunk is not None and "past its last action" in res.chunk.error
        assert res.state in (WARMING_UP, HOLDING) and res.command is None and "past its last action" in res.hold_reason
        rig.run(1.0)  # a fresh chunk then starts normally
        assert {MOVING_TO_START, RUNNING} <= {r.state for _, r in rig.log}
    finally:
        rig.close()


def test_chunk_in_flight_during_a_pause_does_not_start_the_resume(kinova):
    gate = threading.Event()
    gate.set()

    def predict(images, qpos, stamp, inpaint_actions=None):
        gate.wait(30)
        return ramp_predictor(kinova)(images, qpos, stamp)

    rig = Rig(kinova, predict)
    try:
        rig.run(1.5)
        assert rig.log[-1][1].state == RUNNING
        gate.clear()
        while not rig.ctl.scheduler.busy:
            rig.tick(wait=False)
        stale_seq = rig.ctl.scheduler._pending[0].seq
        rig.ctl.pause()
        rig.run(0.2, wait=False)
        rig.ctl.resume()
        gate.set()
        rig.ctl.scheduler.wait(5.0)
        res = rig.tick()
        assert res.chunk is not None and res.chunk.seq == stale_seq
        assert "requested before the hold" in res.chunk.error and res.state == HOLDING
        rig.run(1.0)
        assert [s for s in (MOVING_TO_START, RUNNING) if s in {r.state for _, r in rig.log[-50:]}] == \
            [MOVING_TO_START, RUNNING]
        assert_safe(kinova, rig, rig.rate)
    finally:
        gate.set()
        rig.close()


@pytest.mark.parametrize("bad", ["grad_tensor", "bf16_tensor", "complex", "bool", "none"])
def test_whatever_the_predictor_returns_the_tick_does_not_raise(kinova, bad):
    def predict(images, qpos, stamp, inpaint_actions=None):
        good = ramp_predictor(kinova)(images, qpos, stamp)
        return {"grad_tensor": lambda: torch.tensor(good, requires_grad=True),
                "bf16_tensor": lambda: torch.tensor(good).bfloat16(),
                "complex": lambda: good + 1j,
                "bool": lambda: good > 0,
                "none": lambda: None}[bad]()

    rig = Rig(kinova, predict)
    try:
        rig.run(0.5)
        chunks = [r.chunk for _, r in rig.log if r.chunk is not None]
        assert chunks and all("not a numeric array" in c.error or "shape" in c.error for c in chunks)
        assert all(r.state in (WARMING_UP, HOLDING) for _, r in rig.log)
        assert all(r.command is None for _, r in rig.log)
    finally:
        rig.close()


def test_broken_worker_is_reported_not_raised(kinova):
    rig = Rig(kinova, ramp_predictor(kinova))
    try:
        rig.run(1.0)
        rig.ctl.scheduler.inference.close()  # a worker that can take no more work (like a dead process pool)
        rig.run(1.0)  # must not raise out of the control tick
        assert rig.log[-1][1].state == HOLDING
        assert any("inference failed" in r.hold_reason for _, r in rig.log)
    finally:
        rig.close()


def test_chunk_far_outside_the_limits_is_rejected_not_clipped(kinova):
    # e.g. a checkpoint trained in degrees on a radian profile: clipping would drive joints into their stops
    rig = Rig(kinova, lambda images, qpos, stamp, inpaint_actions=None: np.degrees(
        ramp_predictor(kinova)(images, qpos, stamp) + 0.5))
    try:
        rig.run(0.5)
        assert all(r.command is None for _, r in rig.log)
        assert "outside the joint limits" in rig.log[-1][1].hold_reason
        assert "normalisation" in rig.log[-1][1].hold_reason
    finally:
        rig.close()


# ---------------------------------------------------------------- sensors and clocks
def test_sensors_with_a_clock_ahead_still_go_stale(kinova):
    rig = Rig(kinova, ramp_predictor(kinova))
    rig.sensor_offset = 0.15  # the sensor PC's clock is ahead (within the age limit): stamps stay "fresh" longer
    try:
        rig.run(1.5)
        assert rig.log[-1][1].state == RUNNING
        rig.muted.add("cam_high")
        t_mute = rig.now
        rig.run(0.5)
        holds = [t for t, r in rig.log if r.state == HOLDING and "cam_high" in r.hold_reason]
        assert holds and holds[0] - t_mute <= 0.2 + 1.5 / rig.rate  # by arrival time, whatever the stamps say
    finally:
        rig.close()


def test_sensors_stamped_far_in_the_future_hold_and_name_the_clock_problem(kinova):
    rig = Rig(kinova, ramp_predictor(kinova))
    rig.sensor_offset = 5.0  # the sensor PC's clock is 5 s ahead: no stamp would look stale for 5 s
    try:
        rig.run(1.0)
        assert all(r.command is None for _, r in rig.log)
        assert "in the future" in rig.log[-1][1].hold_reason and "chrony" in rig.log[-1][1].hold_reason
    finally:
        rig.close()


def test_clock_going_backwards_holds_and_says_why(kinova):
    rig = Rig(kinova, ramp_predictor(kinova))
    try:
        rig.run(1.5)
        assert rig.log[-1][1].state == RUNNING
        before = rig.q.copy()
        res = rig.tick(dt=-2.0)  # the system clock is stepped back (NTP)
        assert res.state == HOLDING and "backwards" in res.hold_reason
        np.testing.assert_array_equal(res.command, before)
        rig.run(1.5)
        assert rig.log[-1][1].state == RUNNING  # recovers through a fresh chunk and a slow move
        assert_safe(kinova, rig, rig.rate)
    finally:
        rig.close()


def test_velocity_limit_holds_for_irregular_ticks(kinova):
    # a command stream's speed is step / real interval: ticks that come early must move less
    rng = np.random.default_rng(3)
    rig = Rig(kinova, ramp_predictor(kinova, speed=2.0))  # asks for twice the limit
    try:
        rig.run(1.0)
        for _ in range(300):
            rig.tick(dt=float(rng.choice([0.2, 0.5, 1.0, 3.0])) / rig.rate)
        c = rig.commands()
        dt = np.clip(np.diff(c[:, 0]), 0, 1 / rig.rate)
        steps = np.abs(np.diff(c[:, 1:], axis=0))
        assert np.all(steps <= kinova.max_velocity * dt[:, None] + 1e-9)
        assert RUNNING in {r.state for _, r in rig.log[-300:]}
    finally:
        rig.close()


def test_measured_position_outside_the_limits_is_never_jumped_into(kinova):
    q0 = np.zeros(kinova.dof)
    q0[0] = 3.1  # Kinova joint_1 is continuous: the driver reports up to pi, the profile stops at 3.0
    rig = Rig(kinova, ramp_predictor(kinova), q0=q0)
    try:
        rig.run(1.0)
        assert all(r.command is None for _, r in rig.log)
        assert "joint_1 at 3.100 outside" in rig.log[-1][1].hold_reason
    finally:
        rig.close()


def test_non_finite_joint_state_stops_motion_and_is_named(kinova):
    rig = Rig(kinova, ramp_predictor(kinova))
    try:
        rig.run(1.5)
        assert rig.log[-1][1].state == RUNNING
        rig.muted.add("joints")
        t_bad = rig.now
        for _ in range(25):
            rig.ctl.window.add_joints("joints", np.r_[np.nan, rig.q[1:]], rig.now)
            rig.tick()
        holds = [(t, r.hold_reason) for t, r in rig.log if r.state == HOLDING and t > t_bad]
        assert holds and holds[0][0] - t_bad <= 0.2 + 1.5 / rig.rate
        assert "joints" in holds[0][1] and "non-finite" in holds[0][1]
    finally:
        rig.close()


def test_hold_and_resume_after_the_arm_was_moved_keep_it_where_it_is(kinova):
    rig = Rig(kinova, ramp_predictor(kinova))
    try:
        rig.run(1.5)
        rig.ctl.pause()
        rig.run(0.3)
        held = rig.q.copy()
        # while paused, joint_2 is moved by something else (a controller that faulted and was restarted,
        # by hand); the gripper is short of its command (it holds an object)
        rig.q[1] += 0.4
        rig.q[-1] = held[-1] - 0.2
        res = rig.tick()
        assert res.state == PAUSED and "re-synced joint_2" in res.hold_reason and res.plan_changed
        assert res.command[1] == pytest.approx(held[1] + 0.4)  # held where it is: no snap back by 0.4 rad
        assert res.command[-1] == held[-1]  # the gripper keeps its command: the grasp is not loosened
        np.testing.assert_array_equal(np.delete(res.command, 1), np.delete(held, 1))
        rig.q[-1] = held[-1] - 0.2
        rig.ctl.resume()
        resumed = len(rig.log)
        rig.run(1.0)
        i = next(k for k, (_, r) in enumerate(rig.log) if r.state == MOVING_TO_START and k >= resumed)
        assert rig.log[i][1].command[1] == pytest.approx(held[1] + 0.4)  # the slow move starts there too
        later = rig.commands()
        later = later[later[:, 0] > rig.log[i - 1][0]]
        assert np.all(np.abs(np.diff(later[:, 1:], axis=0)) <= kinova.max_velocity / rig.rate + 1e-9)
    finally:
        rig.close()


# ---------------------------------------------------------------- fuzz: everything at once, seeded
class FuzzPredictor:
    """Good chunks most of the time; otherwise NaN, inf, 1e6, wrong shapes and dtypes, exceptions, jumps
    between far-apart in-range rows, or a hang until ``release`` is set."""

    def __init__(self, profile, seed):
        self.profile, self.rng = profile, np.random.default_rng(seed)  # used only in the worker thread
        self.release = threading.Event()
        self.release.set()

    def __call__(self, images, qpos, stamp, inpaint_actions=None):
        self.release.wait(60)
        p, rng, D = self.profile, self.rng, self.profile.dof
        good = ramp_predictor(p, speed=float(rng.uniform(0.1, 1.5)))(images, qpos, stamp)
        kind = rng.integers(12)
        if kind == 0:
            good[rng.integers(64), rng.integers(D)] = [np.nan, np.inf, -np.inf][rng.integers(3)]
        elif kind == 1:
            good[rng.integers(64):] = rng.choice([1e6, -1e6])
        elif kind == 2:
            return np.zeros((int(rng.integers(0, 70)), D + int(rng.choice([-1, 1]))))
        elif kind == 3:
            return good[: rng.integers(1, 64)]  # short chunk: ends early
        elif kind == 4:
            return rng.uniform(p.lower, p.upper, (64, D))  # in range, huge jumps between rows
        elif kind == 5:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        elif kind == 6:
            return torch.tensor(good, requires_grad=True)
        elif kind == 7:
            return good.astype(np.float16)
        return good


@pytest.mark.parametrize("seed,dry_run,profile", [(0, False, "kinova_gen3"), (1, False, "aloha"),
                                                  (2, True, "kinova_gen3")])
def test_fuzz_every_command_stays_inside_the_limits(seed, dry_run, profile):
    kinova = load_profile(profile)  # (either profile)
    rng = np.random.default_rng(seed)
    pred = FuzzPredictor(kinova, seed + 100)
    rate, max_age = 50.0, 0.2
    rig = Rig(kinova, pred, rate=rate, max_observation_age_s=max_age, dry_run=dry_run,
              chunking_mode=["crossfade", "rtc"][seed % 2], execute_horizon=int(rng.integers(4, 65)),
              blend_steps=int(rng.integers(0, 6)), start_move_duration_s=0.1, tracking_timeout_s=0.2,
              tracking_tolerance=0.05, tracking_lag_s=0.1)
    period = 1 / rate
    until = {"mute": (0.0, None), "pause": 0.0, "hang": 0.0, "nan": 0.0, "stuck": 0.0}
    arm_joints = np.flatnonzero(~kinova.gripper_mask)
    prev_cmd, prev_t, seen, trips, last_stuck = None, None, set(), 0, None
    try:
        for _ in range(2500):
            t = rig.mono.t
            if t >= until["mute"][0] and until["mute"][1] is not None:
                rig.muted.discard(until["mute"][1])
                until["mute"] = (0.0, None)
            if until["mute"][1] is None and rng.random() < 0.004:
                stream = str(rng.choice(rig.ctl.window.streams))
                rig.muted.add(stream)
                until["mute"] = (t + rng.uniform(0.05, 0.6), stream)
            if rig.ctl.safety.paused and t >= until["pause"]:
                rig.ctl.resume()
            elif not rig.ctl.safety.paused and rng.random() < 0.003:
                rig.ctl.pause()
                until["pause"] = t + rng.uniform(0.05, 0.5)
            if not pred.release.is_set() and t >= until["hang"]:
                pred.release.set()
            elif pred.release.is_set() and rng.random() < 0.002:
                pred.release.clear()
                until["hang"] = t + rng.uniform(0.5, 3.0)
            if rig.stuck and t >= until["stuck"]:
                rig.stuck = set()
            elif not rig.stuck and rng.random() < 0.004:  # a joint blocked: the tracking watchdog
                rig.stuck = {int(rng.choice(arm_joints))}
                last_stuck = kinova.joint_names[next(iter(rig.stuck))]
                until["stuck"] = t + rng.uniform(0.3, 2.0)
            if rig.ctl.fault and rng.random() < 0.02:
                rig.ctl.resume()  # the operator
            rig.nan_joints = t < until["nan"]
            if not rig.nan_joints and rng.random() < 0.003:
                until["nan"] = t + rng.uniform(0.05, 0.4)
            r = rng.random()
            dt = period * (1.0 if r < 0.85 else 0.3 if r < 0.9 else 2.5 if r < 0.95 else 10.0 if r < 0.99 else
                           -rng.uniform(2.5, 50))
            fault_before = rig.ctl.fault
            res = rig.tick(dt=dt, wait=pred.release.is_set())
            seen.add(res.state)
            tripped = bool(rig.ctl.fault) and not fault_before
            if res.state in (HOLDING, PAUSED):
                assert res.hold_reason, f"{res.state} without a reason"
            assert res.publish is (not dry_run and res.command is not None) or res.command is None
            if res.command is None:
                continue
            cmd = res.command
            assert np.all(np.isfinite(cmd)) and np.all(cmd >= kinova.lower) and np.all(cmd <= kinova.upper)
            measured = rig.ctl.window.latest_qpos()
            if tripped:  # holds every arm joint where it is measured (a step back to the arm), grippers keep
                trips += 1
                assert res.state == HOLDING and TRACKING in res.hold_reason and res.plan_changed
                assert res.hold_reason.startswith(f"{last_stuck} is ")  # no false alarm: the blocked joint
                np.testing.assert_array_equal(cmd[arm_joints], rig.ctl.safety.clip(measured)[arm_joints])
                assert np.array_equal(cmd[kinova.gripper_mask], prev_cmd[kinova.gripper_mask])
            if prev_cmd is not None:
                allowed = kinova.max_velocity * min(max(rig.now - prev_t, 0.0), period)
                jumped = np.abs(cmd - prev_cmd) > allowed + 1e-9
                # faster only to where an arm joint is measured: a tracking hold, or a hold re-synced to a
                # joint that something else moved (here: a stuck one)
                assert not jumped.any() or tripped or ("re-synced" in res.hold_reason and res.plan_changed), \
                    (res.state, res.hold_reason)
                assert np.array_equal(cmd[jumped], rig.ctl.safety.clip(measured)[jumped])
                assert not (jumped & kinova.gripper_mask).any()
            stale = [s for s in rig.ctl.window.streams if rig.mono.t - rig.fed.get(s, -np.inf) > max_age + 1e-9]
            if stale and prev_cmd is not None:  # hold within one tick: nothing moves (but to a stuck joint)
                moved = cmd != prev_cmd
                assert res.state in (HOLDING, PAUSED), (stale, res.state)
                assert not moved.any() or "re-synced" in res.hold_reason or tripped, (stale, res.hold_reason)
                assert np.array_equal(cmd[moved], measured[moved])
            prev_cmd, prev_t = cmd.copy(), rig.now
        assert {RUNNING if not dry_run else "DRY_RUN", HOLDING, MOVING_TO_START} <= seen
        assert (trips > 0) is not dry_run  # the watchdog tripped among everything else (never in dry run)
    finally:
        pred.release.set()
        rig.close()


# ---------------------------------------------------------------- tracking-error watchdog
TRACKING = "behind its command"


def sweep_predictor(profile, speed):
    """Chunks that agree with each other: every joint sweeps at ``speed`` (per joint or one) of its velocity limit from
    where the first observation found it, on the clock (a blocked joint does not hold its commands back,
    unlike ramp_predictor's chunks, which start from the measured position)."""
    first = {}

    def predict(images, qpos, stamp, inpaint_actions=None):
        first.setdefault("t", stamp)
        first.setdefault("q", np.asarray(qpos, float))
        t = stamp - first["t"] + np.arange(64)[:, None] / profile.control_frequency
        away = np.where(first["q"] > (profile.lower + profile.upper) / 2, -1.0, 1.0)  # towards the far limit
        return np.clip(first["q"] + away * speed * profile.max_velocity * t, profile.lower, profile.upper)
    return predict


def test_arm_that_stops_following_trips_holds_where_it_is_and_waits_for_resume(kinova):
    # joint_3 is blocked (a collision) while the policy moves every arm joint at half its velocity limit
    rig = Rig(kinova, sweep_predictor(kinova, speed=0.5), tracking_tolerance=0.1, tracking_lag_s=0.2,
              tracking_timeout_s=0.3)
    try:
        rig.run(1.0)
        assert rig.log[-1][1].state == RUNNING
        rig.stuck.add(2)
        t_block, q_block = rig.now, rig.q.copy()
        rig.run(1.0)
        trips = [(t, r) for t, r in rig.log if TRACKING in r.hold_reason]
        assert trips, "a blocked joint must stop the policy"
        t_trip, res = trips[0]
        # off track once every command of the last 0.2 s is more than 0.1 rad + one tick away, then 0.3 s
        v, tick = 0.5 * kinova.max_velocity[2], 1 / rig.rate
        expected = t_block + 0.2 + (0.1 + kinova.max_velocity[2] * tick) / v + 0.3
        assert expected - 2 * tick <= t_trip <= expected + 2 * tick
        assert res.state == HOLDING and res.hold_reason.startswith("joint_3 is ") and "for 0.3 s" in res.hold_reason
        assert res.plan_changed and "(+" not in res.hold_reason  # only joint_3 is named
        # every arm joint holds where it is measured (not at the commands it was chasing), the gripper keeps
        # its command
        arm = ~kinova.gripper_mask
        before = rig.log[[t for t, _ in rig.log].index(t_trip) - 1][1].command
        np.testing.assert_array_equal(res.command[arm], rig.q[arm])
        assert res.command[2] == q_block[2] and res.command[-1] == before[-1]
        # latched: nothing moves and no chunk is asked for, however long it waits
        n = len(rig.log)
        rig.stuck.clear()  # even once the obstacle is gone
        rig.run(2.0)
        later = [r for _, r in rig.log[n:]]
        assert all(r.state == HOLDING and r.hold_reason == res.hold_reason for r in later)
        assert all(np.array_equal(r.command, res.command) for r in later)
        assert not rig.ctl.scheduler.busy and all(r.chunk is None for r in later[5:])
        rig.ctl.pause()
        rig.run(0.1)
        assert rig.log[-1][1].state == PAUSED and TRACKING in rig.log[-1][1].hold_reason
        assert rig.ctl.resume() == res.hold_reason  # the operator's resume clears it
        n = len(rig.log)
        rig.run(3.0)
        states = [r.state for _, r in rig.log[n:]]
        assert MOVING_TO_START in states and states[-1] == RUNNING
        assert not any(TRACKING in r.hold_reason for _, r in rig.log[n:])
        after = np.array([r.command for _, r in rig.log[n - 1:]])  # from the held pose, within the limits
        assert np.all(np.abs(np.diff(after, axis=0)) <= kinova.max_velocity / rig.rate + 1e-9)
    finally:
        rig.close()


@pytest.mark.parametrize("delay_ticks,trips", [(12, False), (30, True)])
def test_arm_following_late_trips_only_beyond_the_lag_allowance(kinova, delay_ticks, trips):
    # the arm follows 0.24 s (0.6 s) late at the full velocity limit: the default 0.3 s lag allowance
    # (+ 0.15 rad) covers the first, not the second
    rig = Rig(kinova, sweep_predictor(kinova, speed=1.0))
    rig.delay_ticks = delay_ticks
    try:
        rig.run(3.0)
        tripped = any(TRACKING in r.hold_reason for _, r in rig.log)
        assert tripped is trips
        assert RUNNING in {r.state for _, r in rig.log}
    finally:
        rig.close()


@pytest.mark.parametrize("profile", ["kinova_gen3", "aloha"])
def test_a_stalled_gripper_is_not_a_tracking_fault_unless_asked(profile):
    robot = load_profile(profile)
    grippers = set(np.flatnonzero(robot.gripper_mask))
    results = {}
    for watch_grippers in (False, True):
        # grippers cross their range in 3 s
        speed = np.where(robot.gripper_mask, (robot.upper - robot.lower) / 3.0 / robot.max_velocity, 0.3)
        rig = Rig(robot, sweep_predictor(robot, speed=speed), tracking_grippers=watch_grippers,
                  tracking_timeout_s=0.2)
        try:
            rig.run(0.6)
            rig.stuck |= grippers  # closed on an object: short of the command
            rig.run(2.0)
            results[watch_grippers] = [r.hold_reason for _, r in rig.log if TRACKING in r.hold_reason]
        finally:
            rig.close()
    assert results[False] == []
    names = [robot.joint_names[j] for j in grippers]
    assert results[True] and results[True][0].split(" is ")[0] in names and " rad" not in results[True][0]


@pytest.mark.parametrize("options", [{"dry_run": True}, {"tracking_watchdog": False}])
def test_watchdog_off_in_dry_run_and_when_disabled(kinova, options):
    rig = Rig(kinova, sweep_predictor(kinova, speed=0.5), tracking_timeout_s=0.0, **options)
    rig.stuck |= set(range(kinova.dof))  # dry run: the arm does not move anyway
    try:
        rig.run(2.0)
        assert not any(TRACKING in r.hold_reason for _, r in rig.log)
        assert {"DRY_RUN", RUNNING} & {r.state for _, r in rig.log}
    finally:
        rig.close()
