"""The rclpy shell (runs where ROS 2 Jazzy/Humble and rdt_msgs are sourced)."""
import time

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rdt_msgs")


def test_node_declares_the_parameters_and_publishes_status():
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter

    from rdt_msgs.msg import PolicyStatus
    from rdt_policy_node.node import PARAMETERS, PolicyNode

    rclpy.init()
    try:
        node = PolicyNode()
        node.set_parameters([Parameter("blend_steps", Parameter.Type.INTEGER, 3)])
        assert {p for p in PARAMETERS} <= set(node._parameters)
        got = []
        listener = rclpy.create_node("status_listener")
        listener.create_subscription(PolicyStatus, "/rdt_policy/status", got.append, 10)
        ex = MultiThreadedExecutor()
        ex.add_node(node)
        ex.add_node(listener)
        t0 = time.monotonic()
        while not got and time.monotonic() - t0 < 10:
            ex.spin_once(timeout_sec=0.1)
        assert got and got[0].state in ("WARMING_UP", "HOLDING")  # no sensors: nothing commanded
        node.destroy_node()
        listener.destroy_node()
    finally:
        rclpy.try_shutdown()
