"""The unified 128-dim vector: layout from the official state_vec.json, scatter/gather/mask."""
import json
from pathlib import Path

import numpy as np
import pytest

from rdt_core import state_vec as sv

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "state_vec.json"


def test_layout_matches_packaged_json_and_official_facts():
    assert sv.STATE_DIM == 128
    assert sv.STATE_VEC_IDX_MAPPING["right_arm_joint_0_pos"] == 0
    assert sv.STATE_VEC_IDX_MAPPING["right_gripper_open"] == 10
    assert sv.STATE_VEC_IDX_MAPPING["left_arm_joint_0_pos"] == 50
    assert sv.STATE_VEC_IDX_MAPPING["left_gripper_open"] == 60
    assert sv.STATE_VEC_IDX_MAPPING["base_angular_vel"] == 102
    assert sv.AGILEX_UNIFIED_INDICES == [50, 51, 52, 53, 54, 55, 60, 0, 1, 2, 3, 4, 5, 10]
    assert sv.AGILEX_STATE_DIVISOR[6] == pytest.approx(4.7908)
    assert sv.AGILEX_ACTION_DIVISOR[13] == pytest.approx(13.9231)
    # the raw layout names resolve to the unified indices
    assert sv.unified_indices(sv.AGILEX_RAW_LAYOUT).tolist() == sv.AGILEX_UNIFIED_INDICES


@pytest.mark.skipif(not SHARED.exists(), reason="shared conformance folder not present")
def test_packaged_copy_equals_shared_conformance_file():
    packaged = Path(sv.__file__).parent / "data" / "state_vec.json"
    assert json.loads(packaged.read_text()) == json.loads(SHARED.read_text())


def test_unknown_slot_names_are_all_reported():
    with pytest.raises(KeyError) as e:
        sv.unified_indices(["right_arm_joint_0_pos", "rigth_gripper_open", "elbow"])
    assert "rigth_gripper_open" in str(e.value) and "elbow" in str(e.value)


def test_scatter_gather_mask_round_trip_batched():
    rng = np.random.default_rng(0)
    idx = np.array(sv.AGILEX_UNIFIED_INDICES)
    vals = rng.normal(size=(3, 5, 14)).astype(np.float32)
    vec = sv.scatter(vals, idx)
    assert vec.shape == (3, 5, 128) and vec.dtype == np.float32
    np.testing.assert_array_equal(sv.gather(vec, idx), vals)
    m = sv.mask(idx)
    assert m.sum() == 14 and set(np.flatnonzero(m)) == set(idx.tolist())
    np.testing.assert_array_equal(vec * (1 - m), 0)


def test_bad_shapes_and_indices_are_rejected():
    with pytest.raises(ValueError, match="14 indices"):
        sv.scatter(np.zeros(13), sv.AGILEX_UNIFIED_INDICES)
    with pytest.raises(ValueError, match="128"):
        sv.gather(np.zeros(64), [0, 1])
    with pytest.raises(IndexError):
        sv.mask([0, 128])
    with pytest.raises(ValueError, match="distinct"):
        sv.mask([3, 3])
