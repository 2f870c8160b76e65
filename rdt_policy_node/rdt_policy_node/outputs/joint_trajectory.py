"""Kinova (ros2_kortex): multi-point JointTrajectory to the joint_trajectory_controller + gripper action.

The trajectories come from runtime.streaming.TrajectoryStream (ROS-free): positions and velocities for
every point, so the controller splines through them (cubic), each new one spliced C1 onto the running one,
inside the position, velocity and acceleration limits, ending at rest. header.stamp is the time the
trajectory was planned; its points are all after it. The horizon is short (trajectory_horizon_s, default
0.5 s): if the node dies, the controller runs at most that much motion and stops. A hold is sent once per
change (it ends at rest on the hold position).
"""
from __future__ import annotations

from builtin_interfaces.msg import Duration, Time
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ..conversions import joint_indices, seconds_to_stamp, trajectory_points
from ..runtime.streaming import TrajectoryStream
from .gripper import GripperActionOutput


class JointTrajectoryOutput:
    def __init__(self, node, profile, config, callback_group=None):
        self.node = node
        cmd = profile.command
        self.arm_names = list(cmd.get("joints", [j.name for j in profile.joints if not j.is_gripper]))
        self.arm_index = joint_indices(profile, self.arm_names)
        self.config = config
        self.pub = node.create_publisher(JointTrajectory, config.trajectory_topic, 10)
        self.stream: TrajectoryStream | None = None  # made with the controller's Safety at the first send
        g = cmd.get("gripper_joint")
        self.gripper = GripperActionOutput(node, profile, config, g, callback_group) if g else None

    def send(self, now: float, result, controller) -> None:
        if self.stream is None:
            c = self.config
            self.stream = TrajectoryStream(controller.safety, step_s=1.0 / c.publish_rate_hz,
                                           horizon_s=c.trajectory_horizon_s, lead_s=c.trajectory_lead_s,
                                           controller_period_s=1.0 / c.trajectory_controller_rate_hz
                                           if c.trajectory_controller_rate_hz else 0.0, joints=self.arm_index)
        trajectory = self.stream.next(now, result, controller)
        if trajectory is not None:
            msg = JointTrajectory()
            sec, nsec = seconds_to_stamp(trajectory.start)
            msg.header.stamp = Time(sec=sec, nanosec=nsec)
            msg.joint_names = self.arm_names
            for q, v, (s, ns) in trajectory_points(trajectory, self.arm_index):
                msg.points.append(JointTrajectoryPoint(positions=q, velocities=v,
                                                       time_from_start=Duration(sec=s, nanosec=ns)))
            self.pub.publish(msg)
        if self.gripper is not None and result.command is not None and result.publish:
            self.gripper.send(now, result.command)

    def close(self) -> None:
        if self.gripper is not None:
            self.gripper.close()
