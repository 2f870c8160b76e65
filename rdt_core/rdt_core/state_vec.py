"""The unified 128-dim state/action vector of RDT (layout: data/state_vec.json, from the official repo).

Every robot is mapped into this one vector so one model serves many embodiments: a robot fills the
slots it has, the 0/1 mask says which, the rest stay zero. A single arm fills the right-arm slots.
"""
# CONTRACT (implemented by the data-core helper):
# STATE_DIM: int = 128
# STATE_VEC_IDX_MAPPING: dict[str, int]            # slot name -> index, from data/state_vec.json "mapping"
# AGILEX_RAW_LAYOUT: list[str]; AGILEX_UNIFIED_INDICES: list[int]
# AGILEX_STATE_DIVISOR: np.ndarray (14,); AGILEX_ACTION_DIVISOR: np.ndarray (14,)
# def unified_indices(slot_names: Sequence[str]) -> np.ndarray[int64]   # clear KeyError naming unknown slots
# def scatter(values: np.ndarray (..., D), indices) -> np.ndarray (..., 128) float32, zeros elsewhere
# def gather(vec: np.ndarray (..., 128), indices) -> np.ndarray (..., D)
# def mask(indices) -> np.ndarray (128,) float32, 1 at indices
