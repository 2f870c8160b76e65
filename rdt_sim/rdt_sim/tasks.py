"""The two ALOHA sim tasks of ACT / gym-aloha: their model files, object poses, rewards and time limits.

Rewards count contacts between named geoms, as gym-aloha's tasks do (0..4; 4 of 4 is success):
TransferCube: 1 the right gripper touches the cube, 2 it lifted it off the table, 3 the left gripper touches
it, 4 the left gripper holds it off the table. Insertion: 1 both grippers touch their object, 2 both lifted,
3 the peg touches the socket in the air, 4 the peg touches the pin inside the socket.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .assets import gym_aloha_samplers


@dataclass(frozen=True)
class TaskSpec:
    name: str
    model_xml: str  # joint-position control (what the robot is)
    ee_xml: str  # the mocap variant the scripted experts plan in
    objects: tuple[str, ...]  # free joints, in the order sample() fills them
    instruction: str
    episode_s: float  # time limit of an evaluation episode (ACT: 400 steps at 50 Hz)
    sample: Callable[[int], np.ndarray]  # seed -> (7 * len(objects),) free-joint qpos
    reward: Callable[[set], int]  # set of (geom name, geom name) contacts, both orders -> 0..4
    max_reward: int = 4


def _transfer_cube_reward(c: set) -> int:
    right = ("red_box", "vx300s_right/10_right_gripper_finger") in c
    left = ("red_box", "vx300s_left/10_left_gripper_finger") in c
    table = ("red_box", "table") in c
    if left:
        return 4 if not table else 3
    if right:
        return 2 if not table else 1
    return 0


_SOCKET = ("socket-1", "socket-2", "socket-3", "socket-4")


def _insertion_reward(c: set) -> int:
    if ("red_peg", "pin") in c:
        return 4
    peg_table = ("red_peg", "table") in c
    socket_table = any((s, "table") in c for s in _SOCKET)
    in_air = not peg_table and not socket_table
    if in_air and any(("red_peg", s) in c for s in _SOCKET):
        return 3
    both = (("red_peg", "vx300s_right/10_right_gripper_finger") in c
            and any((s, "vx300s_left/10_left_gripper_finger") in c for s in _SOCKET))
    if both:
        return 2 if in_air else 1
    return 0


def _sample_cube(seed: int) -> np.ndarray:
    return np.asarray(gym_aloha_samplers().sample_box_pose(int(seed)), dtype=np.float64)


def _sample_insertion(seed: int) -> np.ndarray:
    peg, socket = gym_aloha_samplers().sample_insertion_pose(int(seed))
    return np.concatenate([peg, socket]).astype(np.float64)


TASKS = {
    "transfer_cube": TaskSpec(
        "transfer_cube", "bimanual_viperx_transfer_cube.xml", "bimanual_viperx_end_effector_transfer_cube.xml",
        ("red_box_joint",), "pick up the red cube with the right arm and hand it over to the left arm",
        8.0, _sample_cube, _transfer_cube_reward),
    "insertion": TaskSpec(
        "insertion", "bimanual_viperx_insertion.xml", "bimanual_viperx_end_effector_insertion.xml",
        ("red_peg_joint", "blue_socket_joint"), "insert the red peg into the blue socket",
        8.0, _sample_insertion, _insertion_reward),
}


def get_task(name: str) -> TaskSpec:
    key = name.replace("-", "_").lower()
    if key not in TASKS:
        raise ValueError(f"unknown sim task {name!r}; tasks: {sorted(TASKS)}")
    return TASKS[key]
