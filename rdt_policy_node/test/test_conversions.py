"""Pure message-value conversions used by the rclpy shell (no ROS needed)."""
import numpy as np
import pytest

from rdt_core.robots import load_profile
from rdt_core.joint_trajectory import SplineTrajectory
from rdt_policy_node.conversions import (chunk_fields, interbotix_groups, joint_state_groups, resolve_instruction,
                                         seconds_to_stamp, stamp_to_seconds, status_fields, trajectory_points)
from rdt_policy_node.runtime import Chunk


def test_stamps_round_trip():
    assert seconds_to_stamp(12.25) == (12, 250_000_000)
    assert stamp_to_seconds(*seconds_to_stamp(1712345678.123456789)) == pytest.approx(1712345678.123456789, abs=1e-6)


def test_chunk_fields_are_row_major_and_carry_timing():
    a = np.arange(12.0).reshape(4, 3)
    c = Chunk(seq=0, obs_stamp=10.0, request_time=10.01, ready_time=10.31, actions=a, first_index=7)
    f = chunk_fields(c, ["a", "b", "c"], 25.0)
    assert (f["horizon"], f["dof"], f["first_action_index"]) == (4, 3, 7)
    assert f["actions"][1 * 3 + 2] == a[1, 2] and len(f["actions"]) == 12
    assert f["stamp"] == (10, 0) and f["ready_stamp"] == seconds_to_stamp(10.31)
    assert f["inference_latency"] == pytest.approx(0.30)


def test_status_fields_replace_unmeasured_values():
    f = status_fields({"state": "WARMING_UP", "hold_reason": "", "inference_latency_ms": float("nan"),
                       "inference_latency_p50_ms": float("nan"), "inference_latency_p99_ms": float("nan"),
                       "observation_names": ["cam_high", "joints"], "observation_ages": [0.1, float("inf")],
                       "max_camera_skew": 0.0, "chunks_received": 0, "chunk_index": 0, "dry_run": True})
    assert f["inference_latency_ms"] == 0.0 and f["observation_ages"] == [0.1, 1e9] and f["dry_run"] is True


def test_trajectory_points_carry_positions_and_velocities_of_the_commanded_joints():
    traj = SplineTrajectory(10.0, [0.02, 0.06], np.arange(6.0).reshape(2, 3), -np.arange(6.0).reshape(2, 3))
    pts = trajectory_points(traj, np.array([0, 2]))
    assert [p[0] for p in pts] == [[0.0, 2.0], [3.0, 5.0]]
    assert [p[1] for p in pts] == [[-0.0, -2.0], [-3.0, -5.0]]
    assert pts[1][2] == seconds_to_stamp(0.06)


def test_command_groups_from_the_shipped_profiles():
    aloha = load_profile("aloha")
    groups = interbotix_groups(aloha, aloha.command)
    assert len(groups) == 2 and len(groups[0]["index"]) == 6
    assert aloha.joint_names[groups[1]["gripper_index"]] == "right_gripper"
    js = joint_state_groups(aloha, aloha.command)  # the fallback section
    assert js[0]["names"][-1] == "gripper" and aloha.joint_names[js[0]["index"][-1]] == "left_gripper"
    kinova = load_profile("kinova_gen3")
    with pytest.raises(ValueError, match="command.arms"):
        interbotix_groups(kinova, kinova.command)


def test_resolve_instruction_by_path_or_name(tmp_path):
    (tmp_path / "pick_cup.pt").write_bytes(b"x")
    assert resolve_instruction("pick_cup", str(tmp_path)) == tmp_path / "pick_cup.pt"
    assert resolve_instruction(str(tmp_path / "pick_cup.pt"), None) == tmp_path / "pick_cup.pt"
    with pytest.raises(FileNotFoundError, match="pick_cup"):
        resolve_instruction("open_drawer", str(tmp_path))
