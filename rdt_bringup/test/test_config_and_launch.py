"""Parameter files and launch files checked without ROS: the YAML loads, every parameter is commented
and documented (the policy's section against rdt_policy_node.config.PolicyConfig, its one source of
settings), topics agree with the rdt_core profiles, launch files compile and declare the documented
arguments, and the launch plans (rdt_bringup.launch_utils) make the right decisions."""
import ast
import dataclasses
import py_compile
import re
from pathlib import Path

import pytest
import yaml

from rdt_bringup.launch_utils import (
    FAKE_ROBOT_NODE, POLICY_NODE, RECORDER_NODE, camera_topics_with_overrides, parse_bool, plan_record_launch,
    plan_robot_launch, read_node_params)
from rdt_core.robots import load_profile
from rdt_policy_node.config import PolicyConfig

PKG = Path(__file__).resolve().parents[1]
CONFIG = PKG / "config"
PROFILES = ["kinova_gen3", "aloha", "agilex"]

RECORDER_PARAMS = {
    "profile", "output_dir", "instruction", "episode_seconds", "camera_topics", "camera_compressed",
    "joint_state_topics", "action_topics", "jpeg_quality", "tolerance_s", "keyboard"}
FAKE_PARAMS = {
    "profile", "rate_hz", "camera_rate_hz", "image_width", "image_height", "seed", "camera_topics",
    "camera_compressed", "joint_state_topics", "trajectory_topic", "gripper_action", "gripper_action_type",
    "joint_command_topics", "float64_array_topics", "autonomous_expert", "command_timeout_s"}
POLICY_PARAMS = {f.name for f in dataclasses.fields(PolicyConfig)}  # the policy's one source of settings
DOCUMENTED = {POLICY_NODE: POLICY_PARAMS, RECORDER_NODE: RECORDER_PARAMS, FAKE_ROBOT_NODE: FAKE_PARAMS}
REQUIRED = {
    RECORDER_NODE: RECORDER_PARAMS - {"action_topics"},
    FAKE_ROBOT_NODE: {"profile", "rate_hz", "camera_rate_hz", "image_width", "image_height", "seed"},
}


def required(node, profile):
    if node == POLICY_NODE:  # every setting but those of another command backend
        return PolicyConfig.documented_in_parameter_file(load_profile(profile).command["backend"])
    return REQUIRED[node]
LAUNCH_ARGS = {
    "kinova.launch.py": {"robot_ip", "use_fake_hardware", "launch_driver", "gripper", "checkpoint", "vision_encoder",
                         "instruction", "camera_exterior_topic", "camera_right_wrist_topic",
                         "camera_left_wrist_topic", "dry_run", "device", "params_file"},
    "aloha.launch.py": {"profile", "use_fake_hardware", "checkpoint", "vision_encoder", "instruction",
                        "camera_exterior_topic", "camera_right_wrist_topic", "camera_left_wrist_topic", "dry_run",
                        "device", "params_file", "use_sim", "sim_task", "sim_seed", "sim_resolution"},
    "record.launch.py": {"robot", "use_fake_hardware", "output_dir", "instruction", "episode_seconds",
                         "params_file", "use_sim", "sim_task", "sim_seed", "sim_resolution"},
}


def commented_out(profile):
    """Settings documented as a comment (``# name: value  # doc``): a ROS 2 parameter file cannot hold an
    empty list, so a setting whose default is one is shown commented out."""
    text = (CONFIG / f"{profile}.yaml").read_text()
    return set(re.findall(r"^ +# (\w+): ", text, flags=re.MULTILINE))


def params(profile):
    return read_node_params(CONFIG / f"{profile}.yaml")


