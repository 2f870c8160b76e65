"""Camera messages -> RGB frames: the one conversion of ``sensor_msgs/Image`` and ``CompressedImage`` fields.

ROS-free (it takes the message fields, not messages), so the policy node, the recorder node, the fake
robot node and ``bag2hdf5`` (rosbags messages) share it, and it is tested without ROS. It replaces
cv_bridge, which exists only in apt ROS installs and pins numpy 1 on Jazzy.

- Raw images: the pixel layout and colour conversion of each encoding come from ``rosbags-image``
  (``to_cvtype`` / ``convert_color``, OpenCV underneath); the row ``step`` is honoured here (rosbags-image
  assumes unpadded rows), and the buffer is viewed, not copied, where the encoding is already rgb8.
- Compressed images: ``cv2.imdecode`` of the bytes; image_transport's ``format`` string ("rgb8; jpeg
  compressed bgr8", "jpeg", "png", ...) says which channel order the decoded pixels are in.
- Depth (16-bit, float) images are refused: RDT's cameras are colour cameras.

Every error names the topic (and the message time where it helps) and what to do. To support another
8-bit encoding, add it to ``ENCODINGS`` with the rosbags-image encoding whose layout it shares (and a test
with known pixels); anything OpenCV's ``cvtColor`` cannot do needs its own branch in ``image_to_rgb``.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from rosbags.image.image import convert_color, to_cvtype

#: Supported ``sensor_msgs/Image`` encodings -> the rosbags-image encoding that describes the same layout.
ENCODINGS = {
    "rgb8": "rgb8", "bgr8": "bgr8", "rgba8": "rgba8", "bgra8": "bgra8", "mono8": "mono8", "8UC1": "mono8",
    "yuv422": "uyvy", "uyvy": "uyvy", "yuyv": "yuyv", "yuv422_yuy2": "yuyv",
    "bayer_rggb8": "bayer_rggb8", "bayer_bggr8": "bayer_bggr8",
    "bayer_gbrg8": "bayer_gbrg8", "bayer_grbg8": "bayer_grbg8",
}
#: Depth / high-bit-depth encodings (refused with their own message).
DEPTH_ENCODINGS = ("mono16", "16UC1", "16SC1", "32FC1", "64FC1", "32SC1", "rgb16", "bgr16", "rgba16", "bgra16",
                   "bayer_rggb16", "bayer_bggr16", "bayer_gbrg16", "bayer_grbg16")


class ImageConversionError(ValueError):
    """A camera message that cannot become an RGB frame; the text names the topic and the fix."""


def describe(topic: str = "", stamp_ns: int | None = None) -> str:
    """'topic /cam (stamp 12.000000001 s)' for error messages."""
    where = f"topic {topic}" if topic else "camera message"
    if stamp_ns is not None:
        where += f" (stamp {int(stamp_ns) // 1_000_000_000}.{int(stamp_ns) % 1_000_000_000:09d} s)"
    return where


def _is_depth(encoding: str) -> bool:
    e = encoding.strip()
    return e in DEPTH_ENCODINGS or e.startswith(("16", "32", "64")) or e.endswith("16")


def check_encoding(encoding: str, *, topic: str = "", stamp_ns: int | None = None) -> str:
    """The rosbags-image layout of a supported ``sensor_msgs/Image`` encoding; ImageConversionError naming the
    topic for a depth or unknown one (a camera set up wrongly, as opposed to one damaged frame)."""
    layout = ENCODINGS.get(encoding)
    if layout is not None:
        return layout
    where = describe(topic, stamp_ns)
    if _is_depth(encoding):
        raise ImageConversionError(
            f"{where}: encoding {encoding!r} is a depth / high-bit-depth image, not a colour camera; point "
            f"this camera at the camera's colour topic (e.g. .../color/image_raw)")
    raise ImageConversionError(
        f"{where}: image encoding {encoding!r} is not supported (supported: {', '.join(ENCODINGS)}); "
        f"publish one of those, or add the encoding to rdt_core.images.ENCODINGS")


def raw_pixels(encoding: str, height: int, width: int, step: int, data, *, topic: str = "",
               stamp_ns: int | None = None) -> tuple[np.ndarray, str]:
    """The checks of a ``sensor_msgs/Image`` (encoding, sizes) and a read-only view of its pixels, no copy:
    ((H, W) or (H, W, C) uint8, the rosbags-image layout name). Cheap: callbacks use it to refuse a bad frame."""
    where = describe(topic, stamp_ns)
    layout = check_encoding(encoding, topic=topic, stamp_ns=stamp_ns)
    height, width, step = int(height), int(width), int(step)
    buf = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    if buf.size == 0 or height <= 0 or width <= 0:
        raise ImageConversionError(f"{where}: empty {encoding} frame ({width}x{height}, {buf.size} bytes of data); "
                                   f"the camera driver sent no pixels")
    channels = to_cvtype(layout)[3]
    row = width * channels
    if step < row:
        raise ImageConversionError(
            f"{where}: row step {step} is smaller than width x bytes per pixel = {width} x {channels} = {row} "
            f"for {width}x{height} {encoding}; the message header is inconsistent (check the driver's encoding)")
    # The last row needs only `row` bytes (some drivers do not pad the final row); every other row needs `step`.
    needed = step * (height - 1) + row
    if buf.size < needed:
        raise ImageConversionError(
            f"{where}: {buf.size} bytes of data, but {width}x{height} {encoding} with row step {step} needs "
            f"{needed}; the message is truncated")
    shape = (height, width) if channels == 1 else (height, width, channels)
    strides = (step, 1) if channels == 1 else (step, channels, 1)
    return np.lib.stride_tricks.as_strided(buf, shape=shape, strides=strides, writeable=False), layout


def image_to_rgb(encoding: str, height: int, width: int, step: int, data, *, topic: str = "",
                 stamp_ns: int | None = None) -> np.ndarray:
    """``sensor_msgs/Image`` fields -> (height, width, 3) uint8 RGB.

    ``data`` is any buffer (bytes, array.array, numpy). For rgb8 the result is a read-only view of ``data``
    (no copy) when rows are unpadded; other encodings give a new array.
    """
    pixels, layout = raw_pixels(encoding, height, width, step, data, topic=topic, stamp_ns=stamp_ns)
    if layout == "rgb8":
        return pixels if pixels.flags.c_contiguous else np.ascontiguousarray(pixels)
    if not pixels.flags.c_contiguous:
        pixels = np.ascontiguousarray(pixels)  # padded rows: OpenCV gets whole rows
    return np.asarray(convert_color(pixels, layout, "rgb8"))


def compressed_format(fmt: str) -> tuple[str, str]:
    """image_transport's CompressedImage ``format`` -> (codec, channel order of ``cv2.imdecode``'s result).

    "bgr8; jpeg compressed bgr8" / "jpeg" / "png" -> ("jpeg" | "png", "bgr") (standard files); "rgb8; jpeg
    compressed rgb8" -> ("jpeg", "rgb"): the bytes hold swapped channels. codec "" = not named (sniffed later).
    """
    text = fmt.strip().lower()
    tail = text.split(";", 1)[1] if ";" in text else text
    codec = "jpeg" if ("jpeg" in tail or "jpg" in tail) else "png" if "png" in tail else ""
    order = "rgb" if "compressed rgb" in tail else "bgr"
    return codec, order


def _sniff(data: np.ndarray) -> str:
    head = bytes(data[:8])
    return "jpeg" if head[:2] == b"\xff\xd8" else "png" if head[:8] == b"\x89PNG\r\n\x1a\n" else ""


def check_compressed(fmt: str, data, *, topic: str = "", stamp_ns: int | None = None) -> tuple[str, str, np.ndarray]:
    """The checks of a ``sensor_msgs/CompressedImage`` that need no decoding (depth format, no data, neither
    JPEG nor PNG): (codec, channel order of the decoded pixels, the bytes as uint8)."""
    where = describe(topic, stamp_ns)
    text = fmt.strip()
    if "compresseddepth" in text.lower() or _is_depth(text.split(";", 1)[0]) and ";" in text:
        raise ImageConversionError(
            f"{where}: CompressedImage format {fmt!r} is a depth image, not a colour camera; point this camera "
            f"at the camera's colour topic (e.g. .../color/image_raw/compressed)")
    buf = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    if buf.size == 0:
        raise ImageConversionError(f"{where}: empty CompressedImage (format {fmt!r}, 0 bytes); the camera "
                                   f"driver sent no image")
    codec, order = compressed_format(fmt)
    codec = codec or _sniff(buf)
    if codec not in ("jpeg", "png"):
        raise ImageConversionError(
            f"{where}: CompressedImage format {fmt!r} is neither JPEG nor PNG (and the data is neither); publish "
            f"image_transport's compressed (jpeg / png) transport")
    return codec, order, buf


def compressed_to_rgb(fmt: str, data, *, topic: str = "", stamp_ns: int | None = None) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` fields -> (H, W, 3) uint8 RGB (JPEG or PNG, 8-bit colour or grey)."""
    codec, order, buf = check_compressed(fmt, data, topic=topic, stamp_ns=stamp_ns)
    where = describe(topic, stamp_ns)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise ImageConversionError(f"{where}: cannot decode the {len(buf)} bytes as {codec.upper()} "
                                   f"(format {fmt!r}); the image is corrupt or truncated")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if order == "bgr" else img


