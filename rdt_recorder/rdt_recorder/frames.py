"""Camera frames as they arrive, and their conversion to the JPEG bytes an episode stores.

Conversion is deferred: the aligner buffers cheap payloads (rdt_core.images.RawImage / CompressedFrame: the
message fields) and only the frames a step actually uses are converted, by rdt_core.images, in worker
threads (cv2 releases the GIL). Colour convention (rdt_core.episode): frames are stored
so that ``cv2.imdecode`` returns the camera's ``color_order``: "rgb" for pixels we encode ourselves, "bgr" for
a camera whose own standard JPEGs are passed through unchanged.
"""
from __future__ import annotations

import numpy as np

from rdt_core.episode import DEFAULT_JPEG_QUALITY, BadFrame, CheckedJpeg, check_jpeg, encode_jpeg
from rdt_core.images import CompressedFrame, ImageConversionError, RawImage

__all__ = ["CompressedFrame", "RawImage", "ImageConversionError", "frame_to_jpeg", "frame_to_stored"]


def frame_to_jpeg(frame, color_order: str = "rgb", quality: int = DEFAULT_JPEG_QUALITY) -> CheckedJpeg:
    """JPEG bytes whose imdecode returns ``color_order``. ``frame``: an (H, W, 3) uint8 array in that order,
    a (H, W) grey array, a :class:`RawImage`, a :class:`CompressedFrame` or ready JPEG ``bytes``. Bytes
    passed through unchanged are checked with an eighth-size decode (ValueError when they do not decode)."""
    if isinstance(frame, (bytes, bytearray, memoryview)):
        return check_jpeg(frame)
    if isinstance(frame, CompressedFrame) and frame.is_jpeg and frame.decoded_order == color_order:
        return check_jpeg(frame.data)                     # passed through, no re-encoding
    if isinstance(frame, (CompressedFrame, RawImage)):
        rgb = frame.to_rgb()                              # rdt_core.images: the one conversion
        return encode_jpeg(rgb if color_order == "rgb" else rgb[:, :, ::-1], quality)
    arr = np.asarray(frame)
    if arr.dtype != np.uint8:
        raise ImageConversionError(f"camera frames must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageConversionError(f"camera frames must be (H, W, 3), got shape {arr.shape}")
    return encode_jpeg(arr, quality)


def frame_to_stored(frame, color_order: str = "rgb", quality: int = DEFAULT_JPEG_QUALITY) -> CheckedJpeg | BadFrame:
    """:func:`frame_to_jpeg` for the encoder threads of the recorder and the converter: a frame that cannot
    be converted (empty, undecodable, a buffer too short for its size) becomes a BadFrame, so the writer
    rejects and counts its step instead of the whole episode or bag failing."""
    try:
        return frame_to_jpeg(frame, color_order, quality)
    except ValueError as exc:          # ImageConversionError included
        return BadFrame(str(exc))
