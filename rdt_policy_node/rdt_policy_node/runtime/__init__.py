"""ROS-free control runtime: observation window, chunk scheduler, interpolation, safety, controller."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .controller import (DRY_RUN, HOLDING, MOVING_TO_START, PAUSED, RUNNING, WARMING_UP, PolicyController,
                         TickResult)
from .interpolation import INTERPOLATION_MODES, Interpolator, Plan, expand_steps_length, interpolate_action
from .observation import CameraFrame, Observation, ObservationWindow, jpeg_roundtrip, materialize
from .safety import Safety
from .scheduler import CHUNKING_MODES, Chunk, ChunkScheduler, ProcessInference, ThreadInference
from .tracking import TrackingWatchdog

if TYPE_CHECKING:
    from ..config import PolicyConfig


def make_controller(profile, inference, config: "PolicyConfig | None" = None, *, horizon: int = 64,
                    history: int = 2, arrival_clock=None) -> PolicyController:
    """The whole runtime for a RobotProfile, set up by one PolicyConfig (rdt_policy_node.config; default:
    its defaults). ``inference``: a predictor callable (run in a thread) or a ThreadInference /
    ProcessInference; ``horizon`` and ``history``: the checkpoint's chunk length and image history;
    ``arrival_clock``: the caller's local monotonic clock that times message arrivals (a stream whose
    messages stop arriving goes stale even if their stamps run ahead); the runtime reads no other clock
    than this and the ``now`` of each ``tick``.

    The config is checked against the profile first (ConfigError naming the setting), then the parts are
    built; the scheduler last, since it starts the inference worker."""
    from ..config import PolicyConfig

    c = (config or PolicyConfig()).for_profile(profile, horizon=horizon)
    window = ObservationWindow.from_profile(profile, history=history, jpeg=c.jpeg_roundtrip,
                                            arrival_clock=arrival_clock)
    interp = Interpolator(c.interpolation, c.arm_steps_length or None, profile.dof)
    safety = Safety.from_profile(profile, publish_rate=c.publish_rate_hz, velocity_scale=c.velocity_scale,
                                 max_observation_age_s=c.max_observation_age_s, dry_run=c.dry_run,
                                 start_move_duration_s=c.start_move_duration_s,
                                 start_velocity_scale=c.start_velocity_scale,
                                 chunk_range_margin=c.chunk_range_margin, resync_tolerance_s=c.resync_tolerance_s)
    monitored = np.ones(profile.dof, bool) if c.tracking_grippers else ~safety.grippers
    tracking = TrackingWatchdog(profile.joint_names, c.tracking_tolerance, lag_s=c.tracking_lag_s,
                                timeout_s=c.tracking_timeout_s, monitored=monitored, lead=safety.max_step,
                                enabled=c.tracking_watchdog and not c.dry_run,
                                units=["" if g else "rad" for g in safety.grippers])
    scheduler = ChunkScheduler(inference, dof=profile.dof, control_frequency=c.control_rate_hz, horizon=horizon,
                               execute_horizon=c.execute_horizon or None, blend_steps=c.blend_steps,
                               mode=c.chunking_mode, initial_latency_s=c.initial_latency_s)
    return PolicyController(window, scheduler, interp, safety, control_frequency=c.control_rate_hz,
                            tracking=tracking)
