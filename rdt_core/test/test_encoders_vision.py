"""SigLIP encoder: official deployment preprocessing, batched encoding, local loading, history cache."""
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import SiglipConfig, SiglipModel

from rdt_core.encoders.vision import HistoryImageEncoder, VisionEncoder, pad_to_square


@pytest.fixture(scope="module")
def encoder():
    return VisionEncoder.tiny(seed=0, image_size=32, patch_size=8, hidden_size=24)


def _frames(seed, n, shape=(24, 40, 3)):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


def _reference_pixels(image, size=32, color=127):
    """Official pipeline written out with PIL: expand2square with the mean colour, bicubic resize, (x/255-0.5)/0.5."""
    h, w = image.shape[:2]
    side = max(h, w)
    canvas = Image.new("RGB", (side, side), (color,) * 3)
    canvas.paste(Image.fromarray(image), ((side - w) // 2, (side - h) // 2))
    arr = np.asarray(canvas.resize((size, size), Image.BICUBIC), dtype=np.float32) / 255.0
    return torch.from_numpy((arr - 0.5) / 0.5).permute(2, 0, 1)


@pytest.mark.parametrize("shape", [(24, 40, 3), (40, 24, 3), (31, 32, 3), (32, 32, 3), (480, 640, 3)])
def test_preprocess_matches_official_pad_resize_normalise(encoder, shape):
    image = _frames(1, 1, shape)[0]
    pixels = encoder.preprocess([image])
    assert pixels.shape == (1, 3, 32, 32)
    torch.testing.assert_close(pixels[0], _reference_pixels(image), atol=1e-6, rtol=0)


def test_pad_to_square_centres_the_picture():
    image = np.full((2, 6, 3), 9, dtype=np.uint8)
    out = pad_to_square(image, (1, 2, 3))
    assert out.shape == (6, 6, 3)
    assert (out[2:4] == 9).all()
    assert (out[:2] == [1, 2, 3]).all() and (out[4:] == [1, 2, 3]).all()


@pytest.mark.parametrize("shape", [(480, 640), (640, 480), (3, 8), (8, 3), (5, 5), (1, 2)])
def test_pad_to_square_equals_filling_a_square_then_pasting(shape):
    """Borders only, wide or tall, odd margins (the extra row / column goes after the picture, as PIL's
    paste at (side - h) // 2 puts it)."""
    h, w = shape
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    side = max(h, w)
    want = np.empty((side, side, 3), np.uint8)
    want[...] = (7, 8, 9)
    top, left = (side - h) // 2, (side - w) // 2
    want[top:top + h, left:left + w] = image
    np.testing.assert_array_equal(pad_to_square(image, (7, 8, 9)), want)


def test_missing_camera_is_the_mean_colour_image(encoder):
    bg = encoder.background_image()
    assert bg.shape == (32, 32, 3) and bg.dtype == np.uint8
    assert (bg == 127).all()  # int(0.5 * 255), as the official script computes it
    pixels = encoder.preprocess([None])
    torch.testing.assert_close(pixels[0], _reference_pixels(bg))
    torch.testing.assert_close(encoder.encode([None]), encoder.encode([bg]))


def test_encode_is_one_batched_pass_equal_to_per_image_passes(encoder):
    frames = _frames(2, 5) + [None]
    passes = encoder.passes
    batch = encoder.encode(frames)
    assert batch.shape == (6, encoder.num_patches, encoder.hidden_size) == (6, 16, 24)
    assert encoder.passes == passes + 1
    singles = torch.cat([encoder.encode([f]) for f in frames])
    torch.testing.assert_close(batch, singles, atol=1e-5, rtol=1e-5)
    # different images give different features (the tower really looks at the pixels)
    assert not torch.allclose(batch[0], batch[1])


@pytest.mark.parametrize("bad, words", [
    (np.zeros((8, 8, 3), np.float32), "uint8"),
    (np.zeros((8, 8), np.uint8), "(H, W, 3)"),
    (np.zeros((8, 8, 4), np.uint8), "RGB"),
    ([[1, 2, 3]], "numpy array"),
])
def test_bad_images_are_rejected_with_the_fix(encoder, bad, words):
    with pytest.raises(ValueError, match="image 1") as err:
        encoder.preprocess([None, bad])
    assert words in str(err.value)


def test_from_pretrained_loads_the_vision_half_of_a_local_siglip_checkpoint(tmp_path, encoder):
    torch.manual_seed(3)
    cfg = SiglipConfig(
        text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=64, max_position_embeddings=16),
        vision_config=dict(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8))
    full = SiglipModel(cfg).eval()
    full.save_pretrained(tmp_path)
    encoder.processor.save_pretrained(tmp_path)
    loaded = VisionEncoder.from_pretrained(tmp_path)
    assert (loaded.num_patches, loaded.hidden_size) == (16, 24)
    frames = _frames(4, 2)
    with torch.no_grad():
        expected = full.vision_model(pixel_values=encoder.preprocess(frames)).last_hidden_state
    torch.testing.assert_close(loaded.encode(frames), expected)


def test_from_pretrained_missing_directory_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="huggingface-cli download google/siglip-so400m-patch14-384"):
        VisionEncoder.from_pretrained(tmp_path / "nowhere")


