"""A bad launch argument fails `ros2 launch` (the real command) before any node starts, with a message naming
the argument. (That every documented argument is accepted, with effect, is shown by the launch tests of
kinova.launch.py, aloha.launch.py and record.launch.py, which give each of them.)"""
import os
import subprocess

import pytest

from rdt_core.testing import ros_test_mark

pytestmark = ros_test_mark("launch", "ros2launch")

BAD = [  # (launch file, bad argument, what the message must name)
    ("kinova.launch.py", "use_fake_hardware:=maybe", "use_fake_hardware"),
    ("kinova.launch.py", "dry_run:=perhaps", "dry_run"),
    ("kinova.launch.py", "camera_left_wrist_topic:=/left/image_raw", "camera_left_wrist_topic"),
    ("kinova.launch.py", "launch_driver:=true", "launch_driver"),        # no kortex_bringup, no fake hardware
    ("kinova.launch.py", "params_file:=/no/such/params.yaml", "params_file"),
    ("aloha.launch.py", "profile:=no_such_robot", "profile"),
    ("aloha.launch.py", "use_fake_hardware:=2", "use_fake_hardware"),
    ("aloha.launch.py", "use_sim:=perhaps", "use_sim"),
    ("record.launch.py", "robot:=aloha use_sim:=true sim_task:=fold_towels", "sim_task"),
    ("record.launch.py", "robot:=ur5", "robot"),
    ("record.launch.py", "episode_seconds:=ten", "episode_seconds"),
]


@pytest.fixture(scope="module")
def runs():
    """Every bad launch at once (each is a few seconds of Python start-up), on a ROS domain of their own."""
    from rdt_core.testing import isolated_ros_domain

    with isolated_ros_domain(fallback=93):
        procs = [subprocess.Popen(["ros2", "launch", "rdt_bringup", file, *arg.split()]
                                  + (["checkpoint:=tiny", "device:=cpu"] if file != "record.launch.py" else []),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
                 for file, arg, _ in BAD]
        out = []
        for proc in procs:
            try:
                text, _ = proc.communicate(timeout=180)
            except subprocess.TimeoutExpired:
                proc.kill()
                text, _ = proc.communicate()
            out.append((proc.returncode, text))
        yield out


@pytest.mark.parametrize("case", range(len(BAD)), ids=[f"{f}-{a}" for f, a, _ in BAD])
def test_bad_argument_fails_naming_it(runs, case):
    file, arg, name = BAD[case]
    code, text = runs[case]
    assert code != 0, f"ros2 launch {file} {arg} did not fail:\n{text}"
    assert "process started" not in text, f"a node started despite {arg}:\n{text}"
    errors = [line for line in text.splitlines() if "Caught exception" in line]
    assert errors and name in errors[0], text
