"""RDTPolicy: (checkpoint, vision encoder, profile, instruction) -> 64 future actions in robot units."""
# CONTRACT (implemented by the encoders helper):
# class RDTPolicy:
#     def __init__(self, runner: RDTRunner, vision: VisionEncoder, profile: RobotProfile,
#                  instruction: InstructionEmbedding | Tensor | str | Path | None, *, device="cpu", dtype=None,
#                  control_frequency=None, num_inference_steps=None)
#     @classmethod from_paths(checkpoint, vision_encoder, profile, instruction, *, device="cpu", dtype=None)
#         # profile: a RobotProfile, a name, or None = the profile.json exported beside the checkpoint
#     @classmethod tiny(profile, *, seed=0, pred_horizon=64) -> RDTPolicy   # random tiny RDT + tiny SigLIP, UNTRAINED
#     untrained: bool; profile; horizon (64); img_history_size (2); num_cameras (3); window_size (6)
#     device; dtype   (bfloat16 on CUDA, float32 on CPU by default)
#     def set_instruction(instruction) -> None
#     def predict(images: list[np.ndarray | None], qpos: np.ndarray (D,), stamp=None, *, noise=None,
#                 image_keys=None, inpaint_actions=None) -> np.ndarray (H, D) float32, robot units
#         # images: window_size frames [ext_{t-1}, right_{t-1}, left_{t-1}, ext_t, right_t, left_t] (RGB uint8, None = missing)
#         # raises ValueError on wrong sizes; raises NonFiniteActionError when the model returns NaN/inf
