"""The rclpy shell on a real ROS 2 graph: parameters, subscriptions, start/stop services, status topic.
Runs where ROS 2 (rclpy, rdt_msgs) is sourced; skipped elsewhere (a failure under RDT_REQUIRE_ROS=1). The module takes its own
ROS_DOMAIN_ID (domain_coordinator, as launch_testing_ros does): it publishes /joint_states and camera
topics, which must never reach a robot on the developer's domain or another test run in parallel."""
import threading
import time

import numpy as np
import pytest
from rdt_core.testing import isolated_ros_domain, ros_test_mark

from ros_feeds import JOINT_POSITIONS, publish_feeds

pytestmark = ros_test_mark("std_srvs")


@pytest.fixture(scope="module", autouse=True)
def own_ros_domain():
    with isolated_ros_domain(fallback=88) as domain:
        yield domain


def call(node, executor, client, request, timeout=10.0):
    assert client.wait_for_service(timeout_sec=timeout)
    future = client.call_async(request)
    end = time.monotonic() + timeout
    while not future.done() and time.monotonic() < end:
        time.sleep(0.02)
    assert future.done(), "service call timed out"
    return future.result()


def test_record_an_episode_through_services(tmp_path):
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter
    from std_srvs.srv import Trigger

    from rdt_core.episode import EpisodeReader, validate_episode
    from rdt_msgs.msg import EpisodeStatus
    from rdt_msgs.srv import StartEpisode
    from rdt_recorder.node import RecorderNode

    rclpy.init()
    try:
        rec = RecorderNode(parameter_overrides=[
            Parameter("profile", value="kinova_gen3"), Parameter("output_dir", value=str(tmp_path)),
            Parameter("instruction", value="ros test"), Parameter("keyboard", value=False),
            Parameter("tolerance_s", value=0.1),
            Parameter("camera_topics", value=["/t/cam_high", "/t/wrist"])])
        pub_node = rclpy.create_node("recorder_test_publisher")
        publish_feeds(pub_node, ["/t/cam_high", "/t/wrist"])
        statuses = []
        pub_node.create_subscription(EpisodeStatus, "/rdt_recorder/episode_status", statuses.append, 10)
        executor = MultiThreadedExecutor(num_threads=4)
        executor.add_node(rec)
        executor.add_node(pub_node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()

        start = pub_node.create_client(StartEpisode, "/rdt_recorder/start_episode")
        stop = pub_node.create_client(Trigger, "/rdt_recorder/stop_episode")
        req = StartEpisode.Request()
        req.instruction = ""
        req.max_duration = 0.0
        res = call(pub_node, executor, start, req)
        assert res.success, res.message
        # Wait on what the 1 Hz status reports, not on a duration: a loaded machine writes fewer steps per second.
        end = time.monotonic() + 60.0
        while time.monotonic() < end and not any(st.state == "RECORDING" and st.steps > 20 for st in statuses):
            time.sleep(0.05)
        again = call(pub_node, executor, start, req)
        assert not again.success and "already recording" in again.message
        res = call(pub_node, executor, stop, Trigger.Request())
        assert res.success, res.message
        executor.shutdown()
        rec.shutdown()
    finally:
        rclpy.try_shutdown()
    path = tmp_path / "episode_0.hdf5"
    assert validate_episode(path).ok
    with EpisodeReader(path) as r:
        assert r.num_steps > 20 and r.meta.instruction == "ros test"
        np.testing.assert_allclose(r.qpos[0], JOINT_POSITIONS)
        assert abs(r.image("cam_high", 0).mean() - 60) < 3
    assert any(s.state == "RECORDING" and s.steps > 20 for s in statuses)
