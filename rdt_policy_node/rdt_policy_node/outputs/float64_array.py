"""std_msgs/Float64MultiArray of every joint, in profile order (forward_command_controller style)."""
from __future__ import annotations

from std_msgs.msg import Float64MultiArray


class Float64ArrayOutput:
    def __init__(self, node, profile, config):
        topic = profile.command.get("float64_topic", "/forward_position_controller/commands")
        self.pub = node.create_publisher(Float64MultiArray, topic, 10)

    def send(self, now: float, result, controller) -> None:
        if result.command is not None and result.publish:
            self.pub.publish(Float64MultiArray(data=[float(v) for v in result.command]))

    def close(self) -> None:
        pass
