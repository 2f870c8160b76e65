"""rclpy shell of the recorder (``ros2 run rdt_recorder record``): messages in, EpisodeRecorder does the rest.

Parameters (see rdt_bringup/config/<robot>.yaml, section rdt_recorder): profile, output_dir, instruction,
episode_seconds (0 = open-ended), camera_topics, camera_compressed, joint_state_topics, action_topics (lists in
the profile's order; empty = the profile's topics), jpeg_quality, tolerance_s, keyboard.
Subscriptions: sensor_msgs Image (its fields kept; rdt_core.images converts the frames a step uses, in the
writer's threads) or CompressedImage (JPEG kept), JointState; sensor-data QoS with a 1 s history (sensor_qos).
Services: ~/start_episode (rdt_msgs/StartEpisode), ~/stop_episode and ~/discard_episode
(std_srvs/Trigger). Topic: ~/episode_status (rdt_msgs/EpisodeStatus) at 1 Hz and on every change.
"""
from __future__ import annotations

import signal
import sys
from pathlib import Path

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_srvs.srv import Trigger

from rdt_core.episode import DEFAULT_JPEG_QUALITY
from rdt_core.executor import make_executor, spin
from rdt_core.robots import load_profile
from rdt_msgs.msg import EpisodeStatus
from rdt_msgs.srv import StartEpisode
from rdt_recorder.alignment import header_stamp_ns
from rdt_recorder.console import HELP, KeyReader, apply_command, status_line
from rdt_recorder.frames import CompressedFrame, ImageConversionError, RawImage
from rdt_recorder.streams import StreamPlan
from rdt_recorder.writer import EpisodeRecorder, RecorderError


