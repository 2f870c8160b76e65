"""isolated_ros_domain: the ROS tests' own domain, set for the test and restored after it."""
import os
import sys
import types

from rdt_core.testing import isolated_ros_domain


def test_fallback_domain_is_set_then_the_old_one_restored(monkeypatch):
    monkeypatch.setitem(sys.modules, "domain_coordinator", None)   # not installed: import fails
    monkeypatch.setenv("ROS_DOMAIN_ID", "0")
    with isolated_ros_domain(fallback=87) as domain:
        assert domain == "87" and os.environ["ROS_DOMAIN_ID"] == "87"
    assert os.environ["ROS_DOMAIN_ID"] == "0"
    monkeypatch.delenv("ROS_DOMAIN_ID")
    with isolated_ros_domain(fallback=88):
        assert os.environ["ROS_DOMAIN_ID"] == "88"
    assert "ROS_DOMAIN_ID" not in os.environ


def test_coordinated_domain_is_held_for_the_test(monkeypatch):
    released = []

    class Lease:
        def __str__(self):
            return "42"

        def __del__(self):
            released.append(True)

    monkeypatch.setitem(sys.modules, "domain_coordinator",
                        types.SimpleNamespace(get_coordinated_domain_id=Lease))
    monkeypatch.delenv("ROS_DOMAIN_ID", raising=False)
    with isolated_ros_domain(fallback=87) as domain:
        assert domain == "42" and os.environ["ROS_DOMAIN_ID"] == "42" and not released
    assert released and "ROS_DOMAIN_ID" not in os.environ
