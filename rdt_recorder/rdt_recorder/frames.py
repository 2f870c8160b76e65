"""Camera frames as they arrive, and their conversion to the JPEG bytes an episode stores.

Conversion is deferred: the aligner buffers cheap payloads and only the frames a step actually uses are
converted, in worker threads (cv2 releases the GIL). Colour convention (rdt_core.episode): frames are stored
so that ``cv2.imdecode`` returns the camera's ``color_order``: "rgb" for pixels we encode ourselves, "bgr" for
a camera whose own standard JPEGs are passed through unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from rdt_core.episode import DEFAULT_JPEG_QUALITY, BadFrame, CheckedJpeg, check_jpeg, encode_jpeg

SUPPORTED_RAW_ENCODINGS = ("rgb8", "bgr8", "mono8", "rgba8", "bgra8")
SKIPPED_RAW_ENCODINGS = ("16UC1", "mono16", "32FC1")   # depth images: not camera frames for RDT


class UnsupportedEncodingError(ValueError):
    """An image encoding we cannot turn into a colour frame."""


@dataclass
class RawImage:
    """A sensor_msgs/Image pixel buffer, converted only if a step uses it."""

    encoding: str
    height: int
    width: int
    step: int
    data: bytes | np.ndarray
    is_bigendian: int = 0

    def to_array(self, color_order: str = "rgb") -> np.ndarray:
        enc = self.encoding
        channels = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}.get(enc)
        if channels is None:
            raise UnsupportedEncodingError(
                f"image encoding '{enc}' is not supported (supported: {', '.join(SUPPORTED_RAW_ENCODINGS)})")
        buf = np.frombuffer(memoryview(self.data), dtype=np.uint8)
        row = self.width * channels
        if self.step < row or buf.size < self.step * self.height:
            raise UnsupportedEncodingError(
                f"image buffer of {buf.size} bytes does not hold {self.height} rows of step {self.step} "
                f"({self.width}x{self.height} {enc})")
        img = buf[: self.step * self.height].reshape(self.height, self.step)[:, :row]
        img = img.reshape(self.height, self.width, channels)
        source_order = "bgr" if enc.startswith("bgr") else "rgb"
        if channels == 1:
            return np.ascontiguousarray(np.repeat(img, 3, axis=2))
        img = img[:, :, :3]
        if source_order != color_order:
            img = img[:, :, ::-1]
        return np.ascontiguousarray(img)


@dataclass
class CompressedFrame:
    """A sensor_msgs/CompressedImage: ``format`` as image_transport writes it, e.g. "rgb8; jpeg compressed bgr8"."""

    format: str
    data: bytes

    @property
    def is_jpeg(self) -> bool:
        fmt = self.format.lower()
        return "jpeg" in fmt or "jpg" in fmt or (not fmt and bytes(self.data[:2]) == b"\xff\xd8")

    @property
    def decoded_order(self) -> str:
        """The channel order cv2.imdecode returns for these bytes (image_transport: "compressed <enc>")."""
        return "rgb" if "compressed rgb" in self.format.lower() else "bgr"


def frame_to_jpeg(frame, color_order: str = "rgb", quality: int = DEFAULT_JPEG_QUALITY) -> CheckedJpeg:
    """JPEG bytes whose imdecode returns ``color_order``. ``frame``: an (H, W, 3) uint8 array in that order,
    a (H, W) grey array, a :class:`RawImage`, a :class:`CompressedFrame` or ready JPEG ``bytes``. Bytes
    passed through unchanged are checked with an eighth-size decode (ValueError when they do not decode)."""
    if isinstance(frame, (bytes, bytearray, memoryview)):
        return check_jpeg(frame)
    if isinstance(frame, CompressedFrame):
        if frame.is_jpeg and frame.decoded_order == color_order:
            return check_jpeg(frame.data)                 # passed through, no re-encoding
        arr = cv2.imdecode(np.frombuffer(memoryview(frame.data), np.uint8), cv2.IMREAD_COLOR)
        if arr is None:
            raise UnsupportedEncodingError(f"cannot decode compressed image of format '{frame.format}'")
        if frame.decoded_order != color_order:
            arr = arr[:, :, ::-1]
        return encode_jpeg(arr, quality)
    if isinstance(frame, RawImage):
        return encode_jpeg(frame.to_array(color_order), quality)
    arr = np.asarray(frame)
    if arr.dtype != np.uint8:
        raise UnsupportedEncodingError(f"camera frames must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise UnsupportedEncodingError(f"camera frames must be (H, W, 3), got shape {arr.shape}")
    return encode_jpeg(arr, quality)


def frame_to_stored(frame, color_order: str = "rgb", quality: int = DEFAULT_JPEG_QUALITY) -> CheckedJpeg | BadFrame:
    """:func:`frame_to_jpeg` for the encoder threads of the recorder and the converter: a frame that cannot
    be converted (empty, undecodable, a buffer too short for its size) becomes a BadFrame, so the writer
    rejects and counts its step instead of the whole episode or bag failing."""
    try:
        return frame_to_jpeg(frame, color_order, quality)
    except ValueError as exc:          # UnsupportedEncodingError included
        return BadFrame(str(exc))
