"""rdt_core.images: every supported camera encoding against known pixels, and the refusals (depth, bad sizes,
empty and corrupt frames) with messages that name the topic."""
import array

import cv2
import numpy as np
import pytest

from rdt_core.images import (CompressedFrame, ImageConversionError, RawImage, compressed_format, compressed_to_rgb,
                             image_to_rgb)

H, W = 6, 8
TOPIC = "/cam_high/image_raw"


def reference() -> np.ndarray:
    """(H, W, 3) RGB with every pixel different and every channel differing from the others."""
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([10 + 30 * x, 20 + 35 * y, 200 - 12 * x - 9 * y], axis=2).astype(np.uint8)


def padded(rows: np.ndarray, pad: int) -> tuple[bytes, int]:
    """Rows of an (H, ...) uint8 array with ``pad`` junk bytes after each: (data, step)."""
    flat = rows.reshape(rows.shape[0], -1)
    junk = np.full((flat.shape[0], pad), 0xAB, np.uint8)
    return np.concatenate([flat, junk], axis=1).tobytes(), flat.shape[1] + pad


@pytest.mark.parametrize("pad", [0, 5])
@pytest.mark.parametrize("encoding,make", [
    ("rgb8", lambda rgb: rgb),
    ("bgr8", lambda rgb: rgb[:, :, ::-1]),
    ("rgba8", lambda rgb: np.concatenate([rgb, np.full((H, W, 1), 7, np.uint8)], axis=2)),
    ("bgra8", lambda rgb: np.concatenate([rgb[:, :, ::-1], np.full((H, W, 1), 7, np.uint8)], axis=2)),
])
def test_colour_encodings_give_the_reference_pixels(encoding, make, pad):
    rgb = reference()
    data, step = padded(np.ascontiguousarray(make(rgb)), pad)
    out = image_to_rgb(encoding, H, W, step, data, topic=TOPIC)
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    np.testing.assert_array_equal(out, rgb)


def test_mono8_becomes_three_equal_channels():
    grey = np.arange(H * W, dtype=np.uint8).reshape(H, W) * 3
    for pad in (0, 3):
        data, step = padded(grey, pad)
        out = image_to_rgb("mono8", H, W, step, data)
        np.testing.assert_array_equal(out, np.repeat(grey[:, :, None], 3, axis=2))


def test_rgb8_is_viewed_not_copied_and_any_buffer_type_works():
    rgb = reference()
    for data in (rgb.tobytes(), array.array("B", rgb.tobytes()), rgb.reshape(-1).copy()):
        out = image_to_rgb("rgb8", H, W, W * 3, data)
        np.testing.assert_array_equal(out, rgb)
        if isinstance(data, np.ndarray):
            assert np.shares_memory(out, data)
        assert not out.flags.writeable  # a view of the message: nobody writes into it by mistake


# BT.601 (limited range) YUV of pure colours, as USB cameras send them: (Y, U, V) -> RGB.
YUV_COLOURS = [((81, 90, 240), (255, 0, 0)), ((145, 54, 34), (0, 255, 0)), ((41, 240, 110), (0, 0, 255)),
               ((235, 128, 128), (255, 255, 255)), ((16, 128, 128), (0, 0, 0)), ((126, 128, 128), (128, 128, 128))]


@pytest.mark.parametrize("encoding,order", [("yuv422", "UYVY"), ("uyvy", "UYVY"), ("yuyv", "YUYV"),
                                            ("yuv422_yuy2", "YUYV")])
