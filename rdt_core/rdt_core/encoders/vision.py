"""SigLIP vision tower with the official deployment preprocessing and a history cache.

RDT conditions on the last hidden state of SigLIP (every patch token; 729 x 1152 for
siglip-so400m-patch14-384). Images are prepared exactly as the official deployment script does:
pad to a square with the processor's mean colour (the picture centred), then the processor's own
resize and normalisation; a missing camera is a plain image of that mean colour.

``HistoryImageEncoder`` keeps the features of the frames it has seen so that a new control step,
whose window shares the previous step's newest frames, only runs the tower on the new frames.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Hashable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

try:  # transformers >= 5: the PIL backend is the one that reproduces the official (PIL bicubic) resize
    from transformers import SiglipImageProcessorPil as _SiglipProcessorClass
except ImportError:  # transformers 4.x: SiglipImageProcessor is the PIL/numpy implementation
    from transformers import SiglipImageProcessor as _SiglipProcessorClass
from transformers import SiglipVisionConfig, SiglipVisionModel

__all__ = ["VisionEncoder", "HistoryImageEncoder", "pad_to_square", "resize_like_pil", "OFFICIAL_VISION_ENCODER",
           "BACKGROUND"]

OFFICIAL_VISION_ENCODER = "google/siglip-so400m-patch14-384"
BACKGROUND = ("background",)  # the key of a missing camera's frame (the mean-colour image)

Image = np.ndarray | None


def pad_to_square(image: np.ndarray, color: Sequence[int]) -> np.ndarray:
    """Pad an (H, W, 3) image to a square of side max(H, W), the picture centred (official expand2square)."""
    h, w = image.shape[:2]
    if h == w:
        return image
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    fill = np.asarray(color, dtype=np.uint8)
    out = np.empty((side, side, 3), dtype=np.uint8)
    out[top:top + h, left:left + w] = image  # the picture once, then only the borders around it
    out[:top] = fill
    out[top + h:] = fill
    out[top:top + h, :left] = fill
    out[top:top + h, left + w:] = fill
    return out


def _check_image(image: Any, index: int) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ValueError(
            f"image {index}: expected an RGB uint8 numpy array (H, W, 3) or None for a missing camera, "
            f"got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(
            f"image {index}: expected shape (H, W, 3) RGB, got {image.shape}; convert grayscale/RGBA "
            f"frames to RGB first (e.g. cv2.cvtColor)")
    if image.dtype != np.uint8:
        raise ValueError(
            f"image {index}: expected dtype uint8 (0..255), got {image.dtype}; convert with "
            f"np.clip(img, 0, 255).astype(np.uint8) (or img * 255 for [0, 1] floats)")
    return image


def resize_like_pil(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, C, H, W) float holding 0..255 integers -> (N, C, height, width), as PIL's bicubic resize of uint8.

    PIL resizes horizontally, rounds to uint8, then vertically and rounds again; torch's antialiased bicubic
    has PIL's kernel (a = -0.5, support scaled when shrinking), so two passes with the same rounding give
    PIL's pixels (480x640 padded to 640x640 -> 384: identical; other sizes: a few pixels 1-2 levels apart).
    """
    if pixels.shape[-1] != width:
        pixels = F.interpolate(pixels, size=(pixels.shape[-2], width), mode="bicubic", antialias=True,
                               align_corners=False)
        pixels = torch.floor(pixels + 0.5).clamp_(0, 255)
    if pixels.shape[-2] != height:
        pixels = F.interpolate(pixels, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
        pixels = torch.floor(pixels + 0.5).clamp_(0, 255)
    return pixels


class VisionEncoder:
    """SigLIP vision tower + its image processor; ``encode`` = one batched pass over a list of frames.

    ``preprocess_on_device`` pads, resizes and normalises on the tower's device from the uint8 frames
    (uploaded through pinned memory) with the processor's numerics, instead of the processor's PIL code
    (RDTPolicy asks for it on CUDA; training keeps the processor); ``preprocessing`` says which is used and,
    when the device path was asked for but is unavailable, why.
    """

    def __init__(self, model: SiglipVisionModel, processor, *, device="cpu", dtype=torch.float32,
                 preprocess_on_device: bool = False):
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model.to(device=self.device, dtype=dtype).eval()
        self.model.requires_grad_(False)
        if getattr(self.model, "use_head", False):
            # RDT reads the last hidden state only; the attention-pooling head's output is never used (and
            # its nn.MultiheadAttention is slow in bfloat16 on CPU: 85 % of a 1-layer tower's time)
            self.model.use_head = False
        self.processor = processor
        size = processor.size
        try:
            self.image_size = (int(size["height"]), int(size["width"]))
        except (KeyError, TypeError):
            raise ValueError(f"the image processor's size {size!r} is not a fixed height x width; use the "
                             f"SiglipImageProcessor saved with the SigLIP model") from None
        cfg = model.config
        if self.image_size != (cfg.image_size, cfg.image_size):
            raise ValueError(
                f"the image processor resizes to {self.image_size} but the SigLIP tower expects "
                f"{cfg.image_size}x{cfg.image_size}; use the processor saved with the model")
        self.hidden_size: int = int(cfg.hidden_size)
        self.num_patches: int = (cfg.image_size // cfg.patch_size) ** 2
        self.passes = 0          # forward passes of the tower (one per encode call)
        self.frames_encoded = 0  # frames pushed through the tower
        self._staging: dict[tuple, tuple[torch.Tensor, Any]] = {}
        unsupported = self._device_preprocessing_unsupported()
        self.preprocess_requested = wanted = bool(preprocess_on_device)
        self.preprocess_on_device = wanted and unsupported is None
        if self.preprocess_on_device:
            self.preprocessing = f"on {self.device} from uint8 (torch, the processor's numerics)"
        elif wanted:
            self.preprocessing = f"processor (PIL): device preprocessing unavailable, {unsupported}"
        else:
            self.preprocessing = "processor (PIL)"

    def _device_preprocessing_unsupported(self) -> str | None:
        """Why the processor's settings cannot be reproduced with torch ops, or None."""
        p = self.processor
        if not (getattr(p, "do_resize", False) and int(getattr(p, "resample", -1)) == 3):
            return f"it reproduces a bicubic resize only (processor: do_resize={getattr(p, 'do_resize', None)}, " \
                   f"resample={getattr(p, 'resample', None)})"
        if getattr(p, "do_center_crop", False) or getattr(p, "do_pad", False):
            return "the processor crops or pads after resizing"
        if not (getattr(p, "do_rescale", False) and getattr(p, "do_normalize", False)):
            return "the processor does not rescale and normalise"
        return None

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_pretrained(cls, model_dir, *, device="cpu", dtype=torch.float32,
                        preprocess_on_device: bool = False) -> "VisionEncoder":
        """Load the tower and processor from a local directory (no downloads), e.g. a copy of
        google/siglip-so400m-patch14-384 (a full SigLIP checkpoint: only its vision half is loaded)."""
        path = Path(model_dir).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"no SigLIP model at {path} (config.json missing). Download it once with "
                f"`huggingface-cli download {OFFICIAL_VISION_ENCODER} --local-dir {path}` and pass that directory.")
        if not (path / "preprocessor_config.json").is_file():
            raise FileNotFoundError(
                f"{path} has no preprocessor_config.json; the image processor must be saved beside the "
                f"model (the official {OFFICIAL_VISION_ENCODER} repository has one)")
        try:
            model = SiglipVisionModel.from_pretrained(path, local_files_only=True, dtype=dtype,
                                                      device_map=str(torch.device(device)))
        except pickle.UnpicklingError as exc:    # transformers loads .bin files with weights_only=True
            raise ValueError(f"refusing to unpickle the vision weights in {path}: they hold objects other than "
                             f"tensors ({str(exc).splitlines()[-1][:120]}). Use the official model.safetensors, or "
                             "convert the file to safetensors where its origin is trusted") from None
        processor = _SiglipProcessorClass.from_pretrained(path, local_files_only=True)
        return cls(model, processor, device=device, dtype=dtype, preprocess_on_device=preprocess_on_device)

    @classmethod
    def tiny(cls, seed: int = 0, image_size: int = 32, patch_size: int = 8, hidden_size: int = 24, *,
             device="cpu", dtype=torch.float32) -> "VisionEncoder":
        """A random tiny SigLIP tower (built from a config, no downloads) for tests and demos."""
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
        config = SiglipVisionConfig(
            hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=2,
            num_attention_heads=2 if hidden_size % 2 == 0 else 1, image_size=image_size, patch_size=patch_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = SiglipVisionModel(config)
        # Same settings as the official so400m processor (mean/std 0.5, bicubic), at the tiny size.
        processor = _SiglipProcessorClass(
            size={"height": image_size, "width": image_size}, image_mean=[0.5, 0.5, 0.5],
            image_std=[0.5, 0.5, 0.5], resample=3, do_resize=True, do_rescale=True, do_normalize=True)
        return cls(model, processor, device=device, dtype=dtype)

    # ---------------------------------------------------------------- preprocessing
    @property
    def background_color(self) -> tuple[int, int, int]:
        """The processor's mean colour in 0..255 (official: int(mean * 255)); pads and replaces missing cameras."""
        return tuple(int(x * 255) for x in self.processor.image_mean)

    def background_image(self) -> np.ndarray:
        """The image that stands in for a missing camera: the mean colour at the processor's size."""
        h, w = self.image_size
        out = np.empty((h, w, 3), dtype=np.uint8)
        out[...] = np.asarray(self.background_color, dtype=np.uint8)
        return out

    def preprocess(self, images: Sequence[Image]) -> torch.Tensor:
        """(N,3,S,S) float32 pixel values: pad to square with the mean colour, processor resize + normalise."""
        if len(images) == 0:
            raise ValueError("no images to preprocess")
        color = self.background_color
        squares = []
        for i, image in enumerate(images):
            if image is None:
                squares.append(self.background_image())
            else:
                squares.append(pad_to_square(_check_image(image, i), color))
        out = self.processor(images=squares, return_tensors="pt")["pixel_values"]
        return out

    def preprocess_tensor(self, images: Sequence[Image]) -> torch.Tensor:
        """:meth:`preprocess` with torch ops on the encoder's device, from the uint8 frames: (N,3,S,S) float32.

        Same steps and numerics: pad to a square of the mean colour, PIL's bicubic resize (see
        :func:`resize_like_pil`), rescale, normalise; frames of one size are resized in one batch.
        """
        if len(images) == 0:
            raise ValueError("no images to preprocess")
        h, w = self.image_size
        p = self.processor
        out = torch.empty((len(images), 3, h, w), dtype=torch.float32, device=self.device)
        color = torch.tensor(self.background_color, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        by_shape: dict[tuple, list[int]] = {}
        for i, image in enumerate(images):
            if image is None:
                out[i] = color[0]  # the background image is already at the processor's size
            else:
                by_shape.setdefault(_check_image(image, i).shape, []).append(i)
        for (fh, fw, _), index in by_shape.items():
            frames = self._upload([images[i] for i in index]).permute(0, 3, 1, 2).float()
            side = max(fh, fw)
            square = color.expand(len(index), 3, side, side).clone()
            top, left = (side - fh) // 2, (side - fw) // 2
            square[:, :, top:top + fh, left:left + fw] = frames
            out[torch.tensor(index, device=self.device)] = resize_like_pil(square, h, w)
        mean = torch.tensor(p.image_mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(p.image_std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        return (out * float(p.rescale_factor) - mean) / std

    def _upload(self, frames: list[np.ndarray]) -> torch.Tensor:
        """(N, H, W, 3) uint8 on the device; on CUDA through a pinned staging buffer (one async copy)."""
        if self.device.type != "cuda":
            return torch.from_numpy(np.stack(frames)).to(self.device)
        shape = (len(frames), *frames[0].shape)
        staging, copied = self._staging.get(shape, (None, None))
        if staging is None:
            staging = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
        elif copied is not None:
            copied.synchronize()  # the previous upload from this buffer has finished
        host = staging.numpy()
        for i, frame in enumerate(frames):
            host[i] = frame
        on_device = staging.to(self.device, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._staging[shape] = (staging, event)
        return on_device

    # ---------------------------------------------------------------- encoding
    @torch.no_grad()  # not inference_mode: the features may feed a graph that is trained (fine-tuning)
    def encode(self, images: Sequence[Image]) -> torch.Tensor:
        """(N, num_patches, hidden) last hidden state of every frame, in one batched pass."""
        pixels = self.preprocess_tensor(images) if self.preprocess_on_device else self.preprocess(images)
        pixels = pixels.to(device=self.device, dtype=self.dtype)
        features = self.model(pixel_values=pixels).last_hidden_state
        self.passes += 1
        self.frames_encoded += len(images)
        return features


@dataclass
class _Cached:
    features: torch.Tensor
    image: np.ndarray | None  # held so that an identity key (id) cannot be reused while cached


class HistoryImageEncoder:
    """Encodes the (history x cameras) image window of a step, re-encoding only frames it has not seen.

    Frames are identified by ``keys`` (e.g. header stamps; they need only be unique per camera) or,
    without keys (or where a key is None), by the identity of the arrays. The features of the previous step's window are kept,
    so a new step whose ``t-1`` frames were the previous ``t`` frames only encodes the new frames.
    A missing camera (None) uses the background features, computed once. After :meth:`encode`,
    ``window_keys`` names the frame in each slot (:data:`BACKGROUND` for a missing camera): equal keys, equal
    features, so a consumer (the per-frame condition cache) can key its own work on them.
    """

    def __init__(self, encoder: VisionEncoder, history: int = 2, num_cameras: int = 3):
        if history < 1 or num_cameras < 1:
            raise ValueError(f"history ({history}) and num_cameras ({num_cameras}) must be >= 1")
        self.encoder = encoder
        self.history = int(history)
        self.num_cameras = int(num_cameras)
        self.window_size = self.history * self.num_cameras
        self._cache: dict[Hashable, _Cached] = {}
        self._background: torch.Tensor | None = None
        self.stats = {"frames_encoded": 0, "frames_reused": 0, "passes": 0}
        self.window_keys: list[Hashable] = []

    @property
    def num_tokens(self) -> int:
        return self.window_size * self.encoder.num_patches

    def reset(self) -> None:
        """Forget cached frames (e.g. at the start of an episode)."""
        self._cache.clear()

    def _key(self, position: int, image: np.ndarray, keys) -> tuple[Hashable, bool]:
        """(cache key, whether it is an identity key); a frame without a key falls back to identity."""
        camera = position % self.num_cameras
        if keys is None or keys[position] is None:
            return (camera, "id", id(image)), True
        return (camera, "key", keys[position]), False

    def encode(self, images: Sequence[Image], keys: Sequence[Hashable] | None = None) -> torch.Tensor:
        """(1, window_size * num_patches, hidden) features of the window, in window order."""
        if len(images) != self.window_size:
            raise ValueError(
                f"expected {self.window_size} images ({self.history} steps x {self.num_cameras} cameras, ordered "
                f"[ext, right_wrist, left_wrist] per step, oldest first), got {len(images)}")
        if keys is not None and len(keys) != len(images):
            raise ValueError(f"got {len(keys)} image keys for {len(images)} images; give one key per image")

        slots: list[Hashable | None] = []
        todo: dict[Hashable, np.ndarray | None] = {}
        need_background = False
        for pos, image in enumerate(images):
            if image is None:
                slots.append(None)
                need_background = need_background or self._background is None
                continue
            key, by_identity = self._key(pos, image, keys)
            cached = self._cache.get(key)
            if cached is not None and (not by_identity or cached.image is image):
                self.stats["frames_reused"] += 1
            elif key not in todo:
                todo[key] = image
            else:
                self.stats["frames_reused"] += 1
            slots.append(key)

        batch_keys = list(todo)
        batch_images: list[np.ndarray | None] = [todo[k] for k in batch_keys]
        if need_background:
            batch_images.append(None)
        fresh: dict[Hashable, _Cached] = {}
        if batch_images:
            feats = self.encoder.encode(batch_images)
            self.stats["passes"] += 1
            self.stats["frames_encoded"] += len(batch_images)
            for i, key in enumerate(batch_keys):
                fresh[key] = _Cached(feats[i], todo[key])
            if need_background:
                self._background = feats[-1]

        window = []
        new_cache: dict[Hashable, _Cached] = {}
        for key in slots:
            if key is None:
                window.append(self._background)
                continue
            entry = fresh.get(key) or self._cache[key]
            new_cache[key] = entry
            window.append(entry.features)
        self._cache = new_cache  # keep only this window's frames: the next step reuses its newest ones
        self.window_keys = [BACKGROUND if key is None else key for key in slots]
        return torch.cat(window, dim=0).unsqueeze(0)
