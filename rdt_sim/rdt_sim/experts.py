"""Scripted experts: end-effector waypoints, followed by the joint-controlled robot itself.

A script moves the two gripper frames through waypoints; JointServo turns the pose error of each
gripper into joint commands every control period (damped least squares on MuJoCo's Jacobian of the
gripper, with an integral that takes up the arms' sag), on the same position-controlled robot the policy
drives. The commands it sends (with the scripted gripper openings) are the demonstration, and because it
runs on the robot model, closing the loop on the arms' and the objects' measured poses, replaying them
gives the same episode. (ACT planned in gym-aloha's mocap model and replayed the joints open loop: a held
object then sat differently in the replay, which the Insertion peg did not survive, 6/50.)

Waypoints are written for the tool centre point (TCP): the mocap model's weld point, 13.5 cm along the
gripper's pointing axis, just behind the fingertips. Orientations are of the gripper frame (x: pointing,
y: the fingers' closing axis). The scripts look at the sim's ground truth as a scripted demonstrator may:
where the objects are at the start, and at their ``replan_times`` where a held object really is
(TransferCube: the cube as the left arm comes in; Insertion: the peg against the socket, every 0.1 s while
pushing in).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .aloha import AlohaSim
from .tasks import TaskSpec, get_task

OPEN, CLOSED = 1.0, 0.0  # gripper openness


def quat_mul(a, b) -> np.ndarray:
    import mujoco

    out = np.zeros(4)
    mujoco.mju_mulQuat(out, np.asarray(a, float), np.asarray(b, float))
    return out


def axis_angle(axis, degrees: float) -> np.ndarray:
    import mujoco

    out = np.zeros(4)
    mujoco.mju_axisAngle2Quat(out, np.asarray(axis, float), np.deg2rad(degrees))
    return out


def rotate(quat, vec) -> np.ndarray:
    import mujoco

    out = np.zeros(3)
    mujoco.mju_rotVecQuat(out, np.asarray(vec, float), np.asarray(quat, float))
    return out


# gripper frames in the world: left pointing +x, right pointing -x (both fingers closing along world y)
LEFT_FORWARD = np.array([1.0, 0.0, 0.0, 0.0])
RIGHT_FORWARD = axis_angle([0, 0, 1], 180.0)


def aimed(sim: AlohaSim, side: int, target, pitch: float = 0.0) -> np.ndarray:
    """The gripper of arm ``side`` pointing from the arm's base towards ``target`` (seen from above), tilted
    down by ``pitch`` degrees: the orientation the arm reaches without twisting its wrist."""
    base = sim.data.xpos[sim.model.body(f"vx300s_{('left', 'right')[side]}").id]
    yaw = np.rad2deg(np.arctan2(target[1] - base[1], target[0] - base[0]))
    return quat_mul(axis_angle([0, 0, 1], yaw), axis_angle([0, 1, 0], pitch))


def pitched(forward, degrees: float) -> np.ndarray:
    """The gripper tilted down by ``degrees`` about its own closing axis."""
    return quat_mul(forward, axis_angle([0, 1, 0], degrees))


def rolled(forward, degrees: float) -> np.ndarray:
    """The gripper turned about its pointing axis (its fingers then close along another world axis)."""
    return quat_mul(forward, axis_angle([1, 0, 0], degrees))


@dataclass
class Waypoint:
    t: float
    pos: np.ndarray
    quat: np.ndarray
    gripper: float  # openness, 0 closed .. 1 open


def interpolate(waypoints: list[Waypoint], t: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Linear in position and openness, normalised-linear in orientation; held after the last waypoint."""
    if t <= waypoints[0].t:
        w = waypoints[0]
        return w.pos, w.quat, w.gripper
    for a, b in zip(waypoints, waypoints[1:]):
        if t <= b.t:
            f = (t - a.t) / max(b.t - a.t, 1e-9)
            qb = b.quat if np.dot(a.quat, b.quat) >= 0 else -b.quat
            q = (1 - f) * a.quat + f * qb
            return (1 - f) * a.pos + f * b.pos, q / np.linalg.norm(q), (1 - f) * a.gripper + f * b.gripper
    w = waypoints[-1]
    return w.pos, w.quat, w.gripper