@pytest.mark.parametrize("profile", PROFILES)
def test_parameter_file_has_the_three_nodes_with_documented_parameters(profile):
    nodes = params(profile)
    assert set(nodes) == set(DOCUMENTED)
    for node, values in nodes.items():
        assert set(values) <= DOCUMENTED[node], f"{node}: undocumented {set(values) - DOCUMENTED[node]}"
        missing = required(node, profile) - set(values) - commented_out(profile)
        assert not missing, f"{node}: missing {missing}"
        assert values["profile"] == profile


@pytest.mark.parametrize("profile", PROFILES)
def test_policy_section_is_a_valid_config_for_its_robot(profile):
    # the node declares one parameter per PolicyConfig field (a YAML key it does not declare would be
    # silently ignored by ROS: from_parameters rejects it), and every value passes the config's checks
    config = PolicyConfig.from_parameters(params(profile)[POLICY_NODE]).for_profile(load_profile(profile))
    assert config.profile == profile


@pytest.mark.parametrize("profile", PROFILES)
def test_every_parameter_line_has_a_comment(profile):
    for number, line in enumerate((CONFIG / f"{profile}.yaml").read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.endswith(":"):
            continue  # comments, blank lines, node / ros__parameters keys
        assert " # " in line, f"{profile}.yaml line {number} has no comment: {line!r}"


@pytest.mark.parametrize("profile", PROFILES)
def test_topics_agree_with_the_rdt_core_profile(profile):
    robot = load_profile(profile)
    for node, values in params(profile).items():
        assert values["camera_topics"] == [c.topic for c in robot.cameras], node
        assert values["camera_compressed"] == [c.compressed for c in robot.cameras], node
        assert values["joint_state_topics"] == [s.topic for s in robot.state_streams], node
    recorder = params(profile)[RECORDER_NODE]
    assert recorder.get("action_topics", []) == [s.topic for s in robot.action_streams]
    policy = params(profile)[POLICY_NODE]
    assert policy["control_rate_hz"] == robot.control_frequency
    assert policy["command_backend"] == robot.command["backend"]
    fake = params(profile)[FAKE_ROBOT_NODE]
    if robot.command["backend"] == "joint_trajectory":
        for key in ("trajectory_topic", "gripper_action", "gripper_action_type"):
            assert policy[key] == fake[key]
        assert policy["trajectory_topic"] == robot.command["topic"]
        assert policy["gripper_action"] == robot.command["gripper_action"]
    else:
        section = robot.command if "topics" in robot.command else robot.command["fallback"]
        assert fake["joint_command_topics"] == [t["topic"] for t in section["topics"]]


def test_parameter_values_are_sane():
    # beyond what PolicyConfig accepts: what these shipped files promise (the config's checks run above)
    for profile in PROFILES:
        policy = params(profile)[POLICY_NODE]
        assert 0 < policy["blend_steps"] < policy["execute_horizon"] <= 64
        assert policy["publish_rate_hz"] >= policy["control_rate_hz"]
        assert policy["chunk_range_margin"] <= 1 and policy["resync_tolerance_s"] <= 1
        assert all(t < 1 for t in policy["tracking_tolerance"])
        assert policy["tracking_lag_s"] < 2 and policy["tracking_timeout_s"] < 5
        recorder = params(profile)[RECORDER_NODE]
        assert 0 < recorder["tolerance_s"] <= 1.0 / load_profile(profile).control_frequency
        assert 1 <= recorder["jpeg_quality"] <= 100


@pytest.mark.parametrize("name", sorted(LAUNCH_ARGS))
def test_launch_file_compiles_and_declares_the_documented_arguments(name, tmp_path):
    path = PKG / "launch" / name
    py_compile.compile(str(path), cfile=str(tmp_path / "x.pyc"), doraise=True)
    tree = ast.parse(path.read_text())
    arguments = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                     and [t.id for t in node.targets] == ["ARGUMENTS"])
    declared = ast.literal_eval(arguments)
    assert {a[0] for a in declared} == LAUNCH_ARGS[name]
    assert all(len(a) == 3 and a[2] for a in declared), "every argument has a default and a description"
    source = path.read_text()
    assert "def generate_launch_description" in source and "DeclareLaunchArgument(name" in source