@dataclass
class RawImage:
    """The fields of a ``sensor_msgs/Image``, kept (not converted) until a frame is used: the recorder and
    the bag converter convert only the frames their steps keep."""

    encoding: str
    height: int
    width: int
    step: int
    data: object               # the message's buffer, not copied
    topic: str = ""
    stamp_ns: int | None = None

    def to_rgb(self) -> np.ndarray:
        return image_to_rgb(self.encoding, self.height, self.width, self.step, self.data,
                            topic=self.topic, stamp_ns=self.stamp_ns)

    def check(self) -> None:
        """The checks of ``to_rgb`` (encoding, sizes) without converting; raises ImageConversionError."""
        raw_pixels(self.encoding, self.height, self.width, self.step, self.data, topic=self.topic,
                   stamp_ns=self.stamp_ns)

    def check_encoding(self) -> None:
        """Only the encoding (:func:`check_encoding`): a wrongly set up camera, not one damaged frame."""
        check_encoding(self.encoding, topic=self.topic, stamp_ns=self.stamp_ns)


@dataclass
class CompressedFrame:
    """The fields of a ``sensor_msgs/CompressedImage``; ``format`` as image_transport writes it."""

    format: str
    data: object
    topic: str = ""
    stamp_ns: int | None = None

    @property
    def codec(self) -> str:
        return compressed_format(self.format)[0] or _sniff(np.frombuffer(memoryview(self.data).cast("B"), np.uint8))

    @property
    def is_jpeg(self) -> bool:
        return self.codec == "jpeg"

    @property
    def decoded_order(self) -> str:
        """The channel order ``cv2.imdecode`` returns for these bytes: "bgr" for standard files."""
        return compressed_format(self.format)[1]

    def to_rgb(self) -> np.ndarray:
        return compressed_to_rgb(self.format, self.data, topic=self.topic, stamp_ns=self.stamp_ns)

    def check(self) -> None:
        """The checks of ``to_rgb`` that need no decoding; raises ImageConversionError."""
        check_compressed(self.format, self.data, topic=self.topic, stamp_ns=self.stamp_ns)


