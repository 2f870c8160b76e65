"""The fake-robot node on a real ROS 2 (skipped where rclpy is missing): it publishes joint states and
rgb8 images, follows a JointTrajectory by time, and serves the gripper action."""
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from builtin_interfaces.msg import Duration  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from rdt_core.robots import load_profile  # noqa: E402


@pytest.fixture
def running():
    from rdt_bringup.fake_robot_node import FakeRobotNode
    rclpy.init()
    fake = FakeRobotNode()
    probe = rclpy.create_node("fake_robot_probe")
    executor = MultiThreadedExecutor()
    executor.add_node(fake)
    executor.add_node(probe)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield fake, probe
    executor.shutdown()
    fake.destroy_node()
    probe.destroy_node()
    rclpy.shutdown()
    thread.join(timeout=5)


def wait_for(predicate, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_publishes_states_and_images_and_follows_a_trajectory(running):
    fake, probe = running
    profile = load_profile("kinova_gen3")
    states, images = [], []
    probe.create_subscription(JointState, "/joint_states", states.append, 50)
    probe.create_subscription(Image, profile.cameras[0].topic, images.append, 5)
    assert wait_for(lambda: states and images)
    assert list(states[-1].name) == profile.stream("joints").msg_joint_names
    image = images[-1]
    assert (image.encoding, image.width, image.height) == ("rgb8", 320, 240)
    assert len(image.data) == 320 * 240 * 3

    start = np.array(states[-1].position[:7])
    goal = np.clip(start + 0.2, profile.lower[:7], profile.upper[:7])
    pub = probe.create_publisher(JointTrajectory, profile.command["topic"], 10)
    assert wait_for(lambda: pub.get_subscription_count() > 0)
    msg = JointTrajectory(joint_names=profile.joint_names[:7], points=[
        JointTrajectoryPoint(positions=goal.tolist(), time_from_start=Duration(sec=0, nanosec=500_000_000))])
    pub.publish(msg)
    assert wait_for(lambda: np.abs(np.array(states[-1].position[:7]) - goal).max() < 1e-3, timeout=5.0)


def test_gripper_action_moves_the_knuckle(running):
    from control_msgs.action import GripperCommand
    fake, probe = running
    client = ActionClient(probe, GripperCommand, "/robotiq_gripper_controller/gripper_cmd")
    assert client.wait_for_server(timeout_sec=5.0)
    goal = GripperCommand.Goal()
    goal.command.position = 0.4
    goal.command.max_effort = 100.0
    future = client.send_goal_async(goal)
    assert wait_for(future.done)
    result_future = future.result().get_result_async()
    assert wait_for(result_future.done, timeout=10.0)
    result = result_future.result().result
    assert result.reached_goal and abs(result.position - 0.4) < 5e-3
