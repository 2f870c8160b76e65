"""ROS-free control runtime: observation window, chunk scheduler, interpolation, safety, controller."""
from __future__ import annotations

import numpy as np

from .controller import (DRY_RUN, HOLDING, MOVING_TO_START, PAUSED, RUNNING, WARMING_UP, PolicyController,
                         TickResult)
from .interpolation import Interpolator, Plan, expand_steps_length, interpolate_action
from .observation import Observation, ObservationWindow, jpeg_roundtrip
from .safety import Safety
from .scheduler import CHUNKING_MODES, Chunk, ChunkScheduler, ProcessInference, ThreadInference
from .tracking import TrackingWatchdog


def make_controller(profile, inference, *, publish_rate: float | None = None, control_frequency: float | None = None,
                    horizon: int = 64, history: int = 2, execute_horizon: int | None = None, blend_steps: int = 5,
                    chunking_mode: str = "crossfade", max_observation_age_s: float = 0.5, jpeg: bool = False,
                    dry_run: bool = False, interpolation: str = "linear", arm_steps_length=None,
                    start_move_duration_s: float = 3.0, start_velocity_scale: float = 0.25,
                    velocity_scale: float = 1.0, initial_latency_s: float = 0.3,
                    chunk_range_margin: float = 0.25, resync_tolerance_s: float = 0.1,
                    tracking_watchdog: bool = True, tracking_tolerance=0.15, tracking_lag_s: float = 0.3,
                    tracking_timeout_s: float = 0.5, tracking_grippers: bool = False,
                    arrival_clock=None) -> PolicyController:
    """The whole runtime for a RobotProfile. ``inference``: a predictor callable (run in a thread) or a
    ThreadInference / ProcessInference.

    chunk_range_margin: a chunk row may exceed a joint limit by this fraction of the joint's range before
    the chunk is rejected (beyond it the checkpoint does not fit the profile). resync_tolerance_s: while
    holding, an arm joint measured further than max_velocity * this from the command was moved by
    something else and is held where it is. tracking_*: the tracking-error watchdog (runtime.tracking):
    enable, per-joint floor (one value or one per joint, robot units), allowed lag behind the commands,
    how long a joint may stay off track before the latched hold, and whether grippers are watched.
    arrival_clock: the caller's local monotonic clock that times message arrivals (a stream whose messages
    stop arriving goes stale even if their stamps run ahead); the runtime reads no other clock than this
    and the ``now`` of each ``tick``."""
    control_frequency = float(control_frequency or profile.control_frequency)
    publish_rate = float(publish_rate or control_frequency)
    window = ObservationWindow.from_profile(profile, history=history, jpeg=jpeg, arrival_clock=arrival_clock)
    interp = Interpolator(interpolation, arm_steps_length, profile.dof)
    safety = Safety.from_profile(profile, publish_rate=publish_rate, velocity_scale=velocity_scale,
                                 max_observation_age_s=max_observation_age_s, dry_run=dry_run,
                                 start_move_duration_s=start_move_duration_s,
                                 start_velocity_scale=start_velocity_scale,
                                 chunk_range_margin=chunk_range_margin, resync_tolerance_s=resync_tolerance_s)
    monitored = ~safety.grippers if not tracking_grippers else np.ones(profile.dof, bool)
    tracking = TrackingWatchdog(profile.joint_names, tracking_tolerance, lag_s=tracking_lag_s,
                                timeout_s=tracking_timeout_s, monitored=monitored, lead=safety.max_step,
                                enabled=tracking_watchdog and not dry_run,
                                units=["" if g else "rad" for g in safety.grippers])
    # last: the scheduler starts the inference worker, so every setting is checked before
    scheduler = ChunkScheduler(inference, dof=profile.dof, control_frequency=control_frequency, horizon=horizon,
                               execute_horizon=execute_horizon, blend_steps=blend_steps, mode=chunking_mode,
                               initial_latency_s=initial_latency_s)
    return PolicyController(window, scheduler, interp, safety, control_frequency=control_frequency,
                            tracking=tracking)
