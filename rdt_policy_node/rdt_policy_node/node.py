"""rclpy shell of the RDT policy (console script ``policy_node``): messages in, PolicyController, messages out.

Reads top to bottom: parameters, the policy and runtime, subscriptions (sensor-data QoS), timers,
publishers, services, the control loop. One EventsExecutor thread runs the callbacks (rdt_core.executor; the
callback groups matter where rclpy has none and a MultiThreadedExecutor runs them); the control tick runs in
a thread of its own (runtime.pacing: at real-time priority where allowed; on simulated time a ROS timer
instead), inference in the runtime's worker thread.
"""
from __future__ import annotations

import functools
import os
import signal
import sys
from pathlib import Path

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_srvs.srv import Trigger

from rdt_core.executor import make_executor, spin
from rdt_core.images import CompressedFrame, ImageConversionError, RawImage
from rdt_msgs.msg import ActionChunk, PolicyStatus
from rdt_msgs.srv import SetInstruction

from .config import PolicyConfig
from .conversions import chunk_fields, resolve_instruction, stamp_to_seconds, status_fields
from .outputs import make_output
from .runtime import make_controller
from .runtime.pacing import ControlThread

NODE_NAME = "rdt_policy_node"  # the section name in rdt_bringup/config/*.yaml and the launch files' node name

class PolicyNode(Node):
    def __init__(self, **node_kwargs):
        """``node_kwargs`` go to rclpy's Node (e.g. parameter_overrides, cli_args in tests)."""
        super().__init__(NODE_NAME, **node_kwargs)
        # ------------------------------------------------------------------ parameters
        # one per PolicyConfig setting (rdt_policy_node.config: defaults, docs, checks)
        for name, default, text, dynamic in PolicyConfig.ros_parameters():
            self.declare_parameter(name, default, ParameterDescriptor(description=text, dynamic_typing=dynamic))
        p = PolicyConfig.from_parameters({name: self.get_parameter(name).value
                                          for name, *_ in PolicyConfig.ros_parameters()})

        # ------------------------------------------------------------------ policy and runtime (ROS-free)
        from rdt_core.policy import RDTPolicy
        from rdt_core.robots import load_profile

        self.profile = load_profile(p.profile)
        p = p.for_profile(self.profile)  # every "empty = the profile's" filled in, checked against the robot
        self.config = p
        if p.checkpoint == "tiny":
            self.policy = RDTPolicy.tiny(self.profile)
            self.get_logger().warning("checkpoint:=tiny: a random UNTRAINED tiny model (for plumbing tests only)")
        else:
            instruction = resolve_instruction(p.instruction, p.instruction_dir or None) if p.instruction else None
            self.policy = RDTPolicy.from_paths(p.checkpoint, p.vision_encoder or None, self.profile, instruction,
                                               device=p.device, dtype=p.dtype or None)  # names parsed by rdt_core
        self.instruction = Path(p.instruction).stem if p.instruction else ""
        if p.instruction and p.checkpoint == "tiny":
            self.policy.set_instruction(resolve_instruction(p.instruction, p.instruction_dir or None))
        control_rate, publish_rate = p.control_rate_hz, p.publish_rate_hz
        self.control_rate = control_rate
        self.controller = make_controller(self.profile, self.policy.predict, p, horizon=self.policy.horizon,
                                          history=self.policy.img_history_size, arrival_clock=self._arrival_clock())

        # ------------------------------------------------------------------ subscriptions
        sensors = ReentrantCallbackGroup()
        control = MutuallyExclusiveCallbackGroup()
        services = MutuallyExclusiveCallbackGroup()
        cams = self.profile.cameras
        for cam, topic, comp in zip(cams, p.camera_topics, p.camera_compressed):
            self.create_subscription(CompressedImage if comp else Image, topic,
                                     functools.partial(self._on_image, cam.role, topic, bool(comp)),
                                     qos_profile_sensor_data, callback_group=sensors)
        streams = self.profile.state_streams
        for stream, topic in zip(streams, p.joint_state_topics):
            self.create_subscription(JointState, topic, functools.partial(self._on_joints, stream.role),
                                     qos_profile_sensor_data, callback_group=sensors)

        # ------------------------------------------------------------------ timers
        self.create_timer(0.2, self._publish_status, callback_group=services)

        # ------------------------------------------------------------------ publishers
        self.status_pub = self.create_publisher(PolicyStatus, "~/status", 10)
        self.chunk_pub = self.create_publisher(ActionChunk, "~/action_chunk", 10)
        backend = p.command_backend
        self.output = None if p.dry_run else make_output(self, self.profile, backend, p, callback_group=control)
        self._last_state = None

        # ------------------------------------------------------------------ services
        self.create_service(SetInstruction, "~/set_instruction", self._on_set_instruction, callback_group=services)
        self.create_service(Trigger, "~/pause", self._on_pause, callback_group=services)
        self.create_service(Trigger, "~/resume", self._on_resume, callback_group=services)

        # ------------------------------------------------------------------ the control loop
        # Wall-clock time: a thread of its own. Simulated time (use_sim_time): a ROS timer, which follows
        # /clock, so that a simulation slower than real time gets one tick per simulated period.
        self.control_loop = None
        if self.get_parameter("use_sim_time").value:
            self.create_timer(1.0 / publish_rate, self._on_control_tick, callback_group=control)
            pacing = "ROS timer on simulated time"
        else:
            self.control_loop = ControlThread(1.0 / publish_rate, self._on_control_tick,
                                              priority=p.realtime_priority, name="rdt-control").start()
            problem = self.control_loop.priority_problem
            if problem:
                self.get_logger().warning(f"control thread at normal priority: {problem}")
            pacing = f"own thread, SCHED_FIFO {p.realtime_priority}" if p.realtime_priority and not problem \
                else "own thread, normal priority"
        self.get_logger().info(f"RDT policy on {self.profile.name}: {backend if self.output else 'dry run'}, "
                               f"control {control_rate:g} Hz, publish {publish_rate:g} Hz ({pacing})")

    def control_loop_ok(self) -> bool:
        """False once the control thread has ended on an error (main() then stops the node)."""
        return self.control_loop is None or self.control_loop.error is None

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
    def _on_image(self, role: str, topic: str, compressed: bool, msg) -> None:
        # The message's fields are kept, not converted: the inference worker converts the few frames each chunk
        # sees (runtime.observation.CameraFrame). Only the cheap checks run here; a frame that fails them is
        # dropped and reported (an exception escaping a callback would stop the executor), the camera then
        # goes stale and Safety holds the arm.
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        frame = (CompressedFrame(msg.format, msg.data, topic=topic, stamp_ns=stamp_ns) if compressed else
                 RawImage(msg.encoding, msg.height, msg.width, msg.step, msg.data, topic=topic, stamp_ns=stamp_ns))
        try:
            frame.check()
        except ImageConversionError as e:
            self.get_logger().error(f"camera {role}: {e}; frame dropped", throttle_duration_sec=5.0)
            return
        self.controller.window.add_image(role, frame, self._stamp(msg.header))

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
            path = resolve_instruction(request.path_or_name, self.config.instruction_dir or None)
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
        if self.control_loop is not None:
            self.control_loop.stop()     # no tick may publish through what is destroyed below
        if self.output is not None:
            self.output.close()
        # no waiting for a running inference: its chunk would never be used, and waiting for it (seconds on a
        # loaded CPU) outlasted launch's SIGINT-to-SIGTERM grace; main() leaves without finalisation instead
        self.inference_ended = self.controller.close(timeout=0.2)
        return super().destroy_node()