# ---------------------------------------------------------------------------------------- the scripts
class Script:
    """Waypoints for both grippers; ``plan(sim, t)`` is called at 0 and at each of ``replan_times`` and
    returns the (left, right) waypoints from then on (it may look at the objects: the sim's ground truth)."""

    replan_times: tuple[float, ...] = ()

    def plan(self, sim: AlohaSim, t: float) -> tuple[list[Waypoint], list[Waypoint]]:
        raise NotImplementedError


class TransferCubeScript(Script):
    """Right arm: tilted down onto the cube, close, lift, turn level and carry it to the middle, holding it
    with its fingertips. Left arm: turned 90 degrees about its pointing axis (fingers above and below the
    cube, clear of the right's fingers on its sides), in from the left to where the cube really is, close;
    the right opens and backs off."""

    meet = np.array([0.0, 0.5, 0.25])
    pitch = 60.0
    grasp_depth = 0.022  # the right TCP this far behind the cube centre, along the gripper's pointing axis
    handover_depth = 0.016  # the left TCP this far left of the cube centre
    replan_times = (4.0, 4.3, 4.6)  # the left arm looks where the cube is as it comes in

    def plan(self, sim, t):
        if t == 0.0:
            return self._pick(sim)
        cube = sim.object_poses()[0][:3]
        left_q = rolled(LEFT_FORWARD, 90.0)
        grasp = cube - np.array([self.handover_depth, 0, 0])
        left = [Waypoint(4.7, grasp, left_q, OPEN),
                Waypoint(5.1, grasp, left_q, CLOSED),
                Waypoint(6.2, grasp, left_q, CLOSED),
                Waypoint(7.0, grasp + np.array([-0.05, 0, 0.02]), left_q, CLOSED)]
        return left, None

    def _pick(self, sim):
        c = sim.object_poses()[0][:3].copy()
        c[2] = 0.02  # resting on the table (gym-aloha spawns it 3 cm in the air)
        down = aimed(sim, 1, c, self.pitch)
        ax = rotate(down, [1, 0, 0])  # the right gripper's pointing axis while tilted
        grasp = c - self.grasp_depth * ax + np.array([0, 0, 0.004])
        hold = self.meet + np.array([0.03, 0, 0])
        start_l, start_r = sim.tcp_pose(0)[0], sim.tcp_pose(1)[0]
        right = [Waypoint(0.0, start_r, RIGHT_FORWARD, OPEN),
                 Waypoint(1.0, grasp - 0.08 * ax, down, OPEN),
                 Waypoint(1.6, grasp, down, OPEN),
                 Waypoint(2.0, grasp, down, CLOSED),
                 Waypoint(2.6, grasp + np.array([0, 0, 0.12]), down, CLOSED),
                 Waypoint(3.6, hold, RIGHT_FORWARD, CLOSED),
                 Waypoint(5.2, hold, RIGHT_FORWARD, CLOSED),
                 Waypoint(5.6, hold, RIGHT_FORWARD, OPEN),
                 Waypoint(6.4, hold + np.array([0.1, 0, 0]), RIGHT_FORWARD, OPEN)]
        left_q = rolled(LEFT_FORWARD, 90.0)
        stage = self.meet + np.array([-0.15, 0, 0])
        left = [Waypoint(0.0, start_l, LEFT_FORWARD, OPEN),
                Waypoint(2.5, stage, left_q, OPEN),
                Waypoint(4.0, stage, left_q, OPEN)]
        return left, right


def _heading(quat) -> float:
    """Yaw (degrees) of a body's x axis seen from above."""
    x = rotate(quat, [1.0, 0.0, 0.0])
    return float(np.degrees(np.arctan2(x[1], x[0])))


def _elevation(quat) -> float:
    """How far (degrees) a body's x axis points up out of the horizontal."""
    x = rotate(quat, [1.0, 0.0, 0.0])
    return float(np.degrees(np.arcsin(np.clip(x[2], -1.0, 1.0))))


