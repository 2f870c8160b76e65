"""The fake-robot node on a real ROS 2 (skipped where rclpy is missing): it publishes joint states and
rgb8 images, follows a JointTrajectory by time, and serves the gripper action of either control_msgs
type, a new goal preempting the running one.

The module takes its own ROS_DOMAIN_ID (domain_coordinator, as launch_testing_ros does): it publishes
robot topics, which must never reach a robot on the developer's domain or another test run in parallel."""
import threading

import numpy as np
import pytest
from rdt_core.testing import isolated_ros_domain, ros_test_mark, wait_for

pytestmark = ros_test_mark("trajectory_msgs", "sensor_msgs")


@pytest.fixture(scope="module", autouse=True)
def own_ros_domain():
    with isolated_ros_domain(fallback=89) as domain:
        yield domain


def start(gripper_action_type="GripperCommand"):
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter

    from rdt_bringup.fake_robot_node import FakeRobotNode
    rclpy.init()
    fake = FakeRobotNode(parameter_overrides=[Parameter("gripper_action_type", value=gripper_action_type)])
    probe = rclpy.create_node("fake_robot_probe")
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(fake)
    executor.add_node(probe)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()

    def stop():
        executor.shutdown()
        thread.join(timeout=5)
        fake.destroy_node()
        probe.destroy_node()
        rclpy.try_shutdown()
    return fake, probe, stop


@pytest.fixture
def running():
    fake, probe, stop = start()
    yield fake, probe
    stop()


def test_publishes_states_and_images_and_follows_a_trajectory(running):
    from builtin_interfaces.msg import Duration
    from sensor_msgs.msg import Image, JointState
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from rdt_core.robots import load_profile
    fake, probe = running
    profile = load_profile("kinova_gen3")
    states, images = [], []
    probe.create_subscription(JointState, "/joint_states", states.append, 50)
    probe.create_subscription(Image, profile.cameras[0].topic, images.append, 5)
    assert wait_for(lambda: states and images)
    assert list(states[-1].name) == profile.stream("joints").msg_joint_names
    image = images[-1]
    assert (image.encoding, image.width, image.height, image.step) == ("rgb8", 320, 240, 320 * 3)
    assert len(image.data) == 320 * 240 * 3
    assert image.header.stamp.sec > 0 and states[-1].header.stamp.sec > 0

    start_q = np.array(states[-1].position[:7])
    goal = np.clip(start_q + 0.2, profile.lower[:7], profile.upper[:7])
    pub = probe.create_publisher(JointTrajectory, profile.command["topic"], 10)
    assert wait_for(lambda: pub.get_subscription_count() > 0)
    msg = JointTrajectory(joint_names=profile.joint_names[:7], points=[
        JointTrajectoryPoint(positions=goal.tolist(), time_from_start=Duration(sec=0, nanosec=500_000_000))])
    pub.publish(msg)
    assert wait_for(lambda: np.abs(np.array(states[-1].position[:7]) - goal).max() < 1e-3)


def send_goal(probe, action_type, position):
    """The goal future of a gripper goal of either type, built as the policy node builds them."""
    import control_msgs.action as actions
    from rclpy.action import ActionClient
    clients = probe.__dict__.setdefault("test_gripper_clients", {})
    if action_type not in clients:
        action = getattr(actions, action_type)
        clients[action_type] = (ActionClient(probe, action, "/robotiq_gripper_controller/gripper_cmd"), action)
        assert clients[action_type][0].wait_for_server(timeout_sec=60.0)
    client, action = clients[action_type]
    goal = action.Goal()
    if action_type == "GripperCommand":
        goal.command.position, goal.command.max_effort = position, 100.0
    else:
        goal.command.name, goal.command.position, goal.command.effort = (
            ["robotiq_85_left_knuckle_joint"], [position], [100.0])
    return client.send_goal_async(goal)


def result_of(goal_future, timeout=60.0):
    assert wait_for(goal_future.done)
    handle = goal_future.result()
    assert handle.accepted
    result_future = handle.get_result_async()
    assert wait_for(result_future.done, timeout=timeout)
    return result_future.result()


def test_gripper_command_moves_the_knuckle(running):
    fake, probe = running
    result = result_of(send_goal(probe, "GripperCommand", 0.4)).result
    assert result.reached_goal and abs(result.position - 0.4) < 5e-3


def test_parallel_gripper_command_and_preemption():
    import control_msgs.action as actions
    from action_msgs.msg import GoalStatus
    if not hasattr(actions, "ParallelGripperCommand"):
        pytest.skip("control_msgs has no ParallelGripperCommand here (Humble)")
    fake, probe, stop = start("ParallelGripperCommand")
    try:
        far = 0.8 if fake._gripper_position() < 0.4 else 0.0  # a long move (the knuckle is velocity-limited)
        first = send_goal(probe, "ParallelGripperCommand", far)
        assert wait_for(first.done) and wait_for(lambda: fake._gripper_goal_seq == 1)  # first is executing
        second = send_goal(probe, "ParallelGripperCommand", 0.4)  # preempts the first, as the controller does
        assert result_of(first).status == GoalStatus.STATUS_ABORTED
        done = result_of(second)
        assert done.status == GoalStatus.STATUS_SUCCEEDED
        assert done.result.reached_goal and list(done.result.state.name) == ["robotiq_85_left_knuckle_joint"]
        assert abs(done.result.state.position[0] - 0.4) < 5e-3
    finally:
        stop()
