"""rclpy shell of the RDT policy (console script ``policy_node``): messages in, PolicyController, messages out.

Reads top to bottom: parameters, the policy and runtime, subscriptions (sensor-data QoS), timers,
publishers, services. Callback groups keep the sensor callbacks, the control timer and the services from
waiting on each other in the MultiThreadedExecutor; inference runs in the runtime's own worker thread.
"""
from __future__ import annotations

import functools
from pathlib import Path

import rclpy
from cv_bridge import CvBridge
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_srvs.srv import Trigger

from rdt_msgs.msg import ActionChunk, PolicyStatus
from rdt_msgs.srv import SetInstruction

from .conversions import chunk_fields, resolve_instruction, stamp_to_seconds, status_fields
from .outputs import make_output
from .runtime import make_controller

PARAMETERS = {  # name: (default, description)
    "profile": ("kinova_gen3", "robot profile name or YAML path (rdt_core profiles)"),
    "checkpoint": ("tiny", "RDT checkpoint (HF dir, DeepSpeed dir or file); tiny = random UNTRAINED tiny model"),
    "vision_encoder": ("", "local SigLIP folder (empty = the one an rdt_training export carries)"),
    "instruction": ("", "instruction embedding .pt (path or a name in instruction_dir)"),
    "instruction_dir": ("", "folder of .pt instruction embeddings for ~/set_instruction by name"),
    "camera_topics": ([], "image topics in the profile's camera order (empty = the profile's topics)"),
    "camera_compressed": ([], "per camera: true = sensor_msgs/CompressedImage (empty = the profile's setting)"),
    "joint_state_topics": ([], "JointState topics in the profile's state_streams order (empty = profile)"),
    "control_rate_hz": (0.0, "the model's control frequency (0 = the profile's)"),
    "publish_rate_hz": (0.0, "control timer / command rate (0 = control_rate_hz)"),
    "execute_horizon": (0, "actions of each 64-step chunk used before switching (0 = all)"),
    "blend_steps": (5, "cross-fade length at chunk switches, in control steps"),
    "chunking_mode": ("crossfade", "crossfade | rtc (real-time chunking: condition on committed actions)"),
    "max_observation_age_s": (0.5, "hold when any camera or joint stream is older than this"),
    "jpeg_roundtrip": (True, "JPEG-encode and decode frames like the official deployment (matches training)"),
    "device": ("cpu", "torch device of the model, e.g. cuda:0"),
    "dtype": ("", "bfloat16 | float16 | float32 (empty = bfloat16 on CUDA, float32 on CPU)"),
    "dry_run": (False, "compute and publish ~/action_chunk and ~/status, command nothing"),
    "command_backend": ("", "joint_trajectory | kortex_api | interbotix | joint_state | float64_array "
                            "(empty = the profile's command.backend)"),
    "gripper_action_type": ("", "GripperCommand (Humble) | ParallelGripperCommand (Jazzy); empty = profile"),
    "trajectory_lead_s": (0.1, "JointTrajectory header.stamp this far in the future (first segment never in the past)"),
    "trajectory_horizon_s": (0.5, "length of each JointTrajectory: the most motion the controller runs unsupervised"),
    "start_move_duration_s": (3.0, "minimum duration of the slow move to the first action"),
    "chunk_range_margin": (0.25, "a chunk row may exceed a joint limit by this fraction of the joint's range "
                                 "before the whole chunk is rejected (within it rows are clipped)"),
    "resync_tolerance_s": (0.1, "while holding, an arm joint further than max_velocity * this from the command "
                                "was moved by something else and is held where it is measured"),
    "tracking_watchdog": (True, "hold (until ~/resume) when a joint does not follow the commands while running"),
    "tracking_tolerance": ([0.15], "tracking error floor in robot units (rad): one value for every joint or one "
                                   "per profile joint"),
    "tracking_lag_s": (0.3, "how far behind its commands a joint may follow (controller lag + joint state latency)"),
    "tracking_timeout_s": (0.5, "how long a joint may stay off track before the tracking hold"),
    "tracking_grippers": (False, "watch grippers too (a gripper closed on an object stops short by design)"),
    "trajectory_topic": ("", "JointTrajectory topic (empty = the profile's command.topic)"),
    "gripper_action": ("", "gripper action server name (empty = the profile's command.gripper_action)"),
    "kortex_ip": ("", "arm IP for command_backend kortex_api (empty = the profile's command.kortex_ip or 192.168.1.10)"),
}

NODE_NAME = "rdt_policy_node"  # the section name in rdt_bringup/config/*.yaml and the launch files' node name