def test_yuv422_family_decodes_known_colours(encoding, order):
    """Each row holds one colour per pixel pair (4:2:2 shares U and V between two pixels)."""
    rows = []
    for (y, u, v), _ in YUV_COLOURS:
        pair = [u, y, v, y] if order == "UYVY" else [y, u, y, v]
        rows.append(pair * (W // 2))
    data, step = padded(np.array(rows, np.uint8), 4)
    out = image_to_rgb(encoding, len(YUV_COLOURS), W, step, data, topic=TOPIC)
    expected = np.array([[rgb] * W for _, rgb in YUV_COLOURS], np.int16)
    assert np.abs(out.astype(np.int16) - expected).max() <= 3


@pytest.mark.parametrize("encoding,pattern", [("bayer_rggb8", "RGGB"), ("bayer_bggr8", "BGGR"),
                                              ("bayer_gbrg8", "GBRG"), ("bayer_grbg8", "GRBG")])
def test_bayer_patterns_demosaic_to_the_scene_colour(encoding, pattern):
    """A flat scene of one colour, sampled through the named colour filter array, demosaics to that colour."""
    colour = {"R": 200, "G": 110, "B": 30}
    h, w = 10, 12
    mosaic = np.zeros((h, w), np.uint8)
    for dy in (0, 1):
        for dx in (0, 1):
            mosaic[dy::2, dx::2] = colour[pattern[2 * dy + dx]]
    out = image_to_rgb(encoding, h, w, w, mosaic.tobytes(), topic=TOPIC)
    inner = out[2:-2, 2:-2].reshape(-1, 3)
    assert np.abs(inner.astype(int) - [200, 110, 30]).max() <= 1, (encoding, inner[:2])


def test_depth_and_high_bit_depth_images_are_refused_naming_topic_and_encoding():
    for encoding, bpp in (("16UC1", 2), ("mono16", 2), ("32FC1", 4), ("rgb16", 6)):
        with pytest.raises(ImageConversionError, match=rf"{TOPIC}.*{encoding}.*depth"):
            image_to_rgb(encoding, H, W, W * bpp, bytes(H * W * bpp), topic=TOPIC)
    with pytest.raises(ImageConversionError, match=rf"{TOPIC}.*compressedDepth.*depth"):
        compressed_to_rgb("16UC1; compressedDepth png", b"\x89PNG\r\n\x1a\n....", topic=TOPIC)
    with pytest.raises(ImageConversionError, match="not supported.*ENCODINGS"):
        image_to_rgb("nv12", H, W, W, bytes(H * W * 2), topic=TOPIC)


def test_inconsistent_sizes_get_true_messages():
    rgb = reference().tobytes()
    with pytest.raises(ImageConversionError) as err:   # step smaller than one row of pixels
        image_to_rgb("rgb8", H, W, W * 3 - 2, rgb, topic=TOPIC)
    assert TOPIC in str(err.value) and "row step 22 is smaller than" in str(err.value) and "8 x 3 = 24" in str(err.value)
    with pytest.raises(ImageConversionError) as err:   # fewer bytes than the rows need
        image_to_rgb("rgb8", H, W, W * 3, rgb[:-10], topic=TOPIC)
    assert TOPIC in str(err.value) and "truncated" in str(err.value) and f"{len(rgb) - 10} bytes" in str(err.value)
    # an unpadded last row is accepted (some drivers do not pad it)
    data, step = padded(reference(), 4)
    np.testing.assert_array_equal(image_to_rgb("rgb8", H, W, step, data[:-4]), reference())


def test_empty_frames_name_topic_and_time():
    stamp = 1_700_000_000 * 10**9 + 5
    with pytest.raises(ImageConversionError, match=rf"{TOPIC} \(stamp 1700000000.000000005 s\).*empty"):
        image_to_rgb("rgb8", H, W, W * 3, b"", topic=TOPIC, stamp_ns=stamp)
    with pytest.raises(ImageConversionError, match=rf"{TOPIC} \(stamp 1700000000.000000005 s\).*empty"):
        image_to_rgb("rgb8", 0, 0, 0, b"", topic=TOPIC, stamp_ns=stamp)
    with pytest.raises(ImageConversionError, match=rf"{TOPIC} \(stamp 1700000000.000000005 s\).*empty"):
        compressed_to_rgb("jpeg", b"", topic=TOPIC, stamp_ns=stamp)


def _encoded(ext: str, rgb: np.ndarray, swap: bool) -> bytes:
    """A standard file of ``rgb`` (cv2 writes BGR arrays), or one with the channels swapped."""
    ok, buf = cv2.imencode(ext, rgb if swap else rgb[:, :, ::-1].copy())
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("fmt,swap", [("bgr8; png compressed bgr8", False), ("rgb8; png compressed bgr8", False),
                                      ("png", False), ("", False), ("rgb8; png compressed rgb8", True)])
def test_png_formats_decode_exactly(fmt, swap):
    rgb = reference()
    out = compressed_to_rgb(fmt, _encoded(".png", rgb, swap), topic=TOPIC)
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("fmt,swap", [("rgb8; jpeg compressed bgr8", False), ("bgr8; jpeg compressed bgr8", False),
                                      ("jpeg", False), ("jpg", False), ("", False),
                                      ("rgb8; jpeg compressed rgb8", True)])
def test_jpeg_formats_decode_to_the_colour(fmt, swap):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:] = (220, 60, 20)   # a flat colour survives JPEG almost exactly
    out = compressed_to_rgb(fmt, _encoded(".jpg", rgb, swap), topic=TOPIC)
    assert np.abs(out.astype(int) - rgb).max() <= 4


def test_grey_jpeg_becomes_three_channels():
    grey = np.full((8, 8), 90, np.uint8)
    ok, buf = cv2.imencode(".jpg", grey)
    out = compressed_to_rgb("mono8; jpeg compressed mono8", buf.tobytes())
    assert out.shape == (8, 8, 3) and np.abs(out.astype(int) - 90).max() <= 2


def test_corrupt_or_unknown_compressed_data_is_refused():
    good = _encoded(".jpg", reference(), False)
    with pytest.raises(ImageConversionError, match=rf"{TOPIC}.*cannot decode.*JPEG"):
        compressed_to_rgb("jpeg", b"\xff\xd8" + b"\x00" * 50, topic=TOPIC)
    with pytest.raises(ImageConversionError, match=rf"{TOPIC}.*neither JPEG nor PNG"):
        compressed_to_rgb("theora", good[2:], topic=TOPIC)


def test_compressed_format_strings_of_image_transport():
    assert compressed_format("rgb8; jpeg compressed bgr8") == ("jpeg", "bgr")
    assert compressed_format("rgb8; jpeg compressed rgb8") == ("jpeg", "rgb")
    assert compressed_format("bgr8; png compressed bgr8") == ("png", "bgr")
    assert compressed_format("jpeg") == ("jpeg", "bgr") and compressed_format("") == ("", "bgr")


def test_deferred_frames_convert_on_demand():
    rgb = reference()
    raw = RawImage("bgr8", H, W, W * 3, rgb[:, :, ::-1].tobytes(), topic=TOPIC)
    raw.check()
    np.testing.assert_array_equal(raw.to_rgb(), rgb)
    with pytest.raises(ImageConversionError, match="truncated"):
        RawImage("bgr8", H, W, W * 3, b"\x00" * 10, topic=TOPIC).check()
    jpeg = CompressedFrame("rgb8; jpeg compressed bgr8", _encoded(".jpg", rgb, False))
    assert jpeg.is_jpeg and jpeg.decoded_order == "bgr"
    assert CompressedFrame("", _encoded(".jpg", rgb, False)).is_jpeg
    assert not CompressedFrame("png", _encoded(".png", rgb, False)).is_jpeg
    np.testing.assert_array_equal(CompressedFrame("png", _encoded(".png", rgb, False)).to_rgb(), rgb)


def test_publishing_side_round_trips_through_the_conversion():
    from rdt_core.images import rgb_image_fields, rgb_to_compressed

    rgb = reference()
    f = rgb_image_fields(rgb)
    assert (f["encoding"], f["height"], f["width"], f["step"]) == ("rgb8", H, W, W * 3)
    np.testing.assert_array_equal(image_to_rgb(f["encoding"], f["height"], f["width"], f["step"], f["data"]), rgb)
    flat = np.zeros((16, 16, 3), np.uint8)
    flat[:] = (30, 140, 230)
    fmt, data = rgb_to_compressed(flat)
    assert fmt == "rgb8; jpeg compressed bgr8" and data[:2] == b"\xff\xd8"
    assert CompressedFrame(fmt, data).decoded_order == "bgr"       # a standard JPEG: the recorder keeps it as is
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(decoded.astype(int) - flat[:, :, ::-1]).max() <= 4   # any JPEG reader sees the true colours
    assert np.abs(compressed_to_rgb(fmt, data).astype(int) - flat).max() <= 4


def test_compressed_check_needs_no_decoding():
    CompressedFrame("jpeg", b"\xff\xd8 not decodable yet", topic=TOPIC).check()   # decoding is to_rgb's
    with pytest.raises(ImageConversionError, match=rf"{TOPIC}.*empty"):
        CompressedFrame("jpeg", b"", topic=TOPIC).check()
    with pytest.raises(ImageConversionError, match="depth"):
        CompressedFrame("16UC1; compressedDepth png", b"\x89PNG\r\n\x1a\n", topic=TOPIC).check()
    with pytest.raises(ImageConversionError, match="cannot decode"):
        CompressedFrame("jpeg", b"\xff\xd8 not decodable yet", topic=TOPIC).to_rgb()
