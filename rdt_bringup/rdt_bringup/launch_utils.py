"""What the launch files decide, as plain Python (no launch / ROS imports), so it is tested without ROS.

A launch file reads its arguments as strings and calls ``plan_robot_launch`` / ``plan_record_launch``;
the plan says which nodes to start with which parameter overrides (on top of the YAML parameter file),
and whether to include the ros2_kortex driver. The launch file only turns the plan into actions.

Rules the plans follow:
- an empty argument means "keep the parameter file's value"; only given arguments override it;
- the fake robot publishes and listens exactly where the policy node / recorder subscribe and publish
  (the same topic parameters are passed to both), so ``use_fake_hardware:=true`` always connects;
- a bad argument is a ``ValueError`` naming the argument and the accepted values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

__all__ = [
    "CAMERA_SLOT_ARGS", "LaunchPlan", "parse_bool", "read_node_params", "params_file_for",
    "camera_topics_with_overrides", "plan_robot_launch", "plan_record_launch",
    "POLICY_NODE", "RECORDER_NODE", "FAKE_ROBOT_NODE", "SIM_NODE",
]

POLICY_NODE = "rdt_policy_node"
RECORDER_NODE = "rdt_recorder"
FAKE_ROBOT_NODE = "rdt_fake_robot"
SIM_NODE = "rdt_sim"  # rdt_sim's sim_node: the MuJoCo ALOHA (use_sim:=true)

#: launch argument -> RDT camera slot it overrides.
CAMERA_SLOT_ARGS = {
    "camera_exterior_topic": "exterior",
    "camera_right_wrist_topic": "right_wrist",
    "camera_left_wrist_topic": "left_wrist",
}
#: policy parameters the fake robot must share to talk to the policy node.
_SHARED_WITH_FAKE = ("camera_topics", "camera_compressed", "joint_state_topics", "trajectory_topic",
                     "gripper_action", "gripper_action_type")


def parse_bool(text: str, name: str) -> bool:
    value = str(text).strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"launch argument {name}:={text!r} must be true or false")


def node_parameters(params_file, overrides: dict) -> list:
    """A launch_ros Node's ``parameters``: the parameter file, then the overrides. An empty override dict is
    left out (launch_ros would write it as an empty ros__parameters mapping)."""
    return [str(params_file)] + ([overrides] if overrides else [])


def read_node_params(path: str | Path) -> dict[str, dict]:
    """``{node_name: {param: value}}`` from a ROS 2 parameter file (``<node>: ros__parameters: ...``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"parameter file {path} does not exist; pass params_file:=<path to a YAML> "
                         f"(examples in rdt_bringup/config)")
    data = yaml.safe_load(path.read_text()) or {}
    out = {}
    for node, section in data.items():
        if not isinstance(section, dict) or "ros__parameters" not in section:
            raise ValueError(f"{path}: section {node!r} has no 'ros__parameters' mapping")
        out[node.lstrip("/")] = dict(section["ros__parameters"] or {})
    return out


def params_file_for(config_dir: str | Path, profile: str, params_file: str = "") -> Path:
    """The parameter file to use: the given one, else ``<config_dir>/<profile>.yaml``."""
    if params_file:
        return Path(params_file).expanduser()
    path = Path(config_dir) / f"{profile}.yaml"
    if not path.is_file():
        shipped = sorted(p.stem for p in Path(config_dir).glob("*.yaml"))
        raise ValueError(f"no parameter file for profile {profile!r} in {config_dir} (shipped: {shipped}); "
                         f"pass params_file:=<your YAML>")
    return path


def camera_topics_with_overrides(profile, topics: list[str], slot_topics: dict[str, str]) -> list[str]:
    """Camera topics in the profile's camera order with the per-slot launch arguments applied.

    ``slot_topics`` maps a ``CAMERA_SLOT_ARGS`` argument to its value ('' = keep). Naming a slot the
    profile has no camera for is an error (the Gen3 profile has no left-wrist camera).
    """
    topics = list(topics) if topics else [c.topic for c in profile.cameras]
    if len(topics) != len(profile.cameras):
        raise ValueError(f"camera_topics has {len(topics)} entries but profile {profile.name!r} has "
                         f"{len(profile.cameras)} cameras {profile.camera_names}")
    for arg, value in slot_topics.items():
        if not value:
            continue
        slot = CAMERA_SLOT_ARGS[arg]
        camera = profile.camera_for_slot(slot)
        if camera is None:
            raise ValueError(f"{arg}:={value} but profile {profile.name!r} has no {slot} camera "
                             f"(its cameras: {profile.camera_names}); add one to a custom profile "
                             f"(profile YAML + params_file) or drop the argument")
        topics[profile.cameras.index(camera)] = value
    return topics


@dataclass
class LaunchPlan:
    """Nodes to start: parameter file + override dict for each; None = do not start it."""
    params_file: Path
    policy: dict | None = None
    recorder: dict | None = None
    fake_robot: dict | None = None
    sim: dict | None = None        # rdt_sim sim_node (the sim publishes /clock: every node uses sim time)
    driver: dict | None = None     # launch arguments for kortex_bringup gen3.launch.py
    notes: list[str] = field(default_factory=list)


def _profile(name: str):
    from rdt_core.robots import load_profile  # rdt_core is ROS-free; imported late to keep this module light
    return load_profile(name)


def _fake_robot_params(profile_name: str, shared: dict, expert: bool) -> dict:
    params = {"profile": profile_name, "autonomous_expert": expert}
    params.update({k: v for k, v in shared.items() if k in _SHARED_WITH_FAKE and v not in ("", None)})
    return params


