"""ROS-free control runtime: observation window, chunk scheduler, interpolation, safety, controller."""
from __future__ import annotations

from .controller import (DRY_RUN, HOLDING, MOVING_TO_START, PAUSED, RUNNING, WARMING_UP, PolicyController,
                         TickResult)
from .interpolation import Interpolator, Plan, expand_steps_length, interpolate_action
from .observation import Observation, ObservationWindow, jpeg_roundtrip
from .safety import Safety
from .scheduler import CHUNKING_MODES, Chunk, ChunkScheduler, ProcessInference, ThreadInference


def make_controller(profile, inference, *, publish_rate: float | None = None, control_frequency: float | None = None,
                    horizon: int = 64, history: int = 2, execute_horizon: int | None = None, blend_steps: int = 5,
                    chunking_mode: str = "crossfade", max_observation_age_s: float = 0.5, jpeg: bool = False,
                    dry_run: bool = False, interpolation: str = "linear", arm_steps_length=None,
                    start_move_duration_s: float = 3.0, start_velocity_scale: float = 0.25,
                    velocity_scale: float = 1.0,
                    initial_latency_s: float = 0.3) -> PolicyController:
    """The whole runtime for a RobotProfile. ``inference``: a predictor callable (run in a thread) or a
    ThreadInference / ProcessInference."""
    control_frequency = float(control_frequency or profile.control_frequency)
    publish_rate = float(publish_rate or control_frequency)
    window = ObservationWindow.from_profile(profile, history=history, jpeg=jpeg)
    scheduler = ChunkScheduler(inference, dof=profile.dof, control_frequency=control_frequency, horizon=horizon,
                               execute_horizon=execute_horizon, blend_steps=blend_steps, mode=chunking_mode,
                               initial_latency_s=initial_latency_s)
    interp = Interpolator(interpolation, arm_steps_length, profile.dof)
    safety = Safety.from_profile(profile, publish_rate=publish_rate, velocity_scale=velocity_scale,
                                 max_observation_age_s=max_observation_age_s, dry_run=dry_run,
                                 start_move_duration_s=start_move_duration_s,
                                 start_velocity_scale=start_velocity_scale)
    return PolicyController(window, scheduler, interp, safety, control_frequency=control_frequency)
