"""The build and CI scripts: they parse, and `make test`'s closing summary counts what colcon's JUnit files say
(tests run, failed, skipped with reasons; ROS skips in one line; under --require-ros a ROS skip fails)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUMMARY = ROOT / "scripts" / "test_summary.py"

ROS_REASON = ("needs a sourced ROS 2 with this workspace built; missing rclpy, rdt_msgs "
              "(source ROS 2, then `make test`)")


def junit(path: Path, cases: list[tuple[str, str, str]]) -> None:
    """cases: (name, outcome passed|failed|error|skipped, skip reason) as pytest's --junit-xml writes them."""
    body = []
    for name, outcome, reason in cases:
        inner = {"passed": "", "failed": '<failure message="assert 0">trace</failure>',
                 "error": '<error message="boom">trace</error>',
                 "skipped": f'<skipped type="pytest.skip" message="{reason}">/x/test_a.py:12: {reason}</skipped>'}
        body.append(f'<testcase classname="test.test_a" name="{name}" time="0.1">{inner[outcome]}</testcase>')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">'
                    + "".join(body) + "</testsuite></testsuites>")


def summary(build: Path, *args):
    run = subprocess.run([sys.executable, str(SUMMARY), "--build-base", str(build), *args],
                         capture_output=True, text=True, timeout=60)
    return run.returncode, run.stdout + run.stderr


@pytest.mark.skipif(not SUMMARY.is_file(), reason="scripts/ not beside this package (run from the source tree)")
def test_summary_counts_runs_failures_and_skip_reasons(tmp_path):
    build = tmp_path / "build"
    junit(build / "rdt_core" / "pytest.xml", [("t1", "passed", ""), ("t2", "passed", ""),
                                              ("t3", "skipped", "control_msgs has no ParallelGripperCommand")])
    junit(build / "rdt_policy_node" / "pytest.xml", [("t4", "failed", ""), ("t5", "error", ""),
                                                     ("t6", "skipped", ROS_REASON), ("t7", "skipped", ROS_REASON)])
    (build / "rdt_msgs").mkdir()   # a package without tests
    code, text = summary(build)
    assert code == 0, text
    assert "tests: 4 ran (2 passed, 2 failed), 3 skipped" in text
    assert "rdt_policy_node: 2 ran, 2 failed, 2 skipped" in text
    ros_lines = [line for line in text.splitlines() if line.startswith("ROS 2 not sourced")]
    assert len(ros_lines) == 1 and "skipped 2 ROS tests" in ros_lines[0] and "rdt_policy_node" in ros_lines[0]
    assert "skipped 1: control_msgs has no ParallelGripperCommand" in text and "rdt_core: test.test_a::t3" in text

    code, text = summary(build, "--require-ros")
    assert code == 1 and "RDT_REQUIRE_ROS=1 but ROS tests were skipped" in text


@pytest.mark.skipif(not SUMMARY.is_file(), reason="scripts/ not beside this package (run from the source tree)")
def test_summary_fails_when_nothing_ran(tmp_path):
    code, text = summary(tmp_path / "build")
    assert code == 1 and "no test ran" in text


@pytest.mark.parametrize("script", [".ci/run", "scripts/colcon_test.sh"])
def test_ci_shell_scripts_parse_and_are_executable(script):
    path = ROOT / script
    if not path.is_file():
        pytest.skip(f"{script} not beside this package (run from the source tree)")
    assert path.stat().st_mode & 0o111, f"chmod +x {script}"
    subprocess.run([shutil.which("bash") or "/bin/bash", "-n", str(path)], check=True)