def test_history_cache_encodes_only_new_frames_and_matches_fresh_encode(encoder):
    hist = HistoryImageEncoder(encoder, history=2, num_cameras=3)
    f = _frames(5, 9)  # three steps of three cameras
    steps = [f[0:3], f[3:6], f[6:9]]
    stamps = [[100 + 10 * s + c for c in range(3)] for s in range(3)]

    first = hist.encode(steps[0] + steps[1], keys=stamps[0] + stamps[1])
    assert first.shape == (1, 6 * 16, 24)
    assert hist.stats["frames_encoded"] == 6 and hist.stats["passes"] == 1

    before = encoder.frames_encoded
    second = hist.encode(steps[1] + steps[2], keys=stamps[1] + stamps[2])
    assert hist.stats["frames_encoded"] == 9 and hist.stats["frames_reused"] == 3
    assert hist.stats["passes"] == 2
    assert encoder.frames_encoded - before == 3  # the tower really saw only the three new frames

    fresh = HistoryImageEncoder(encoder).encode(steps[1] + steps[2], keys=stamps[1] + stamps[2])
    torch.testing.assert_close(second, fresh, atol=1e-5, rtol=1e-5)
    # the t-1 half of step 2 is the t half of step 1
    torch.testing.assert_close(second[:, :48], first[:, 48:])


def test_history_cache_without_keys_uses_array_identity(encoder):
    hist = HistoryImageEncoder(encoder)
    a, b = _frames(6, 3), _frames(7, 3)
    hist.encode(a + b)
    assert hist.stats["frames_encoded"] == 6
    out = hist.encode(b + [x.copy() for x in b])  # equal content, new arrays: must be encoded
    assert hist.stats["frames_reused"] == 3 and hist.stats["frames_encoded"] == 9
    torch.testing.assert_close(out[:, :48], out[:, 48:], atol=1e-5, rtol=1e-5)


def test_same_stamp_on_different_cameras_does_not_collide(encoder):
    hist = HistoryImageEncoder(encoder)
    f = _frames(8, 6)
    out = hist.encode(f, keys=[1, 1, 1, 2, 2, 2])  # synchronised cameras share stamps
    fresh = encoder.encode(f).reshape(1, -1, 24)
    torch.testing.assert_close(out, fresh, atol=1e-5, rtol=1e-5)


def test_missing_cameras_use_the_background_features_encoded_once(encoder):
    hist = HistoryImageEncoder(encoder)
    ext, right = _frames(9, 2)
    out = hist.encode([None, None, None, ext, right, None], keys=[None, None, None, 1, 1, 1])
    assert hist.stats["frames_encoded"] == 3  # ext, right and one background
    bg = encoder.encode([None])[0]
    for slot in (0, 1, 2, 5):
        torch.testing.assert_close(out[0, slot * 16:(slot + 1) * 16], bg, atol=1e-5, rtol=1e-5)
    hist.encode([ext, right, None, ext, right, None], keys=[1, 1, None, 2, 2, None])
    assert hist.stats["frames_encoded"] == 5  # only the two new frames; background kept


def test_history_window_size_comes_from_the_arguments(encoder):
    hist = HistoryImageEncoder(encoder, history=1, num_cameras=2)
    assert hist.window_size == 2 and hist.num_tokens == 32
    assert hist.encode(_frames(10, 2)).shape == (1, 32, 24)
    with pytest.raises(ValueError, match="expected 2 images"):
        hist.encode(_frames(10, 3))
    with pytest.raises(ValueError, match="one key per image"):
        hist.encode(_frames(10, 2), keys=[1])


def test_a_frame_without_a_key_falls_back_to_identity(encoder):
    hist = HistoryImageEncoder(encoder)
    a, b, c = _frames(11, 3), _frames(12, 3), _frames(13, 3)
    first = hist.encode(a + b, keys=[None] * 6)
    out = hist.encode(b + c, keys=[None] * 6)  # None keys must not make different frames look alike
    assert hist.stats["frames_encoded"] == 9 and hist.stats["frames_reused"] == 3
    torch.testing.assert_close(out[:, :48], first[:, 48:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:, 48:], encoder.encode(c).reshape(1, -1, 24), atol=1e-5, rtol=1e-5)


def test_features_can_feed_a_trained_layer(encoder):
    layer = torch.nn.Linear(24, 4)
    feats = encoder.encode(_frames(14, 2))
    assert not feats.requires_grad
    layer(feats).sum().backward()  # fine-tuning trains the adaptor on frozen SigLIP features
    assert layer.weight.grad is not None