def test_setup_py_installs_launch_and_config_and_the_fake_robot_script():
    setup = (PKG / "setup.py").read_text()
    assert "glob('launch/*.launch.py')" in setup and "glob('config/*.yaml')" in setup
    assert "fake_robot_node = rdt_bringup.fake_robot_node:main" in setup


# ------------------------------------------------------------------ launch plans
def kinova(**args):
    return plan_robot_launch(args, CONFIG, "kinova_gen3", driver_available=args.pop("_driver", False))


def test_fake_hardware_kinova_plan_connects_fake_robot_and_policy():
    plan = kinova(use_fake_hardware="true", checkpoint="tiny", dry_run="false", device="cpu")
    assert plan.params_file == CONFIG / "kinova_gen3.yaml"
    assert plan.policy == {"checkpoint": "tiny", "dry_run": False, "device": "cpu", "dtype": "float32"}
    assert plan.driver is None
    fake = plan.fake_robot
    policy_file = params("kinova_gen3")[POLICY_NODE]
    assert fake["profile"] == "kinova_gen3" and fake["autonomous_expert"] is False
    for key in ("camera_topics", "joint_state_topics", "trajectory_topic", "gripper_action", "gripper_action_type"):
        assert fake[key] == policy_file[key]


def test_camera_slot_arguments_override_the_file_for_policy_and_fake_robot():
    plan = kinova(use_fake_hardware="true", camera_exterior_topic="/ext/image")
    assert plan.policy["camera_topics"] == ["/ext/image", "/camera/color/image_raw"]
    assert plan.fake_robot["camera_topics"] == plan.policy["camera_topics"]
    with pytest.raises(ValueError, match="no left_wrist camera"):
        kinova(camera_left_wrist_topic="/left/image")


def test_empty_arguments_keep_the_parameter_file():
    plan = kinova()
    assert plan.policy == {} and plan.fake_robot is None and plan.driver is None
    assert any("driver to be running" in n for n in plan.notes)


def test_driver_is_included_only_when_installed_and_asked_for():
    plan = kinova(launch_driver="true", robot_ip="10.0.0.5", _driver=True)
    assert plan.driver == {"robot_ip": "10.0.0.5", "gripper": "robotiq_2f_85", "use_fake_hardware": "false",
                           "launch_rviz": "false"}
    with pytest.raises(ValueError, match="kortex_bringup is not installed"):
        kinova(launch_driver="true", robot_ip="10.0.0.5")
    with pytest.raises(ValueError, match="robot_ip"):
        kinova(launch_driver="true", _driver=True)
    fake = kinova(launch_driver="true", use_fake_hardware="true", _driver=True)
    assert fake.driver is None and fake.fake_robot is not None


def test_aloha_plans_pick_the_profile_and_its_file():
    plan = plan_robot_launch({"profile": "agilex", "use_fake_hardware": "true"}, CONFIG, "aloha")
    assert plan.params_file == CONFIG / "agilex.yaml"
    assert plan.policy["profile"] == "agilex"
    assert plan.fake_robot["camera_topics"] == [c.topic for c in load_profile("agilex").cameras]
    with pytest.raises(ValueError, match="no parameter file for profile 'ur5'"):
        plan_robot_launch({"profile": "ur5"}, CONFIG, "aloha")


def test_own_params_file_is_used(tmp_path):
    custom = tmp_path / "mine.yaml"
    data = yaml.safe_load((CONFIG / "aloha.yaml").read_text())
    data[POLICY_NODE]["ros__parameters"]["camera_topics"] = ["/a", "/b", "/c"]
    custom.write_text(yaml.safe_dump(data))
    plan = plan_robot_launch({"params_file": str(custom), "use_fake_hardware": "true",
                              "camera_left_wrist_topic": "/left"}, CONFIG, "aloha")
    assert plan.params_file == custom
    assert plan.policy["camera_topics"] == ["/a", "/b", "/left"]
    with pytest.raises(ValueError, match="does not exist"):
        plan_robot_launch({"params_file": str(tmp_path / "none.yaml")}, CONFIG, "aloha")


