"""Robot profiles: everything robot-specific, as data (YAML-loadable dataclasses).

A user adds a robot by adding a profile, not code. Shipped: ``kinova_gen3``, ``aloha``, ``agilex``
(YAML files in ``rdt_core/profiles``; ``rdt_bringup/config`` holds the node parameter files that name them).

Units: radians, rad/s, metres; grippers in their joint's own units. A joint maps to its unified slot by
``u = (x - offset) / scale`` (grippers: offset = closed position, scale = open - closed, so openness is
1 open and 0 closed); actions may use their own ``action_offset`` / ``action_scale`` (AgileX divisors).
Joint streams name the JointState topics that fill qpos (state) and action (leader arms);
``RobotProfile.map_stream`` turns one message into profile joint values (reordering, leader-gripper
remapping). A profile is validated when built and should be treated as immutable (derived arrays are
cached): build a changed one with ``RobotProfile.from_dict``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from . import state_vec

__all__ = [
    "JointSpec", "CameraSpec", "JointStreamSpec", "RobotProfile", "CAMERA_SLOTS",
    "load_profile", "available_profiles", "save_profile",
]

#: Without a joint's max_acceleration, trajectories reach its max_velocity from rest in this many seconds
#: (the Gen3's 8.6 rad/s^2 of ros2_kortex's MoveIt joint limits takes its 0.87 rad/s in 0.1 s).
DEFAULT_ACCELERATION_TIME_S = 0.1

#: RDT's three camera slots, in the order the model sees them.
CAMERA_SLOTS = ("exterior", "right_wrist", "left_wrist")


@dataclass
class JointSpec:
    name: str
    unified: str
    lower: float
    upper: float
    max_velocity: float
    is_gripper: bool = False
    offset: float = 0.0
    scale: float = 1.0
    action_offset: float | None = None
    action_scale: float | None = None
    max_acceleration: float | None = None  # rad/s^2 (None: max_velocity / DEFAULT_ACCELERATION_TIME_S)

    @property
    def act_offset(self) -> float:
        return self.offset if self.action_offset is None else self.action_offset

    @property
    def act_scale(self) -> float:
        return self.scale if self.action_scale is None else self.action_scale


@dataclass
class CameraSpec:
    role: str
    slot: str
    topic: str
    compressed: bool = False


@dataclass
class JointStreamSpec:
    role: str
    topic: str
    msg_joint_names: list[str]
    joints: list[str]
    gripper_ranges: dict[str, list[float]] = field(default_factory=dict)


class JointNameMismatchError(ValueError):
    """A JointState message lacks joint names the profile's stream expects (or its arrays disagree)."""


class StreamMapper:
    """One JointState stream -> its profile joints, by message name (the order is cached per name list),
    with the stream's gripper range remaps as one linear map. The one implementation the policy node, the
    live recorder and the bag converter share; build it with :meth:`RobotProfile.stream_mapper`."""

    def __init__(self, profile: "RobotProfile", spec: JointStreamSpec, topic: str | None = None):
        self.role = spec.role
        self.topic = topic or spec.topic
        self.profile_name = profile.name
        self.msg_names = list(spec.msg_joint_names)
        self.joints = list(spec.joints)
        names = profile.joint_names
        self.indices = np.array([names.index(j) for j in self.joints], dtype=np.int64)
        # x -> a * x + b per message joint: identity, or a message gripper range [closed, open] onto the
        # profile joint's (offset, offset + scale) = (closed, open)
        self._a = np.ones(len(self.msg_names))
        self._b = np.zeros(len(self.msg_names))
        specs = {j.name: j for j in profile.joints}
        for i, (mname, jname) in enumerate(zip(self.msg_names, self.joints)):
            rng = spec.gripper_ranges.get(mname)
            if rng is not None:
                closed, opened = float(rng[0]), float(rng[1])
                target = specs[jname]
                self._a[i] = float(target.scale) / (opened - closed)
                self._b[i] = float(target.offset) - closed * self._a[i]
        self._order_cache: dict[tuple[str, ...], np.ndarray] = {}

    def extract(self, names: Sequence[str], positions: Sequence[float]) -> np.ndarray:
        """Values of this stream's joints (profile units), in the stream's ``joints`` order. Message joints
        the stream does not name are ignored (e.g. Robotiq mimic joints)."""
        key = tuple(names)
        positions = np.asarray(positions, dtype=np.float64)
        if positions.shape[0] != len(key):
            raise JointNameMismatchError(f"stream '{self.role}' on {self.topic}: JointState has {len(key)} names "
                                         f"but {positions.shape[0]} positions")
        order = self._order_cache.get(key)
        if order is None:
            where = {n: i for i, n in enumerate(key)}
            missing = [n for n in self.msg_names if n not in where]
            if missing:
                raise JointNameMismatchError(
                    f"stream '{self.role}' on {self.topic}: JointState lacks joint(s) {missing}; it has {list(key)}. "
                    f"Fix: publish those joints, pick the right topic (bag2hdf5: --topic {self.role}=/topic), or "
                    f"correct msg_joint_names in profile '{self.profile_name}'.")
            order = np.array([where[n] for n in self.msg_names], dtype=np.int64)
            self._order_cache[key] = order
        return positions[order] * self._a + self._b


