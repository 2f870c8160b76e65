"""PolicyConfig, the one source of the policy's settings: checks, ROS parameter types, the closed-loop CLI,
the profile-dependent values, the YAML section, and that make_controller uses every runtime setting."""
import argparse
import array
import dataclasses

import numpy as np
import pytest
import yaml

from rdt_core.robots import load_profile
from rdt_policy_node.closed_loop import CLOSED_LOOP_CONFIG, main
from rdt_policy_node.config import SCOPES, ConfigError, PolicyConfig
from rdt_policy_node.runtime import make_controller


@pytest.fixture(scope="module")
def kinova():
    return load_profile("kinova_gen3")


def bad(match, **values):
    with pytest.raises(ConfigError, match=match) as e:
        PolicyConfig.from_parameters(values)
    return e.value


# ---------------------------------------------------------------- the fields
def test_every_setting_has_a_doc_a_scope_and_a_valid_default():
    config = PolicyConfig()
    for f in dataclasses.fields(PolicyConfig):
        assert f.metadata["doc"] and f.metadata["scope"] in SCOPES, f.name
        assert "\n" not in f.metadata["doc"], f"{f.name}: docs are one line"
    assert PolicyConfig.from_parameters(config.as_parameters()) == config


def test_ros_parameter_types_suit_rclpy():
    params = {name: (default, dynamic) for name, default, _, dynamic in PolicyConfig.ros_parameters()}
    assert set(params) == {f.name for f in dataclasses.fields(PolicyConfig)}
    # arrays and numbers are dynamically typed (rclpy types [] as a byte array and refuses 3 for a double)
    for name in ("camera_topics", "camera_compressed", "tracking_tolerance", "arm_steps_length",
                 "publish_rate_hz", "max_observation_age_s"):
        assert params[name][1], name
    for name in ("checkpoint", "dry_run", "execute_horizon", "chunking_mode"):
        assert not params[name][1], name
    assert params["tracking_tolerance"][0] == [0.15] and params["camera_topics"][0] == []  # lists, not tuples


def test_values_as_rclpy_and_yaml_give_them_are_coerced():
    c = PolicyConfig.from_parameters({
        "start_move_duration_s": 3,                       # an integer in YAML for a float setting
        "tracking_tolerance": array.array("d", [0.1, 0.2]),  # rclpy's DOUBLE_ARRAY
        "arm_steps_length": 0.02,                         # one number for a list
        "execute_horizon": 48.0,                          # a whole float for an int
        "camera_compressed": [np.bool_(True), False]})
    assert c.start_move_duration_s == 3.0 and isinstance(c.start_move_duration_s, float)
    assert c.tracking_tolerance == (0.1, 0.2) and c.arm_steps_length == (0.02,)
    assert c.execute_horizon == 48 and isinstance(c.execute_horizon, int)
    assert c.camera_compressed == (True, False)
    assert PolicyConfig.from_parameters({"camera_topics": None, "blend_steps": None}) == PolicyConfig()  # not set


def test_bad_values_name_the_parameter_and_the_fix():
    assert bad("parameter execute_horizon: must be >= 0", execute_horizon=-1).parameter == "execute_horizon"
    bad("parameter execute_horizon: expected a whole number", execute_horizon=2.5)
    bad("parameter dry_run: expected true or false", dry_run="yes")
    bad("parameter chunking_mode: 'fast' is not one of crossfade, rtc", chunking_mode="fast")
    bad("parameter max_observation_age_s: expected a finite number", max_observation_age_s=float("nan"))
    bad("parameter tracking_tolerance: must be > 0", tracking_tolerance=[0.1, 0.0])
    bad("parameter camera_topics: expected a string", camera_topics=[1, 2])
    bad("parameter arm_steps_length: interpolation max_step needs", interpolation="max_step")
    bad("parameter trajectory_lead_s: .* shorter than trajectory_horizon_s", trajectory_lead_s=0.6)
    e = bad("unknown setting", publish_rate=50.0)
    assert "did you mean publish_rate_hz" in str(e)


@pytest.mark.parametrize("f", [f for f in dataclasses.fields(PolicyConfig)
                               if any(f.metadata[k] is not None for k in ("minimum", "above", "maximum"))],
                         ids=lambda f: f.name)
def test_every_bound_is_enforced(f):
    m = f.metadata
    wrong = [m["minimum"] - 1 if m["minimum"] is not None else None, m["above"],
             m["maximum"] + 1 if m["maximum"] is not None else None]
    for value in (w for w in wrong if w is not None):
        with pytest.raises(ConfigError, match=f"parameter {f.name}:"):
            PolicyConfig.from_parameters({f.name: [value] if f.name in ("tracking_tolerance", "arm_steps_length")
                                          else value})