def test_record_plan_with_fake_hardware_uses_the_scripted_expert():
    plan = plan_record_launch({"robot": "aloha", "use_fake_hardware": "true", "episode_seconds": "10",
                               "output_dir": "/data/x"}, CONFIG)
    assert plan.recorder == {"keyboard": False, "output_dir": "/data/x", "episode_seconds": 10.0}
    assert plan.fake_robot["autonomous_expert"] is True and plan.fake_robot["profile"] == "aloha"
    assert plan_record_launch({"robot": "kinova"}, CONFIG).fake_robot is None
    with pytest.raises(ValueError, match="use one of kinova, aloha, agilex"):
        plan_record_launch({"robot": "ur5"}, CONFIG)
    with pytest.raises(ValueError, match="must be a number"):
        plan_record_launch({"episode_seconds": "ten"}, CONFIG)


def test_bad_booleans_name_the_argument():
    assert parse_bool("True", "x") is True and parse_bool("0", "x") is False
    with pytest.raises(ValueError, match="use_fake_hardware:='maybe' must be true or false"):
        kinova(use_fake_hardware="maybe")


def test_camera_overrides_check_the_length_against_the_profile():
    with pytest.raises(ValueError, match="has 1 entries"):
        camera_topics_with_overrides(load_profile("aloha"), ["/only_one"], {"camera_exterior_topic": "/x"})


def test_node_parameters_leave_out_an_empty_override():
    from rdt_bringup.launch_utils import node_parameters

    assert node_parameters("/cfg/kinova_gen3.yaml", {}) == ["/cfg/kinova_gen3.yaml"]
    assert node_parameters("/cfg/kinova_gen3.yaml", {"dry_run": True}) == ["/cfg/kinova_gen3.yaml", {"dry_run": True}]


def test_use_sim_starts_the_mujoco_aloha_and_puts_every_node_on_sim_time():
    plan = plan_robot_launch({"use_sim": "true", "sim_task": "insertion", "sim_seed": "7", "checkpoint": "tiny"},
                             CONFIG, "aloha")
    assert plan.sim == {"task": "insertion", "seed": 7, "autonomous_expert": False}
    assert plan.policy["use_sim_time"] is True and plan.fake_robot is None and plan.driver is None
    assert set(plan.policy) - {"use_sim_time"} <= POLICY_PARAMS  # use_sim_time is rclpy's own parameter
    rec = plan_record_launch({"robot": "aloha", "use_sim": "true", "output_dir": "/tmp/x"}, CONFIG)
    assert rec.sim["autonomous_expert"] is True and rec.recorder["use_sim_time"] is True and rec.fake_robot is None
    assert plan_robot_launch({"profile": "aloha"}, CONFIG, "aloha").sim is None


def test_use_sim_refuses_what_it_cannot_simulate():
    with pytest.raises(ValueError, match="pick one"):
        plan_robot_launch({"use_sim": "true", "use_fake_hardware": "true"}, CONFIG, "aloha")
    with pytest.raises(ValueError, match="needs the aloha profile"):
        plan_robot_launch({"use_sim": "true"}, CONFIG, "kinova_gen3")
    with pytest.raises(ValueError, match="needs the aloha profile"):
        plan_record_launch({"robot": "kinova", "use_sim": "true"}, CONFIG)
    with pytest.raises(ValueError, match="sim_task"):
        plan_robot_launch({"use_sim": "true", "sim_task": "stack"}, CONFIG, "aloha")
    with pytest.raises(ValueError, match="sim_seed"):
        plan_robot_launch({"use_sim": "true", "sim_seed": "x"}, CONFIG, "aloha")