@dataclass
class RobotProfile:
    name: str
    description: str
    joints: list[JointSpec]
    cameras: list[CameraSpec]
    state_streams: list[JointStreamSpec]
    action_streams: list[JointStreamSpec]
    control_frequency: float
    command: dict

    slot_order = CAMERA_SLOTS

    def __post_init__(self) -> None:
        self._validate()
        self._refresh()

    # ----------------------------------------------------------------- derived arrays
    def _refresh(self) -> None:
        j = self.joints
        self._lower = np.array([s.lower for s in j], dtype=np.float64)
        self._upper = np.array([s.upper for s in j], dtype=np.float64)
        self._vel = np.array([s.max_velocity for s in j], dtype=np.float64)
        self._acc = np.array([s.max_velocity / DEFAULT_ACCELERATION_TIME_S if s.max_acceleration is None
                              else s.max_acceleration for s in j], dtype=np.float64)
        self._offset = np.array([s.offset for s in j], dtype=np.float64)
        self._scale = np.array([s.scale for s in j], dtype=np.float64)
        self._aoffset = np.array([s.act_offset for s in j], dtype=np.float64)
        self._ascale = np.array([s.act_scale for s in j], dtype=np.float64)
        self._uidx = state_vec.unified_indices([s.unified for s in j])
        for a in (self._lower, self._upper, self._vel, self._acc, self._uidx):
            a.setflags(write=False)

    @property
    def dof(self) -> int:
        return len(self.joints)

    @property
    def joint_names(self) -> list[str]:
        return [j.name for j in self.joints]

    @property
    def lower(self) -> np.ndarray:
        return self._lower

    @property
    def upper(self) -> np.ndarray:
        return self._upper

    @property
    def max_velocity(self) -> np.ndarray:
        return self._vel

    @property
    def max_acceleration(self) -> np.ndarray:
        """(D,) rad/s^2 (robot units/s^2) the trajectories sent to a trajectory controller may use."""
        return self._acc

    @property
    def gripper_mask(self) -> np.ndarray:
        """(D,) bool, True for gripper joints."""
        return np.array([j.is_gripper for j in self.joints], dtype=bool)

    @property
    def unified_indices(self) -> np.ndarray:
        return self._uidx

    def unified_mask(self) -> np.ndarray:
        return state_vec.mask(self._uidx)

    @property
    def camera_names(self) -> list[str]:
        return [c.role for c in self.cameras]

    def camera_for_slot(self, slot: str) -> CameraSpec | None:
        if slot not in CAMERA_SLOTS:
            raise ValueError(f"unknown camera slot {slot!r}; slots are {list(CAMERA_SLOTS)}")
        for c in self.cameras:
            if c.slot == slot:
                return c
        return None

    def stream(self, role: str) -> JointStreamSpec:
        for s in self.state_streams + self.action_streams:
            if s.role == role:
                return s
        raise KeyError(f"profile {self.name!r} has no joint stream {role!r}; streams: "
                       f"{[s.role for s in self.state_streams + self.action_streams]}")

    # ----------------------------------------------------------------- conversions
    def _check_last(self, arr: np.ndarray, what: str) -> np.ndarray:
        arr = np.asarray(arr, dtype=np.float64)
        if arr.ndim == 0 or arr.shape[-1] != self.dof:
            raise ValueError(
                f"{what}: profile {self.name!r} expects {self.dof} values in the last axis "
                f"(order {self.joint_names}), got shape {arr.shape}")
        return arr

    def _check_vec(self, vec: np.ndarray, what: str) -> np.ndarray:
        vec = np.asarray(vec)
        if vec.ndim == 0 or vec.shape[-1] != state_vec.STATE_DIM:
            raise ValueError(f"{what}: expected a unified vector with last axis {state_vec.STATE_DIM}, "
                             f"got shape {vec.shape}")
        return vec

    def qpos_to_unified(self, qpos: np.ndarray, dtype=np.float32) -> np.ndarray:
        """(..., D) joint positions (robot units) -> (..., 128) unified state."""
        x = self._check_last(qpos, "qpos_to_unified")
        out = state_vec.scatter((x - self._offset) / self._scale, self._uidx)
        return out if dtype == np.float32 else self._scatter64(x, self._offset, self._scale, dtype)

    def unified_to_qpos(self, vec: np.ndarray) -> np.ndarray:
        """(..., 128) unified state -> (..., D) joint positions (robot units, float64)."""
        v = self._check_vec(vec, "unified_to_qpos")
        return state_vec.gather(v, self._uidx).astype(np.float64) * self._scale + self._offset

    def action_to_unified(self, action: np.ndarray, dtype=np.float32) -> np.ndarray:
        """(..., D) action (robot units) -> (..., 128) unified action (action scaling)."""
        x = self._check_last(action, "action_to_unified")
        out = state_vec.scatter((x - self._aoffset) / self._ascale, self._uidx)
        return out if dtype == np.float32 else self._scatter64(x, self._aoffset, self._ascale, dtype)

    def unified_to_action(self, vec: np.ndarray) -> np.ndarray:
        """(..., 128) predicted unified action -> (..., D) commands in robot units (float64)."""
        v = self._check_vec(vec, "unified_to_action")
        return state_vec.gather(v, self._uidx).astype(np.float64) * self._ascale + self._aoffset

    def _scatter64(self, x, offset, scale, dtype) -> np.ndarray:
        out = np.zeros(x.shape[:-1] + (state_vec.STATE_DIM,), dtype=dtype)
        out[..., self._uidx] = (x - offset) / scale
        return out

    def clip_to_limits(self, positions: np.ndarray) -> np.ndarray:
        """Clip (..., D) positions into [lower, upper]."""
        x = self._check_last(positions, "clip_to_limits")
        return np.clip(x, self._lower, self._upper)

    # ----------------------------------------------------------------- streams
    def validate_joint_names(self, names: Sequence[str]) -> None:
        """Raise a ValueError listing missing / extra names versus this profile's joint names."""
        names = list(names)
        expected = self.joint_names
        missing = [n for n in expected if n not in names]
        extra = [n for n in names if n not in expected]
        dups = sorted({n for n in names if names.count(n) > 1})
        if missing or extra or dups:
            parts = []
            if missing:
                parts.append(f"missing {missing}")
            if extra:
                parts.append(f"unexpected {extra}")
            if dups:
                parts.append(f"duplicated {dups}")
            raise ValueError(f"joint names do not match profile {self.name!r}: " + "; ".join(parts)
                             + f". Expected exactly {expected}; fix the joint names or pick/adapt the profile.")

    def stream_mapper(self, role: str, topic: str | None = None) -> StreamMapper:
        """The mapper of joint stream ``role`` (``topic`` only names it in errors; default the profile's)."""
        return StreamMapper(self, self.stream(role), topic)

    def map_stream(self, role: str, msg_names: Sequence[str], positions: Sequence[float]) -> dict[str, float]:
        """One JointState message of stream ``role`` -> {profile joint name: value in profile units}.

        Message joints that the stream does not name are ignored (e.g. Robotiq mimic joints); a named
        joint missing from the message is a JointNameMismatchError (a ValueError) naming the stream, topic
        and the missing names.
        """
        mapper = self.stream_mapper(role)
        return dict(zip(mapper.joints, map(float, mapper.extract(msg_names, positions))))

    # ----------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "control_frequency": float(self.control_frequency),
            "joints": [dataclasses.asdict(j) for j in self.joints],
            "cameras": [dataclasses.asdict(c) for c in self.cameras],
            "state_streams": [dataclasses.asdict(s) for s in self.state_streams],
            "action_streams": [dataclasses.asdict(s) for s in self.action_streams],
            "command": dict(self.command),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "RobotProfile":
        """Build and validate a profile from plain data; a ValueError names the offending field."""
        if not isinstance(d, dict):
            raise ValueError(f"a robot profile must be a mapping, got {type(d).__name__}")
        pname = d.get("name", "<unnamed>")
        where = f"profile {pname!r}"
        known = {"name", "description", "joints", "cameras", "state_streams", "action_streams",
                 "control_frequency", "command"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(known)}")
        for req in ("name", "joints", "cameras", "state_streams", "control_frequency", "command"):
            if req not in d:
                raise ValueError(f"{where}: missing required field {req!r}")

        def build_list(key, klass, required=True):
            items = d.get(key, [] if not required else None)
            if items is None:
                items = []
            if not isinstance(items, list):
                raise ValueError(f"{where}: field {key!r} must be a list, got {type(items).__name__}")
            out = []
            fields = {f.name: f for f in dataclasses.fields(klass)}
            for i, item in enumerate(items):
                path = f"{where}: {key}[{i}]"
                if not isinstance(item, dict):
                    raise ValueError(f"{path} must be a mapping, got {item!r}")
                bad = sorted(set(item) - set(fields))
                if bad:
                    raise ValueError(f"{path}: unknown field(s) {bad}; allowed: {sorted(fields)}")
                need = [n for n, f in fields.items()
                        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
                miss = [n for n in need if n not in item]
                if miss:
                    raise ValueError(f"{path}: missing required field(s) {miss}")
                out.append(klass(**_coerce(klass, item, path)))
            return out

        return cls(
            name=_str(d["name"], f"{where}: name"),
            description=str(d.get("description", "")),
            joints=build_list("joints", JointSpec),
            cameras=build_list("cameras", CameraSpec),
            state_streams=build_list("state_streams", JointStreamSpec),
            action_streams=build_list("action_streams", JointStreamSpec, required=False),
            control_frequency=_num(d["control_frequency"], f"{where}: control_frequency"),
            command=d["command"],
        )

    # ----------------------------------------------------------------- validation
    def _validate(self) -> None:
        w = f"profile {self.name!r}"
        if not self.name or not isinstance(self.name, str):
            raise ValueError("profile: name must be a non-empty string")
        if not self.joints:
            raise ValueError(f"{w}: joints must list at least one joint")
        names = [j.name for j in self.joints]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise ValueError(f"{w}: joints: duplicate joint name(s) {dups}")
        slots = [j.unified for j in self.joints]
        for i, j in enumerate(self.joints):
            p = f"{w}: joints[{i}] ({j.name})"
            if j.unified not in state_vec.STATE_VEC_IDX_MAPPING:
                raise ValueError(f"{p}.unified: unknown slot {j.unified!r}; use a key of "
                                 "rdt_core/data/state_vec.json 'mapping', e.g. 'right_arm_joint_0_pos'")
            if not np.isfinite([j.lower, j.upper]).all() or not j.lower < j.upper:
                raise ValueError(f"{p}.lower/upper: need finite lower < upper, got {j.lower}, {j.upper}")
            if not (np.isfinite(j.max_velocity) and j.max_velocity > 0):
                raise ValueError(f"{p}.max_velocity: must be > 0, got {j.max_velocity}")
            if j.max_acceleration is not None and not (np.isfinite(j.max_acceleration) and j.max_acceleration > 0):
                raise ValueError(f"{p}.max_acceleration: must be > 0 (or left out), got {j.max_acceleration}")
            for attr in ("scale", "action_scale"):
                v = getattr(j, attr)
                if v is not None and (not np.isfinite(v) or v == 0):
                    raise ValueError(f"{p}.{attr}: must be finite and non-zero, got {v}")
        idx = [state_vec.STATE_VEC_IDX_MAPPING[s] for s in slots]
        if len(set(idx)) != len(idx):
            clash = sorted({s for s, k in zip(slots, idx) if idx.count(k) > 1})
            raise ValueError(f"{w}: joints: unified slots {clash} map to the same index of the 128-vector")
        if not (np.isfinite(self.control_frequency) and self.control_frequency > 0):
            raise ValueError(f"{w}: control_frequency must be > 0 Hz, got {self.control_frequency}")
        if not self.cameras:
            raise ValueError(f"{w}: cameras must list at least one camera")
        roles = [c.role for c in self.cameras]
        if len(set(roles)) != len(roles):
            raise ValueError(f"{w}: cameras: duplicate role(s) {sorted({r for r in roles if roles.count(r) > 1})}")
        cslots = [c.slot for c in self.cameras]
        for i, c in enumerate(self.cameras):
            if c.slot not in CAMERA_SLOTS:
                raise ValueError(f"{w}: cameras[{i}] ({c.role}).slot: {c.slot!r} is not one of {list(CAMERA_SLOTS)}")
        if len(set(cslots)) != len(cslots):
            raise ValueError(f"{w}: cameras: two cameras share one slot ({cslots}); each slot holds one camera")
        if not self.state_streams:
            raise ValueError(f"{w}: state_streams must list at least one joint stream")
        sroles = [s.role for s in self.state_streams + self.action_streams]
        if len(set(sroles)) != len(sroles) or set(sroles) & set(roles):
            raise ValueError(f"{w}: stream roles must be unique and differ from camera roles, got "
                             f"streams {sroles}, cameras {roles}")
        for kind in ("state_streams", "action_streams"):
            covered: list[str] = []
            for i, s in enumerate(getattr(self, kind)):
                p = f"{w}: {kind}[{i}] ({s.role})"
                if len(s.msg_joint_names) != len(s.joints):
                    raise ValueError(f"{p}: msg_joint_names has {len(s.msg_joint_names)} names but joints has "
                                     f"{len(s.joints)}; they pair up one to one")
                unknown = [n for n in s.joints if n not in names]
                if unknown:
                    raise ValueError(f"{p}.joints: {unknown} are not joints of the profile ({names})")
                for mname, rng in s.gripper_ranges.items():
                    if mname not in s.msg_joint_names:
                        raise ValueError(f"{p}.gripper_ranges: {mname!r} is not in msg_joint_names")
                    if len(rng) != 2 or rng[0] == rng[1]:
                        raise ValueError(f"{p}.gripper_ranges[{mname!r}]: need [closed, open] with closed != open, "
                                         f"got {rng}")
                covered += s.joints
            dup = sorted({n for n in covered if covered.count(n) > 1})
            if dup:
                raise ValueError(f"{w}: {kind}: joint(s) {dup} are filled by more than one stream")
            if (kind == "state_streams" or covered) and set(covered) != set(names):
                raise ValueError(f"{w}: {kind} leave joint(s) {[n for n in names if n not in covered]} unfilled; "
                                 f"every profile joint needs exactly one stream")
        if not isinstance(self.command, dict) or "backend" not in self.command:
            raise ValueError(f"{w}: command must be a mapping with at least a 'backend' key, got {self.command!r}")


def _str(v: Any, path: str) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"{path}: expected a non-empty string, got {v!r}")
    return v