def sensor_qos(seconds: float, rate_hz: float) -> QoSProfile:
    """Sensor-data QoS (best effort, volatile: what camera and arm drivers offer) whose reader-side history
    holds ``seconds`` of a ``rate_hz`` stream instead of sensor-data's 5 messages (170 ms of a 30 Hz camera, 25 ms
    of a 200 Hz arm): a recorder must keep every message, and when its executor falls behind for a moment
    DDS then keeps what arrived until the callbacks catch up instead of overwriting it."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(5, int(seconds * rate_hz)),
                      reliability=qos_profile_sensor_data.reliability, durability=qos_profile_sensor_data.durability)


CAMERA_QOS = sensor_qos(1.0, 30.0)     # 30 frames (27 MB of 640x480 rgb8 per camera at most)
JOINT_QOS = sensor_qos(1.0, 200.0)


class RecorderNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("rdt_recorder", **node_kwargs)
        # ---- parameters
        lists = ParameterDescriptor(dynamic_typing=True)     # [] must not pin the type to a byte array
        p = {
            "profile": self.declare_parameter("profile", "kinova_gen3").value,
            "output_dir": self.declare_parameter("output_dir", "~/rdt_episodes").value,
            "instruction": self.declare_parameter("instruction", "").value,
            "episode_seconds": float(self.declare_parameter("episode_seconds", 0.0).value),
            "camera_topics": self.declare_parameter("camera_topics", [], lists).value,
            "camera_compressed": self.declare_parameter("camera_compressed", [], lists).value,
            "joint_state_topics": self.declare_parameter("joint_state_topics", [], lists).value,
            "action_topics": self.declare_parameter("action_topics", [], lists).value,
            "jpeg_quality": int(self.declare_parameter("jpeg_quality", DEFAULT_JPEG_QUALITY).value),
            "tolerance_s": float(self.declare_parameter("tolerance_s", 0.04).value),
            "keyboard": bool(self.declare_parameter("keyboard", True).value),
        }
        self.episode_seconds = p["episode_seconds"]
        profile = load_profile(p["profile"])
        self.plan = StreamPlan.from_parameters(
            profile, list(p["camera_topics"] or []), list(p["camera_compressed"] or []),
            list(p["joint_state_topics"] or []), list(p["action_topics"] or []))
        self.recorder = EpisodeRecorder(
            self.plan, Path(p["output_dir"]).expanduser(), instruction=p["instruction"],
            jpeg_quality=p["jpeg_quality"], tolerance_s=p["tolerance_s"],
            clock=lambda: self.get_clock().now().nanoseconds, on_finished=self._on_finished)
        self.quit_requested = False

        # ---- subscriptions (their own group: a slow service call never holds up messages)
        streams = ReentrantCallbackGroup()
        self._subs = []
        for cam in self.plan.cameras:
            if cam.compressed:
                cb = (lambda msg, role=cam.role, topic=cam.topic: self._on_compressed(role, topic, msg))
                self._subs.append(self.create_subscription(CompressedImage, cam.topic, cb, CAMERA_QOS,
                                                           callback_group=streams))
            else:
                cb = (lambda msg, role=cam.role, topic=cam.topic: self._on_image(role, topic, msg))
                self._subs.append(self.create_subscription(Image, cam.topic, cb, CAMERA_QOS,
                                                           callback_group=streams))
        for js in self.plan.state + self.plan.action:
            cb = (lambda msg, role=js.role: self._on_joints(role, msg))
            self._subs.append(self.create_subscription(JointState, js.topic, cb, JOINT_QOS,
                                                       callback_group=streams))

        # ---- status topic and timers
        control = MutuallyExclusiveCallbackGroup()
        self.status_pub = self.create_publisher(EpisodeStatus, "~/episode_status", 10)
        self.create_timer(1.0, self.publish_status, callback_group=control)

        # ---- services
        self.create_service(StartEpisode, "~/start_episode", self._srv_start, callback_group=control)
        self.create_service(Trigger, "~/stop_episode", self._srv_stop, callback_group=control)
        self.create_service(Trigger, "~/discard_episode", self._srv_discard, callback_group=control)

        # ---- keyboard (only in a terminal)
        self.keys = None
        if p["keyboard"] and KeyReader.available():
            self.keys = KeyReader(self._on_key).start()
            self.create_timer(0.5, self._print_status_line, callback_group=control)
            print(HELP, flush=True)
        topics = ", ".join(f"{r}={t}" for r, t in self.plan.topics.items())
        self.get_logger().info(f"recording {profile.name} into {self.recorder.output_dir}; streams: {topics}")

    # ---- message callbacks: convert, hand over, never block
    def _receive_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_image(self, role: str, topic: str, msg: Image) -> None:
        if self.recorder.state.value != "RECORDING":
            return
        stamp = header_stamp_ns(msg.header)
        frame = RawImage(msg.encoding, msg.height, msg.width, msg.step, msg.data, topic=topic, stamp_ns=stamp)
        try:   # a wrongly set up camera is said at once; a damaged frame is the writer's (its step rejected)
            frame.check_encoding()
        except ImageConversionError as exc:
            self.get_logger().warning(f"{role}: {exc}; frame skipped", throttle_duration_sec=5.0)
            return
        self.recorder.on_image(role, stamp, frame, self._receive_ns())

    def _on_compressed(self, role: str, topic: str, msg: CompressedImage) -> None:
        if self.recorder.state.value == "RECORDING":
            stamp = header_stamp_ns(msg.header)
            self.recorder.on_image(role, stamp, CompressedFrame(msg.format, msg.data, topic=topic, stamp_ns=stamp),
                                   self._receive_ns())

    def _on_joints(self, role: str, msg: JointState) -> None:
        if self.recorder.state.value == "RECORDING":
            self.recorder.on_joints(role, header_stamp_ns(msg.header), list(msg.name), list(msg.position),
                                    self._receive_ns())

    # ---- services
    def _srv_start(self, request, response):
        try:
            duration = float(request.max_duration) or self.episode_seconds
            path = self.recorder.start(instruction=request.instruction or None, max_duration_s=duration)
            response.success, response.message, response.path = True, f"recording {path}", str(path)
        except (RecorderError, OSError, ValueError) as exc:
            response.success, response.message = False, str(exc)
        self.publish_status()
        return response

    def _srv_stop(self, request, response):
        # returns once the steps are sealed; ~/episode_status and the log report the file when it is built
        return self._trigger(response, lambda: self.recorder.stop(wait=False), lambda result: result.kept)

    def _srv_discard(self, request, response):
        return self._trigger(response, self.recorder.discard, lambda result: True)

    def _trigger(self, response, action, succeeded):
        try:
            result = action()
            response.success, response.message = bool(succeeded(result)), result.message
        except RecorderError as exc:
            response.success, response.message = False, str(exc)
        self.publish_status()
        return response

    # ---- status
    def _on_finished(self, result) -> None:
        self.get_logger().info(result.summary())
        self.publish_status()

    def publish_status(self) -> None:
        if not self.context.ok():
            return     # after Ctrl-C (rclpy has shut the context down) the episode is still kept, unannounced
        s = self.recorder.status()
        msg = EpisodeStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.state = s.state
        msg.episode_index = int(s.episode_index)
        msg.path = s.path
        msg.steps = int(s.steps)
        msg.duration = float(s.duration)
        msg.rate = float(s.rate)
        msg.dropped_steps = int(s.dropped_steps)
        msg.rejected_steps = int(s.rejected_steps)
        msg.stream_names = list(s.stream_names)
        msg.stream_misses = [int(v) for v in s.stream_misses]
        msg.stream_max_skew_ms = [float(v) for v in s.stream_max_skew_ms]
        msg.message = s.message
        self.status_pub.publish(msg)

    def _print_status_line(self) -> None:
        sys.stdout.write("\r\033[K" + status_line(self.recorder.status()))
        sys.stdout.flush()

    def _on_key(self, command: str) -> None:
        text = apply_command(self.recorder, command, max_duration_s=self.episode_seconds)
        sys.stdout.write("\r\033[K" + text + "\n")
        sys.stdout.flush()
        self.publish_status()
        if command == "quit":
            self.quit_requested = True

    def shutdown(self) -> None:
        if self.keys is not None:
            self.keys.stop()
        self.recorder.close()


def main(args=None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = RecorderNode()
        executor = make_executor()
        executor.add_node(node)
        spin(executor, lambda: not node.quit_requested)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # Ctrl-C reaches the node twice under ros2 launch (the terminal's process group, then launch): the second
        # must not interrupt keeping the episode in progress
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None:
            node.shutdown()          # an episode in progress is stopped and kept
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
