"""Command outputs of the policy node, one small module per backend (rclpy; imported only by node.py).

Each output has ``send(now, result, controller)`` called on every control tick with the safe TickResult,
and ``close()``. Pick one with ``make_output``.
"""
from __future__ import annotations

from ..conversions import BACKENDS


def make_output(node, profile, backend: str, config, callback_group=None):
    """The output for ``backend`` (one of BACKENDS); ``config``: the node's PolicyConfig, resolved for the
    profile (rdt_policy_node.config). ``callback_group``: the group of the control tick that calls send();
    entities with callbacks of their own (the gripper action client) join it, so their callbacks never run
    while send() is half-way. Clear errors for missing optional packages."""
    if backend == "joint_trajectory":
        from .joint_trajectory import JointTrajectoryOutput
        return JointTrajectoryOutput(node, profile, config, callback_group)
    if backend == "kortex_api":
        from .kortex_api import KortexApiOutput
        return KortexApiOutput(node, profile, config)
    if backend == "interbotix":
        try:
            from .interbotix import InterbotixOutput
        except ImportError:
            node.get_logger().warning("interbotix_xs_msgs is not installed: commanding through sensor_msgs/JointState "
                                      "(the profile's command.fallback) instead")
            from .joint_state import JointStateOutput
            return JointStateOutput(node, profile, config)
        return InterbotixOutput(node, profile, config)
    if backend == "joint_state":
        from .joint_state import JointStateOutput
        return JointStateOutput(node, profile, config)
    if backend == "float64_array":
        from .float64_array import Float64ArrayOutput
        return Float64ArrayOutput(node, profile, config)
    raise ValueError(f"command_backend {backend!r} unknown; use one of {BACKENDS}")