def test_choices_are_enforced():
    for f in dataclasses.fields(PolicyConfig):
        if f.metadata["choices"]:
            PolicyConfig.from_parameters({f.name: f.metadata["choices"][0]})
            with pytest.raises(ConfigError, match=f"parameter {f.name}: 'nonsense' is not one of"):
                PolicyConfig.from_parameters({f.name: "nonsense"})


# ---------------------------------------------------------------- the robot
def test_for_profile_fills_the_robot_defaults_and_is_idempotent(kinova):
    c = PolicyConfig().for_profile(kinova)
    assert c.control_rate_hz == kinova.control_frequency and c.publish_rate_hz == c.control_rate_hz
    assert list(c.camera_topics) == [cam.topic for cam in kinova.cameras]
    assert list(c.joint_state_topics) == [s.topic for s in kinova.state_streams]
    assert c.command_backend == kinova.command["backend"] and c.trajectory_topic == kinova.command["topic"]
    assert c.gripper_action == kinova.command["gripper_action"]
    assert c.for_profile(kinova) == c
    mine = PolicyConfig(publish_rate_hz=100.0, camera_topics=("/a", "/b")).for_profile(kinova)
    assert mine.publish_rate_hz == 100.0 and mine.camera_topics == ("/a", "/b")


def test_robot_dependent_values_are_checked(kinova):
    with pytest.raises(ConfigError, match=r"parameter camera_topics: needs one entry per camera .*cam_high"):
        PolicyConfig(camera_topics=("/only_one",)).for_profile(kinova)
    with pytest.raises(ConfigError, match="parameter joint_state_topics: needs one topic per state stream"):
        PolicyConfig(joint_state_topics=("/a", "/b")).for_profile(kinova)
    with pytest.raises(ConfigError, match=r"parameter tracking_tolerance: give one value .* \(8: "):
        PolicyConfig(tracking_tolerance=(0.1, 0.2)).for_profile(kinova)
    PolicyConfig(tracking_tolerance=(0.1,) * 8).for_profile(kinova)
    with pytest.raises(ConfigError, match="parameter arm_steps_length: arm_steps_length has 3 values"):
        PolicyConfig(arm_steps_length=(0.1, 0.1, 0.1)).for_profile(kinova)
    aloha = load_profile("aloha")  # one value per arm joint, tiled to both arms
    assert len(PolicyConfig(arm_steps_length=(0.01,) * 7).for_profile(aloha).arm_steps_length) == aloha.dof
    with pytest.raises(ConfigError, match=r"parameter trajectory_horizon_s: 0.2 s is too short .* more than 0.2"):
        PolicyConfig(trajectory_horizon_s=0.2, publish_rate_hz=100.0).for_profile(kinova)  # 0.1 + 0.1 + 0.03
    PolicyConfig(trajectory_horizon_s=0.2, command_backend="kortex_api").for_profile(kinova)  # no trajectories
    with pytest.raises(ConfigError, match="parameter execute_horizon: 65 is longer than the checkpoint's chunk"):
        PolicyConfig(execute_horizon=65).for_profile(kinova, horizon=64)
    with pytest.raises(ConfigError, match="execute_horizon"):
        make_controller(kinova, lambda *a: None, PolicyConfig(execute_horizon=65))


# ---------------------------------------------------------------- make_controller takes it whole
WHERE = {  # runtime setting -> where make_controller put it
    "max_observation_age_s": lambda c: c.safety.max_observation_age_s,
    "jpeg_roundtrip": lambda c: c.window.jpeg,
    "control_rate_hz": lambda c: 1.0 / c.scheduler.dt,
    "publish_rate_hz": lambda c: c.safety.publish_rate,
    "execute_horizon": lambda c: c.scheduler.execute_horizon,
    "blend_steps": lambda c: c.scheduler.blend_steps,
    "chunking_mode": lambda c: c.scheduler.mode,
    "initial_latency_s": lambda c: c.scheduler.latency_estimate,
    "interpolation": lambda c: c.interpolator.mode,
    "arm_steps_length": lambda c: tuple(c.interpolator.steps_length),
    "dry_run": lambda c: c.safety.dry_run,
    "velocity_scale": lambda c: c.safety.velocity_scale,
    "start_move_duration_s": lambda c: c.safety.start_move_duration_s,
    "start_velocity_scale": lambda c: c.safety.start_velocity_scale,
    "chunk_range_margin": lambda c: c.safety.chunk_range_margin,
    "resync_tolerance_s": lambda c: c.safety.resync_tolerance_s,
    "tracking_watchdog": lambda c: c.tracking.enabled,
    "tracking_tolerance": lambda c: tuple(c.tracking.floor),
    "tracking_lag_s": lambda c: c.tracking.lag_s,
    "tracking_timeout_s": lambda c: c.tracking.timeout_s,
    "tracking_grippers": lambda c: bool(c.tracking.monitored.all()),
}
CHANGED = {"max_observation_age_s": 0.3, "jpeg_roundtrip": False, "control_rate_hz": 20.0, "publish_rate_hz": 40.0,
           "execute_horizon": 32, "blend_steps": 3, "chunking_mode": "rtc", "initial_latency_s": 0.7,
           "interpolation": "max_step", "arm_steps_length": (0.02,) * 8, "dry_run": True, "velocity_scale": 0.5,
           "start_move_duration_s": 2.0, "start_velocity_scale": 0.5, "chunk_range_margin": 0.1,
           "resync_tolerance_s": 0.2, "tracking_watchdog": False, "tracking_tolerance": (0.2,) * 8,
           "tracking_lag_s": 0.4, "tracking_timeout_s": 0.7, "tracking_grippers": True}


