"""ROS-free logic of the fake-robot node: what the real controllers do with the commands we send.

The rclpy shell (``fake_robot_node.py``) only converts messages into these calls. Kept here so the
behaviour that decides where the fake joints go is tested without ROS:

- ``TrajectoryFollower``: a ``JointTrajectory`` followed the way ros2_control's joint_trajectory_controller
  (Jazzy) does it, through rdt_core.joint_trajectory (the one model of it): linear segments for positions
  only, cubic with velocities; a new trajectory replaces the running one on receipt, from the desired
  state there (``interpolate_from_desired_state``, as ros2_kortex's 1 kHz controller); the last point
  held. ``trajectory_from_arrays`` rejects what the controller rejects, a last point with a velocity too
  (the stock ``allow_nonzero_velocity_at_trajectory_end: false``).
- ``command_from_joint_state`` / ``command_from_array`` / ``command_from_interbotix``: ALOHA / AgileX style
  commands (JointState with names, Float64MultiArray, Interbotix group/single commands), read through the
  profile's ``command`` section -> profile joint values (state units).
- ``stream_positions``: profile joint values -> the positions a ``JointState`` stream publishes (the
  inverse of ``RobotProfile.map_stream``, gripper ranges included).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from rdt_core.joint_trajectory import SplineTrajectory, TrajectoryController

__all__ = [
    "Trajectory", "TrajectoryFollower", "trajectory_from_arrays",
    "joint_state_command_topics", "command_from_joint_state", "command_from_array", "command_from_interbotix",
    "stream_positions", "gripper_goal_done",
]


@dataclass
class Trajectory:
    """A validated trajectory over some of the profile's joints (``joint_indices`` into the profile)."""
    start_time: float              # seconds on the node clock
    joint_indices: np.ndarray      # (J,) int
    times_from_start: np.ndarray   # (N,)
    positions: np.ndarray          # (N, J)
    velocities: np.ndarray | None = None  # (N, J), None when the points carry none

    @property
    def end_time(self) -> float:
        return self.start_time + float(self.times_from_start[-1])

    @property
    def spline(self) -> SplineTrajectory:
        return SplineTrajectory(self.start_time, self.times_from_start, self.positions, self.velocities)


def trajectory_from_arrays(profile_joint_names: Sequence[str], joint_names: Sequence[str],
                           times_from_start: Sequence[float], positions: Sequence[Sequence[float]],
                           start_time: float, lower: np.ndarray | None = None,
                           upper: np.ndarray | None = None, velocities: Sequence[Sequence[float]] = ()) -> Trajectory:
    """Validate a JointTrajectory given as arrays; a ValueError says what is wrong and how to fix it.

    Rejected, as joint_trajectory_controller rejects them: unknown or duplicated joint names, points whose
    size differs from the joint names, time_from_start not strictly increasing, non-finite values, a last
    point with a non-zero velocity. With ``lower``/``upper`` (the profile's limits, full D), positions
    outside them are rejected too. ``velocities``: per point, empty when the points carry none.
    """
    names = list(joint_names)
    index = {n: i for i, n in enumerate(profile_joint_names)}
    unknown = [n for n in names if n not in index]
    if unknown or not names:
        raise ValueError(f"trajectory names unknown joint(s) {unknown or '(none given)'}; "
                         f"this robot's joints are {list(profile_joint_names)}")
    if len(set(names)) != len(names):
        raise ValueError(f"trajectory names a joint twice: {names}")
    times = np.asarray(times_from_start, dtype=np.float64).reshape(-1)
    if times.size == 0:
        raise ValueError("trajectory has no points")
    points = _point_array(positions, times.size, len(names), "positions")
    vel = None
    if any(len(v) for v in velocities):
        vel = _point_array(velocities, times.size, len(names), "velocities")
    if not (np.isfinite(times).all() and np.isfinite(points).all() and (vel is None or np.isfinite(vel).all())):
        raise ValueError("trajectory contains NaN or inf (time_from_start, positions or velocities)")
    if times[0] < 0.0 or np.any(np.diff(times) <= 0.0):
        raise ValueError(f"time_from_start must be >= 0 and strictly increasing, got {times.tolist()}")
    if vel is not None and np.any(np.abs(vel[-1]) > np.finfo(np.float32).eps):
        j = int(np.argmax(np.abs(vel[-1])))
        raise ValueError(f"Velocity of last trajectory point of joint {names[j]} is not zero: {vel[-1, j]} (the "
                         f"stock controller's allow_nonzero_velocity_at_trajectory_end: false)")
    idx = np.array([index[n] for n in names], dtype=np.int64)
    if lower is not None and upper is not None:
        lo, hi = np.asarray(lower)[idx], np.asarray(upper)[idx]
        bad = np.nonzero((points < lo - 1e-9) | (points > hi + 1e-9))
        if bad[0].size:
            p, j = int(bad[0][0]), int(bad[1][0])
            raise ValueError(f"point {p} commands {names[j]}={points[p, j]:.4f} outside its limits "
                             f"[{lo[j]:.4f}, {hi[j]:.4f}]")
    return Trajectory(float(start_time), idx, times, points, vel)


