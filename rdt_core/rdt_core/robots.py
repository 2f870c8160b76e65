"""Robot profiles: everything robot-specific, as data (YAML-loadable dataclasses).

A user adds a robot by adding a profile, not code. Shipped: ``kinova_gen3``, ``aloha``, ``agilex``
(YAML files in ``rdt_core/profiles``; ``rdt_bringup/config`` holds the node parameter files that name them).
"""
# CONTRACT (implemented by the data-core helper). Units: radians, rad/s, metres; grippers in joint units.
#
# @dataclass class JointSpec:
#     name: str                 # unique within the profile, e.g. "joint_1", "left_waist"
#     unified: str              # slot in STATE_VEC_IDX_MAPPING, e.g. "right_arm_joint_0_pos", "right_gripper_open"
#     lower: float; upper: float            # position limits (robot units)
#     max_velocity: float                   # robot units / s
#     is_gripper: bool = False
#     # robot units -> unified: u = (x - offset) / scale   (grippers: offset=closed, scale=open-closed -> openness 1 open, 0 closed)
#     offset: float = 0.0; scale: float = 1.0
#     # actions may use another scaling (AgileX action divisors); None = same as state
#     action_offset: float | None = None; action_scale: float | None = None
#
# @dataclass class CameraSpec:
#     role: str                 # stream name, e.g. "cam_high", "cam_right_wrist"; also the HDF5 image dataset name
#     slot: str                 # "exterior" | "right_wrist" | "left_wrist"  (RDT's three camera slots)
#     topic: str                # default ROS topic
#     compressed: bool = False  # sensor_msgs/CompressedImage instead of Image
#
# @dataclass class JointStreamSpec:
#     role: str                 # e.g. "joints", "follower_left", "leader_left"
#     topic: str                # default sensor_msgs/JointState topic
#     msg_joint_names: list[str]   # names as they appear in the JointState message
#     joints: list[str]            # the profile JointSpec.name each message name fills (same length)
#     # optional remap of a message joint's range into the profile joint's (e.g. ALOHA leader gripper ->
#     # follower gripper units): {msg_joint_name: [msg_closed, msg_open]}; linear map onto the profile
#     # joint's (offset, offset+scale) = (closed, open)
#     gripper_ranges: dict[str, list[float]] = {}
#
# @dataclass class RobotProfile:
#     name: str; description: str
#     joints: list[JointSpec]              # qpos / action order (D entries)
#     cameras: list[CameraSpec]            # the cameras that exist (1..3), any order
#     state_streams: list[JointStreamSpec] # fill qpos
#     action_streams: list[JointStreamSpec]  # fill action (leader arms); empty = next step's measured state
#     control_frequency: float             # Hz, the model's control frequency (ctrl_freq input)
#     command: dict                        # how commands are published (backend + topics), read by the policy shell
#     # derived helpers:
#     dof -> int (len(joints)); joint_names -> list[str]
#     lower / upper / max_velocity -> np.ndarray (D,)
#     unified_indices -> np.ndarray (D,) int64; unified_mask() -> (128,) float32
#     camera_for_slot(slot) -> CameraSpec | None ; slot_order = ("exterior", "right_wrist", "left_wrist")
#     def qpos_to_unified(qpos (..., D)) -> (..., 128) float32
#     def unified_to_qpos(vec (..., 128)) -> (..., D)
#     def action_to_unified(action (..., D)) -> (..., 128)
#     def unified_to_action(vec (..., 128)) -> (..., D)
#     def to_dict() -> dict ; @classmethod from_dict(d) -> RobotProfile (validates; clear ValueError naming the field)
#     def validate_joint_names(names) -> None   # clear ValueError listing missing/extra names
#
# def load_profile(name_or_path: str | Path) -> RobotProfile   # a shipped name or a YAML path
# def available_profiles() -> list[str]
# def save_profile(profile, path) -> None (YAML)