def test_make_controller_uses_every_runtime_setting(kinova):
    runtime = {f.name for f in PolicyConfig.fields(("runtime",))}
    assert set(WHERE) == runtime == set(CHANGED), "a runtime setting make_controller does not use"
    defaults = PolicyConfig().for_profile(kinova)
    ctl = make_controller(kinova, lambda *a: None, PolicyConfig(**CHANGED))
    try:
        for name, get in WHERE.items():
            assert get(ctl) == pytest.approx(CHANGED[name]), name
            assert CHANGED[name] != getattr(defaults, name), f"{name}: pick a non-default value"
    finally:
        ctl.close()
    for watchdog, dry_run, enabled in ((True, False, True), (True, True, False), (False, False, False)):
        ctl = make_controller(kinova, lambda *a: None, PolicyConfig(tracking_watchdog=watchdog, dry_run=dry_run))
        assert ctl.tracking.enabled is enabled  # never a tracking hold in dry run: the arm does not move
        ctl.close()


# ---------------------------------------------------------------- the closed-loop CLI
def test_cli_options_come_from_the_config():
    p = argparse.ArgumentParser()
    PolicyConfig.add_arguments(p)
    options = {a.dest for a in p._actions if a.dest != "help"}
    assert options == {f.name for f in PolicyConfig.fields(("model", "runtime"))}
    assert not options & {f.name for f in PolicyConfig.fields(("ros",))}  # topics and backends need ROS
    a = p.parse_args(["--execute-horizon", "16", "--no-jpeg-roundtrip", "--tracking-tolerance", "0.1", "0.2",
                      "--chunking-mode", "rtc"])
    c = PolicyConfig.from_arguments(a, CLOSED_LOOP_CONFIG)
    assert (c.execute_horizon, c.jpeg_roundtrip, c.tracking_tolerance, c.chunking_mode) == (16, False, (0.1, 0.2),
                                                                                           "rtc")
    assert c.start_move_duration_s == CLOSED_LOOP_CONFIG.start_move_duration_s  # not given: the base's value
    with pytest.raises(SystemExit):
        p.parse_args(["--chunking-mode", "fast"])


def test_cli_rejects_a_bad_setting_before_running(tmp_path, capsys):
    assert main(["--blend-steps", "-2", "--out", str(tmp_path / "x")]) == 2
    assert "parameter blend_steps: must be >= 0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- YAML
def test_yaml_section_documents_and_round_trips(kinova):
    c = PolicyConfig(profile="kinova_gen3", execute_horizon=48).for_profile(kinova)
    text = c.yaml_section()
    values = yaml.safe_load(text)["rdt_policy_node"]["ros__parameters"]
    assert PolicyConfig.from_parameters(values) == c
    assert "arm_steps_length" not in values and "    # arm_steps_length: []" in text  # no empty list in ROS YAML
    assert not any(v == [] for v in values.values())
    for f in dataclasses.fields(PolicyConfig):
        assert any(line.strip().lstrip("# ").startswith(f"{f.name}:") and f"# {f.metadata['doc']}" in line
                   for line in text.splitlines()), f.name


def test_parameter_file_requirements_follow_the_backend():
    trajectory = PolicyConfig.documented_in_parameter_file("joint_trajectory")
    assert {"trajectory_lead_s", "trajectory_topic", "gripper_action_type"} <= trajectory
    assert "kortex_ip" not in trajectory
    interbotix = PolicyConfig.documented_in_parameter_file("interbotix")
    assert not interbotix & {"trajectory_lead_s", "trajectory_topic", "kortex_ip"}
    assert {"blend_steps", "camera_topics", "tracking_tolerance"} <= interbotix
