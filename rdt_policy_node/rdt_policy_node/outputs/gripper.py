"""Gripper through its action server: control_msgs/action/GripperCommand (Humble) or ParallelGripperCommand
(Jazzy), chosen by the gripper_action_type parameter. Goals are sent when the target moves, at most 10 Hz."""
from __future__ import annotations

from rclpy.action import ActionClient

from ..conversions import GRIPPER_ACTION_TYPES, joint_indices


class GripperActionOutput:
    MIN_PERIOD_S = 0.1
    MIN_CHANGE = 0.01

    def __init__(self, node, profile, params: dict, joint_name: str):
        kind = params.get("gripper_action_type") or profile.command.get("gripper_action_type", "GripperCommand")
        if kind not in GRIPPER_ACTION_TYPES:
            raise ValueError(f"gripper_action_type {kind!r} unknown; use one of {GRIPPER_ACTION_TYPES}")
        if kind == "GripperCommand":
            from control_msgs.action import GripperCommand as Action
        else:
            try:
                from control_msgs.action import ParallelGripperCommand as Action
            except ImportError as e:
                raise ImportError("control_msgs has no ParallelGripperCommand (it is new in Jazzy); set "
                                  "gripper_action_type:=GripperCommand on Humble") from e
        self.kind, self.Action = kind, Action
        self.node = node
        self.joint_name = joint_name
        self.index = int(joint_indices(profile, [joint_name])[0])
        self.max_effort = float(profile.command.get("gripper_max_effort", 100.0))
        name = params.get("gripper_action") or profile.command.get("gripper_action",
                                                                    "/robotiq_gripper_controller/gripper_cmd")
        self.client = ActionClient(node, Action, name)
        self._last_value, self._last_time = None, -1e9

    def send(self, now: float, command) -> None:
        value = float(command[self.index])
        if self._last_value is not None and (abs(value - self._last_value) < self.MIN_CHANGE
                                             or now - self._last_time < self.MIN_PERIOD_S):
            return
        if not self.client.server_is_ready():
            return
        goal = self.Action.Goal()
        if self.kind == "GripperCommand":
            goal.command.position = value
            goal.command.max_effort = self.max_effort
        else:  # sensor_msgs/JointState command
            goal.command.name = [self.joint_name]
            goal.command.position = [value]
            goal.command.effort = [self.max_effort]
        self.client.send_goal_async(goal)
        self._last_value, self._last_time = value, now

    def close(self) -> None:
        self.client.destroy()