def to_rgb(frame) -> np.ndarray:
    """A RawImage or CompressedFrame -> RGB; an (H, W, 3) uint8 array passes unchanged."""
    if isinstance(frame, (RawImage, CompressedFrame)):
        return frame.to_rgb()
    return np.asarray(frame)


# ----------------------------------------------------------------------------- the publishing side
def rgb_image_fields(rgb: np.ndarray) -> dict:
    """(H, W, 3) uint8 RGB -> the ``sensor_msgs/Image`` fields of an rgb8 image (unpadded rows)."""
    arr = np.ascontiguousarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"rgb_image_fields needs an (H, W, 3) RGB image, got shape {arr.shape}")
    h, w = arr.shape[:2]
    return {"encoding": "rgb8", "height": h, "width": w, "step": w * 3, "is_bigendian": 0, "data": arr.tobytes()}


def rgb_to_compressed(rgb: np.ndarray, quality: int = 95) -> tuple[str, bytes]:
    """(H, W, 3) uint8 RGB -> (format, data) as image_transport's compressed publisher sends an rgb8 image: a
    standard JPEG (cv2 writes BGR), format "rgb8; jpeg compressed bgr8"."""
    arr = np.asarray(rgb, dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(arr, cv2.COLOR_RGB2BGR), [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise ValueError("cv2.imencode could not encode the frame as JPEG")
    return "rgb8; jpeg compressed bgr8", buf.tobytes()
