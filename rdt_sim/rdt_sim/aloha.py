"""AlohaSim: the bimanual ViperX ALOHA in MuJoCo, in the units and names of the ``aloha`` robot profile.

The model is gym-aloha's (two vx300s arms with position actuators, a table, the task objects). Everything
that leaves or enters this class is what the real Interbotix ALOHA speaks: the 14 profile joints
(``left_waist`` .. ``right_gripper``), arm joints in radians, the gripper as the follower gripper *joint*
(0.6197 closed .. 1.6214 open), whose openness (the profile's offset/scale: 0 closed, 1 open) is gym-aloha's
normalised finger position; cameras ``cam_high`` (the scene's ``top``), ``cam_left_wrist``,
``cam_right_wrist``. A policy, the recorder and the profile cannot tell it from the robot.

The sim is deterministic: ``reset(seed)`` places the objects as gym-aloha does for that seed, and the same
commands give the same trajectory. ``end_effector=True`` loads the mocap variant (each gripper welded to a
mocap body) that the scripted experts plan in.
"""
from __future__ import annotations

import functools
import os

import numpy as np

from . import rendering  # noqa: F401  (sets MUJOCO_GL before mujoco is imported)
from .assets import SimUnavailableError, gym_aloha_constants, model_file
from .rendering import RENDER_HINT, LazyFrame, OffscreenRenderer, RenderSettings, RenderUnavailableError
from .tasks import TaskSpec, get_task

#: profile camera role -> camera in gym-aloha's model
CAMERAS = {"cam_high": "top", "cam_left_wrist": "left_wrist", "cam_right_wrist": "right_wrist"}
SIDES = ("left", "right")
ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")


def _mujoco():
    try:
        import mujoco
    except ModuleNotFoundError as e:
        raise SimUnavailableError(f"mujoco is not installed ({e}): pip install mujoco (gym-aloha brings it)") from e
    except Exception as e:  # noqa: BLE001 - mujoco loads the MUJOCO_GL backend's libraries when imported
        raise RenderUnavailableError(f"cannot import mujoco with MUJOCO_GL={os.environ.get('MUJOCO_GL')!r} "
                                     f"({type(e).__name__}: {e}). Fix: {RENDER_HINT}") from e
    return mujoco


def _weld_pose(model, side: int) -> tuple[np.ndarray, np.ndarray]:
    body = model.body(f"vx300s_{SIDES[side]}/gripper_link").id
    eq = [e for e in range(model.neq) if model.eq_obj2id[e] == body]
    if not eq:
        raise ValueError("the gripper is not welded to a mocap body: build AlohaSim(end_effector=True)")
    return model.eq_data[eq[0], 3:6].copy(), model.eq_data[eq[0], 6:10].copy()


@functools.lru_cache(maxsize=None)
def _mocap_welds(ee_xml: str) -> tuple:
    model = _mujoco().MjModel.from_xml_path(str(model_file(ee_xml)))
    return tuple(_weld_pose(model, side) for side in range(2))


