"""The fake robot as a ROS 2 node (``ros2 run rdt_bringup fake_robot_node``): like ros2_kortex's mock
hardware, it lets every launch file run with no robot.

Thin shell over ``rdt_core.fake_robot.FakeRobot`` and ``rdt_bringup.fake_hardware``: it publishes the
profile's joint-state streams (``sensor_msgs/JointState``) and cameras (``sensor_msgs/Image`` rgb8, or
``CompressedImage`` JPEG for compressed cameras), and accepts the commands the policy node sends for the
profile's command backend:

- ``joint_trajectory`` (Kinova): ``trajectory_msgs/JointTrajectory`` on ``trajectory_topic``, followed by
  time as joint_trajectory_controller does, and a ``control_msgs`` gripper action server
  (``GripperCommand`` or ``ParallelGripperCommand``) on ``gripper_action``;
- ``joint_state`` (AgileX, and ALOHA's fallback): ``sensor_msgs/JointState`` on ``joint_command_topics``;
- ``float64_array``: ``std_msgs/Float64MultiArray`` on ``float64_array_topics`` (forward controllers);
- ``interbotix`` (ALOHA): ``interbotix_xs_msgs`` JointGroupCommand / JointSingleCommand, only when that
  package is installed.

Reads top to bottom: parameters, the simulated robot, publishers, command subscriptions, timers.
"""
from __future__ import annotations

import array
import signal
import threading
import time

import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.task import Future
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray, Header
from trajectory_msgs.msg import JointTrajectory

from rdt_core.executor import make_executor, spin
from rdt_core.fake_robot import FakeRobot
from rdt_core.images import rgb_image_fields, rgb_to_compressed
from rdt_core.robots import load_profile

from .fake_hardware import (
    TrajectoryFollower, command_from_array, command_from_interbotix, command_from_joint_state,
    gripper_goal_done, joint_state_command_topics, stream_positions, trajectory_from_arrays)

try:  # optional: only on ALOHA machines with the Interbotix stack
    from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
except ImportError:
    JointGroupCommand = JointSingleCommand = None


