"""A kinematic fake robot for demos and tests without hardware (like ros2_kortex's mock hardware).

Joints track position commands under the profile's velocity limits; three synthetic cameras render the
arm and a target; seeded and deterministic.

The pictures are a planar sketch, not physics: each arm is a polyline whose link angles are cumulative
sums of its joint angles (so every joint changes the picture), the gripper two jaws whose gap is its
openness, and the target a coloured disc drawn where the arm's tip would be at the target joints. The
exterior camera shows the whole scene; a wrist camera shows a closer view centred on and turning with
its arm's tip, so the target grows and moves in it as the arm approaches.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .robots import RobotProfile

__all__ = ["FakeRobot"]

_ARM_COLOURS = {"right": (235, 120, 40), "left": (60, 140, 235)}   # RGB
_TARGET_COLOUR = (40, 200, 80)
_JAW_COLOUR = (230, 230, 230)
_ANGLE_GAIN = 0.6          # picture angle per joint radian (keeps the sketch on screen)
_WRIST_ZOOM = 2.5


class FakeRobot:
    """Kinematic joints + rendered cameras for one robot profile (see module docstring)."""

    def __init__(self, profile: RobotProfile, *, seed: int = 0, image_size: tuple[int, int] = (480, 640),
                 home: np.ndarray | None = None):
        self.profile = profile
        self.image_size = (int(image_size[0]), int(image_size[1]))
        if self.image_size[0] < 16 or self.image_size[1] < 16:
            raise ValueError(f"image_size must be at least 16x16 (height, width), got {image_size}")
        self._rng = np.random.default_rng(seed)
        p = profile
        self._grip = p.gripper_mask
        self._scale = np.array([j.scale for j in p.joints])
        self._offset = np.array([j.offset for j in p.joints])
        if home is None:
            # arm joints at 0 (or the nearest limit), grippers open
            home = np.where(self._grip, self._offset + self._scale, np.clip(0.0, p.lower, p.upper))
        self.home = self._checked(home, "home")
        self._arms = self._split_arms()
        self._background = self._make_background()
        self.time_s = 0.0
        self.reset()

    # ------------------------------------------------------------------ state
    def _checked(self, positions, what: str) -> np.ndarray:
        x = np.asarray(positions, dtype=np.float64).reshape(-1)
        if x.size != self.profile.dof:
            raise ValueError(f"{what}: profile {self.profile.name!r} has {self.profile.dof} joints "
                             f"{self.profile.joint_names}, got {x.size} values")
        if not np.isfinite(x).all():
            raise ValueError(f"{what}: values must be finite, got {x}")
        return np.clip(x, self.profile.lower, self.profile.upper)

    def reset(self, qpos: np.ndarray | None = None, target: np.ndarray | None = None) -> None:
        """Back to ``qpos`` (default home) at time 0; a new random target from the seed when None."""
        self._q = self.home.copy() if qpos is None else self._checked(qpos, "reset qpos")
        self._cmd = self._q.copy()
        self.target = self._random_target() if target is None else self._checked(target, "reset target")
        self.time_s = 0.0

    def _random_target(self) -> np.ndarray:
        p = self.profile
        span = p.upper - p.lower
        lo = np.maximum(p.lower + 0.1 * span, self.home - 0.8)
        hi = np.minimum(p.upper - 0.1 * span, self.home + 0.8)
        t = self._rng.uniform(lo, hi)
        openness = self._rng.uniform(0.0, 1.0, size=self.profile.dof)
        return np.where(self._grip, self._offset + openness * self._scale, t)

    def command(self, positions: np.ndarray) -> None:
        """Set the position target (clipped to the profile's limits)."""
        self._cmd = self._checked(positions, "command")

    def step(self, dt: float) -> None:
        """Advance simulated time by ``dt``; each joint moves toward the command at <= its max velocity."""
        if not dt > 0:
            raise ValueError(f"step: dt must be > 0 s, got {dt}")
        limit = self.profile.max_velocity * dt
        self._q = self._q + np.clip(self._cmd - self._q, -limit, limit)
        self.time_s += float(dt)

    def joint_positions(self) -> np.ndarray:
        return self._q.copy()

    @property
    def commanded(self) -> np.ndarray:
        return self._cmd.copy()

    @property
    def time_ns(self) -> int:
        return int(round(self.time_s * 1e9))

    def expert_action(self, horizon_s: float | None = None) -> np.ndarray:
        """Scripted expert: the next position command, toward the target at 80 % of the velocity limit
        over ``horizon_s`` (default one control period)."""
        h = 1.0 / self.profile.control_frequency if horizon_s is None else float(horizon_s)
        if not h > 0:
            raise ValueError(f"expert_action: horizon_s must be > 0, got {horizon_s}")
        limit = 0.8 * self.profile.max_velocity * h
        return self._q + np.clip(self.target - self._q, -limit, limit)

    def distance_to_target(self, qpos: np.ndarray | None = None):
        """Euclidean distance in unified units (radians; grippers as openness 0..1) from the current joints,
        or from each row of ``qpos`` ((D,) -> float, (N, D) -> (N,), e.g. a logged run)."""
        q = self._q if qpos is None else np.asarray(qpos, dtype=np.float64)
        d = np.linalg.norm((q - self.target) / np.where(self._grip, self._scale, 1.0), axis=-1)
        return float(d) if d.ndim == 0 else d

    # ------------------------------------------------------------------ rendering
    def _split_arms(self) -> dict[str, dict]:
        arms: dict[str, dict] = {}
        for i, j in enumerate(self.profile.joints):
            side = "left" if j.unified.startswith("left_") else "right"
            arm = arms.setdefault(side, {"joints": [], "gripper": None})
            if j.is_gripper:
                arm["gripper"] = i
            else:
                arm["joints"].append(i)
        H, W = self.image_size
        reach = 0.42 * H if len(arms) == 1 else 0.36 * H
        for side, arm in arms.items():
            n = max(len(arm["joints"]), 1)
            lengths = np.linspace(1.0, 0.5, n)
            arm["lengths"] = lengths / lengths.sum() * reach
            x = 0.5 * W if len(arms) == 1 else (0.3 * W if side == "left" else 0.7 * W)
            arm["base"] = np.array([x, 0.88 * H])
        return arms

    def _make_background(self) -> np.ndarray:
        H, W = self.image_size
        y = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
        bg = (np.array([70, 70, 80], np.float32) * (1 - y) + np.array([150, 135, 110], np.float32) * y)
        bg = np.broadcast_to(bg, (H, W, 3)).copy()
        # a seeded tiled texture, so wrist views have something to move across
        tile = self._rng.integers(-12, 13, size=(8, 8, 1)).astype(np.float32)
        tex = np.kron(tile, np.ones((max(H // 8, 1) + 1, max(W // 8, 1) + 1, 1), np.float32))[:H, :W]
        return np.clip(bg + tex, 0, 255).astype(np.uint8)

    def _chain(self, arm: dict, q: np.ndarray) -> tuple[np.ndarray, float]:
        """Joint points (n+1, 2) in exterior-image pixels and the tip's heading angle."""
        pts = [arm["base"]]
        angle = -math.pi / 2
        for k, idx in enumerate(arm["joints"]):
            angle += _ANGLE_GAIN * q[idx] * (1.0 if k % 2 == 0 else -1.0)
            pts.append(pts[-1] + arm["lengths"][k] * np.array([math.cos(angle), math.sin(angle)]))
        return np.stack(pts), angle

    def _openness(self, arm: dict, q: np.ndarray) -> float:
        g = arm["gripper"]
        return 1.0 if g is None else float(np.clip((q[g] - self._offset[g]) / self._scale[g], 0.0, 1.0))

    def render(self) -> dict[str, np.ndarray]:
        """Camera role -> (H, W, 3) uint8 RGB for each of the profile's cameras."""
        scene = {side: (self._chain(arm, self._q), self._chain(arm, self.target)[0][-1], self._openness(arm, self._q))
                 for side, arm in self._arms.items()}
        out = {}
        for cam in self.profile.cameras:
            if cam.slot == "exterior":
                xf = (1.0, 0.0, np.zeros(2), np.zeros(2))
            else:
                side = "left" if cam.slot == "left_wrist" else "right"
                side = side if side in scene else next(iter(scene))
                (pts, heading), _, _ = scene[side]
                H, W = self.image_size
                # look along the tip: its heading points up in the image, tip near the bottom centre
                xf = (_WRIST_ZOOM, -math.pi / 2 - heading, pts[-1], np.array([W / 2, 0.8 * H]))
            out[cam.role] = self._draw(scene, xf)
        return out

    def _draw(self, scene: dict, xf) -> np.ndarray:
        zoom, rot, src, dst = xf
        c, s = math.cos(rot), math.sin(rot)
        R = np.array([[c, -s], [s, c]]) * zoom

        def tr(p):
            return ((np.asarray(p) - src) @ R.T + dst)

        if zoom == 1.0 and rot == 0.0:
            img = self._background.copy()
        else:  # the wrist view's table moves and turns with the tip, as a real wrist camera's does
            M = np.hstack([R, (dst - R @ src)[:, None]])
            img = cv2.warpAffine(self._background, M, (self.image_size[1], self.image_size[0]),
                                 flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT)
        H = self.image_size[0]
        shift = 4                                   # sub-pixel precision for cv2 drawing
        k = float(1 << shift)
        for side, ((pts, heading), target_tip, openness) in scene.items():
            r = max(int(0.035 * H * zoom), 2)
            cv2.circle(img, tuple(np.round(tr(target_tip) * k).astype(int)), int(r * k), _TARGET_COLOUR, -1,
                       cv2.LINE_AA, shift)
            cv2.circle(img, tuple(np.round(tr(target_tip) * k).astype(int)), int(r * 0.45 * k), (250, 250, 250),
                       -1, cv2.LINE_AA, shift)
            poly = np.round(tr(pts) * k).astype(np.int32)
            cv2.polylines(img, [poly], False, _ARM_COLOURS[side], max(int(0.02 * H * zoom), 2), cv2.LINE_AA, shift)
            for p in poly[:-1]:
                cv2.circle(img, tuple(p), int(max(0.012 * H * zoom, 1.5) * k), (40, 40, 40), -1, cv2.LINE_AA, shift)
            # gripper jaws: two short segments either side of the tip, gap = openness
            d = np.array([math.cos(heading), math.sin(heading)])
            n = np.array([-d[1], d[0]])
            gap = (0.01 + 0.03 * openness) * H
            jaw = 0.04 * H
            for sign in (-1.0, 1.0):
                a = pts[-1] + sign * gap * n
                b = a + jaw * d
                seg = np.round(tr(np.stack([a, b])) * k).astype(np.int32)
                cv2.polylines(img, [seg], False, _JAW_COLOUR, max(int(0.01 * H * zoom), 1), cv2.LINE_AA, shift)
        return img
