"""Which streams an episode is made of, and how an aligned step becomes (qpos, action, images).

Shared by the live recorder and the bag converter. Roles and default topics come from the robot profile
(``rdt_core.robots``); ``ROLE=/topic`` overrides replace topics. Joint streams are mapped by name from the
JointState message onto the profile's joint order, so message order never matters and a missing name is a
clear error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from rdt_core.robots import StreamMapper
from rdt_recorder.alignment import AlignedStep, StreamAligner


@dataclass(frozen=True)
class CameraStream:
    role: str
    topic: str
    compressed: bool


@dataclass(frozen=True)
class JointStream:
    role: str
    topic: str
    spec: Any           # rdt_core.robots.JointStreamSpec


def parse_topic_overrides(items: Iterable[str] | None) -> dict[str, str]:
    """``["cam_high=/x/image", ...]`` -> {"cam_high": "/x/image"}; a malformed item is a clear error."""
    out: dict[str, str] = {}
    for item in items or ():
        role, sep, topic = item.partition("=")
        role, topic = role.strip(), topic.strip()
        if not sep or not role or not topic:
            raise ValueError(f"--topic expects ROLE=/topic/name, got '{item}'")
        if not topic.startswith("/"):
            topic = "/" + topic
        out[role] = topic
    return out


class StreamPlan:
    """The streams of one recording: cameras, state joint streams, action joint streams (or next state)."""

    def __init__(self, profile, cameras: list[CameraStream], state: list[JointStream], action: list[JointStream]):
        self.profile = profile
        self.cameras = cameras
        self.state = state
        self.action = action
        self.mappers = {s.role: StreamMapper(profile, s.spec, s.topic) for s in state + action}
        d = profile.dof
        for label, streams in (("state", state), ("action", action)):
            if label == "action" and not streams:
                continue
            covered = set()
            for s in streams:
                covered.update(int(i) for i in self.mappers[s.role].indices)
            if covered != set(range(d)):
                missing = [profile.joint_names[i] for i in range(d) if i not in covered]
                raise ValueError(f"profile '{profile.name}': the {label} streams do not fill joints {missing}")
        if not cameras:
            raise ValueError(f"profile '{profile.name}' has no cameras")

    @classmethod
    def from_profile(cls, profile, topics: Mapping[str, str] | None = None,
                     compressed: Mapping[str, bool] | None = None) -> "StreamPlan":
        """Roles and topics of the profile; ``topics`` overrides role -> topic and ``compressed`` camera role ->
        CompressedImage (unknown roles are an error)."""
        topics = dict(topics or {})
        compressed = dict(compressed or {})
        roles = [c.role for c in profile.cameras] + [s.role for s in profile.state_streams] + \
            [s.role for s in profile.action_streams]
        unknown = sorted(set(topics) - set(roles)) + sorted(set(compressed) - {c.role for c in profile.cameras})
        if unknown:
            raise ValueError(f"unknown stream role(s) {unknown} for profile '{profile.name}'; its roles are {roles}")
        cams = [CameraStream(c.role, topics.get(c.role, c.topic), bool(compressed.get(c.role, c.compressed)))
                for c in profile.cameras]
        state = [JointStream(s.role, topics.get(s.role, s.topic), s) for s in profile.state_streams]
        action = [JointStream(s.role, topics.get(s.role, s.topic), s) for s in profile.action_streams]
        return cls(profile, cams, state, action)

    @classmethod
    def from_parameters(cls, profile, camera_topics=(), camera_compressed=(), joint_state_topics=(),
                        action_topics=()) -> "StreamPlan":
        """From the recorder's ROS parameters: lists in the profile's camera / state_streams / action_streams
        order; an empty list keeps the profile's topics."""
        topics: dict[str, str] = {}
        compressed: dict[str, bool] = {}
        groups = (("camera_topics", camera_topics, [c.role for c in profile.cameras]),
                  ("camera_compressed", camera_compressed, [c.role for c in profile.cameras]),
                  ("joint_state_topics", joint_state_topics, [s.role for s in profile.state_streams]),
                  ("action_topics", action_topics, [s.role for s in profile.action_streams]))
        for name, values, roles in groups:
            values = list(values or [])
            if values and len(values) != len(roles):
                raise ValueError(f"parameter {name} has {len(values)} entries but profile '{profile.name}' has "
                                 f"{len(roles)} ({', '.join(roles) or 'none'}); give one per role, in that order, "
                                 "or leave it empty for the profile's defaults")
            for role, value in zip(roles, values):
                if name == "camera_compressed":
                    compressed[role] = bool(value)
                elif value:
                    topics[role] = str(value)
        return cls.from_profile(profile, topics, compressed)

    @property
    def roles(self) -> list[str]:
        return [c.role for c in self.cameras] + [s.role for s in self.state + self.action]

    @property
    def topics(self) -> dict[str, str]:
        return {s.role: s.topic for s in [*self.cameras, *self.state, *self.action]}

    @property
    def camera_roles(self) -> list[str]:
        return [c.role for c in self.cameras]

    @property
    def action_source(self) -> str:
        return "streams:" + ",".join(s.role for s in self.action) if self.action else "next_state"

    def make_aligner(self, tolerance_s: float, **kwargs) -> StreamAligner:
        next_streams = [] if self.action else [s.role for s in self.state]
        return StreamAligner(self.roles, self.profile.control_frequency, tolerance_s,
                             next_streams=next_streams, **kwargs)

    def _vector(self, streams: list[JointStream], values: Mapping[str, np.ndarray]) -> np.ndarray:
        out = np.empty(self.profile.dof, dtype=np.float64)
        for s in streams:
            out[self.mappers[s.role].indices] = values[s.role]
        return out

    def assemble(self, step: AlignedStep) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """(qpos (D,), action (D,), {camera role: image payload}) of an aligned step whose joint payloads are
        the arrays returned by :meth:`rdt_core.robots.StreamMapper.extract`."""
        qpos = self._vector(self.state, step.values)
        if self.action:
            action = self._vector(self.action, step.values)
        else:
            action = self._vector(self.state, step.next_values)
        return qpos, action, {c: step.values[c] for c in self.camera_roles}