class InsertionScript(Script):
    """Left arm: the socket, right arm: the peg, each gripped from above (tilted, the fingers closing along
    y: square to the object's long axis) at its middle. The grippers only translate from then on: a held
    object pivots freely about the fingers' closing axis, and turning the gripper would swing it. The left arm
    sets the socket down again in the middle of the table, where the table keeps it level, and holds it;
    the right arm carries the peg, just above the table, in line with the socket's opening and pushes it in
    until it touches the pin, looking again every 0.1 s at where the peg sits and correcting."""

    pitch = 60.0
    socket_goal = np.array([-0.05, 0.5])  # where the socket is set down (x, y)
    lift = 0.03  # both objects are carried this high above where they rest
    standoff = 0.14  # peg centre this far right of the socket centre before pushing in
    inserted = 0.097  # ... and this far when pushed in: the peg's end (half length 0.06) on the pin's (0.04)
    push_speed = 0.08  # m/s along the socket's axis
    in_line = 0.007  # push while the peg's centre is this close to the socket's axis (y and z, m)
    replan_times = (2.9,) + tuple(np.round(np.arange(4.3, 8.0, 0.1), 2))

    def __init__(self):
        self.along = self.standoff
        self.rest = {}

    def plan(self, sim, t):
        if t == 0.0:
            return self._pick(sim)
        peg, socket = sim.object_poses()
        grips = [sim.tcp_pose(side) for side in range(2)]
        held = [np.linalg.norm(grips[side][0] - obj[:3]) < 0.06 for side, obj in ((0, socket), (1, peg))]
        if not held[1] or (t < 3.0 and not held[0]):  # dropped: nothing left to align, stay where we are
            return None, None
        if t < 3.0:  # carry the socket to the middle and set it down; the peg to its right, clear of it
            goal = np.r_[self.socket_goal, self.rest["socket"]]
            peg_goal = goal + np.array([self.standoff + 0.04, 0, 0])  # clear of the socket while both move
            peg_goal[2] = self.rest["socket"]
            down = self._carry(grips[0], socket, goal + [0, 0, 0.003], 4.3)
            # let go: lying on the table the socket is level and square, which no grasp keeps it
            left = [self._carry(grips[0], socket, goal + [0, 0, self.lift], 3.9), down,
                    Waypoint(4.6, down.pos, down.quat, OPEN),
                    Waypoint(5.0, down.pos + np.array([-0.04, 0, 0.08]), down.quat, OPEN)]
            right = [self._carry(grips[1], peg, peg_goal + [0, 0, self.lift], 3.9),
                     self._carry(grips[1], peg, peg_goal, 4.3)]
            return left, right
        # the peg in line with the socket where it really is (turned about the vertical to the socket's
        # heading, which does not swing it); pushed in only while in line
        turn = _heading(socket[3:]) - _heading(peg[3:])
        tilt = _elevation(peg[3:]) - _elevation(socket[3:])
        off = peg[1:3] - socket[1:3]
        if np.all(np.abs(off) < self.in_line) and abs(turn) < 3.0 and abs(tilt) < 3.0:
            self.along = max(self.inserted, min(self.along, peg[0] - socket[0]) - self.push_speed * 0.1)
        target = socket[:3] + np.array([self.along, 0, 0])
        tcp, quat = grips[1]
        # level the peg by turning the gripper about the fingers' closing axis (world y), head it like the socket
        fix = quat_mul(axis_angle([0, 0, 1], float(np.clip(turn, -5.0, 5.0))),
                       axis_angle([0, 1, 0], float(np.clip(tilt, -5.0, 5.0))))
        return None, [Waypoint(t + 0.1, target - rotate(fix, peg[:3] - tcp), quat_mul(fix, quat), CLOSED)]

    @staticmethod
    def _carry(grip, obj, target, t) -> Waypoint:
        """The waypoint that translates the gripper so that the object it holds is at ``target``."""
        tcp, quat = grip
        return Waypoint(t, np.asarray(target, dtype=np.float64) - (obj[:3] - tcp), quat, CLOSED)

    def _pick(self, sim):
        peg, socket = sim.object_poses()
        self.rest = {"peg": 0.01, "socket": 0.022}  # centre heights resting on the table (spawned 5 cm up)
        plans = []
        for side, obj, rest in ((0, socket, self.rest["socket"]), (1, peg, self.rest["peg"])):
            c = np.r_[obj[:2], rest]
            forward = LEFT_FORWARD if side == 0 else RIGHT_FORWARD
            q = pitched(forward, self.pitch)
            ax = rotate(q, [1, 0, 0])
            grasp = c - 0.012 * ax + np.array([0, 0, 0.004])
            start = sim.tcp_pose(side)[0]
            plans.append([Waypoint(0.0, start, forward, OPEN),
                          Waypoint(1.2, grasp - 0.08 * ax, q, OPEN),
                          Waypoint(1.6, grasp, q, OPEN),
                          Waypoint(1.8, grasp, q, OPEN),  # the joint-controlled arm lags: let it arrive
                          Waypoint(2.1, grasp, q, CLOSED),
                          Waypoint(2.4, grasp, q, CLOSED),
                          Waypoint(2.9, grasp + np.array([0, 0, self.lift]), q, CLOSED)])
        return plans[0], plans[1]


