"""What a joint_trajectory_controller makes of the policy node's JointTrajectory stream (issue 13 item 7).

The runtime (make_controller, the random tiny RDT on CPU, simulated time at 100 Hz, Gen3 profile) feeds
two ways of sending trajectories, and each stream goes to rdt_core's model of ros2_controllers'
joint_trajectory_controller (Jazzy 4.42: 1 kHz, interpolate_from_desired_state, the message taken up
0.5-5 ms after it is sent); the arm follows the controller's command:
  ours      runtime.streaming.TrajectoryStream: positions + velocities, spliced C1, at rest at the end
  baseline  the previous backend: positions only, 0.5 s of rate-limited points stamped 0.1 s ahead, a new
            one at every plan change and when a third of the horizon is left, a hold as one point
Printed per stream: the controller's largest reference speed over the limit, the largest velocity step
in one controller update, the largest acceleration between updates, trajectories sent, and how many a
stock controller (allow_nonzero_velocity_at_trajectory_end: false) would reject.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from rdt_core.joint_trajectory import SplineTrajectory, TrajectoryController
from rdt_core.robots import load_profile
from rdt_policy_node.config import PolicyConfig
from rdt_policy_node.runtime import make_controller
from rdt_policy_node.runtime.streaming import TrajectoryStream

RATE_HZ, PERIOD_S, HORIZON_S, LEAD_S = 100.0, 0.001, 0.5, 0.1


class Baseline:
    """The previous JointTrajectoryOutput: positions only, rate-limited from the last command."""

    def __init__(self, safety):
        self.safety, self.sent_until = safety, -math.inf

    def next(self, now, result, ctl):
        if result.command is None or not (result.plan_changed or now + HORIZON_S / 3 >= self.sent_until):
            return None
        step = 1.0 / RATE_HZ
        times = step * np.arange(1, int(round(HORIZON_S / step)) + 1)
        if ctl.phase in ("HOLDING", "PAUSED"):
            self.sent_until = math.inf
            return SplineTrajectory(now + LEAD_S, [0.01], ctl.last_command[None])
        targets, prev = ctl.targets(now + times), ctl.last_command.copy()
        max_step = self.safety.max_velocity * self.safety.velocity_scale * step
        points = []
        for target in targets:
            prev = self.safety.clip(prev + np.clip(target - prev, -max_step, max_step))
            points.append(prev)
        keep = times > LEAD_S + 1e-6
        self.sent_until = now + times[-1]
        return SplineTrajectory(now + LEAD_S, times[keep] - LEAD_S, np.array(points)[keep])


def run(profile, predict, stream_kind: str, seconds: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    clock = {"t": 1000.0}
    arm = np.flatnonzero(~profile.gripper_mask)
    ctl = make_controller(profile, predict, PolicyConfig(publish_rate_hz=RATE_HZ, execute_horizon=48, blend_steps=8,
                                                         start_move_duration_s=1.0, tracking_watchdog=False),
                          arrival_clock=lambda: clock["t"])
    stream = (TrajectoryStream(ctl.safety, step_s=1.0 / RATE_HZ, horizon_s=HORIZON_S, lead_s=LEAD_S,
                               controller_period_s=PERIOD_S, joints=arm) if stream_kind == "ours"
              else Baseline(ctl.safety))
    q = np.clip(np.zeros(profile.dof), profile.lower, profile.upper)
    jtc = TrajectoryController(q[arm], update_period=PERIOD_S)
    pending, sent, rejected, last = [], 0, 0, 0.0
    now = t_ctl = clock["t"]
    velocities = []
    try:
        while now < 1000.0 + seconds:
            for role in ctl.window.cameras:
                ctl.window.add_image(role, np.zeros((96, 128, 3), np.uint8), now)
            ctl.window.add_joints("joints", q, now)
            ctl.scheduler.wait(30.0)
            res = ctl.tick(now)
            traj = stream.next(now, res, ctl)
            if traj is not None:
                sent += 1
                v = traj.velocities
                rejected += int(v is not None and np.any(np.abs(v[-1, arm]) > np.finfo(np.float32).eps))
                last = max(now + rng.uniform(0.0005, 0.005), last)
                pending.append((last, SplineTrajectory(traj.start, traj.times, traj.positions[:, arm],
                                                       None if v is None else v[:, arm])))
            nxt = now + 1.0 / RATE_HZ
            while t_ctl < nxt:
                while pending and pending[0][0] <= t_ctl:
                    jtc.receive(pending.pop(0)[1], t_ctl)
                command = jtc.desired(t_ctl + PERIOD_S)
                velocities.append(command.velocities)
                t_ctl += PERIOD_S
            q = q.copy()
            q[arm] = command.positions
            now = clock["t"] = nxt
    finally:
        ctl.close()
    v = np.array(velocities)
    dv = np.abs(np.diff(v, axis=0))
    vmax = profile.max_velocity[arm]
    return {"speed_over_limit": float((np.abs(v) / vmax).max()), "max_velocity_step": float(dv.max()),
            "max_accel": float(dv.max() / PERIOD_S), "sent": sent, "rejected_by_stock": rejected}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="simulated seconds per stream")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    from rdt_core.policy import RDTPolicy

    profile = load_profile("kinova_gen3")
    t0 = time.monotonic()
    res = {kind: run(profile, RDTPolicy.tiny(profile, seed=a.seed).predict, kind, a.seconds, a.seed)
           for kind in ("ours", "baseline")}
    print(f"trajectory bench: kinova_gen3 (limit {profile.max_velocity[0]:.4f} rad/s, "
          f"{profile.max_acceleration[0]:g} rad/s^2), random tiny RDT, {a.seconds:g} s simulated per stream, "
          f"controller model at 1 kHz ({time.monotonic() - t0:.0f} s wall)")
    print(f"{'metric':>34} {'ours':>10} {'baseline':>10} {'ours/base':>10}")
    for key, label in (("speed_over_limit", "max reference speed / limit"),
                       ("max_velocity_step", "max velocity step per update rad/s"),
                       ("max_accel", "max acceleration rad/s^2"), ("sent", "trajectories sent"),
                       ("rejected_by_stock", "rejected by the stock config")):
        ours, base = res["ours"][key], res["baseline"][key]
        ratio = ours / base if base else float("nan")
        print(f"{label:>34} {ours:>10.4g} {base:>10.4g} {ratio:>10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
