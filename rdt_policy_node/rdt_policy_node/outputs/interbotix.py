"""ALOHA with the Interbotix stack: JointGroupCommand per arm and JointSingleCommand per gripper, every tick."""
from __future__ import annotations

from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand

from ..conversions import interbotix_groups


class InterbotixOutput:
    def __init__(self, node, profile, config):
        self.groups = interbotix_groups(profile, profile.command)
        self.pubs = []
        for g in self.groups:
            group_pub = node.create_publisher(JointGroupCommand, g["group_topic"], 10)
            single_pub = node.create_publisher(JointSingleCommand, g["single_topic"], 10) if g["single_topic"] else None
            self.pubs.append((group_pub, single_pub))

    def send(self, now: float, result, controller) -> None:
        if result.command is None or not result.publish:
            return
        for g, (group_pub, single_pub) in zip(self.groups, self.pubs):
            group_pub.publish(JointGroupCommand(name=g["group_name"],
                                                cmd=[float(v) for v in result.command[g["index"]]]))
            if single_pub is not None and g["gripper_index"] is not None:
                single_pub.publish(JointSingleCommand(name=g["gripper_name"],
                                                      cmd=float(result.command[g["gripper_index"]])))

    def close(self) -> None:
        pass