def _seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class FakeRobotNode(Node):
    def __init__(self, **node_kwargs):
        """``node_kwargs`` go to rclpy's Node (e.g. parameter_overrides in tests)."""
        super().__init__("rdt_fake_robot", **node_kwargs)
        # ----------------------------------------------------------- parameters
        self.profile = load_profile(self._param("profile", "kinova_gen3", "robot profile name or YAML path"))
        command = self.profile.command
        self.rate_hz = self._param("rate_hz", 100.0, "simulation step and joint-state publish rate (Hz)")
        camera_rate = self._param("camera_rate_hz", 15.0, "camera publish rate (Hz)")
        width = self._param("image_width", 320, "rendered image width (px)")
        height = self._param("image_height", 240, "rendered image height (px)")
        seed = self._param("seed", 0, "seed of the fake scene (target position)")
        self.expert = self._param("autonomous_expert", False,
                                  "move by the scripted expert while no command arrives (for recording demos)")
        self.command_timeout_s = self._param("command_timeout_s", 1.0,
                                             "seconds without commands before the expert takes over")
        camera_topics = self._param("camera_topics", [c.topic for c in self.profile.cameras],
                                    "camera topics, in the profile's camera order")
        camera_compressed = self._param("camera_compressed", [c.compressed for c in self.profile.cameras],
                                        "per camera: publish CompressedImage (JPEG) instead of Image")
        state_topics = self._param("joint_state_topics", [s.topic for s in self.profile.state_streams],
                                   "joint-state topics, in the profile's state_streams order")
        backend = command.get("backend", "")
        trajectory_topic = self._param(
            "trajectory_topic", command.get("topic", "") if backend == "joint_trajectory" else "",
            "JointTrajectory command topic ('' = none)")
        gripper_action = self._param("gripper_action", command.get("gripper_action", ""),
                                     "gripper action server name ('' = none)")
        gripper_type = self._param("gripper_action_type", command.get("gripper_action_type", "GripperCommand"),
                                   "GripperCommand (Humble) or ParallelGripperCommand (Jazzy)")
        self.js_entries = joint_state_command_topics(command)
        js_topics = self._param("joint_command_topics", [e["topic"] for e in self.js_entries],
                                "JointState command topics, in the order of the profile's command topics")
        array_topics = self._param("float64_array_topics", [],
                                   "Float64MultiArray command topics, in the order of the profile's command topics")
        for name, topics, entries in (("camera_topics", camera_topics, self.profile.cameras),
                                      ("camera_compressed", camera_compressed, self.profile.cameras),
                                      ("joint_state_topics", state_topics, self.profile.state_streams),
                                      ("joint_command_topics", js_topics, self.js_entries)):
            if len(topics) != len(entries):
                raise ValueError(f"parameter {name} has {len(topics)} entries; profile {self.profile.name!r} "
                                 f"needs {len(entries)} (one per entry, in the profile's order)")
        if len(array_topics) > len(self.js_entries):
            raise ValueError(f"float64_array_topics has {len(array_topics)} entries; profile "
                             f"{self.profile.name!r} defines {len(self.js_entries)} command topics")

        # ----------------------------------------------------------- the simulated robot
        self.robot = FakeRobot(self.profile, seed=seed, image_size=(height, width))
        self.lock = threading.Lock()  # robot + follower, shared by timers, subscriptions, the action
        self.follower = TrajectoryFollower(self.robot.joint_positions())
        self.last_command_time = -np.inf
        self.last_step = self._now()
        self.sim_steps = 0   # simulation steps so far: a gripper stall is judged only across steps
        self._step_waiters: list[Future] = []   # gripper goals waiting for the next simulation step

        # ----------------------------------------------------------- publishers
        self.state_pubs = [(s.role, self.create_publisher(JointState, topic, 10))
                           for s, topic in zip(self.profile.state_streams, state_topics)]
        command_topics = {trajectory_topic, *js_topics, *array_topics} - {""}
        # Leader arms (ALOHA) show what is commanded, so that record.launch.py has an action source.
        self.leader_pubs = [(s.role, self.create_publisher(JointState, s.topic, 10))
                            for s in self.profile.action_streams if s.topic not in command_topics]
        self.camera_pubs = [(c.role, compressed, self.create_publisher(
            CompressedImage if compressed else Image, topic, 10))
            for c, topic, compressed in zip(self.profile.cameras, camera_topics, camera_compressed)]

        # ----------------------------------------------------------- command subscriptions
        commands = MutuallyExclusiveCallbackGroup()
        if trajectory_topic:
            self.create_subscription(JointTrajectory, trajectory_topic, self.on_trajectory, 10,
                                     callback_group=commands)
        for entry, topic in zip(self.js_entries, js_topics):
            self.create_subscription(JointState, topic, lambda m, e=entry: self.on_joint_state(e, m), 10,
                                     callback_group=commands)
        for entry, topic in zip(self.js_entries, array_topics):
            self.create_subscription(Float64MultiArray, topic,
                                     lambda m, e=entry, t=topic: self.on_array(e, t, m), 10,
                                     callback_group=commands)
        if backend == "interbotix":
            if JointGroupCommand is None:
                self.get_logger().warning("interbotix_xs_msgs is not installed: listening only to the JointState "
                                          f"fallback topics {js_topics}")
            else:
                for arm in command.get("arms", []):
                    self.create_subscription(JointGroupCommand, arm["group_topic"],
                                             lambda m, a=arm: self.on_interbotix(a, m.name, m.cmd), 10,
                                             callback_group=commands)
                    self.create_subscription(JointSingleCommand, arm["single_topic"],
                                             lambda m, a=arm: self.on_interbotix(a, m.name, [m.cmd]), 10,
                                             callback_group=commands)
        if gripper_action:
            self.gripper_index = self.profile.joint_names.index(command["gripper_joint"])
            self._start_gripper_server(gripper_action, gripper_type)

        # ----------------------------------------------------------- timers
        self.create_timer(1.0 / self.rate_hz, self.on_step, callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(1.0 / camera_rate, self.on_camera, callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(
            f"fake {self.profile.name}: joints on {state_topics}, cameras on {camera_topics}, commands on "
            f"{sorted(command_topics) + ([gripper_action] if gripper_action else [])}")

    # ------------------------------------------------------------------- helpers
    def _param(self, name, default, description):
        dynamic = isinstance(default, list)  # an empty list would otherwise be typed BYTE_ARRAY
        value = self.declare_parameter(
            name, default, ParameterDescriptor(description=description, dynamic_typing=dynamic)).value
        return list(value) if dynamic else value

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _apply(self, targets: dict[int, float]) -> None:
        with self.lock:
            for i, v in targets.items():
                self.follower.set_joint(i, v)
            self.last_command_time = self._now()

    # ------------------------------------------------------------------- command callbacks
    def on_trajectory(self, msg: JointTrajectory) -> None:
        now = self._now()
        start = _seconds(msg.header.stamp) if (msg.header.stamp.sec or msg.header.stamp.nanosec) else now
        try:
            traj = trajectory_from_arrays(
                self.profile.joint_names, msg.joint_names,
                [_seconds(p.time_from_start) for p in msg.points], [list(p.positions) for p in msg.points],
                start, self.profile.lower, self.profile.upper, velocities=[list(p.velocities) for p in msg.points])
        except ValueError as e:
            self.get_logger().error(f"rejected trajectory on the fake robot: {e}")
            return
        with self.lock:
            self.follower.submit(traj, now)
            self.last_command_time = now

    def on_joint_state(self, entry: dict, msg: JointState) -> None:
        try:
            self._apply(command_from_joint_state(self.profile, entry, msg.name, msg.position))
        except ValueError as e:
            self.get_logger().error(f"rejected JointState command: {e}")

    def on_array(self, entry: dict, topic: str, msg: Float64MultiArray) -> None:
        try:
            self._apply(command_from_array(self.profile, entry["joints"], list(msg.data), topic))
        except ValueError as e:
            self.get_logger().error(f"rejected Float64MultiArray command: {e}")

    def on_interbotix(self, arm: dict, name: str, cmd) -> None:
        try:
            self._apply(command_from_interbotix(self.profile, arm, name, list(cmd)))
        except ValueError as e:
            self.get_logger().error(f"rejected Interbotix command: {e}")

    # ------------------------------------------------------------------- gripper action
    def _start_gripper_server(self, name: str, action_type: str) -> None:
        if action_type == "ParallelGripperCommand":
            from control_msgs.action import ParallelGripperCommand as Action
        elif action_type == "GripperCommand":
            from control_msgs.action import GripperCommand as Action
        else:
            raise ValueError(f"gripper_action_type {action_type!r}: use GripperCommand or ParallelGripperCommand")
        self.gripper_action_cls = Action
        self.gripper_parallel = action_type == "ParallelGripperCommand"
        self._gripper_goal_seq = 0  # the newest goal preempts older ones, as GripperActionController does
        self.gripper_server = ActionServer(
            self, Action, name, self.on_gripper_goal,
            goal_callback=lambda goal: GoalResponse.ACCEPT,
            cancel_callback=lambda goal_handle: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup())

    def _gripper_state(self, position: float, stalled: bool, reached: bool, msg):
        if self.gripper_parallel:
            msg.state = JointState(name=[self.profile.joint_names[self.gripper_index]], position=[position])
        else:
            msg.position, msg.effort = position, 0.0
        msg.stalled, msg.reached_goal = stalled, reached
        return msg

    def _next_step(self) -> Future:
        """Done after the simulation's next step: what a gripper goal awaits instead of sleeping, so that
        a goal in progress holds no thread (the node runs on one executor thread)."""
        future = Future()
        with self.lock:
            self._step_waiters.append(future)
        return future

    async def on_gripper_goal(self, goal_handle):
        Action = self.gripper_action_cls
        command = goal_handle.request.command
        if self.gripper_parallel and len(command.position) != 1:
            self.get_logger().error("ParallelGripperCommand goal needs exactly one position (the gripper joint)")
            goal_handle.abort()
            return self._gripper_state(self._gripper_position(), False, False, Action.Result())
        goal = float(command.position[0]) if self.gripper_parallel else float(command.position)
        lo, hi = self.profile.lower[self.gripper_index], self.profile.upper[self.gripper_index]
        goal = float(np.clip(goal, lo, hi))
        with self.lock:
            self._gripper_goal_seq += 1
            seq = self._gripper_goal_seq
        self._apply({self.gripper_index: goal})
        previous, reached, stalled = np.nan, False, False
        deadline = time.monotonic() + 10.0
        while rclpy.ok() and time.monotonic() < deadline:
            if seq != self._gripper_goal_seq:  # preempted by a newer goal: this one ends at once
                goal_handle.abort()
                return self._gripper_state(self._gripper_position(), False, False, Action.Result())
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
                return self._gripper_state(self._gripper_position(), False, False, Action.Result())
            await self._next_step()       # a stall is judged across simulation steps, whatever their timing
            position = self._gripper_position()
            reached, stalled = gripper_goal_done(position, goal, previous)
            feedback = Action.Feedback()
            if self.gripper_parallel:
                feedback.state = JointState(name=[self.profile.joint_names[self.gripper_index]], position=[position])
            else:
                self._gripper_state(position, stalled, reached, feedback)
            goal_handle.publish_feedback(feedback)
            if reached or stalled:
                break
            previous = position
            await self._next_step()
        goal_handle.succeed()
        return self._gripper_state(self._gripper_position(), stalled, reached, Action.Result())

    def _gripper_position(self) -> float:
        with self.lock:
            return float(self.robot.joint_positions()[self.gripper_index])

    # ------------------------------------------------------------------- timers
    def on_step(self) -> None:
        now = self._now()
        with self.lock:
            dt = float(np.clip(now - self.last_step, 0.0, 0.1))
            self.last_step = now
            if self.expert and now - self.last_command_time > self.command_timeout_s:
                command = self.robot.expert_action()
                for i, v in enumerate(command):
                    self.follower.set_joint(i, v)
            else:
                command = self.follower.command_at(now)
            self.robot.command(command)
            self.robot.step(dt)
            self.sim_steps += 1
            qpos = self.robot.joint_positions()
            waiters, self._step_waiters = self._step_waiters, []
        for future in waiters:
            future.set_result(self.sim_steps)
        stamp = self.get_clock().now().to_msg()
        for role, pub in self.state_pubs:
            names, positions = stream_positions(self.profile, role, qpos)
            pub.publish(JointState(header=self._header(stamp), name=names, position=positions))
        for role, pub in self.leader_pubs:
            names, positions = stream_positions(self.profile, role, command)
            pub.publish(JointState(header=self._header(stamp), name=names, position=positions))

    def on_camera(self) -> None:
        with self.lock:
            images = self.robot.render()
        stamp = self.get_clock().now().to_msg()
        for role, compressed, pub in self.camera_pubs:
            # rclpy takes a uint8[] field fast only as array.array('B') (any other sequence is checked per element)
            header = self._header(stamp, role)
            if compressed:   # what image_transport's compressed publisher sends a subscriber
                fmt, jpeg = rgb_to_compressed(images[role])
                pub.publish(CompressedImage(header=header, format=fmt, data=array.array("B", jpeg)))
            else:
                fields = rgb_image_fields(images[role])
                fields["data"] = array.array("B", fields["data"])
                pub.publish(Image(header=header, **fields))

    @staticmethod
    def _header(stamp, frame_id: str = "") -> Header:
        return Header(stamp=stamp, frame_id=frame_id)


def main(args=None) -> None:
    rclpy.init(args=args)
    node = None
    try:
        node = FakeRobotNode()
        executor = make_executor()   # one thread: every callback is short, a gripper goal awaits steps
        executor.add_node(node)
        spin(executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)      # launch's SIGINT after the terminal's: clean up once
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
