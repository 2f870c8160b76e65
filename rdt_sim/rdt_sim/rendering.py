"""Offscreen camera rendering on CPU, created lazily, with frames rendered only when someone reads them.

MuJoCo picks its OpenGL backend from ``MUJOCO_GL`` when it is first imported; ``rdt_sim`` sets it to
``egl`` (headless, Mesa's llvmpipe on a machine without a GPU) unless the caller chose another. Rendering is
the cost of this simulator (three 480x640 frames with the model's shadows take a few hundred milliseconds
on two cores, physics ~0.1 ms a step), so a ``LazyFrame`` keeps only the state it shows and renders on
first use: experts and benchmarks that never look at images run at physics speed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

#: What offscreen rendering needs on Debian / Ubuntu (EGL through Mesa; or OSMesa).
RENDER_PACKAGES = "libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0"
RENDER_HINT = (f"install the offscreen OpenGL libraries: apt-get install {RENDER_PACKAGES} (Debian/Ubuntu), and run "
               f"with MUJOCO_GL=egl (the default here); or MUJOCO_GL=osmesa with apt-get install libosmesa6")


class RenderUnavailableError(RuntimeError):
    """Offscreen rendering cannot start on this machine (the message names the packages to install)."""


@dataclass(frozen=True)
class RenderSettings:
    """Camera image size and whether the model's shadows are drawn (they cost ~4x on CPU)."""

    height: int = 480
    width: int = 640
    shadows: bool = True

    def __post_init__(self):
        if not (8 <= int(self.height) <= 2160 and 8 <= int(self.width) <= 3840):
            raise ValueError(f"render size {self.height}x{self.width} out of range (8..2160 x 8..3840 pixels)")

    @classmethod
    def parse(cls, text: str, shadows: bool = True) -> "RenderSettings":
        """``"480x640"`` (height x width)."""
        try:
            h, w = (int(v) for v in str(text).lower().split("x"))
        except ValueError:
            raise ValueError(f"resolution {text!r}: expected HEIGHTxWIDTH, e.g. 480x640") from None
        return cls(h, w, shadows)


class OffscreenRenderer:
    """One mujoco.Renderer for a model, made on first use; renders a camera of a given MjData."""

    def __init__(self, model, settings: RenderSettings):
        self.model, self.settings = model, settings
        self._renderer = None

    def _make(self):
        import mujoco

        s = self.settings
        # the offscreen buffer must hold the image (the model's own is 640x480)
        self.model.vis.global_.offwidth = max(int(self.model.vis.global_.offwidth), s.width)
        self.model.vis.global_.offheight = max(int(self.model.vis.global_.offheight), s.height)
        try:
            renderer = mujoco.Renderer(self.model, s.height, s.width)
        except Exception as e:  # noqa: BLE001 - EGL/OSMesa/GLFW each fail in their own way
            backend = os.environ.get("MUJOCO_GL", "")
            raise RenderUnavailableError(f"cannot render the sim cameras offscreen (MUJOCO_GL={backend!r}: "
                                         f"{type(e).__name__}: {e}). Fix: {RENDER_HINT}") from e
        return renderer

    def render(self, data, camera: str) -> np.ndarray:
        """(H, W, 3) uint8 RGB of ``camera`` (a camera name of the model) in the state of ``data``."""
        if self._renderer is None:
            self._renderer = self._make()
        import mujoco

        self._renderer.update_scene(data, camera=camera)
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = bool(self.settings.shadows)
        return self._renderer.render().copy()

    def close(self) -> None:
        if self._renderer is not None:
            try:
                self._renderer.close()
            except Exception:  # noqa: BLE001 - a context already gone at interpreter exit
                pass
            self._renderer = None


class LazyFrame:
    """A camera frame of one sim state, rendered when first read (``np.asarray(frame)``), then cached."""

    __slots__ = ("_source", "_state", "camera", "_image")

    def __init__(self, source, state: np.ndarray, camera: str):
        self._source, self._state, self.camera = source, state, camera
        self._image = None

    @property
    def rendered(self) -> bool:
        return self._image is not None

    def image(self) -> np.ndarray:
        if self._image is None:
            self._image = self._source.render_state(self._state, self.camera)
            self._source = None  # the frame no longer holds the simulator
        return self._image

    def __array__(self, dtype=None, copy=None):
        img = self.image()
        return img if dtype is None else img.astype(dtype)

    @property
    def shape(self):
        return self.image().shape


def materialize(images):
    """A list of frames (LazyFrame, array or None) -> arrays (None stays None)."""
    return [None if f is None else (f.image() if isinstance(f, LazyFrame) else np.asarray(f)) for f in images]
