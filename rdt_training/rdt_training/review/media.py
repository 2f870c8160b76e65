"""One pass over an episode's frames: the side-by-side H.264 video, the thumbnails, and what the frames say
(a camera that froze while the arm moved, frames that do not decode). Every frame is decoded once.

The video's frame times are the episode's step times (from the first step), so the player's clock and the
plots share one time axis; the last frame lasts one step. H.264 (yuv420p, ``+faststart``) through PyAV's
libx264, which every browser plays from disk.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from rdt_core.episode import EpisodeReader, decode_jpeg

TIME_BASE = Fraction(1, 90_000)       # the MPEG clock: step times to 11 us
BLOCK = 64                            # frames read per h5py call
THUMB_WIDTH = 200
_BAD_FRAME_RGB = (200, 30, 30)


@dataclass
class CameraReport:
    frames: int = 0
    bad_frames: list = field(default_factory=list)         # steps whose JPEG does not decode
    frozen_run_s: float = 0.0                              # longest stretch of identical frames while moving
    frozen_run_steps: tuple[int, int] | None = None        # its [first, last] steps
    repeated_steps: list = field(default_factory=list)     # steps whose frame repeats the step before's


@dataclass
class MediaResult:
    video: str | None                  # file name in the episode's media folder
    video_duration_s: float
    video_size: tuple[int, int]        # (width, height)
    video_layout: list                 # [camera, left, width] per camera, fractions of the video's width
    thumbnails: dict                   # camera -> [first, middle, last] file names
    cameras: dict                      # camera -> CameraReport


def _reduce_for(height: int, target: int) -> int:
    """The largest JPEG DCT reduction that still leaves at least ``target`` rows."""
    r = 1
    while r < 8 and height // (2 * r) >= target:
        r *= 2
    return r


def save_viewable_jpeg(path: Path, rgb: np.ndarray, width: int = THUMB_WIDTH) -> None:
    """A JPEG a browser shows in the right colours (an episode's stored JPEGs hold RGB in BGR order)."""
    h, w = rgb.shape[:2]
    if w > width:
        rgb = cv2.resize(rgb, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [int(cv2.IMWRITE_JPEG_QUALITY), 85])
    if not ok:
        raise ValueError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


class _SideBySide:
    """Composes the cameras' frames into one (H, W_total) image, left to right (the page labels them)."""

    def __init__(self, cameras: list[str], first_frames: dict[str, np.ndarray], height: int):
        self.cameras = cameras
        self.height = height
        self.widths = {c: max(2, round(first_frames[c].shape[1] * height / first_frames[c].shape[0]))
                       for c in cameras}
        total = sum(self.widths.values())
        self.size = (total + total % 2, height + height % 2)      # yuv420p needs even sides

    def compose(self, frames: dict[str, np.ndarray]) -> np.ndarray:
        out = np.zeros((self.size[1], self.size[0], 3), np.uint8)
        x = 0
        for c in self.cameras:
            img = frames[c]
            w = self.widths[c]
            if img.shape[:2] != (self.height, w):
                img = cv2.resize(img, (w, self.height), interpolation=cv2.INTER_AREA)
            out[:self.height, x:x + w] = img
            x += w
        return out

    def layout(self) -> list:
        x, out = 0, []
        for c in self.cameras:
            out.append([c, x / self.size[0], self.widths[c] / self.size[0]])
            x += self.widths[c]
        return out


class _Mp4Writer:
    """H.264 MP4 whose frames carry the given times (PyAV)."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float, threads: int):
        import av

        self.path = path
        self._container = av.open(str(path), "w", options={"movflags": "+faststart"})
        s = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000),
                                       options={"crf": "26", "preset": "superfast", "bf": "0"})
        s.width, s.height = size
        s.pix_fmt = "yuv420p"
        s.time_base = TIME_BASE
        s.codec_context.time_base = TIME_BASE
        s.thread_count = max(1, int(threads))
        self._stream = s
        self._av = av

    def add(self, rgb: np.ndarray, t_s: float) -> None:
        frame = self._av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = int(round(t_s / TIME_BASE))
        frame.time_base = TIME_BASE
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()


def render_media(episode_path, out_dir, *, video_height: int = 240, video: bool = True, threads: int = 1,
                 still_threshold: float = 1e-2, progress: Callable[[int], None] | None = None) -> MediaResult:
    """Decode every frame of the episode once; write ``video.mp4`` and thumbnails into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with EpisodeReader(episode_path) as r:
        meta = r.meta
        cams = list(meta.camera_names)
        n = r.num_steps
        t = (np.asarray(r.timestamps, dtype=np.int64) - int(r.timestamps[0])) / 1e9 if n else np.zeros(0)
        qpos = np.asarray(r.qpos, dtype=np.float64)
        reports = {c: CameraReport() for c in cams}
        thumbs_at = sorted({0, n // 2, n - 1}) if n else []
        thumbnails: dict[str, list[str]] = {c: [] for c in cams}
        writer = composer = None
        last_bytes: dict[str, np.ndarray | None] = {c: None for c in cams}
        last_image: dict[str, np.ndarray] = {}
        reduce: dict[str, int] = {}
        run_start = {c: 0 for c in cams}               # first step of the current run of identical frames
        period = 1.0 / float(meta.control_frequency)
        try:
            for lo in range(0, n, BLOCK):
                hi = min(n, lo + BLOCK)
                blocks = {c: r.jpegs(c, lo, hi) for c in cams}
                for i in range(lo, hi):
                    images = {}
                    for c in cams:
                        data = blocks[c][i - lo]
                        rep = reports[c]
                        rep.frames += 1
                        prev = last_bytes[c]
                        same = prev is not None and prev.size == data.size and np.array_equal(prev, data)
                        if same:
                            rep.repeated_steps.append(i)
                            images[c] = last_image[c]
                        else:
                            _close_run(rep, run_start[c], i - 1, t, qpos, still_threshold)
                            run_start[c] = i
                            images[c] = _decode(data, c, meta, reduce, video_height, last_image, rep, i)
                        last_bytes[c] = data
                        last_image[c] = images[c]
                        if i in thumbs_at:
                            name = f"thumb_{c}_{thumbs_at.index(i)}.jpg"
                            save_viewable_jpeg(out_dir / name, images[c])
                            thumbnails[c].append(name)
                    if video and cams:
                        if writer is None:
                            composer = _SideBySide(cams, images, min(video_height, min(im.shape[0] for im in images.values())))
                            writer = _Mp4Writer(out_dir / "video.mp4", composer.size, meta.control_frequency, threads)
                        writer.add(composer.compose(images), float(t[i]))
                    if progress is not None:
                        progress(1)
            for c in cams:
                _close_run(reports[c], run_start[c], n - 1, t, qpos, still_threshold)
        finally:
            if writer is not None:
                writer.close()
    duration = float(t[-1] + period) if n else 0.0
    return MediaResult(video="video.mp4" if writer is not None else None, video_duration_s=duration,
                       video_size=composer.size if composer else (0, 0),
                       video_layout=composer.layout() if composer else [], thumbnails=thumbnails, cameras=reports)


def _decode(data, cam, meta, reduce, video_height, last_image, rep, step) -> np.ndarray:
    try:
        if cam not in reduce:          # the first frame tells the size; the composer scales it down
            full = decode_jpeg(data, meta.color_order(cam))
            reduce[cam] = _reduce_for(full.shape[0], video_height)
            return full
        return decode_jpeg(data, meta.color_order(cam), reduce=reduce[cam])
    except ValueError:
        rep.bad_frames.append(step)
        shape = last_image[cam].shape if cam in last_image else (video_height, video_height * 4 // 3, 3)
        return np.full(shape, _BAD_FRAME_RGB, np.uint8)


def _close_run(rep: CameraReport, first: int, last: int, t: np.ndarray, qpos: np.ndarray, threshold: float) -> None:
    """A run of identical frames [first, last] counts as frozen when the arm moved meanwhile (a static scene
    legitimately repeats frames; a live camera never shows a moving arm standing still)."""
    if last <= first:
        return
    q = qpos[first:last + 1]
    moved = np.isfinite(q).all(1)
    if moved.sum() < 2 or not (np.abs(q[moved] - q[moved][0]) > threshold).any():
        return
    run_s = float(t[last] - t[first])
    if run_s > rep.frozen_run_s:
        rep.frozen_run_s, rep.frozen_run_steps = run_s, (first, last)
