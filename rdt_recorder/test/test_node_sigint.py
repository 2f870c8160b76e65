"""Ctrl-C under ``ros2 launch`` reaches the recorder twice (the terminal's process group, then launch): the
episode in progress must still be stopped and kept, as a valid file, and the process must exit 0. The recorder
runs as its own process (``python -m rdt_recorder.node``) on a real ROS 2 graph; this test feeds it cameras and
joints. Skipped without ROS 2 (a failure under RDT_REQUIRE_ROS=1)."""
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from rdt_core.testing import isolated_ros_domain, ros_test_mark, wait_for

from ros_feeds import JOINT_POSITIONS, publish_feeds

pytestmark = ros_test_mark("std_srvs")

CAMERAS = ["/sigint/cam_high", "/sigint/wrist"]


@pytest.fixture(scope="module", autouse=True)
def own_ros_domain():
    with isolated_ros_domain(fallback=85) as domain:
        yield domain


def test_two_sigints_while_recording_keep_the_episode(tmp_path):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from rdt_core.episode import EpisodeReader, validate_episode
    from rdt_msgs.msg import EpisodeStatus
    from rdt_msgs.srv import StartEpisode

    recorder = subprocess.Popen(
        [sys.executable, "-m", "rdt_recorder.node", "--ros-args", "-p", "profile:=kinova_gen3",
         "-p", f"output_dir:={tmp_path}", "-p", "keyboard:=false", "-p", "tolerance_s:=0.1",
         "-p", f"camera_topics:=[{','.join(CAMERAS)}]"],
        env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rclpy.init()
    try:
        node = rclpy.create_node("sigint_test_publisher")
        publish_feeds(node, CAMERAS)
        statuses = []
        node.create_subscription(EpisodeStatus, "/rdt_recorder/episode_status", statuses.append, 10)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        threading.Thread(target=executor.spin, daemon=True).start()

        start = node.create_client(StartEpisode, "/rdt_recorder/start_episode")
        assert start.wait_for_service(timeout_sec=120.0), "the recorder's start_episode service never appeared"
        future = start.call_async(StartEpisode.Request())
        assert wait_for(future.done, timeout=60.0) and future.result().success, future.result()
        assert wait_for(lambda: any(s.state == "RECORDING" and s.steps > 20 for s in statuses), timeout=120.0), \
            "the recorder never reported more than 20 steps"
        recorder.send_signal(signal.SIGINT)
        time.sleep(0.1)      # launch's SIGINT follows the terminal's: it lands while the episode is being kept
        recorder.send_signal(signal.SIGINT)
        out, _ = recorder.communicate(timeout=120.0)
        executor.shutdown()
    finally:
        if recorder.poll() is None:
            recorder.kill()
        rclpy.try_shutdown()
    assert recorder.returncode == 0, out
    path = tmp_path / "episode_0.hdf5"
    report = validate_episode(path)
    assert report.ok, f"{report}\n{out}"
    with EpisodeReader(path) as r:
        assert r.num_steps > 20
        np.testing.assert_allclose(r.qpos[0], JOINT_POSITIONS)