def plan_robot_launch(args: dict[str, str], config_dir: str | Path, default_profile: str,
                      driver_available: bool = False) -> LaunchPlan:
    """kinova.launch.py / aloha.launch.py: the policy node, plus the fake robot or the Kinova driver.

    ``args`` are the launch arguments as strings; ``driver_available`` says whether kortex_bringup is
    installed (the launch file checks with ament_index).
    """
    profile_name = args.get("profile") or default_profile
    params_file = params_file_for(config_dir, profile_name, args.get("params_file", ""))
    file_params = read_node_params(params_file)
    policy_file = file_params.get(POLICY_NODE, {})
    profile = _profile(policy_file.get("profile") or profile_name)

    policy = {"profile": profile_name} if args.get("profile") else {}
    for name in ("checkpoint", "vision_encoder", "instruction", "device"):
        if args.get(name):
            policy[name] = args[name]
    if policy.get("device") == "cpu":
        policy["dtype"] = "float32"  # the files' bfloat16 is for CUDA
    if args.get("dry_run"):
        policy["dry_run"] = parse_bool(args["dry_run"], "dry_run")
    slot_args = {k: args.get(k, "") for k in CAMERA_SLOT_ARGS}
    if any(slot_args.values()):
        policy["camera_topics"] = camera_topics_with_overrides(profile, policy_file.get("camera_topics"), slot_args)

    plan = LaunchPlan(params_file=params_file, policy=policy)
    fake = parse_bool(args.get("use_fake_hardware", "false"), "use_fake_hardware")
    want_driver = parse_bool(args.get("launch_driver", "false"), "launch_driver")
    if _sim_plan(plan, args, profile.name, fake, expert=False):
        policy["use_sim_time"] = True
        return plan
    if fake:
        plan.fake_robot = _fake_robot_params(profile.name, {**policy_file, **policy}, expert=False)
        if want_driver:
            plan.notes.append("use_fake_hardware:=true: the fake robot replaces the driver; launch_driver ignored")
    elif want_driver:
        if not driver_available:
            raise ValueError("launch_driver:=true but kortex_bringup is not installed; install ros2_kortex "
                             "(apt install ros-$ROS_DISTRO-kortex-bringup) or start the driver yourself and "
                             "leave launch_driver:=false")
        plan.driver = {"robot_ip": args.get("robot_ip", ""), "gripper": args.get("gripper", "robotiq_2f_85"),
                       "use_fake_hardware": "false", "launch_rviz": "false"}
        if not plan.driver["robot_ip"]:
            raise ValueError("launch_driver:=true needs robot_ip:=<the arm's IP address>")
    else:
        plan.notes.append("expecting the robot driver to be running (launch_driver:=true starts ros2_kortex)")
    return plan


def plan_record_launch(args: dict[str, str], config_dir: str | Path) -> LaunchPlan:
    """record.launch.py: the recorder for robot:=kinova|aloha|agilex, with the fake-hardware switch."""
    robots = {"kinova": "kinova_gen3", "kinova_gen3": "kinova_gen3", "aloha": "aloha", "agilex": "agilex"}
    robot = args.get("robot", "kinova")
    if robot not in robots:
        raise ValueError(f"robot:={robot!r}: use one of kinova, aloha, agilex")
    profile_name = robots[robot]
    params_file = params_file_for(config_dir, profile_name, args.get("params_file", ""))
    recorder_file = read_node_params(params_file).get(RECORDER_NODE, {})
    # ros2 launch gives the node no terminal: keyboard control is for `ros2 run rdt_recorder record`.
    recorder = {"keyboard": False}
    for name in ("output_dir", "instruction"):
        if args.get(name):
            recorder[name] = args[name]
    if args.get("episode_seconds"):
        try:
            recorder["episode_seconds"] = float(args["episode_seconds"])
        except ValueError:
            raise ValueError(f"episode_seconds:={args['episode_seconds']!r} must be a number (0 = open-ended)")
    plan = LaunchPlan(params_file=params_file, recorder=recorder)
    fake = parse_bool(args.get("use_fake_hardware", "false"), "use_fake_hardware")
    if _sim_plan(plan, args, recorder_file.get("profile", profile_name), fake, expert=True):
        recorder["use_sim_time"] = True
    elif fake:
        # Nobody commands the fake robot while recording: its scripted expert demonstrates.
        plan.fake_robot = _fake_robot_params(recorder_file.get("profile", profile_name),
                                             {**recorder_file, **recorder}, expert=True)
    return plan


def _sim_plan(plan: LaunchPlan, args: dict[str, str], profile_name: str, fake: bool, expert: bool) -> bool:
    """use_sim:=true: rdt_sim's MuJoCo ALOHA instead of the robot (aloha profile only); ``expert``: its
    scripted expert performs the task (recording). True when the sim is planned."""
    if not parse_bool(args.get("use_sim", "false"), "use_sim"):
        return False
    if fake:
        raise ValueError("use_sim:=true and use_fake_hardware:=true: pick one (the MuJoCo sim or the fake robot)")
    if profile_name != "aloha":
        raise ValueError(f"use_sim:=true simulates the Interbotix ALOHA: it needs the aloha profile, not "
                         f"{profile_name!r}")
    task = args.get("sim_task") or "transfer_cube"
    if task not in ("transfer_cube", "insertion"):
        raise ValueError(f"sim_task:={task!r}: use transfer_cube or insertion")
    try:
        seed = int(args.get("sim_seed") or 0)
    except ValueError:
        raise ValueError(f"sim_seed:={args.get('sim_seed')!r} must be an integer") from None
    plan.sim = {"task": task, "seed": seed, "autonomous_expert": expert}
    if args.get("sim_resolution"):
        plan.sim["resolution"] = args["sim_resolution"]
    plan.notes.append(f"use_sim:=true: the MuJoCo ALOHA ({task}, seed {seed}) publishes /clock; nodes use sim time")
    return True
