"""Robot profiles: shipped YAML loads, exact unit round trips, clear errors for bad data."""
import copy

import numpy as np
import pytest

from rdt_core import state_vec as sv
from rdt_core.robots import (RobotProfile, available_profiles, load_profile, save_profile)

SHIPPED = ["agilex", "aloha", "kinova_gen3"]


def test_shipped_profiles_are_listed_and_load():
    assert set(SHIPPED) <= set(available_profiles())
    for name in SHIPPED:
        assert load_profile(name).name == name


@pytest.mark.parametrize("name", SHIPPED)
def test_round_trip_random_values_inside_limits(name):
    p = load_profile(name)
    rng = np.random.default_rng(1)
    q = rng.uniform(p.lower, p.upper, size=(50, p.dof))
    for to_u, from_u in ((p.qpos_to_unified, p.unified_to_qpos), (p.action_to_unified, p.unified_to_action)):
        # float64 path: exact up to one rounding of (x - o) / s * s + o
        np.testing.assert_allclose(from_u(to_u(q, dtype=np.float64)), q, rtol=0, atol=1e-12)
        # the model's float32 vector: float32 resolution
        u32 = to_u(q)
        assert u32.dtype == np.float32 and u32.shape == (50, 128)
        np.testing.assert_allclose(from_u(u32), q, rtol=0, atol=1e-5)
        # unified -> robot -> unified is bit-exact in float32
        np.testing.assert_array_equal(to_u(from_u(u32)), u32)
        # nothing outside the profile's slots
        np.testing.assert_array_equal(u32 * (1 - p.unified_mask()), 0)


def test_kinova_layout_and_gripper_direction():
    p = load_profile("kinova_gen3")
    assert p.joint_names[:7] == [f"joint_{i}" for i in range(1, 8)]
    assert p.unified_indices.tolist() == [0, 1, 2, 3, 4, 5, 6, 10]
    q = np.zeros(8)
    assert p.qpos_to_unified(q)[10] == pytest.approx(1.0)        # knuckle 0.0 = open
    q[7] = 0.8
    assert p.qpos_to_unified(q)[10] == pytest.approx(0.0)        # 0.8 = closed
    assert np.all(p.max_velocity[:7] == pytest.approx(0.8727))
    assert p.upper[1] == pytest.approx(2.41) and p.upper[3] == pytest.approx(2.66) and p.upper[5] == pytest.approx(2.23)
    assert p.camera_for_slot("left_wrist") is None
    assert p.camera_for_slot("right_wrist").role == "cam_right_wrist"
    assert p.command["backend"] == "joint_trajectory"
    assert p.command["gripper_action_type"] in ("GripperCommand", "ParallelGripperCommand")


def test_aloha_and_agilex_use_the_official_14_dim_layout():
    for name in ("aloha", "agilex"):
        p = load_profile(name)
        assert p.unified_indices.tolist() == sv.AGILEX_UNIFIED_INDICES
        assert [c.slot for c in p.cameras] == ["exterior", "right_wrist", "left_wrist"]
    aloha = load_profile("aloha")
    g = aloha.joints[6]
    assert g.is_gripper and aloha.qpos_to_unified(np.r_[np.zeros(6), 1.6214, np.zeros(6), 0.6197])[[60, 10]] \
        == pytest.approx([1.0, 0.0])
    assert aloha.stream("follower_left").topic == "/follower_left/joint_states"
    assert aloha.stream("leader_right").topic == "/leader_right/joint_states"
    # AgileX: state divides by the state divisor, action by the action divisor (official facts)
    ag = load_profile("agilex")
    raw = np.linspace(-0.4, 3.5, 14)
    np.testing.assert_allclose(ag.qpos_to_unified(raw, dtype=np.float64)[sv.AGILEX_UNIFIED_INDICES],
                               raw / sv.AGILEX_STATE_DIVISOR, rtol=1e-15)
    np.testing.assert_allclose(ag.action_to_unified(raw, dtype=np.float64)[sv.AGILEX_UNIFIED_INDICES],
                               raw / sv.AGILEX_ACTION_DIVISOR, rtol=1e-15)
    assert ag.stream("puppet_left").topic == "/puppet/joint_left"
    assert ag.camera_for_slot("exterior").topic == "/camera_f/color/image_raw"


