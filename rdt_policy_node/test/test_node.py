"""The rclpy shell on a real ROS 2 graph (Jazzy or Humble with this workspace built and sourced; skipped
elsewhere): the parameter files of rdt_bringup reach the node, and the node drives rdt_bringup's fake
robot (tiny random model, CPU) with JointTrajectory commands inside the profile's limits, a gripper
action of either control_msgs type, and the pause / resume / set_instruction services.

The module takes its own ROS_DOMAIN_ID (domain_coordinator, as launch_testing_ros does) so it never talks
to a real robot on the developer's domain, nor to other test processes that colcon runs in parallel.
"""
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from rdt_core.testing import isolated_ros_domain, ros_test_mark, wait_for

pytestmark = ros_test_mark("trajectory_msgs", "std_srvs")

CONFIG = Path(__file__).resolve().parents[2] / "rdt_bringup" / "config"
TEST_OVERRIDES = {"checkpoint": "tiny", "device": "cpu", "dtype": "float32"}


@pytest.fixture(scope="module", autouse=True)
def own_ros_domain():
    with isolated_ros_domain(fallback=87) as domain:
        yield domain


@pytest.fixture
def ros():
    import rclpy
    rclpy.init()
    yield rclpy
    rclpy.try_shutdown()


def overrides(**values):
    from rclpy.parameter import Parameter
    return [Parameter(name, value=value) for name, value in {**TEST_OVERRIDES, **values}.items()]


@pytest.mark.parametrize("profile", ["kinova_gen3", "aloha", "agilex"])
def test_params_file_section_reaches_the_node(ros, profile):
    """The rdt_policy_node section of config/<profile>.yaml is what the node reads (node name, types)."""
    from rdt_policy_node.config import PolicyConfig
    from rdt_policy_node.node import NODE_NAME, PolicyNode

    path = CONFIG / f"{profile}.yaml"
    if not path.is_file():
        pytest.skip(f"{path} not beside this package (run from the source workspace)")
    section = yaml.safe_load(path.read_text())[NODE_NAME]["ros__parameters"]
    node = PolicyNode(cli_args=["--ros-args", "--params-file", str(path)],
                      parameter_overrides=overrides(dry_run=True))
    try:
        assert all(node.has_parameter(name) for name, *_ in PolicyConfig.ros_parameters())
        for name, value in section.items():
            if name in TEST_OVERRIDES or name == "dry_run":
                continue
            got = node.get_parameter(name).value
            assert (list(got) if isinstance(value, list) else got) == value, name
        assert node.profile.name == profile
    finally:
        node.destroy_node()


@pytest.fixture
def fresh_domain():
    """A ROS domain of this test's own: endpoints of an earlier test's robot must not show in its graph."""
    with isolated_ros_domain(fallback=86) as domain:
        yield domain