class PolicyNode(Node):
    def __init__(self, **node_kwargs):
        """``node_kwargs`` go to rclpy's Node (e.g. parameter_overrides, cli_args in tests)."""
        super().__init__(NODE_NAME, **node_kwargs)
        # ------------------------------------------------------------------ parameters
        for name, (default, text) in PARAMETERS.items():
            # empty-list defaults would be typed BYTE_ARRAY by rclpy; dynamic typing accepts string/bool arrays
            desc = ParameterDescriptor(description=text, dynamic_typing=isinstance(default, list))
            self.declare_parameter(name, default, desc)
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        self.params = p

        # ------------------------------------------------------------------ policy and runtime (ROS-free)
        from rdt_core.policy import RDTPolicy
        from rdt_core.robots import load_profile

        self.profile = load_profile(p["profile"])
        if p["checkpoint"] == "tiny":
            self.policy = RDTPolicy.tiny(self.profile)
            self.get_logger().warning("checkpoint:=tiny: a random UNTRAINED tiny model (for plumbing tests only)")
        else:
            instruction = (resolve_instruction(p["instruction"], p["instruction_dir"] or None)
                           if p["instruction"] else None)
            self.policy = RDTPolicy.from_paths(p["checkpoint"], p["vision_encoder"] or None, self.profile, instruction,
                                               device=p["device"], dtype=p["dtype"] or None)  # names parsed by rdt_core
        self.instruction = Path(p["instruction"]).stem if p["instruction"] else ""
        if p["instruction"] and p["checkpoint"] == "tiny":
            self.policy.set_instruction(resolve_instruction(p["instruction"], p["instruction_dir"] or None))
        control_rate = float(p["control_rate_hz"] or self.profile.control_frequency)
        publish_rate = float(p["publish_rate_hz"] or control_rate)
        self.control_rate = control_rate
        p["publish_rate_hz"] = publish_rate
        self.controller = make_controller(
            self.profile, self.policy.predict, publish_rate=publish_rate, control_frequency=control_rate,
            horizon=self.policy.horizon, history=self.policy.img_history_size,
            execute_horizon=int(p["execute_horizon"]) or None, blend_steps=int(p["blend_steps"]),
            chunking_mode=p["chunking_mode"], max_observation_age_s=float(p["max_observation_age_s"]),
            jpeg=bool(p["jpeg_roundtrip"]), dry_run=bool(p["dry_run"]),
            start_move_duration_s=float(p["start_move_duration_s"]),
            chunk_range_margin=float(p["chunk_range_margin"]), resync_tolerance_s=float(p["resync_tolerance_s"]),
            tracking_watchdog=bool(p["tracking_watchdog"]), tracking_tolerance=self._floats(p["tracking_tolerance"]),
            tracking_lag_s=float(p["tracking_lag_s"]), tracking_timeout_s=float(p["tracking_timeout_s"]),
            tracking_grippers=bool(p["tracking_grippers"]), arrival_clock=self._arrival_clock())
        self.bridge = CvBridge()

        # ------------------------------------------------------------------ subscriptions
        sensors = ReentrantCallbackGroup()
        control = MutuallyExclusiveCallbackGroup()
        services = MutuallyExclusiveCallbackGroup()
        cams = self.profile.cameras
        topics = list(p["camera_topics"]) or [c.topic for c in cams]
        compressed = list(p["camera_compressed"]) or [c.compressed for c in cams]
        if len(topics) != len(cams) or len(compressed) != len(cams):
            raise ValueError(f"camera_topics / camera_compressed need one entry per profile camera "
                             f"{[c.role for c in cams]}, got {topics} / {compressed}")
        for cam, topic, comp in zip(cams, topics, compressed):
            self.create_subscription(CompressedImage if comp else Image, topic,
                                     functools.partial(self._on_image, cam.role, bool(comp)),
                                     qos_profile_sensor_data, callback_group=sensors)
        streams = self.profile.state_streams
        joint_topics = list(p["joint_state_topics"]) or [s.topic for s in streams]
        if len(joint_topics) != len(streams):
            raise ValueError(f"joint_state_topics needs one topic per profile state stream "
                             f"{[s.role for s in streams]}, got {joint_topics}")
        for stream, topic in zip(streams, joint_topics):
            self.create_subscription(JointState, topic, functools.partial(self._on_joints, stream.role),
                                     qos_profile_sensor_data, callback_group=sensors)

        # ------------------------------------------------------------------ timers
        self.create_timer(1.0 / publish_rate, self._on_control_tick, callback_group=control)
        self.create_timer(0.2, self._publish_status, callback_group=services)

        # ------------------------------------------------------------------ publishers
        self.status_pub = self.create_publisher(PolicyStatus, "~/status", 10)
        self.chunk_pub = self.create_publisher(ActionChunk, "~/action_chunk", 10)
        backend = p["command_backend"] or self.profile.command.get("backend", "joint_trajectory")
        self.output = None if p["dry_run"] else make_output(self, self.profile, backend, p)
        self._last_state = None

        # ------------------------------------------------------------------ services
        self.create_service(SetInstruction, "~/set_instruction", self._on_set_instruction, callback_group=services)
        self.create_service(Trigger, "~/pause", self._on_pause, callback_group=services)
        self.create_service(Trigger, "~/resume", self._on_resume, callback_group=services)
        self.get_logger().info(f"RDT policy on {self.profile.name}: {backend if self.output else 'dry run'}, "
                               f"control {control_rate:g} Hz, publish {publish_rate:g} Hz")

    @staticmethod
    def _floats(value) -> list:
        """A number or a list of numbers (a dynamically typed parameter: 0.15, [0.15], [1, 2]; rclpy gives
        arrays as array.array)."""
        import numpy as np

        try:
            return np.asarray(value, dtype=np.float64).reshape(-1).tolist()
        except (TypeError, ValueError):
            raise ValueError(f"tracking_tolerance: expected a number or a list of numbers, got {value!r}") from None

    def _arrival_clock(self):
        """Times message arrivals: the local monotonic clock, or with use_sim_time the node's (simulated)
        clock, so that a simulation running slower than real time does not look like stale sensors."""
        if self.get_parameter("use_sim_time").value:
            return self._now
        import time

        return time.monotonic

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _stamp(self, header) -> float:
        t = stamp_to_seconds(header.stamp.sec, header.stamp.nanosec)
        return t if t > 0 else self._now()  # drivers that leave the stamp empty

    # ------------------------------------------------------------------ callbacks
    def _on_image(self, role: str, compressed: bool, msg) -> None:
        # An exception escaping a callback would stop the executor (and the node): a frame that cannot be
        # converted is dropped and reported; the camera then goes stale and Safety holds the arm.
        try:
            if compressed:
                img = self.bridge.compressed_imgmsg_to_cv2(msg, desired_encoding="rgb8")
            else:
                img = self.bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8")
        except Exception as e:  # noqa: BLE001 - cv_bridge raises CvBridgeError, cv2.error, TypeError, ...
            what = f"format {msg.format!r}" if compressed else f"encoding {msg.encoding!r}"
            self.get_logger().error(f"camera {role}: cannot convert a frame with {what} to rgb8 ({e}); "
                                    f"frame dropped", throttle_duration_sec=5.0)
            return
        self.controller.window.add_image(role, img, self._stamp(msg.header))

    def _on_joints(self, role: str, msg: JointState) -> None:
        try:
            values = self.profile.map_stream(role, msg.name, msg.position)
        except ValueError as e:
            self.get_logger().error(str(e), throttle_duration_sec=5.0)
            return
        stream = self.profile.stream(role)
        self.controller.window.add_joints(role, [values[j] for j in stream.joints], self._stamp(msg.header))

    def _on_control_tick(self) -> None:
        now = self._now()
        result = self.controller.tick(now)
        if result.chunk is not None and result.chunk.actions is not None and result.chunk.actions.ndim == 2:
            self._publish_chunk(result.chunk)
        if self.output is not None:
            self.output.send(now, result, self.controller)
        if result.state != self._last_state:
            self._last_state = result.state
            self._publish_status()
            if result.hold_reason:
                self.get_logger().warning(f"{result.state}: {result.hold_reason}")

    def _publish_chunk(self, chunk) -> None:
        f = chunk_fields(chunk, self.profile.joint_names, self.control_rate)
        msg = ActionChunk()
        msg.header.stamp.sec, msg.header.stamp.nanosec = f["stamp"]
        msg.joint_names = f["joint_names"]
        msg.horizon, msg.dof = f["horizon"], f["dof"]
        msg.actions = f["actions"]
        msg.control_frequency = f["control_frequency"]
        msg.ready_stamp.sec, msg.ready_stamp.nanosec = f["ready_stamp"]
        msg.inference_latency = f["inference_latency"]
        msg.first_action_index = f["first_action_index"]
        self.chunk_pub.publish(msg)

    def _publish_status(self) -> None:
        status = self.controller.status(self._now())
        status["instruction"] = self.instruction
        f = status_fields(status)
        msg = PolicyStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        for key, value in f.items():
            setattr(msg, key, value)
        self.status_pub.publish(msg)

    # ------------------------------------------------------------------ services
    def _on_set_instruction(self, request, response):
        try:
            path = resolve_instruction(request.path_or_name, self.params["instruction_dir"] or None)
            self.policy.set_instruction(path)
        except (FileNotFoundError, ValueError, KeyError) as e:
            response.success, response.message = False, str(e)
            return response
        self.instruction = path.stem
        response.success, response.message = True, f"instruction {path} used from the next chunk on"
        return response

    def _on_pause(self, request, response):
        self.controller.pause()
        response.success, response.message = True, "paused: holding the last command"
        return response

    def _on_resume(self, request, response):
        cleared = self.controller.resume()
        response.success = True
        response.message = "resumed: slow move to the next chunk's first action" + (
            f" (cleared the tracking fault: {cleared})" if cleared else "")
        return response

    def destroy_node(self):
        if self.output is not None:
            self.output.close()
        self.controller.close()
        return super().destroy_node()


def main(args=None) -> None:
    rclpy.init(args=args)
    node = None
    try:
        node = PolicyNode()
        # Camera and joint callbacks, the control tick and the services run side by side; a fixed pool keeps
        # the control tick from waiting behind image conversions on a machine with few cores.
        executor = MultiThreadedExecutor(num_threads=4)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
