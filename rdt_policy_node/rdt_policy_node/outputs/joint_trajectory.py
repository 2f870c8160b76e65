"""Kinova (ros2_kortex): multi-point JointTrajectory to the joint_trajectory_controller + gripper action.

One time-stamped multi-point trajectory per chunk switch (and before the last one runs out), instead of a
stream of single-point messages that makes the controller restart every tick and jerk. The controller
replaces the running trajectory when a message arrives and moves from its current state to the first
point at header.stamp + time_from_start; header.stamp is a little in the future so that first segment is
never in the past. Every point comes from PolicyController.trajectory, so it is inside the position and
velocity limits. The horizon is short (trajectory_horizon_s, default 0.5 s): if the node dies, the
controller runs at most that much unsupervised motion. A hold is one point, sent once per change.
"""
from __future__ import annotations

from builtin_interfaces.msg import Duration, Time
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ..conversions import (joint_indices, seconds_to_stamp, should_send_trajectory, trajectory_points,
                           trajectory_sent_until)
from .gripper import GripperActionOutput


class JointTrajectoryOutput:
    def __init__(self, node, profile, config):
        self.node = node
        cmd = profile.command
        self.arm_names = list(cmd.get("joints", [j.name for j in profile.joints if not j.is_gripper]))
        self.arm_index = joint_indices(profile, self.arm_names)
        self.lead_s = config.trajectory_lead_s
        self.step_s = 1.0 / config.publish_rate_hz
        self.horizon_s = config.trajectory_horizon_s
        self.pub = node.create_publisher(JointTrajectory, config.trajectory_topic, 10)
        self._sent_until = -1.0
        g = cmd.get("gripper_joint")
        self.gripper = GripperActionOutput(node, profile, config, g) if g else None

    def send(self, now: float, result, controller) -> None:
        if result.command is None or not result.publish:
            return
        if should_send_trajectory(now, result.plan_changed, self._sent_until, self.horizon_s):
            times, positions = controller.trajectory(now, self.horizon_s, self.step_s)
            msg = JointTrajectory()
            sec, nsec = seconds_to_stamp(now + self.lead_s)
            msg.header.stamp = Time(sec=sec, nanosec=nsec)
            msg.joint_names = self.arm_names
            for q, (s, ns) in trajectory_points(times, positions[:, self.arm_index], self.lead_s):
                msg.points.append(JointTrajectoryPoint(positions=q, time_from_start=Duration(sec=s, nanosec=ns)))
            self.pub.publish(msg)
            self._sent_until = trajectory_sent_until(now, times)
        if self.gripper is not None:
            self.gripper.send(now, result.command)

    def close(self) -> None:
        if self.gripper is not None:
            self.gripper.close()
