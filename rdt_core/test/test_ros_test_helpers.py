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


# ----------------------------------------------------------------------------- the ROS-test skip decision
ROS_TEST_MODULE = '''
from rdt_core.testing import ros_test_mark
pytestmark = ros_test_mark("rdt_no_such_ros_package")

def test_needs_ros():
    import rdt_no_such_ros_package  # noqa: F401
'''


def run_pytest(tmp_path, require: str | None):
    """A real pytest run of a ROS test module whose ROS package is missing here."""
    import subprocess

    (tmp_path / "test_ros_thing.py").write_text(ROS_TEST_MODULE)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "RDT_REQUIRE_ROS")}
    if require is not None:
        env["RDT_REQUIRE_ROS"] = require
    return subprocess.run([sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


def test_missing_ros_skips_with_the_reason_on_a_laptop(tmp_path, monkeypatch):
    from rdt_core.testing import ROS_SKIP_PREFIX, ros_skip_reason

    monkeypatch.delenv("RDT_REQUIRE_ROS", raising=False)   # CI sets it for the whole run

    reason = ros_skip_reason("rdt_no_such_ros_package")
    assert reason.startswith(ROS_SKIP_PREFIX) and "rdt_no_such_ros_package" in reason
    run = run_pytest(tmp_path, require=None)
    assert run.returncode == 0 and "1 skipped" in run.stdout, run.stdout
    assert "rdt_no_such_ros_package" in run.stdout


def test_missing_ros_fails_under_rdt_require_ros(tmp_path, monkeypatch):
    from rdt_core.testing import RosRequiredError, ros_skip_reason

    monkeypatch.setenv("RDT_REQUIRE_ROS", "1")
    try:
        ros_skip_reason("rdt_no_such_ros_package")
    except RosRequiredError as e:
        assert "RDT_REQUIRE_ROS=1" in str(e) and "rdt_no_such_ros_package" in str(e)
    else:
        raise AssertionError("RDT_REQUIRE_ROS=1 must not allow a skip")
    run = run_pytest(tmp_path, require="1")
    assert run.returncode != 0 and "skipped" not in run.stdout.splitlines()[-1], run.stdout
    assert "RDT_REQUIRE_ROS=1" in run.stdout and "rdt_no_such_ros_package" in run.stdout
    assert run_pytest(tmp_path, require="0").returncode == 0  # only "1" requires
