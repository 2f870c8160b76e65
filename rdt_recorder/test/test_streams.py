"""Stream plans from profiles and ROS parameters; JointState mapping by name."""
import numpy as np
import pytest

from rdt_core.robots import load_profile
from rdt_core.robots import JointNameMismatchError
from rdt_recorder.streams import StreamPlan, parse_topic_overrides


def test_parameters_override_topics_in_profile_order_and_check_lengths():
    aloha = load_profile("aloha")
    plan = StreamPlan.from_parameters(aloha, ["/a", "/b", "/c"], [True, False, False], [], ["/l", "/r"])
    assert [c.topic for c in plan.cameras] == ["/a", "/b", "/c"]
    assert [c.compressed for c in plan.cameras] == [True, False, False]
    assert plan.topics["follower_left"] == "/follower_left/joint_states"
    assert plan.topics["leader_right"] == "/r" and plan.action_source == "streams:leader_left,leader_right"
    with pytest.raises(ValueError, match="camera_topics has 2 entries.*3"):
        StreamPlan.from_parameters(aloha, ["/a", "/b"])


def test_joint_state_mapped_by_name_whatever_the_order():
    plan = StreamPlan.from_profile(load_profile("kinova_gen3"))
    m = plan.mappers["joints"]
    names = list(reversed(m.msg_names))
    values = m.extract(names + ["extra_joint"], list(range(8, 0, -1)) + [99.0])
    np.testing.assert_array_equal(values, np.arange(1, 9, dtype=float))
    with pytest.raises(JointNameMismatchError, match=r"lacks joint\(s\) \['joint_7'\].*--topic joints="):
        m.extract([n for n in names if n != "joint_7"], range(7))


def test_topic_overrides_are_parsed_and_checked():
    assert parse_topic_overrides(["cam_high=/x", "joints = y"]) == {"cam_high": "/x", "joints": "/y"}
    with pytest.raises(ValueError, match="ROLE=/topic"):
        parse_topic_overrides(["cam_high"])
    with pytest.raises(ValueError, match="unknown stream role.*'cam_top'"):
        StreamPlan.from_profile(load_profile("kinova_gen3"), {"cam_top": "/x"})
