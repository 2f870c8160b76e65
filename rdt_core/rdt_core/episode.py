"""The HDF5 episode schema: one module that writes, reads and validates episodes (recorder, converter,
training and the official RDT loader all read the same files).

Layout (DESIGN.md): /observations/qpos (T, D) float64, /action (T, D) float64,
/observations/images/<camera role> (T,) variable-length uint8 JPEG bytes, /timestamps (T,) int64 ns,
file attributes: robot, joint_names, camera_names, control_frequency, instruction, schema_version, ...
JPEG colour convention (official ALOHA/AgileX data): cv2.imdecode of a stored frame returns RGB order,
i.e. frames are encoded with cv2.imencode straight from RGB arrays; per-camera attribute
``color_order`` ("rgb" default, "bgr" for a camera's own JPEG passed through) says what imdecode returns.
"""
# CONTRACT (implemented by the data-core helper):
# SCHEMA_VERSION = "1.0"; DEFAULT_JPEG_QUALITY (the official pipeline's)
# def encode_jpeg(rgb: np.ndarray (H,W,3) uint8, quality=DEFAULT_JPEG_QUALITY) -> bytes   # imdecode -> RGB
# def decode_jpeg(data: bytes | np.ndarray, color_order="rgb") -> np.ndarray (H,W,3) uint8 RGB
#
# @dataclass class EpisodeMeta:
#     robot: str; joint_names: list[str]; camera_names: list[str]; control_frequency: float
#     instruction: str = ""; extra: dict = {}   # topics, skew summary, ... (JSON-serialisable; stored as attrs / JSON attr)
#     camera_color_order: dict[str, str] = {}   # role -> "rgb"|"bgr" (default "rgb")
#
# class EpisodeWriter:   # streaming, crash-tolerant; not thread-safe (one writer thread owns it)
#     def __init__(self, final_path, meta: EpisodeMeta, *, flush_interval_s=1.0, min_free_bytes=256 MiB)
#         # writes to temp_path_for(final_path) (a hidden ".<name>.partial" beside it); datasets chunked + resizable
#     temp_path: Path; final_path: Path; num_steps: int
#     def append(self, stamp_ns: int, qpos (D,), action (D,), jpeg_frames: dict[str, bytes]) -> None
#         # flushes when flush_interval_s elapsed since the last flush; raises DiskFullError (clear message,
#         # file stays valid and flushed) when free space < min_free_bytes
#     def flush(self) -> None
#     def close(self) -> Path            # finalize attrs, flush, atomic rename to final_path; returns it
#     def discard(self) -> None          # delete the temp file
#     context manager: __exit__ closes on success, leaves the temp file (recoverable) on exception
# class DiskFullError(OSError)
# def temp_path_for(final_path) -> Path
# def recover(temp_path, final_path=None) -> Path   # valid episode of the complete steps it holds
# def next_episode_path(folder) -> Path             # episode_<n>.hdf5 continuing after the highest present (temps count too)
# def write_episode(path, meta, timestamps, qpos, action, jpeg_frames: dict[str, list[bytes]]) -> Path  # one-shot
#
# class EpisodeReader:   # opens the file once; cheap random access; context manager
#     def __init__(self, path)
#     meta: EpisodeMeta; num_steps: int
#     qpos -> np.ndarray (T,D); action -> (T,D); timestamps -> (T,) int64
#     def jpeg(self, camera, i) -> bytes
#     def image(self, camera, i) -> np.ndarray (H,W,3) uint8 RGB
#     def close()
# @dataclass class ValidationReport: path; ok: bool; problems: list[str]; num_steps: int
#     def __str__ -> readable report
# def validate_episode(path) -> ValidationReport
