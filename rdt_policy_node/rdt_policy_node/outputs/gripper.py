"""Gripper through its action server: control_msgs/action/GripperCommand or ParallelGripperCommand.

ros2_kortex serves ``/robotiq_gripper_controller/gripper_cmd`` with ``position_controllers/GripperActionController``
(GripperCommand) on Humble and with ``parallel_gripper_action_controller/GripperActionController``
(ParallelGripperCommand, whose goal is a sensor_msgs/JointState) on Jazzy. A client of the wrong type never
matches the server, so the gripper would silently not move. The client is therefore created once, of the
type the ROS graph shows served under that name (with a warning when that is not the configured
gripper_action_type), and never replaced: destroying an action client while the executor waits on it breaks
the executor, and Fast DDS refuses a second endpoint of another type on one name in one process. Until the
server appears, gripper commands are dropped (with a throttled warning). Goals are sent when the target
moves, at most 10 Hz; each new goal preempts the previous one in the controller. Nothing here waits:
send_goal_async only.

``send`` is called by the control tick, which runs in a thread of its own (runtime.pacing), while the
executor's thread handles the server's answers. rclpy's ActionClient files a goal as pending only after
send_goal_async has sent it, so a goal sent from the tick's thread could be answered before it is filed, and
the answer dropped ("Ignoring unexpected goal response"). The tick therefore only notes the wanted position;
a 20 Hz timer in the executor's thread sends it (and makes the graph query that finds the server, which has
no place in a control tick either). A timer, not a guard condition: rclpy's EventsExecutor supports no
guard conditions (rclpy 7.1.6).
"""
from __future__ import annotations

import threading
import time

from rclpy.action import ActionClient

from ..conversions import GRIPPER_ACTION_TYPES, joint_indices

ACTION_TYPE_NAMES = {kind: f"control_msgs/action/{kind}" for kind in GRIPPER_ACTION_TYPES}


def _action_class(kind: str):
    if kind == "GripperCommand":
        from control_msgs.action import GripperCommand
        return GripperCommand
    try:
        from control_msgs.action import ParallelGripperCommand
    except ImportError as e:
        raise ImportError("control_msgs has no ParallelGripperCommand (it is new in Jazzy); set "
                          "gripper_action_type:=GripperCommand on Humble") from e
    return ParallelGripperCommand


def _action_names_and_types(node):
    """Node.get_action_names_and_types() where rclpy has it (newer), else rclpy.action's (Humble, Jazzy)."""
    method = getattr(node, "get_action_names_and_types", None)
    if method is not None:
        return method()
    from rclpy.action import get_action_names_and_types
    return get_action_names_and_types(node)


def served_gripper_type(names_and_types, name: str) -> str | None:
    """The gripper action type served under ``name`` in a get_action_names_and_types() list, if one is."""
    wanted = "/" + name.lstrip("/")
    for action_name, types in names_and_types:
        if action_name == wanted:
            for kind, type_name in ACTION_TYPE_NAMES.items():
                if type_name in types:
                    return kind
    return None


class GripperActionOutput:
    MIN_PERIOD_S = 0.1
    MIN_CHANGE = 0.01
    DISCOVERY_PERIOD_S = 2.0
    SEND_PERIOD_S = 0.05      # how often the executor looks for a wanted position (goals: at most 10 Hz)

    def __init__(self, node, profile, config, joint_name: str, callback_group=None):
        """callback_group: one mutually exclusive group for the client and the timer that sends its goals,
        so that no answer is handled half-way through sending a goal (see the module's doc)."""
        kind = config.gripper_action_type  # checked and filled from the profile by PolicyConfig
        self.node = node
        self.joint_name = joint_name
        self.index = int(joint_indices(profile, [joint_name])[0])
        self.max_effort = float(profile.command.get("gripper_max_effort", 100.0))
        self.name = config.gripper_action
        _action_class(kind)  # fails now, not in the control tick, where control_msgs lacks the type (Humble)
        self.configured = kind
        self.callback_group = callback_group
        self.kind, self.Action, self.client = None, None, None
        self._last_value, self._last_time = None, -1e9
        self._next_discovery = time.monotonic()
        self._wanted_lock = threading.Lock()
        self._wanted: float | None = None        # the newest position the tick asked for, not yet sent
        self._timer = node.create_timer(self.SEND_PERIOD_S, self._send_wanted, callback_group=callback_group)

    def _server_ready(self) -> bool:
        if self.client is not None:
            return self.client.server_is_ready()
        now = time.monotonic()
        if now < self._next_discovery:
            return False
        self._next_discovery = now + self.DISCOVERY_PERIOD_S
        served = served_gripper_type(_action_names_and_types(self.node), self.name)
        if served is None:
            self.node.get_logger().warning(
                f"gripper action server {self.name} ({self.configured}) is not available: gripper commands are "
                f"dropped until it is (is the gripper controller running?)", throttle_duration_sec=10.0)
            return False
        if served != self.configured:
            self.node.get_logger().warning(
                f"gripper action {self.name} is served as {served}, not {self.configured}: using {served} "
                f"(set gripper_action_type:={served} to silence this)")
        try:
            action = _action_class(served)
        except ImportError as e:
            self.node.get_logger().error(f"gripper action {self.name}: {e}", throttle_duration_sec=10.0)
            return False
        try:
            client = ActionClient(self.node, action, self.name, callback_group=self.callback_group)
        except Exception as e:  # noqa: BLE001 - rclpy raises ValueError / RCLError; the control tick must go on
            self.node.get_logger().error(f"gripper action {self.name}: cannot create a {served} client ({e}); "
                                         f"retrying in {self.DISCOVERY_PERIOD_S:g} s", throttle_duration_sec=10.0)
            return False
        self.kind, self.Action, self.client = served, action, client
        return self.client.server_is_ready()

    def send(self, now: float, command) -> None:
        """From the control tick: ask for the gripper position in ``command`` (sent by the executor's timer)."""
        value = float(command[self.index])
        if self._last_value is not None and (abs(value - self._last_value) < self.MIN_CHANGE
                                             or now - self._last_time < self.MIN_PERIOD_S):
            return
        with self._wanted_lock:
            self._wanted = value
        self._last_value, self._last_time = value, now

    def _send_wanted(self) -> None:
        """In the executor's thread: send the newest wanted position as a goal (dropped while no server)."""
        with self._wanted_lock:
            value, self._wanted = self._wanted, None
        if value is None:
            return
        if not self._server_ready():
            self._last_value = None      # not sent: the next tick asks again
            return
        goal = self.Action.Goal()
        if self.kind == "GripperCommand":  # control_msgs/GripperCommand: float64 position, float64 max_effort
            goal.command.position = value
            goal.command.max_effort = self.max_effort
        else:  # sensor_msgs/JointState: name[], position[], (optional) effort[] as max effort
            goal.command.name = [self.joint_name]
            goal.command.position = [value]
            goal.command.effort = [self.max_effort]
        self.client.send_goal_async(goal)

    def close(self) -> None:
        if self.client is not None:
            self.client.destroy()
        self.node.destroy_timer(self._timer)
