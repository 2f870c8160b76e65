"""Direct Kortex API low-level servoing of a Kinova Gen3 (bypasses ros2_control; for the lowest latency).

Needs Kinova's ``kortex_api`` Python package (a wheel from Kinova, not on PyPI). Joint commands are sent every
tick through BaseCyclic.Refresh in LOW_LEVEL_SERVOING; the gripper through the interconnect's motor command.
Stop ros2_kortex's hardware interface first: only one client may servo the arm.
"""
from __future__ import annotations

import numpy as np

from ..conversions import joint_indices

INSTALL_HINT = ("command_backend kortex_api needs Kinova's Kortex Python API: download "
                "kortex_api-2.6.0.post3-py3-none-any.whl from Kinova's artifactory (see github.com/Kinovarobotics/"
                "kortex, 'Download links') and `pip install` it, or use command_backend:=joint_trajectory")


def _import_kortex():
    try:
        from kortex_api.RouterClient import RouterClient
        from kortex_api.SessionManager import SessionManager
        from kortex_api.TCPTransport import TCPTransport
        from kortex_api.UDPTransport import UDPTransport
        from kortex_api.autogen.client_stubs.BaseClientRpc import BaseClient
        from kortex_api.autogen.client_stubs.BaseCyclicClientRpc import BaseCyclicClient
        from kortex_api.autogen.messages import Base_pb2, BaseCyclic_pb2, Session_pb2
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return (RouterClient, SessionManager, TCPTransport, UDPTransport, BaseClient, BaseCyclicClient, Base_pb2,
            BaseCyclic_pb2, Session_pb2)


class KortexApiOutput:
    def __init__(self, node, profile, config):
        (RouterClient, SessionManager, TCPTransport, UDPTransport, BaseClient, BaseCyclicClient, Base_pb2,
         self._cyclic_pb2, Session_pb2) = _import_kortex()
        cmd = profile.command
        self.node = node
        self.arm_index = joint_indices(profile, cmd.get("joints", [j.name for j in profile.joints if not j.is_gripper]))
        g = cmd.get("gripper_joint")
        self.gripper_index = int(joint_indices(profile, [g])[0]) if g else None
        if g:
            spec = profile.joints[self.gripper_index]
            self._grip_closed, self._grip_open = spec.offset, spec.offset + spec.scale
        ip = config.kortex_ip
        user = cmd.get("kortex_username", "admin")
        password = cmd.get("kortex_password", "admin")
        self._tcp, self._udp = TCPTransport(), UDPTransport()
        self._router = RouterClient(self._tcp, lambda e: node.get_logger().error(f"kortex: {e}"))
        self._router_rt = RouterClient(self._udp, lambda e: node.get_logger().error(f"kortex: {e}"))
        self._tcp.connect(ip, 10000)
        self._udp.connect(ip, 10001)
        info = Session_pb2.CreateSessionInfo(username=user, password=password, session_inactivity_timeout=60000,
                                             connection_inactivity_timeout=2000)
        self._sessions = [SessionManager(self._router), SessionManager(self._router_rt)]
        for s in self._sessions:
            s.CreateSession(info)
        self._base = BaseClient(self._router)
        self._cyclic = BaseCyclicClient(self._router_rt)
        self._Base_pb2 = Base_pb2
        mode = Base_pb2.ServoingModeInformation()
        mode.servoing_mode = Base_pb2.LOW_LEVEL_SERVOING
        self._base.SetServoingMode(mode)
        feedback = self._cyclic.RefreshFeedback()
        self._command = self._cyclic_pb2.Command()
        for a in feedback.actuators:
            act = self._command.actuators.add()
            act.flags = 1  # servoing
            act.position = a.position
        if self.gripper_index is not None:
            self._motor = self._command.interconnect.gripper_command.motor_cmd.add()
            self._motor.position = feedback.interconnect.gripper_feedback.motor[0].position
            self._motor.velocity = 0.0
            self._motor.force = 100.0
        self._frame = 0

    def send(self, now: float, result, controller) -> None:
        # Low-level servoing expects a command every cycle: with nothing new (warming up: no command yet) the last
        # command (at first the measured pose) is sent again, which holds the arm.
        if result.command is not None and result.publish:
            self._set_targets(result.command)
        self._frame = (self._frame + 1) % 65536
        self._command.frame_id = self._frame
        for act in self._command.actuators:
            act.command_id = self._frame
        self._cyclic.Refresh(self._command)

    def _set_targets(self, command) -> None:
        q = np.degrees(command[self.arm_index]) % 360.0  # Kortex positions: degrees in [0, 360)
        for act, deg in zip(self._command.actuators, q):
            act.position = float(deg)
        if self.gripper_index is not None:
            frac = (command[self.gripper_index] - self._grip_open) / (self._grip_closed - self._grip_open)
            self._motor.position = float(np.clip(frac, 0.0, 1.0) * 100.0)  # percent closed
            self._motor.velocity = 100.0

    def close(self) -> None:
        try:
            mode = self._Base_pb2.ServoingModeInformation()
            mode.servoing_mode = self._Base_pb2.SINGLE_LEVEL_SERVOING
            self._base.SetServoingMode(mode)
            for s in self._sessions:
                s.CloseSession()
        finally:
            self._tcp.disconnect()
            self._udp.disconnect()

