"""sensor_msgs/JointState position commands, one topic per arm (AgileX /master/joint_left|right style)."""
from __future__ import annotations

from sensor_msgs.msg import JointState

from ..conversions import joint_state_groups


class JointStateOutput:
    def __init__(self, node, profile, config):
        self.node = node
        self.groups = joint_state_groups(profile, profile.command)
        self.pubs = [node.create_publisher(JointState, g["topic"], 10) for g in self.groups]

    def send(self, now: float, result, controller) -> None:
        if result.command is None or not result.publish:
            return
        stamp = self.node.get_clock().now().to_msg()
        for g, pub in zip(self.groups, self.pubs):
            msg = JointState(name=g["names"], position=[float(v) for v in result.command[g["index"]]])
            msg.header.stamp = stamp
            pub.publish(msg)

    def close(self) -> None:
        pass
