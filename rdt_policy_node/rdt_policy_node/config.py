"""PolicyConfig: every setting of the policy node, the closed-loop CLI and the runtime, defined once.

One field per setting, with its default and a one-line doc. From it:
- ``node.py`` declares one ROS parameter per field (``ros_parameters``) and reads them back
  (``from_parameters``);
- ``rdt-closed-loop`` builds its options from the fields that need no ROS (``add_arguments`` /
  ``from_arguments``);
- ``make_controller`` takes the whole config;
- the parameter files in rdt_bringup/config are checked against it, and ``python -m
  rdt_policy_node.config --profile P`` prints a documented ``rdt_policy_node`` section.

Every value is checked here and only here: a bad value raises ``ConfigError`` naming the parameter and
how to fix it, before anything starts. Settings whose default depends on the robot (empty topics, rate 0)
are filled from the profile by ``for_profile``, which also checks what depends on the robot (one topic
per camera, one tolerance per joint).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import typing
from dataclasses import dataclass, field

from .conversions import BACKENDS, GRIPPER_ACTION_TYPES
from .runtime.interpolation import INTERPOLATION_MODES, expand_steps_length
from .runtime.scheduler import CHUNKING_MODES

#: where a setting is used: "model" and "runtime" reach the closed-loop CLI too, "ros" only the node
SCOPES = ("model", "runtime", "ros")
DTYPES = ("", "bfloat16", "float16", "float32")
DEFAULT_TRAJECTORY_TOPIC = "/joint_trajectory_controller/joint_trajectory"
DEFAULT_GRIPPER_ACTION = "/robotiq_gripper_controller/gripper_cmd"
DEFAULT_KORTEX_IP = "192.168.1.10"


class ConfigError(ValueError):
    """A setting with a bad value; ``parameter`` is its name."""

    def __init__(self, parameter: str, message: str):
        super().__init__(f"parameter {parameter}: {message}")
        self.parameter = parameter


def setting(default, doc: str, *, scope: str = "runtime", choices=None, minimum=None, above=None,
            maximum=None, backends: tuple = ()):
    """A PolicyConfig field. ``minimum`` (>=), ``above`` (>), ``maximum`` (<=) bound numbers (every item of
    a list); ``backends``: the command backends the setting is for (a parameter file of a robot with
    another backend may leave it out)."""
    meta = {"doc": doc, "scope": scope, "choices": choices, "minimum": minimum, "above": above,
            "maximum": maximum, "backends": tuple(backends)}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class PolicyConfig:
    # ---------------------------------------------------------------- robot and model
    profile: str = setting("kinova_gen3", "robot profile: a shipped name or the path of a profile YAML",
                           scope="model")
    checkpoint: str = setting("tiny", "RDT checkpoint (HF dir, DeepSpeed dir or file, rdt-train export); "
                                      "tiny = random UNTRAINED tiny model", scope="model")
    vision_encoder: str = setting("", "local SigLIP folder (empty = the one an rdt_training export carries)",
                                  scope="model")
    instruction: str = setting("", "instruction embedding .pt (a path, or a name in instruction_dir)",
                               scope="model")
    instruction_dir: str = setting("", "folder of .pt instruction embeddings that ~/set_instruction may name",
                                   scope="ros")
    device: str = setting("cpu", "torch device of the model: cpu | cuda | cuda:N", scope="ros")
    dtype: str = setting("", "bfloat16 | float16 | float32 (empty = bfloat16 on CUDA, float32 on CPU)",
                         scope="ros", choices=DTYPES)
    realtime_priority: int = setting(0, "SCHED_FIFO priority (1-99) of the control tick's thread; 0 = normal "
                                        "priority (needs rtprio rights: README, Real-time priority)", scope="ros",
                                     minimum=0, maximum=99)
    # ---------------------------------------------------------------- sensors
    camera_topics: tuple[str, ...] = setting((), "image topics in the profile's camera order "
                                                 "(empty = the profile's topics)", scope="ros")
    camera_compressed: tuple[bool, ...] = setting((), "per camera: true = sensor_msgs/CompressedImage "
                                                      "(empty = the profile's setting)", scope="ros")
    joint_state_topics: tuple[str, ...] = setting((), "JointState topics in the profile's state_streams order "
                                                      "(empty = the profile's topics)", scope="ros")
    max_observation_age_s: float = setting(0.5, "hold when any camera or joint stream is older than this (s)",
                                           above=0.0)
    jpeg_roundtrip: bool = setting(True, "JPEG-encode and decode frames like the official deployment "
                                         "(matches the recorded training frames)")
    # ---------------------------------------------------------------- chunks and timing
    control_rate_hz: float = setting(0.0, "the model's control frequency: one chunk row per 1/this s "
                                          "(0 = the profile's)", minimum=0.0)
    publish_rate_hz: float = setting(0.0, "control timer and command rate, Hz (0 = control_rate_hz)",
                                     minimum=0.0)
    execute_horizon: int = setting(0, "actions of each chunk used before switching to the next (0 = all)",
                                   minimum=0)
    blend_steps: int = setting(5, "cross-fade length at chunk switches, in control steps", minimum=0)
    chunking_mode: str = setting("crossfade", "crossfade (linear blend) | rtc (real-time chunking: the new "
                                              "chunk is conditioned on the committed actions)",
                                 choices=CHUNKING_MODES)
    initial_latency_s: float = setting(0.3, "inference latency assumed until the first one is measured (s)",
                                       above=0.0)
    interpolation: str = setting("linear", "publish-tick commands: linear (sample the plan) | max_step "
                                           "(official arm_steps_length sub-steps)", choices=INTERPOLATION_MODES)
    arm_steps_length: tuple[float, ...] = setting((), "max_step: per-joint step per tick (one per joint or "
                                                      "one per arm joint)", above=0.0)
    # ---------------------------------------------------------------- safety
    dry_run: bool = setting(False, "compute and publish ~/action_chunk and ~/status, command nothing")
    velocity_scale: float = setting(1.0, "fraction of the profile's velocity limits commands may use",
                                    above=0.0, maximum=1.0)
    start_move_duration_s: float = setting(3.0, "minimum duration of the slow move to the first action (s)",
                                           minimum=0.0)
    start_velocity_scale: float = setting(0.25, "fraction of the velocity limits the slow start move uses",
                                          above=0.0, maximum=1.0)
    chunk_range_margin: float = setting(0.25, "a chunk row may exceed a joint limit by this fraction of the "
                                              "joint's range before the whole chunk is rejected (within it "
                                              "rows are clipped)", minimum=0.0)
    resync_tolerance_s: float = setting(0.1, "while holding, an arm joint further than max_velocity * this "
                                             "from the command was moved by something else and is held where "
                                             "it is measured", minimum=0.0)
    tracking_watchdog: bool = setting(True, "hold (until ~/resume) when a joint does not follow the commands "
                                            "while running")
    tracking_tolerance: tuple[float, ...] = setting((0.15,), "tracking error floor in robot units (rad): one "
                                                             "value for every joint or one per profile joint",
                                                    above=0.0)
    tracking_lag_s: float = setting(0.3, "how far behind its commands a joint may follow (controller lag + "
                                         "joint state latency), s", minimum=0.0)
    tracking_timeout_s: float = setting(0.5, "how long a joint may stay off track before the tracking hold, s",
                                        minimum=0.0)
    tracking_grippers: bool = setting(False, "watch grippers too (a gripper closed on an object stops short "
                                             "by design)")
    # ---------------------------------------------------------------- commands
    command_backend: str = setting("", "joint_trajectory | kortex_api | interbotix | joint_state | "
                                       "float64_array (empty = the profile's command.backend)", scope="ros",
                                   choices=("",) + BACKENDS)
    trajectory_topic: str = setting("", "JointTrajectory topic (empty = the profile's command.topic)",
                                    scope="ros", backends=("joint_trajectory",))
    trajectory_lead_s: float = setting(0.1, "a new JointTrajectory follows the running one this long before it "
                                            "changes course: the longest a message may take to reach the "
                                            "controller for a smooth (C1) switch, s", scope="ros", above=0.0,
                                       backends=("joint_trajectory",))
    trajectory_horizon_s: float = setting(0.5, "length of each JointTrajectory: the most motion the controller "
                                               "runs unsupervised if the node dies", scope="ros", above=0.0,
                                          backends=("joint_trajectory",))
    trajectory_controller_rate_hz: float = setting(1000.0, "update rate of the arm's joint_trajectory_controller "
                                                           "(ros2_kortex: 1000 Hz); 0 = an ideal controller",
                                                   scope="ros", minimum=0.0, backends=("joint_trajectory",))
    gripper_action: str = setting("", "gripper action server name (empty = the profile's "
                                      "command.gripper_action)", scope="ros", backends=("joint_trajectory",))
    gripper_action_type: str = setting("", "GripperCommand (Humble) | ParallelGripperCommand (Jazzy); empty = "
                                           "the profile's", scope="ros", choices=("",) + GRIPPER_ACTION_TYPES,
                                       backends=("joint_trajectory",))
    kortex_ip: str = setting("", "arm IP for command_backend kortex_api (empty = the profile's "
                                 "command.kortex_ip, else 192.168.1.10)", scope="ros", backends=("kortex_api",))

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = _coerce(f.name, _kind(f.name), getattr(self, f.name))
            _check_bounds(f, value)
            object.__setattr__(self, f.name, value)
        if self.interpolation == "max_step" and not self.arm_steps_length:
            raise ConfigError("arm_steps_length", "interpolation max_step needs the per-joint step lengths; "
                                                  "give arm_steps_length or use interpolation linear")
        if self.trajectory_lead_s >= self.trajectory_horizon_s:
            raise ConfigError("trajectory_lead_s", f"{self.trajectory_lead_s} s must be shorter than "
                                                   f"trajectory_horizon_s ({self.trajectory_horizon_s} s)")

    # ---------------------------------------------------------------- construction
    @classmethod
    def fields(cls, scopes=SCOPES) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if f.metadata["scope"] in scopes]

    @classmethod
    def from_parameters(cls, values: dict, base: "PolicyConfig | None" = None) -> "PolicyConfig":
        """A config from ``{name: value}`` (ROS parameters, a parameter file's section): unknown names are an
        error, missing ones and None (a ROS parameter without a value: rclpy reads an empty list in a
        parameter file so) keep ``base``'s value (default: the defaults)."""
        values = {k: v for k, v in values.items() if v is not None}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            close = {u: [n for n in sorted(names) if n.split("_")[0] == u.split("_")[0]] for u in unknown}
            hint = "; ".join(f"{u} (did you mean {', '.join(c)}?)" if c else u for u, c in close.items())
            raise ConfigError(unknown[0], f"unknown setting(s) {hint}; the policy's settings are "
                                          f"{sorted(names)}")
        return dataclasses.replace(base or cls(), **values)

    def replace(self, **changes) -> "PolicyConfig":
        return self.from_parameters(changes, base=self)

    def for_profile(self, profile, horizon: int | None = None) -> "PolicyConfig":
        """This config with every "empty = the profile's" value filled from ``profile`` (a RobotProfile),
        checked against the robot (and the checkpoint's chunk length ``horizon`` when given).
        Idempotent: a resolved config resolves to itself."""
        cams, streams, cmd = profile.cameras, profile.state_streams, profile.command
        control = self.control_rate_hz or float(profile.control_frequency)
        out = self.replace(
            control_rate_hz=control,
            publish_rate_hz=self.publish_rate_hz or control,
            camera_topics=self.camera_topics or tuple(c.topic for c in cams),
            camera_compressed=self.camera_compressed or tuple(bool(c.compressed) for c in cams),
            joint_state_topics=self.joint_state_topics or tuple(s.topic for s in streams),
            command_backend=self.command_backend or cmd.get("backend", "joint_trajectory"),
            trajectory_topic=self.trajectory_topic or cmd.get("topic", DEFAULT_TRAJECTORY_TOPIC),
            gripper_action=self.gripper_action or cmd.get("gripper_action", DEFAULT_GRIPPER_ACTION),
            gripper_action_type=self.gripper_action_type or cmd.get("gripper_action_type", "GripperCommand"),
            kortex_ip=self.kortex_ip or cmd.get("kortex_ip", DEFAULT_KORTEX_IP))
        roles = [c.role for c in cams]
        for name in ("camera_topics", "camera_compressed"):
            if len(getattr(out, name)) != len(cams):
                raise ConfigError(name, f"needs one entry per camera of profile {profile.name!r} {roles}, got "
                                        f"{list(getattr(out, name))}; leave it empty to use the profile's")
        if len(out.joint_state_topics) != len(streams):
            raise ConfigError("joint_state_topics", f"needs one topic per state stream of profile "
                                                    f"{profile.name!r} {[s.role for s in streams]}, got "
                                                    f"{list(out.joint_state_topics)}; leave it empty to use "
                                                    f"the profile's")
        if len(out.tracking_tolerance) not in (1, profile.dof):
            raise ConfigError("tracking_tolerance", f"give one value for every joint or one per joint "
                                                    f"({profile.dof}: {profile.joint_names}), got "
                                                    f"{len(out.tracking_tolerance)}")
        if out.arm_steps_length:
            try:
                steps = tuple(expand_steps_length(out.arm_steps_length, profile.dof).tolist())
            except ValueError as e:
                raise ConfigError("arm_steps_length", str(e)) from None
            out = out.replace(arm_steps_length=steps)
        if out.command_backend == "joint_trajectory":
            from .runtime.streaming import refresh_time

            arm = ~profile.gripper_mask
            step = 1.0 / out.publish_rate_hz
            least = refresh_time(profile.max_velocity[arm] * out.velocity_scale, profile.max_acceleration[arm],
                                 out.trajectory_lead_s, step) + step
            if out.trajectory_horizon_s <= least:
                raise ConfigError("trajectory_horizon_s", f"{out.trajectory_horizon_s} s is too short to splice one "
                                                          f"trajectory onto the next: give more than {least:.3f} s "
                                                          f"(trajectory_lead_s + the braking time from full speed "
                                                          f"+ 3 publish periods), e.g. 0.5")
        if horizon is not None and out.execute_horizon > horizon:
            raise ConfigError("execute_horizon", f"{out.execute_horizon} is longer than the checkpoint's chunk "
                                                 f"({horizon} actions); use 1..{horizon}, or 0 for all")
        return out

    def as_parameters(self) -> dict:
        """``{name: value}`` with lists where ROS 2 parameters and YAML have arrays."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    # ---------------------------------------------------------------- ROS parameters
    @classmethod
    def ros_parameters(cls) -> list[tuple[str, object, str, bool]]:
        """(name, default, description, dynamic_typing) of every setting, for ``Node.declare_parameter``.

        Arrays and numbers are dynamically typed: rclpy would type an empty list as a byte array, and refuse
        ``3`` for a double or ``0.15`` for a list of doubles; ``from_parameters`` checks them instead."""
        out = []
        for f in dataclasses.fields(cls):
            kind = _kind(f.name)
            out.append((f.name, _plain(f.default), f.metadata["doc"], kind not in ("str", "bool", "int")))
        return out

    # ---------------------------------------------------------------- command line
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, scopes=("model", "runtime"), defaults=None) -> None:
        """One ``--option`` per setting of ``scopes`` (``--execute-horizon``, ``--no-jpeg-roundtrip``, ...).
        ``defaults``: a PolicyConfig whose values the help shows (the caller's defaults)."""
        shown = defaults or cls()
        group = parser.add_argument_group("policy settings (rdt_policy_node.config.PolicyConfig)")
        for f in cls.fields(scopes):
            kind = _kind(f.name)
            opt = "--" + f.name.replace("_", "-")
            text = f"{f.metadata['doc']} (default: {_plain(getattr(shown, f.name))})"
            if kind == "bool":
                group.add_argument(opt, action=argparse.BooleanOptionalAction, default=None, help=text)
            elif kind.startswith("tuple"):
                group.add_argument(opt, nargs="+", type=_ITEM[kind], default=None, metavar=f.name.upper(),
                                   help=text)
            else:
                group.add_argument(opt, type=_ITEM[kind], default=None, choices=f.metadata["choices"], help=text)

    @classmethod
    def from_arguments(cls, args: argparse.Namespace, base: "PolicyConfig | None" = None) -> "PolicyConfig":
        """The config of parsed ``add_arguments`` options over ``base`` (options not given keep its value)."""
        given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                 if getattr(args, f.name, None) is not None}
        return cls.from_parameters(given, base)

    # ---------------------------------------------------------------- parameter files
    @classmethod
    def documented_in_parameter_file(cls, backend: str) -> set[str]:
        """The settings a robot's parameter file must list: all but those for other command backends."""
        return {f.name for f in dataclasses.fields(cls)
                if not f.metadata["backends"] or backend in f.metadata["backends"]}

    def yaml_section(self, node_name: str = "rdt_policy_node") -> str:
        """A commented ROS 2 parameter file section with every setting of this config."""
        lines = [f"{node_name}:", "  ros__parameters:"]
        for f in dataclasses.fields(self):
            value = _plain(getattr(self, f.name))
            # a ROS 2 parameter file cannot hold an empty list (its type is unknown): shown commented out
            entry = f"    {'# ' if value == [] else ''}{f.name}: {json.dumps(value)}"
            lines.append(f"{entry:<40} # {f.metadata['doc']}")
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- value checks
_ITEM = {"str": str, "bool": bool, "int": int, "float": float,
         "tuple_str": str, "tuple_bool": bool, "tuple_float": float}
_KINDS: dict[str, str] = {}


def _kind(name: str) -> str:
    """str | bool | int | float | tuple_str | tuple_bool | tuple_float, from the field's annotation."""
    if not _KINDS:
        for n, hint in typing.get_type_hints(PolicyConfig).items():
            if typing.get_origin(hint) is tuple:
                _KINDS[n] = "tuple_" + typing.get_args(hint)[0].__name__
            else:
                _KINDS[n] = hint.__name__
    return _KINDS[name]


def _scalar(name: str, kind: str, value):
    import numpy as np

    if isinstance(value, np.generic):
        value = value.item()
    if kind == "str":
        if isinstance(value, str):
            return value
        raise ConfigError(name, f"expected a string, got {value!r}")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise ConfigError(name, f"expected true or false, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(name, f"expected a number, got {value!r}")
    if kind == "int":
        if float(value).is_integer():
            return int(value)
        raise ConfigError(name, f"expected a whole number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(name, f"expected a finite number, got {value!r}")
    return float(value)


def _coerce(name: str, kind: str, value):
    if not kind.startswith("tuple"):
        return _scalar(name, kind, value)
    item = kind.removeprefix("tuple_")
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        value = [value]  # one value where a list is expected (tracking_tolerance: 0.15)
    return tuple(_scalar(name, item, v) for v in value)


def _check_bounds(f: dataclasses.Field, value) -> None:
    m = f.metadata
    if m["choices"] is not None and value not in m["choices"]:
        shown = [c if c else '"" (the default)' for c in m["choices"]]
        raise ConfigError(f.name, f"{value!r} is not one of {', '.join(map(str, shown))}")
    for v in (value if isinstance(value, tuple) else (value,)):
        if isinstance(v, (str, bool)):
            continue
        if m["minimum"] is not None and v < m["minimum"]:
            raise ConfigError(f.name, f"must be >= {m['minimum']:g}, got {v:g} ({m['doc']})")
        if m["above"] is not None and v <= m["above"]:
            raise ConfigError(f.name, f"must be > {m['above']:g}, got {v:g} ({m['doc']})")
        if m["maximum"] is not None and v > m["maximum"]:
            raise ConfigError(f.name, f"must be <= {m['maximum']:g}, got {v:g} ({m['doc']})")


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def main(argv=None) -> int:
    """Print a documented rdt_policy_node parameter section (defaults, or resolved for a profile)."""
    p = argparse.ArgumentParser(prog="python -m rdt_policy_node.config", description=main.__doc__)
    p.add_argument("--profile", help="fill the profile-dependent settings (topics, rates, backend) from it")
    a = p.parse_args(argv)
    config = PolicyConfig()
    if a.profile:
        from rdt_core.robots import load_profile

        config = config.replace(profile=a.profile).for_profile(load_profile(a.profile))
    sys.stdout.write(config.yaml_section())
    return 0


if __name__ == "__main__":
    sys.exit(main())