class AlohaSim:
    def __init__(self, task: str | TaskSpec = "transfer_cube", *, profile="aloha",
                 render: RenderSettings | None = None, end_effector: bool = False):
        from rdt_core.robots import load_profile

        mujoco = _mujoco()
        self.task = task if isinstance(task, TaskSpec) else get_task(task)
        self.profile = load_profile(profile)
        self.end_effector = bool(end_effector)
        path = model_file(self.task.ee_xml if end_effector else self.task.model_xml)
        self.model = mujoco.MjModel.from_xml_path(str(path))
        self.data = mujoco.MjData(self.model)
        self.control_period = 1.0 / float(self.profile.control_frequency)
        self.substeps = max(1, int(round(self.control_period / self.model.opt.timestep)))
        const = gym_aloha_constants()
        self._finger_open = float(const.PUPPET_GRIPPER_POSITION_OPEN)
        self._finger_closed = float(const.PUPPET_GRIPPER_POSITION_CLOSE)
        self._start_pose = np.asarray(const.START_ARM_POSE, dtype=np.float64)  # 8 per side: 6 arm + 2 fingers
        self._map_joints()
        self.render_settings = render or RenderSettings()
        self._renderer = OffscreenRenderer(self.model, self.render_settings)
        self._render_data = None
        self._geom_names = [self.model.geom(i).name for i in range(self.model.ngeom)]
        self.seed: int | None = None
        self.reset(0)

    # ------------------------------------------------------------------ model <-> profile
    def _map_joints(self) -> None:
        m = self.model
        names = self.profile.joint_names
        expected = [f"{s}_{j}" for s in SIDES for j in (*ARM_JOINTS, "gripper")]
        if names != expected:
            raise ValueError(f"AlohaSim speaks the aloha profile's 14 joints {expected}; profile "
                             f"{self.profile.name!r} has {names}")
        arm_q, arm_v, arm_u, fingers = [], [], [], []
        actuated = {int(m.actuator_trnid[a, 0]): a for a in range(m.nu)}
        for side in SIDES:
            for j in ARM_JOINTS:
                jid = m.joint(f"vx300s_{side}/{j}").id
                arm_q.append(m.jnt_qposadr[jid])
                arm_v.append(m.jnt_dofadr[jid])
                arm_u.append(actuated.get(jid, -1))
            lf, rf = m.joint(f"vx300s_{side}/left_finger").id, m.joint(f"vx300s_{side}/right_finger").id
            fingers.append((m.jnt_qposadr[lf], m.jnt_dofadr[lf], actuated[lf], actuated[rf]))
        self._arm_q, self._arm_v, self._arm_u = np.array(arm_q), np.array(arm_v), np.array(arm_u)
        self._fingers = fingers
        self._arm_cols = np.array([i for i in range(14) if i % 7 != 6])  # profile columns of the arm joints
        self._grip_cols = (6, 13)
        grip = [self.profile.joints[c] for c in self._grip_cols]
        self._grip_offset = np.array([g.offset for g in grip])
        self._grip_scale = np.array([g.scale for g in grip])
        self._objects = [m.jnt_qposadr[m.joint(o).id] for o in self.task.objects]
        self._start_q = np.concatenate([self._start_pose[8 * i:8 * i + 6] for i in range(2)])
        self.mocap_ids = [m.body(f"mocap_{s}").mocapid[0] for s in SIDES] if self.end_effector else []

    def finger_to_gripper(self, finger_position) -> np.ndarray:
        """Follower finger position (m) -> gripper joint (profile units) via openness (0 closed, 1 open)."""
        openness = (np.asarray(finger_position) - self._finger_closed) / (self._finger_open - self._finger_closed)
        return self._grip_offset + self._grip_scale * openness

    def gripper_to_finger(self, gripper) -> np.ndarray:
        openness = (np.asarray(gripper, dtype=np.float64) - self._grip_offset) / self._grip_scale
        return self._finger_closed + openness * (self._finger_open - self._finger_closed)

    # ------------------------------------------------------------------ episode
    def reset(self, seed: int) -> np.ndarray:
        """Arms at gym-aloha's start pose, objects where gym-aloha puts them for ``seed``; time 0."""
        mujoco = _mujoco()
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        for i in range(2):
            d.qpos[self._arm_q[6 * i:6 * i + 6]] = self._start_pose[8 * i:8 * i + 6]
            qa = self._fingers[i][0]
            d.qpos[qa], d.qpos[qa + 1] = self._start_pose[8 * i + 6], self._start_pose[8 * i + 7]
        poses = self.task.sample(seed)
        for k, adr in enumerate(self._objects):
            d.qpos[adr:adr + 7] = poses[7 * k:7 * k + 7]
        mujoco.mj_forward(m, d)
        if self.end_effector:  # the mocap bodies where the grippers are: nothing moves at the start
            for i in range(2):
                self.set_tcp(i, *self.tcp_pose(i))
        self.seed = int(seed)
        self.command(self.qpos())
        return self.qpos()

    @property
    def time(self) -> float:
        return float(self.data.time)

    def step(self, n_control_steps: int = 1) -> None:
        """Advance physics by whole control periods (the last command stays applied)."""
        _mujoco().mj_step(self.model, self.data, nstep=self.substeps * int(n_control_steps))

    # ------------------------------------------------------------------ joints
    def qpos(self) -> np.ndarray:
        """(14,) measured joints in profile units (the follower arms' joint_states)."""
        d = self.data
        out = np.empty(14)
        out[self._arm_cols] = d.qpos[self._arm_q]
        out[list(self._grip_cols)] = self.finger_to_gripper([d.qpos[f[0]] for f in self._fingers])
        return out

    def qvel(self) -> np.ndarray:
        """(14,) joint velocities (arm rad/s; gripper in gripper-joint units per second)."""
        d = self.data
        out = np.empty(14)
        out[self._arm_cols] = d.qvel[self._arm_v]
        out[list(self._grip_cols)] = (np.array([d.qvel[f[1]] for f in self._fingers]) * self._grip_scale
                                      / (self._finger_open - self._finger_closed))
        return out

    def command(self, positions) -> None:
        """(14,) joint position command in profile units, applied from now on (arm joints are ignored in the
        end-effector model, where the mocap bodies move the arms)."""
        cmd = np.asarray(positions, dtype=np.float64).reshape(-1)
        if cmd.shape != (14,) or not np.all(np.isfinite(cmd)):
            raise ValueError(f"AlohaSim.command: need 14 finite values in the aloha profile's joint order, "
                             f"got {cmd.tolist() if cmd.size <= 14 else cmd.shape}")
        d = self.data
        arm = cmd[self._arm_cols]
        if not self.end_effector:
            d.ctrl[self._arm_u] = arm
        fingers = self.gripper_to_finger(cmd[list(self._grip_cols)])
        for (_, _, left_u, right_u), f in zip(self._fingers, fingers):
            d.ctrl[left_u], d.ctrl[right_u] = f, -f

    @property
    def start_qpos(self) -> np.ndarray:
        """The arms' start pose with the grippers as gym-aloha starts them (profile units)."""
        q = np.empty(14)
        q[self._arm_cols] = self._start_q
        q[list(self._grip_cols)] = self.finger_to_gripper(self._start_pose[[6, 14]])
        return q

    # ------------------------------------------------------------------ end effector (mocap model)
    def _weld(self, side: int) -> tuple[np.ndarray, np.ndarray]:
        """The weld's pose of gripper ``side`` relative to its mocap body (position, quaternion); in the
        joint-controlled model, the same pose read from the task's mocap model (the TCP is the same point)."""
        if not self.end_effector:
            return _mocap_welds(self.task.ee_xml)[side]
        return _weld_pose(self.model, side)

    def tcp_pose(self, side: int) -> tuple[np.ndarray, np.ndarray]:
        """Where gripper ``side`` (0 left, 1 right) is: its tool centre point (the mocap point, 13.5 cm along
        the pointing axis, just behind the fingertips) and the gripper frame's orientation."""
        mujoco = _mujoco()
        d = self.data
        rel_p, rel_q = self._weld(side)
        inv_p, inv_q = np.zeros(3), np.zeros(4)
        mujoco.mju_negPose(inv_p, inv_q, rel_p, rel_q)
        body = self.model.body(f"vx300s_{SIDES[side]}/gripper_link").id
        pos, mocap_q = np.zeros(3), np.zeros(4)
        mujoco.mju_mulPose(pos, mocap_q, d.xpos[body], d.xquat[body], inv_p, inv_q)
        return pos, np.asarray(d.xquat[body]).copy()

    def tcp_jacobian(self, side: int) -> np.ndarray:
        """(6, 6) world-frame Jacobian of gripper ``side``'s TCP (linear rows, then angular) with respect to
        its arm's six joints, at the last computed kinematics."""
        mujoco = _mujoco()
        m, d = self.model, self.data
        jacp, jacr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
        body = m.body(f"vx300s_{SIDES[side]}/gripper_link").id
        mujoco.mj_jac(m, d, jacp, jacr, self.tcp_pose(side)[0], body)
        cols = self._arm_v[6 * side:6 * side + 6]
        return np.vstack([jacp[:, cols], jacr[:, cols]])

    def set_tcp(self, side: int, pos, gripper_quat) -> None:
        """Move mocap body ``side`` so that the weld pulls the gripper's TCP to ``pos`` with the gripper
        frame at ``gripper_quat`` (w x y z)."""
        mujoco = _mujoco()
        _, rel_q = self._weld(side)
        q = np.asarray(gripper_quat, dtype=np.float64)
        out = np.zeros(4)
        mujoco.mju_mulQuat(out, q / np.linalg.norm(q), np.array([rel_q[0], -rel_q[1], -rel_q[2], -rel_q[3]]))
        i = self.mocap_ids[side]
        self.data.mocap_pos[i] = pos
        self.data.mocap_quat[i] = out

    # ------------------------------------------------------------------ task
    def contacts(self) -> set:
        d, names = self.data, self._geom_names
        pairs = set()
        for g1, g2 in d.contact.geom[:d.ncon]:
            a, b = names[g1], names[g2]
            pairs.add((a, b))
            pairs.add((b, a))
        return pairs

    def reward(self) -> int:
        return int(self.task.reward(self.contacts()))

    def object_poses(self) -> np.ndarray:
        """(n_objects, 7) free-joint poses (position, quaternion w x y z) of the task objects."""
        return np.stack([self.data.qpos[a:a + 7] for a in self._objects])

    # ------------------------------------------------------------------ cameras
    @property
    def camera_roles(self) -> list[str]:
        return [c.role for c in self.profile.cameras]

    def state(self) -> np.ndarray:
        """What a rendered frame depends on (positions of everything, mocap bodies)."""
        mujoco = _mujoco()
        spec = mujoco.mjtState.mjSTATE_QPOS | mujoco.mjtState.mjSTATE_MOCAP_POS | mujoco.mjtState.mjSTATE_MOCAP_QUAT
        out = np.empty(mujoco.mj_stateSize(self.model, spec))
        mujoco.mj_getState(self.model, self.data, out, spec)
        return out

    def render_state(self, state: np.ndarray, camera: str) -> np.ndarray:
        mujoco = _mujoco()
        if self._render_data is None:
            self._render_data = mujoco.MjData(self.model)
        spec = mujoco.mjtState.mjSTATE_QPOS | mujoco.mjtState.mjSTATE_MOCAP_POS | mujoco.mjtState.mjSTATE_MOCAP_QUAT
        mujoco.mj_setState(self.model, self._render_data, state, spec)
        mujoco.mj_forward(self.model, self._render_data)
        return self._renderer.render(self._render_data, camera)

    def render(self, role: str) -> np.ndarray:
        """(H, W, 3) uint8 RGB of profile camera ``role`` now."""
        return self._renderer.render(self.data, self._camera(role))

    def frames(self) -> dict[str, LazyFrame]:
        """Every profile camera's frame of the current state, rendered only when read."""
        state = self.state()
        return {role: LazyFrame(self, state, self._camera(role)) for role in self.camera_roles}

    def _camera(self, role: str) -> str:
        if role in CAMERAS:
            return CAMERAS[role]
        raise KeyError(f"no sim camera for role {role!r}; the sim has {sorted(CAMERAS)}")

    def close(self) -> None:
        self._renderer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