# ---------------------------------------------------------------- preprocessing on the device (the GPU path)
def _levels(a, b):
    """Largest difference in uint8 levels between two normalised (x/255-0.5)/0.5 pixel tensors."""
    return ((a - b).abs().max() * 255 / 2).item()


def test_device_preprocessing_is_the_processor_at_deployment_size():
    """480x640 camera frames -> 384 (the so400m processor): the torch path gives the processor's pixels
    (max difference 1.2e-7, float rounding of the normalisation); run here on CPU tensors, on CUDA on the GPU."""
    from rdt_core.encoders.vision import _SiglipProcessorClass

    processor = _SiglipProcessorClass(size={"height": 384, "width": 384}, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                                      resample=3, do_resize=True, do_rescale=True, do_normalize=True)
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(2)]
    yy, xx = np.mgrid[:480, :640]
    smooth = np.stack([127 + 120 * np.sin(xx / 17 + c) * np.cos(yy / 23) for c in range(3)], -1).astype(np.uint8)
    frames = noise + [smooth, None]
    color = tuple(int(x * 255) for x in processor.image_mean)
    want = processor(images=[pad_to_square(f, color) if f is not None else np.full((384, 384, 3), color, np.uint8)
                             for f in frames], return_tensors="pt")["pixel_values"]
    config = SiglipConfig(vision_config=dict(hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                                             num_attention_heads=1, image_size=384, patch_size=96)).vision_config
    from transformers import SiglipVisionModel
    enc = VisionEncoder(SiglipVisionModel(config), processor, preprocess_on_device=True)
    got = enc.preprocess_tensor(frames)
    assert got.shape == want.shape == (4, 3, 384, 384)
    assert (got - want).abs().max() <= 2e-7


@pytest.mark.parametrize("shape", [(24, 40, 3), (40, 24, 3), (31, 32, 3), (32, 32, 3), (480, 640, 3), (12, 20, 3)])
def test_device_preprocessing_other_sizes_is_within_two_levels(encoder, shape):
    """Other frame sizes (shrinking and enlarging): PIL's fixed-point weights round a few pixels the other
    way; measured: at most 2 levels of 255 (0.0157 normalised) on under 1 % of the pixels."""
    frames = _frames(21, 3, shape) + [None]
    want = encoder.preprocess(frames)
    got = encoder.preprocess_tensor(frames)
    assert got.shape == want.shape and got.dtype == torch.float32
    assert _levels(got, want) <= 2.0 + 1e-4
    assert ((got - want).abs() > 1e-5).float().mean() < 0.01


def test_device_preprocessing_feeds_the_tower_like_the_processor(encoder):
    on_device = VisionEncoder(encoder.model, encoder.processor, preprocess_on_device=True)
    assert on_device.preprocess_on_device and "from uint8" in on_device.preprocessing
    assert not encoder.preprocess_on_device and encoder.preprocessing == "processor (PIL)"  # CPU default
    frames = _frames(22, 5, (480, 640, 3)) + [None]
    got = on_device.encode(frames)
    with torch.no_grad():
        torch.testing.assert_close(got, encoder.model(pixel_values=on_device.preprocess_tensor(frames)).last_hidden_state)
    # at this tiny 32-pixel size a few pixels differ by 1-2 levels from PIL's (see above): features barely move
    assert (got - encoder.encode(frames)).abs().max() < 0.05
    with pytest.raises(ValueError, match="image 1"):
        on_device.preprocess_tensor([None, np.zeros((8, 8), np.uint8)])


def test_device_preprocessing_falls_back_and_says_why(encoder):
    from rdt_core.encoders.vision import _SiglipProcessorClass

    bilinear = _SiglipProcessorClass(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                                     resample=2)
    enc = VisionEncoder(encoder.model, bilinear, preprocess_on_device=True)
    assert not enc.preprocess_on_device
    assert "bicubic" in enc.preprocessing and "resample=2" in enc.preprocessing
    frames = _frames(23, 2)
    torch.testing.assert_close(enc.encode(frames), encoder.model(pixel_values=bilinear(
        images=[pad_to_square(f, (127,) * 3) for f in frames], return_tensors="pt")["pixel_values"]).last_hidden_state)


def test_the_unused_pooling_head_is_skipped(encoder):
    """RDT reads the last hidden state; the tower's pooling head is not run (same features without it)."""
    calls = []
    hook = encoder.model.head.register_forward_hook(lambda *_: calls.append(1))
    frames = _frames(30, 2)
    feats = encoder.encode(frames)
    hook.remove()
    assert not calls
    encoder.model.use_head = True
    try:
        with torch.no_grad():
            full = encoder.model(pixel_values=encoder.preprocess(frames))
    finally:
        encoder.model.use_head = False
    assert full.pooler_output is not None
    torch.testing.assert_close(feats, full.last_hidden_state)
