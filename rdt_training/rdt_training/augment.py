"""Image augmentation as the official RDT training offers it (colour jitter and corruption), in OpenCV.

The official pipeline uses torchvision's ColorJitter(brightness=0.3, contrast=0.4, saturation=0.5,
hue=0.03) and an imgaug sequence (one additive noise and at most one blur, in random order). Neither library is a
dependency here, so the same operations and ranges are written with OpenCV / numpy. Half of the valid
frames are augmented, each with "corruption only", "colour only" or "both".
"""
from __future__ import annotations

import cv2
import numpy as np


def _blend(a: np.ndarray, b: np.ndarray | float, factor: float) -> np.ndarray:
    """factor*a + (1-factor)*b, as torchvision's adjust_* do."""
    return factor * a + (1.0 - factor) * b


def color_jitter(img: np.ndarray, rng: np.random.Generator, *, brightness=0.3, contrast=0.4,
                 saturation=0.5, hue=0.03) -> np.ndarray:
    """Random brightness / contrast / saturation / hue change of an RGB uint8 image, in random order."""
    x = img.astype(np.float32)
    ops = rng.permutation(4)
    for op in ops:
        if op == 0 and brightness > 0:
            x = x * rng.uniform(1 - brightness, 1 + brightness)
        elif op == 1 and contrast > 0:
            gray_mean = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY).mean()
            x = _blend(x, gray_mean, rng.uniform(1 - contrast, 1 + contrast))
        elif op == 2 and saturation > 0:
            gray = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
            x = _blend(x, gray[..., None], rng.uniform(1 - saturation, 1 + saturation))
        elif op == 3 and hue > 0:
            hsv = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV_FULL)
            shift = int(round(rng.uniform(-hue, hue) * 256))
            hsv[..., 0] = (hsv[..., 0].astype(np.int32) + shift) % 256
            x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL).astype(np.float32)
        x = np.clip(x, 0, 255)
    return x.astype(np.uint8)


def _motion_kernel(k: int, angle_deg: float) -> np.ndarray:
    kernel = np.zeros((k, k), np.float32)
    kernel[k // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), angle_deg, 1.0)
    kernel = cv2.warpAffine(kernel, rot, (k, k))
    return kernel / max(kernel.sum(), 1e-6)


def additive_noise(img: np.ndarray, rng: np.random.Generator, *, kind: str | None = None,
                   scale: float | None = None) -> np.ndarray:
    """One of imgaug's additive noises (Gaussian, Laplace, Poisson), strength drawn from 0..5% of 255,
    per channel half of the time. Poisson samples get a random sign, as imgaug's AdditivePoissonNoise
    does (``RandomSign(Poisson(lam))``: the noise is about +-lam, not lam's square root)."""
    x = img.astype(np.float32)
    if scale is None:
        scale = rng.uniform(0.0, 0.05 * 255)
    shape = x.shape if rng.random() < 0.5 else x.shape[:2] + (1,)   # per channel half of the time
    if kind is None:
        kind = ("gaussian", "laplace", "poisson")[int(rng.integers(3))]
    if kind == "gaussian":
        x = x + rng.normal(0.0, scale, shape)
    elif kind == "laplace":
        x = x + rng.laplace(0.0, max(scale, 1e-6), shape)
    elif kind == "poisson":
        x = x + rng.poisson(max(scale, 0.0), shape) * rng.choice(np.array([-1.0, 1.0]), shape)
    else:
        raise ValueError(f"unknown noise kind {kind!r}; use 'gaussian', 'laplace' or 'poisson'")
    return np.clip(x, 0, 255).astype(np.uint8)


def random_blur(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """imgaug's SomeOf((0, 1), [OneOf(Gaussian, average, median blur), MotionBlur]): half of the time
    nothing, else one of the two branches."""
    x = img
    if rng.random() < 0.5:
        return x
    if rng.random() < 0.5:
        which = rng.integers(3)
        if which == 0:
            sigma = rng.uniform(0.0, 3.0)
            if sigma > 0.1:
                x = cv2.GaussianBlur(x, (0, 0), sigma)
        elif which == 1:
            k = int(rng.integers(2, 8))
            x = cv2.blur(x, (k, k))
        else:
            k = int(rng.integers(1, 6)) * 2 + 1                      # odd 3..11
            x = cv2.medianBlur(x, k)
    else:
        k = int(rng.integers(3, 37))
        x = cv2.filter2D(x, -1, _motion_kernel(k, rng.uniform(0, 360)))
    return x


def corrupt(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The official image_corrupt: one additive noise and at most one blur, in random order
    (imgaug Sequential(random_order=True))."""
    if rng.random() < 0.5:
        return random_blur(additive_noise(img, rng), rng)
    return additive_noise(random_blur(img, rng), rng)


def augment_image(img: np.ndarray, rng: np.random.Generator, *, prob: float = 0.5) -> np.ndarray:
    """The official policy: with probability ``prob`` apply corruption, colour jitter, or both."""
    if rng.random() >= prob:
        return img
    mode = rng.integers(3)            # 0 corruption only, 1 colour only, 2 both
    if mode != 0:
        img = color_jitter(img, rng)
    if mode != 1:
        img = corrupt(img, rng)
    return img