def _point_array(rows, n: int, width: int, what: str) -> np.ndarray:
    try:
        out = np.asarray(rows, dtype=np.float64)
    except ValueError:
        out = None
    if out is None or out.shape != (n, width):
        raise ValueError(f"every trajectory point needs {width} {what} (one per joint name); got "
                         f"{[len(r) for r in rows]}")
    return out


#: ros2_kortex's controller_manager runs its controllers at 1000 Hz
CONTROLLER_PERIOD_S = 0.001


class TrajectoryFollower:
    """Where every joint is commanded, for the trajectories received (rdt_core's model of the controller)."""

    def __init__(self, initial_command: np.ndarray, update_period: float = CONTROLLER_PERIOD_S):
        self._command = np.array(initial_command, dtype=np.float64)
        self.update_period = float(update_period)
        self._active: Trajectory | None = None
        self._controller: TrajectoryController | None = None

    def submit(self, trajectory: Trajectory, now: float) -> None:
        """The controller takes ``trajectory`` at ``now``: it replaces the running one from the desired
        state there (the same joints), or from the commanded positions at rest (other joints)."""
        self.command_at(now)
        same = self._active is not None and np.array_equal(self._active.joint_indices, trajectory.joint_indices)
        if not same:
            self._controller = TrajectoryController(self._command[trajectory.joint_indices],
                                                    update_period=self.update_period)
        self._controller.receive(trajectory.spline, now)
        self._active = trajectory
        self._driven = np.ones(len(trajectory.joint_indices), bool)

    @property
    def active(self) -> Trajectory | None:
        return self._active

    def command_at(self, now: float) -> np.ndarray:
        """The full (D,) position command at time ``now`` (monotonic calls)."""
        if self._active is not None:
            desired = self._controller.desired(now).positions
            self._command[self._active.joint_indices[self._driven]] = desired[self._driven]
        return self._command.copy()

    def set_joint(self, index: int, value: float) -> None:
        """Direct command of one joint (e.g. the gripper through its action), outside any trajectory."""
        self._command[index] = float(value)
        if self._active is not None:  # the running trajectory no longer drives it
            self._driven &= self._active.joint_indices != index


def joint_state_command_topics(command: dict) -> list[dict]:
    """The ``{topic, joints, msg_joint_names}`` entries of a profile's JointState command section.

    They sit under ``command.topics`` (backend joint_state, AgileX) or ``command.fallback.topics``
    (ALOHA: used when interbotix_xs_msgs is not installed); an empty list when the profile has none.
    """
    for section in (command, command.get("fallback") or {}):
        if section.get("topics"):
            return [dict(t, msg_joint_names=list(t.get("msg_joint_names") or t["joints"])) for t in section["topics"]]
    return []


def _to_state_units(profile, index: int, value: float) -> float:
    """A command value (action units) -> the joint's state units (they differ for AgileX grippers)."""
    j = profile.joints[index]
    return j.offset + j.scale * (float(value) - j.act_offset) / j.act_scale