@pytest.fixture
def fake_robot_process(request):
    """rdt_bringup's fake robot in a process of its own, serving the gripper action type the test names.

    Its own process because Fast DDS refuses two endpoints of different types on one name in one process:
    the policy node's gripper client, of whatever type it picks, must never share a process with a server of
    another type (as on a robot, where the controller runs elsewhere)."""
    import subprocess
    import sys

    from rdt_core.testing import ros_skip_reason

    reason = ros_skip_reason("rdt_bringup")  # not a declared dependency: rdt_bringup depends on us
    if reason:
        pytest.skip(reason)
    import control_msgs.action as actions
    if not hasattr(actions, request.param):
        pytest.skip(f"control_msgs has no {request.param} here (Humble)")
    proc = subprocess.Popen([sys.executable, "-m", "rdt_bringup.fake_robot_node", "--ros-args",
                             "-p", f"gripper_action_type:={request.param}"])
    yield request.param
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("fake_robot_process", ["GripperCommand", "ParallelGripperCommand"], indirect=True)
def test_policy_drives_the_fake_kinova_within_limits(fresh_domain, ros, fake_robot_process):
    from action_msgs.msg import GoalStatusArray
    from rclpy.executors import MultiThreadedExecutor
    from std_srvs.srv import Trigger
    from trajectory_msgs.msg import JointTrajectory

    from rdt_core.robots import load_profile
    from rdt_msgs.msg import ActionChunk, PolicyStatus
    from rdt_msgs.srv import SetInstruction
    from rdt_policy_node.node import PolicyNode

    server_type = fake_robot_process
    profile = load_profile("kinova_gen3")
    # The policy is configured for GripperCommand: against a ParallelGripperCommand server it must switch.
    policy = PolicyNode(parameter_overrides=overrides(gripper_action_type="GripperCommand",
                                                      start_move_duration_s=1.0))
    probe = ros.create_node("policy_probe")
    statuses, trajectories, chunks, goals = [], [], [], []
    probe.create_subscription(PolicyStatus, "/rdt_policy_node/status", statuses.append, 50)
    probe.create_subscription(JointTrajectory, profile.command["topic"], trajectories.append, 50)
    probe.create_subscription(ActionChunk, "/rdt_policy_node/action_chunk", chunks.append, 10)
    # the server's goal status topic: type-independent evidence that gripper goals reached it
    probe.create_subscription(GoalStatusArray, profile.command["gripper_action"] + "/_action/status",
                              lambda m: goals.extend(m.status_list), 10)
    executor = MultiThreadedExecutor(num_threads=6)
    for node in (policy, probe):
        executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        states = lambda: {s.state for s in statuses}  # noqa: E731
        assert wait_for(lambda: len(trajectories) >= 3 and chunks, 120), \
            f"no commands; states seen {states()}, last reason {statuses[-1].hold_reason if statuses else None}"
        assert states() & {"MOVING_TO_START", "RUNNING"}, states()

        arm = profile.command["joints"]
        cols = [profile.joint_names.index(j) for j in arm]
        lower, upper = profile.lower[cols], profile.upper[cols]
        vmax = np.array([profile.joints[c].max_velocity for c in cols])
        for traj in list(trajectories):
            assert list(traj.joint_names) == arm
            assert traj.header.stamp.sec > 0, "trajectories are stamped (the controller starts them then)"
            t = np.array([p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in traj.points])
            q = np.array([list(p.positions) for p in traj.points])
            assert np.all(np.diff(t) > 0) and t[0] > 0
            assert np.all(np.isfinite(q)) and np.all(q >= lower - 1e-9) and np.all(q <= upper + 1e-9)
            if len(t) > 1:  # every step between points within the velocity limits
                assert np.all(np.abs(np.diff(q, axis=0)) <= vmax * np.diff(t)[:, None] + 1e-6)
            # every point carries velocities (the controller splines through them), consistent with the
            # positions, within the limits, and zero at the last point (what the stock controller accepts)
            v = np.array([list(p.velocities) for p in traj.points])
            assert v.shape == q.shape and np.all(v[-1] == 0.0) and np.all(np.abs(v) <= vmax + 1e-9)
            # compared as positions: time_from_start is whole nanoseconds, and a copied knot may lie a fraction
            # of a millisecond after the first point, where a divided difference magnifies that rounding
            np.testing.assert_allclose(np.diff(q, axis=0), (v[1:] + v[:-1]) / 2 * np.diff(t)[:, None], atol=1e-7)
        chunk = chunks[-1]
        assert list(chunk.joint_names) == profile.joint_names
        assert len(chunk.actions) == chunk.horizon * chunk.dof and chunk.dof == profile.dof

        # the gripper goals reach the fake server, of whichever type it serves
        assert wait_for(lambda: goals, 120), "no gripper goal arrived"
        assert policy.output.gripper.kind == server_type

        client = probe.create_client(Trigger, "/rdt_policy_node/pause")
        assert client.wait_for_service(timeout_sec=60.0)
        future = client.call_async(Trigger.Request())
        assert wait_for(future.done, 60) and future.result().success
        assert wait_for(lambda: statuses[-1].state == "PAUSED", 60)
        client = probe.create_client(Trigger, "/rdt_policy_node/resume")
        assert client.wait_for_service(timeout_sec=60.0)
        future = client.call_async(Trigger.Request())
        assert wait_for(future.done, 60) and future.result().success
        assert wait_for(lambda: statuses[-1].state != "PAUSED", 60)

        client = probe.create_client(SetInstruction, "/rdt_policy_node/set_instruction")
        assert client.wait_for_service(timeout_sec=60.0)
        future = client.call_async(SetInstruction.Request(path_or_name="no_such_instruction"))
        assert wait_for(future.done, 60)
        assert not future.result().success and "no_such_instruction" in future.result().message
    finally:
        executor.shutdown()
        spinner.join(timeout=10)
        for node in (policy, probe):
            node.destroy_node()


def test_control_tick_has_its_own_thread_and_a_failed_tick_stops_the_node(ros):
    """Wall-clock time: the tick runs in a thread of its own (real-time priority as the shipped parameter file
    asks, or the reason why not), not in the executor; a tick that raises ends the commands and main()'s spin.
    Simulated time: a ROS timer (it follows /clock)."""
    import time

    from rclpy.parameter import Parameter

    from rdt_core.executor import make_executor, spin
    from rdt_policy_node.node import PolicyNode

    node = PolicyNode(cli_args=["--ros-args", "--params-file", str(CONFIG / "kinova_gen3.yaml")],
                      parameter_overrides=overrides(dry_run=True))
    try:
        loop = node.control_loop
        assert loop is not None and loop.alive
        assert node.config.realtime_priority == 40
        if loop.priority_problem is None:
            assert os.sched_getscheduler(loop.native_id) == os.SCHED_FIFO
        else:
            assert "rtprio" in loop.priority_problem
        assert wait_for(lambda: loop.ticks >= 5, 60), "the control thread does not tick"

        def broken(now):
            raise RuntimeError("controller broke")

        node.controller.tick = broken
        executor = make_executor()
        executor.add_node(node)
        give_up = time.monotonic() + 60
        spin(executor, keep_going=lambda: node.control_loop_ok() and time.monotonic() < give_up)
        assert not node.control_loop_ok()
        assert isinstance(loop.error, RuntimeError) and "controller broke" in str(loop.error)
        assert wait_for(lambda: not loop.alive, 10)
        executor.remove_node(node)
    finally:
        node.destroy_node()

    sim = PolicyNode(parameter_overrides=overrides(dry_run=True) + [Parameter("use_sim_time", value=True)])
    try:
        assert sim.control_loop is None and sim.control_loop_ok()
    finally:
        sim.destroy_node()
