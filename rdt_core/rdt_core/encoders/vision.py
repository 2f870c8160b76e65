"""SigLIP vision tower with the official deployment preprocessing and a history cache."""
# CONTRACT (implemented by the encoders helper):
# class VisionEncoder:
#     def __init__(self, model: SiglipVisionModel, processor: SiglipImageProcessor, *, device="cpu", dtype=torch.float32)
#     @classmethod from_pretrained(model_dir, *, device="cpu", dtype=torch.float32)  # local dir only, no downloads
#     @classmethod tiny(seed=0, image_size=32, patch_size=8, hidden_size=24)          # random tiny tower for tests/demos
#     hidden_size: int; num_patches: int
#     def background_image() -> np.ndarray (H,W,3) uint8  # processor mean colour, for a missing camera
#     def preprocess(images: list[np.ndarray | None]) -> Tensor (N,3,S,S)   # pad to square with mean colour, resize, normalise
#     def encode(images: list[np.ndarray | None]) -> Tensor (N, num_patches, hidden)   # one batched pass
# class HistoryImageEncoder:
#     def __init__(self, encoder: VisionEncoder, history: int = 2, num_cameras: int = 3)
#     def encode(images: list[np.ndarray | None], keys: list | None = None) -> Tensor (1, history*cams*P, hidden)
#         # images ordered [ext_{t-1}, right_{t-1}, left_{t-1}, ext_t, right_t, left_t]; keys identify frames
#         # (e.g. stamps): features of frames already encoded at the previous step are reused, so a new step
#         # re-encodes only the new frames. Without keys, identity of the arrays is used.
#     stats: dict (frames encoded, frames reused)