def _num(v: Any, path: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{path}: expected a number, got {v!r}")
    return float(v)


def _coerce(klass, item: dict, path: str) -> dict:
    """Type-check one YAML mapping against the dataclass fields (names the bad field)."""
    out = {}
    for f in dataclasses.fields(klass):
        if f.name not in item:
            continue
        v = item[f.name]
        t = str(f.type)
        p = f"{path}.{f.name}"
        if t == "str":
            out[f.name] = _str(v, p)
        elif t == "float":
            out[f.name] = _num(v, p)
        elif t == "float | None":
            out[f.name] = None if v is None else _num(v, p)
        elif t == "bool":
            if not isinstance(v, bool):
                raise ValueError(f"{p}: expected true/false, got {v!r}")
            out[f.name] = v
        elif t == "list[str]":
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ValueError(f"{p}: expected a list of strings, got {v!r}")
            out[f.name] = list(v)
        elif t.startswith("dict"):
            if not isinstance(v, dict):
                raise ValueError(f"{p}: expected a mapping, got {v!r}")
            out[f.name] = {str(k): [_num(x, f"{p}[{k!r}]") for x in r] if isinstance(r, list) else
                           _bad(f"{p}[{k!r}]", r) for k, r in v.items()}
        else:  # pragma: no cover - all fields are covered above
            out[f.name] = v
    return out


def _bad(path: str, v: Any):
    raise ValueError(f"{path}: expected a list [closed, open], got {v!r}")


# --------------------------------------------------------------------- loading
def _profiles_dir():
    return Path(__file__).resolve().parent / "profiles"


def available_profiles() -> list[str]:
    """Names of the profiles shipped with rdt_core."""
    return sorted(p.name[:-5] for p in _profiles_dir().iterdir() if p.name.endswith(".yaml"))


def load_profile(name_or_path: str | Path) -> RobotProfile:
    """A shipped profile by name (``kinova_gen3``) or a YAML file by path."""
    if isinstance(name_or_path, RobotProfile):
        return name_or_path
    s = str(name_or_path)
    path = Path(s)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"robot profile file {path} does not exist")
        text = path.read_text(encoding="utf-8")
        source = str(path)
    else:
        res = _profiles_dir().joinpath(f"{s}.yaml")
        if not res.is_file():
            raise ValueError(f"unknown robot profile {s!r}; shipped profiles: {available_profiles()} "
                             f"(or pass the path of a profile YAML file)")
        text = res.read_text(encoding="utf-8")
        source = f"shipped profile {s}"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{source}: not valid YAML: {e}") from e
    try:
        return RobotProfile.from_dict(data)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from e


def save_profile(profile: RobotProfile, path: str | Path) -> None:
    """Write a profile as YAML (loadable with load_profile)."""
    Path(path).write_text(yaml.safe_dump(profile.to_dict(), sort_keys=False), encoding="utf-8")