def _joint_index(profile, names) -> list[int]:
    index = {n: i for i, n in enumerate(profile.joint_names)}
    missing = [n for n in names if n not in index]
    if missing:
        raise ValueError(f"command section names joint(s) {missing} that profile {profile.name!r} lacks")
    return [index[n] for n in names]


def command_from_joint_state(profile, entry: dict, names: Sequence[str],
                             positions: Sequence[float]) -> dict[int, float]:
    """A JointState command (AgileX ``/master/joint_left`` style) -> {profile joint index: state value}.

    ``entry`` is one of ``joint_state_command_topics``: message names are its ``msg_joint_names`` (the
    same names may repeat on the left and right topics); a message without names gives the positions in
    that order. Values are in action units and converted to the joint's state units.
    """
    msg_names = list(entry["msg_joint_names"])
    names, positions = list(names), list(positions)
    if not names:
        names = msg_names
    if len(names) != len(positions):
        raise ValueError(f"command on {entry['topic']}: {len(names)} names but {len(positions)} positions; "
                         f"send {len(msg_names)} positions in the order {msg_names}")
    unknown = [n for n in names if n not in msg_names]
    if unknown:
        raise ValueError(f"command on {entry['topic']} names unknown joint(s) {unknown}; expected {msg_names}")
    where = dict(zip(msg_names, _joint_index(profile, entry["joints"])))
    return {where[n]: _to_state_units(profile, where[n], v) for n, v in zip(names, positions)}


def command_from_array(profile, joints: Sequence[str], data: Sequence[float], topic: str = "",
                       kind: str = "Float64MultiArray") -> dict[int, float]:
    """A Float64MultiArray command (forward position controller): one value per joint of ``joints``."""
    if len(data) != len(joints):
        raise ValueError(f"{kind} command on {topic or 'the command topic'} has {len(data)} values; "
                         f"the controller expects {len(joints)} in the order {list(joints)}")
    idx = _joint_index(profile, joints)
    return {i: _to_state_units(profile, i, v) for i, v in zip(idx, data)}


def command_from_interbotix(profile, arm: dict, name: str, cmd: Sequence[float]) -> dict[int, float]:
    """An Interbotix JointGroupCommand (group ``arm['group_name']``) or JointSingleCommand (the gripper
    ``arm['gripper_name']``) for one arm of a profile's ``command.arms`` -> {profile joint index: value}."""
    cmd = [float(c) for c in cmd]
    if name == arm.get("group_name"):
        return command_from_array(profile, arm["joints"], cmd, arm.get("group_topic", ""), "JointGroupCommand")
    if name == arm.get("gripper_name") and len(cmd) == 1:
        (i,) = _joint_index(profile, [arm["gripper_joint"]])
        return {i: _to_state_units(profile, i, cmd[0])}
    raise ValueError(f"Interbotix command for {name!r} with {len(cmd)} value(s) is not understood; this arm "
                     f"takes group {arm.get('group_name')!r} ({len(arm['joints'])} values) or single "
                     f"{arm.get('gripper_name')!r} (1 value)")


def stream_positions(profile, stream_role: str, qpos: np.ndarray) -> tuple[list[str], list[float]]:
    """Profile joint values (D,) -> (message names, positions) for the JointState stream ``stream_role``."""
    stream = profile.stream(stream_role)
    specs = {j.name: (i, j) for i, j in enumerate(profile.joints)}
    out = []
    for mname, jname in zip(stream.msg_joint_names, stream.joints):
        i, spec = specs[jname]
        v = float(qpos[i])
        rng = stream.gripper_ranges.get(mname)
        if rng is not None:
            v = rng[0] + (v - spec.offset) / spec.scale * (rng[1] - rng[0])
        out.append(v)
    return list(stream.msg_joint_names), out


def gripper_goal_done(position: float, goal: float, previous: float, tolerance: float = 2e-3,
                      stall_eps: float = 1e-5) -> tuple[bool, bool]:
    """(reached_goal, stalled) for a gripper action, from the position now and one tick earlier."""
    reached = abs(position - goal) <= tolerance
    stalled = not reached and abs(position - previous) <= stall_eps
    return reached, stalled