SCRIPTS = {"transfer_cube": TransferCubeScript, "insertion": InsertionScript}


def replanned(old: list[Waypoint], new: list[Waypoint] | None, t: float) -> list[Waypoint]:
    """``old`` up to ``t``, then ``new`` (starting from where ``old`` was at ``t``: no jump)."""
    if new is None:
        return old
    pos, quat, g = interpolate(old, t)
    return [w for w in old if w.t < t] + [Waypoint(t, pos, quat, g)] + [w for w in new if w.t > t]


class JointServo:
    """Moves gripper ``side`` of the joint-controlled robot to the waypoint: damped least squares on the
    TCP's Jacobian (MuJoCo's) turns the pose error into joint steps; the command is the measured joints plus
    that step plus an integral of the steps, which takes up the arm's steady sag under gravity."""

    def __init__(self, sim: AlohaSim, side: int, gain: float = 0.1, damping: float = 0.05, limit: float = 0.3):
        self.sim, self.side, self.gain, self.damping, self.limit = sim, side, gain, damping, limit
        self.offset = np.zeros(6)

    def step(self, pos, quat) -> np.ndarray:
        """The six arm joint commands (radians) for this control period."""
        import mujoco

        actual_pos, actual_quat = self.sim.tcp_pose(self.side)
        rot = np.zeros(3)
        mujoco.mju_subQuat(rot, np.asarray(quat, float), actual_quat)  # body frame, actual -> target
        err = np.r_[np.asarray(pos, float) - actual_pos, rotate(actual_quat, rot)]
        jac = self.sim.tcp_jacobian(self.side)
        dq = jac.T @ np.linalg.solve(jac @ jac.T + self.damping ** 2 * np.eye(6), err)
        self.offset = np.clip(self.offset + self.gain * dq, -self.limit, self.limit)
        measured = self.sim.qpos()[[7 * self.side + j for j in range(6)]]
        return measured + dq + self.offset


# ---------------------------------------------------------------------------------------- demonstrations
@dataclass
class Demonstration:
    """A scripted demonstration of one seeded episode: what to command, and what the robot did."""

    task: str
    seed: int
    actions: np.ndarray  # (T, 14) joint commands in profile units, one per control step
    qpos: np.ndarray  # (T, 14) measured joints, before each command
    rewards: np.ndarray  # (T,) reward after each step
    control_period: float
    extra: dict = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return bool(self.rewards.max(initial=0) >= 4)

    @property
    def time_to_success(self) -> float | None:
        hit = np.flatnonzero(self.rewards >= 4)
        return float((hit[0] + 1) * self.control_period) if hit.size else None


