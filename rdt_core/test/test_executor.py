"""rdt_core.executor on a real ROS 2 graph: the executor the nodes spin runs their timers, subscriptions and
services, and ``spin`` returns when told to. Guards the EventsExecutor workaround: its spin() ran no timer in
rclpy 7.1.6, so the nodes drive it with spin_once. Skipped without ROS 2 (a failure under RDT_REQUIRE_ROS=1)."""
import threading

import pytest
from rdt_core.testing import isolated_ros_domain, ros_test_mark, wait_for

pytestmark = ros_test_mark("std_srvs")


@pytest.fixture(scope="module", autouse=True)
def own_ros_domain():
    with isolated_ros_domain(fallback=71) as domain:
        yield domain


def test_spin_runs_timers_subscriptions_and_services_until_told_to_stop():
    import rclpy
    from std_msgs.msg import String
    from std_srvs.srv import Trigger

    from rdt_core.executor import make_executor, spin

    rclpy.init()
    try:
        node = rclpy.create_node("executor_test")
        ticks, got = [], []
        pub = node.create_publisher(String, "executor_test/topic", 10)
        node.create_timer(0.01, lambda: (ticks.append(1), pub.publish(String(data=str(len(ticks))))))
        node.create_subscription(String, "executor_test/topic", lambda m: got.append(m.data), 10)

        def answer(request, response):
            response.success = True
            return response

        node.create_service(Trigger, "executor_test/trigger", answer)
        client_node = rclpy.create_node("executor_test_client")
        client = client_node.create_client(Trigger, "executor_test/trigger")

        executor = make_executor()
        executor.add_node(node)
        executor.add_node(client_node)
        stop = threading.Event()
        spinner = threading.Thread(target=spin, args=(executor, lambda: not stop.is_set()), daemon=True)
        spinner.start()

        assert wait_for(lambda: len(ticks) >= 20 and len(got) >= 10), (len(ticks), len(got))
        assert client.wait_for_service(timeout_sec=60.0)
        future = client.call_async(Trigger.Request())
        assert wait_for(future.done), "the service call was never answered"
        assert future.result().success

        stop.set()
        spinner.join(timeout=60.0)
        assert not spinner.is_alive(), "spin did not return after keep_going() turned False"
    finally:
        rclpy.try_shutdown()