def test_map_stream_reorders_and_remaps_leader_gripper():
    p = load_profile("aloha")
    names = ["gripper", "wrist_rotate", "wrist_angle", "forearm_roll", "elbow", "shoulder", "waist", "extra"]
    vals = [0.8298, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 9.0]
    out = p.map_stream("leader_left", names, vals)
    assert out["left_waist"] == 0.1 and out["left_wrist_rotate"] == 0.6
    assert out["left_gripper"] == pytest.approx(1.6214)          # leader open -> follower open
    out = p.map_stream("leader_left", names, [-0.0552] + vals[1:])
    assert out["left_gripper"] == pytest.approx(0.6197)          # leader closed -> follower closed
    with pytest.raises(ValueError, match=r"lacks joint\(s\) \['gripper'\]"):
        p.map_stream("follower_left", names[1:], vals[1:])


def test_wrong_sizes_and_joint_names_give_clear_errors():
    p = load_profile("kinova_gen3")
    with pytest.raises(ValueError, match="expects 8 values"):
        p.qpos_to_unified(np.zeros(7))
    with pytest.raises(ValueError, match="last axis 128"):
        p.unified_to_action(np.zeros((64, 14)))
    with pytest.raises(ValueError) as e:
        p.validate_joint_names([f"joint_{i}" for i in range(1, 7)] + ["finger", "robotiq_85_left_knuckle_joint"])
    assert "missing ['joint_7']" in str(e.value) and "unexpected ['finger']" in str(e.value)
    p.validate_joint_names(list(reversed(p.joint_names)))  # order does not matter


def _broken(mutate):
    d = load_profile("kinova_gen3").to_dict()
    mutate(d)
    return d


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["joints"][1].update(max_velocity=-1.0), r"joints\[1\] \(joint_2\)\.max_velocity"),
    (lambda d: d["joints"][2].update(lower=3.0, upper=-3.0), r"joints\[2\] \(joint_3\)\.lower/upper"),
    (lambda d: d["joints"][0].update(unified="right_arm_joint_99_pos"), r"joints\[0\] \(joint_1\)\.unified"),
    (lambda d: d["joints"][7].update(scale=0.0), r"\.scale"),
    (lambda d: d["joints"][0].update(lower="low"), r"joints\[0\]\.lower: expected a number"),
    (lambda d: d["joints"][0].update(speed=1.0), r"unknown field\(s\) \['speed'\]"),
    (lambda d: d.pop("control_frequency"), "missing required field 'control_frequency'"),
    (lambda d: d.update(control_frequency=0), "control_frequency must be > 0"),
    (lambda d: d["cameras"][0].update(slot="overhead"), r"cameras\[0\] \(cam_high\)\.slot"),
    (lambda d: d["state_streams"][0]["joints"].pop(), "msg_joint_names has 8 names but joints has 7"),
    (lambda d: d["joints"][1].update(unified="right_arm_joint_0_pos"), "same index"),
    (lambda d: d.update(command={"topic": "/x"}), "'backend'"),
])
def test_invalid_profile_names_the_field(mutate, field):
    with pytest.raises(ValueError, match=field):
        RobotProfile.from_dict(_broken(mutate))


def test_save_and_load_yaml_round_trip(tmp_path):
    p = load_profile("aloha")
    path = tmp_path / "my_aloha.yaml"
    save_profile(p, path)
    q = load_profile(path)
    assert q.to_dict() == p.to_dict()
    bad = tmp_path / "bad.yaml"
    d = copy.deepcopy(p.to_dict())
    d["joints"][3]["max_velocity"] = 0
    import yaml
    bad.write_text(yaml.safe_dump(d))
    with pytest.raises(ValueError, match=r"bad\.yaml.*left_forearm_roll\)\.max_velocity"):
        load_profile(bad)
    with pytest.raises(ValueError, match="unknown robot profile 'ur5'"):
        load_profile("ur5")


def test_stream_mapper_is_what_map_stream_uses_and_refuses_ragged_messages():
    from rdt_core.robots import JointNameMismatchError
    p = load_profile("aloha")
    names = ["gripper", "wrist_rotate", "wrist_angle", "forearm_roll", "elbow", "shoulder", "waist"]
    vals = [0.8298, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    m = p.stream_mapper("leader_left", topic="/my/leader")
    assert dict(zip(m.joints, m.extract(names, vals))) == pytest.approx(p.map_stream("leader_left", names, vals))
    assert [p.joint_names[i] for i in m.indices] == m.joints
    with pytest.raises(JointNameMismatchError, match="on /my/leader: JointState has 7 names but 6 positions"):
        m.extract(names, vals[:6])