def plan_actions(task: str | TaskSpec, seed: int, *, profile="aloha", on_step=None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the script on the joint-controlled robot (JointServo turns its waypoints into joint commands
    as it goes, from the arms' measured poses): (T, 14) joint commands, (T, 14) the joints measured before
    each, (T,) the reward after each. The commands alone reproduce the run (``replay``: the sim is
    deterministic)."""
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    script = SCRIPTS[spec.name]()
    sim = AlohaSim(spec, profile=profile)
    try:
        sim.reset(seed)
        plans = list(script.plan(sim, 0.0))
        replans = list(script.replan_times)
        steps = int(round(spec.episode_s / sim.control_period))
        actions, qpos = np.empty((steps, 14)), np.empty((steps, 14))
        rewards = np.empty(steps, dtype=np.int64)
        grip_cols = [6, 13]
        arm_cols = [i for i in range(14) if i % 7 != 6]
        offset = np.array([sim.profile.joints[c].offset for c in grip_cols])
        scale = np.array([sim.profile.joints[c].scale for c in grip_cols])
        servos = [JointServo(sim, side) for side in range(2)]
        from rdt_policy_node.runtime import Safety

        # a demonstration the robot could be sent: inside the profile's position and velocity limits
        safety = Safety.from_profile(sim.profile, publish_rate=sim.profile.control_frequency)
        previous = sim.qpos()
        for k in range(steps):
            t = k * sim.control_period
            if replans and t >= replans[0] - 1e-9:
                update = script.plan(sim, replans.pop(0))
                plans = [replanned(p, u, t) for p, u in zip(plans, update)]
            qpos[k] = sim.qpos()
            cmd = qpos[k].copy()
            openings = []
            for side, wps in enumerate(plans):
                pos, quat, g = interpolate(wps, t)
                cmd[arm_cols[6 * side:6 * side + 6]] = servos[side].step(pos, quat)
                openings.append(g)
            cmd[grip_cols] = offset + scale * np.asarray(openings)
            cmd, _ = safety.limit(cmd, previous, sim.control_period)
            previous = cmd
            sim.command(cmd)
            actions[k] = cmd
            sim.step()
            rewards[k] = sim.reward()
            if on_step is not None:
                on_step(k, sim, plans)
        return actions, qpos, rewards
    finally:
        sim.close()


def replay(task: str | TaskSpec, seed: int, actions: np.ndarray, *, profile="aloha") -> tuple[np.ndarray, np.ndarray]:
    """Execute joint commands on the joint-controlled robot: (qpos before each step, reward after it)."""
    sim = AlohaSim(task, profile=profile)
    try:
        sim.reset(seed)
        qpos, rewards = np.empty_like(actions), np.empty(len(actions), dtype=np.int64)
        for k, a in enumerate(actions):
            qpos[k] = sim.qpos()
            sim.command(a)
            sim.step()
            rewards[k] = sim.reward()
        return qpos, rewards
    finally:
        sim.close()


def demonstrate(task: str, seed: int, *, profile="aloha") -> Demonstration:
    """The scripted expert's demonstration of episode ``seed`` on the joint-controlled robot."""
    spec = get_task(task)
    actions, qpos, rewards = plan_actions(spec, seed, profile=profile)
    from rdt_core.robots import load_profile

    period = 1.0 / load_profile(profile).control_frequency
    return Demonstration(spec.name, int(seed), actions, qpos, rewards, period)


class ChunkedExpert:
    """The scripted expert as a chunk predictor: from the measured joints it finds where the robot is on
    the demonstration (the nearest replayed state, searching forward from the last match) and returns the
    next ``horizon`` joint commands from there, as a perfect imitation policy trained on that demonstration
    would. It reads no images and no clock: run through a control loop, it only measures that loop."""

    reads_images = False

    def __init__(self, demo: Demonstration, horizon: int = 64, back: int = 10, ahead: int = 150):
        from rdt_core.robots import load_profile

        profile = load_profile("aloha")
        self.demo, self.horizon, self.back, self.ahead = demo, int(horizon), int(back), int(ahead)
        self.scale = profile.upper - profile.lower
        self.index = 0

    def __call__(self, images, qpos, stamp, inpaint_actions=None) -> np.ndarray:
        qpos = np.asarray(qpos, dtype=np.float64)
        lo = max(0, self.index - self.back)
        hi = min(len(self.demo.qpos), self.index + self.ahead)
        dist = np.linalg.norm((self.demo.qpos[lo:hi] - qpos) / self.scale, axis=1)
        self.index = lo + int(np.argmin(dist))
        rows = self.demo.actions[self.index:self.index + self.horizon]
        if len(rows) < self.horizon:  # past the end of the demonstration: hold its last command
            rows = np.concatenate([rows, np.repeat(self.demo.actions[-1:], self.horizon - len(rows), axis=0)])
        return rows.astype(np.float32)