# How long a thread running Python may keep the GIL while another waits for it (CPython's default: 5 ms). The
# inference worker runs Python between torch kernels; with the default, each of the several hand-overs of a
# control tick (executor thread -> its worker -> publish) could wait up to 5 ms behind it, which made the
# 100 Hz ticks' p99 period ~5 x nominal in bench/ros_bench.py. 0.5 ms bounds that wait; the cost is more
# GIL switches (measured there).
GIL_SWITCH_INTERVAL_S = 0.0005


def main(args=None) -> None:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    rclpy.init(args=args)
    node = None
    try:
        node = PolicyNode()
        executor = make_executor()   # rdt_core.executor: why not the MultiThreadedExecutor
        executor.add_node(node)
        spin(executor, keep_going=node.control_loop_ok)
        if node.control_loop is not None and node.control_loop.error is not None:
            node.get_logger().fatal(f"the control tick failed, commands stopped: "
                                    f"{node.control_loop.error!r}")
            raise node.control_loop.error
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # Ctrl-C reaches the node twice under ros2 launch (the terminal's process group, then launch): a second
        # SIGINT must not cut the clean-up short (a KeyboardInterrupt there left torch running: exit -6)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        if node is not None and not node.inference_ended:
            # torch still runs in the inference thread, and Python's finalisation under it aborts the process
            # ("terminate called without an active exception"): the outputs are closed, nothing is left to save
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)


if __name__ == "__main__":
    main()
