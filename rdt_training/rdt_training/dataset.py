"""The training dataset over recorded HDF5 episodes: what RDT trains on, one step at a time.

Follows the official RDT HDF5 loader (thu-ml/RoboticsDiffusionTransformer, data/hdf5_vla_dataset.py and
train/dataset.py) in what a sample holds, but indexes every step once, so a shuffled DataLoader samples
steps uniformly (episodes weighted by length), keeps each HDF5 file open once per worker and decodes
only the frames a sample needs.

A sample (see :func:`collate` for the batch):
  state (1, 128)            unified state at t (robot units mapped by the episode's robot profile), plus
                            the official state noise when ``state_noise_snr`` is set
  actions (chunk, 128)      actions t .. t+chunk-1, padded with the last one
  state_elem_mask (128,)    1 where the robot has a slot in the unified vector
  state_mean/std/norm (128,) statistics of the episode's states (official per-episode values)
  images                    img_history_size x 3 slots [ext, right_wrist, left_wrist] per step, oldest
                            first; RGB uint8 arrays, or None where a camera is missing / before the start
                            (the encoder pads those with the processor-mean background, as officially)
  image_mask (history*3,)   which of those frames are real
  image_features            instead of images when a FeatureStore (cached SigLIP features) is attached
  ctrl_freq                 the episode's control frequency in Hz
  lang_embed (L, D)         the instruction embedding, when an InstructionBank is attached
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from rdt_core.episode import QPOS, ACTION, EpisodeReader, nonfinite_problem
from rdt_core.robots import RobotProfile, load_profile

from .augment import augment_image
from .curation import CurationCache, CurationError, EpisodeCuration
from .instructions import InstructionBank

log = logging.getLogger(__name__)

SLOTS = ("exterior", "right_wrist", "left_wrist")
EPISODE_SUFFIXES = (".hdf5", ".h5")
#: How index_episodes' skipped list words an episode that curation.json excludes.
EXCLUDED_BY_CURATION = "excluded by curation"


class DatasetError(ValueError):
    """The episodes cannot be trained on as given; the message names the problem and the fix."""


# ---------------------------------------------------------------- episode discovery and indexing


def find_episode_files(sources: str | Path | Iterable[str | Path]) -> list[tuple[Path, Path]]:
    """(source, episode file) for every episode under the given folders / files, sorted, no temp files."""
    if isinstance(sources, (str, Path)):
        sources = [sources]
    found = []
    for src in sources:
        src = Path(src).expanduser()
        if src.is_file():
            found.append((src, src))
        elif src.is_dir():
            files = sorted(p for p in src.rglob("*") if p.suffix in EPISODE_SUFFIXES and p.is_file()
                           and not p.name.startswith("."))
            found.extend((src, f) for f in files)
        else:
            raise DatasetError(f"episode folder or file not found: {src}")
    return found


def first_moving_step(qpos: np.ndarray, threshold: float) -> int | None:
    """Index of the first step whose qpos differs from the first by more than ``threshold`` in any joint
    (the official still-frame rule, EPS = 1e-2); None when the robot never moves."""
    moving = np.nonzero(np.any(np.abs(qpos - qpos[:1]) > threshold, axis=1))[0]
    return int(moving[0]) if len(moving) else None


def last_moving_step(qpos: np.ndarray, threshold: float) -> int | None:
    """The still-frame rule from the end: index of the last step whose qpos differs from the last one by more
    than ``threshold``; None when the robot never moves."""
    first = first_moving_step(np.asarray(qpos)[::-1], threshold)
    return None if first is None else len(qpos) - 1 - first


def idle_window(qpos: np.ndarray, threshold: float) -> tuple[int, int] | None:
    """Steps [first, end) left when the still steps at both ends are cut as the official loader cuts the
    start: one still step is kept before the first moving step and after the last; None when never moving."""
    first = first_moving_step(qpos, threshold)
    if first is None:
        return None
    return max(first - 1, 0), min(last_moving_step(qpos, threshold) + 2, len(qpos))


@dataclass
class IndexedEpisode:
    """One episode's small arrays (kept in memory) and what is needed to fetch its frames."""
    path: Path
    source: Path
    profile: RobotProfile
    robot: str
    instruction: str
    ctrl_freq: float
    qpos: np.ndarray                   # (T, D) float32, robot units
    action: np.ndarray                 # (T, D) float32
    timestamps: np.ndarray             # (T,) int64 ns
    start: int                         # first step sampled (one before the first moving step, official)
    cameras: tuple                     # camera role per slot in SLOTS, None where the robot has none
    state_mean: np.ndarray = field(repr=False, default=None)
    state_std: np.ndarray = field(repr=False, default=None)
    state_norm: np.ndarray = field(repr=False, default=None)
    meta: object = field(repr=False, default=None)
    # Curation (curation.json) may cut steps off the file: the arrays above hold the kept steps only, and
    # step i here is frame i + frame_offset of the file.
    frame_offset: int = 0
    curation: EpisodeCuration | None = field(repr=False, default=None)

    @property
    def num_steps(self) -> int:
        return int(self.qpos.shape[0])

    @property
    def num_samples(self) -> int:
        return self.num_steps - self.start

    def unified_states(self, from_start: bool = True) -> np.ndarray:
        q = self.qpos[self.start:] if from_start else self.qpos
        return self.profile.qpos_to_unified(q).astype(np.float32)


def _resolve_profile(spec, cache: dict) -> RobotProfile:
    if isinstance(spec, RobotProfile):
        return spec
    key = str(spec)
    if key not in cache:
        cache[key] = load_profile(spec)
    return cache[key]


def index_episodes(sources, *, profiles=None, skip_still: bool = True, still_threshold: float = 1e-2,
                   min_steps: int = 2, allow_mixed_robots: bool = False, curation: bool = True):
    """Read every episode's metadata and low-dimensional arrays once.

    profiles: None (each episode's ``robot`` attribute names its profile), one profile / name / YAML path
    for all, or a mapping {folder or file: profile} (required to mix robots in one dataset).
    curation: honour each folder's curation.json (rdt-dataset-edit): excluded episodes are skipped, trimmed
    ones keep only their kept steps.
    Returns (episodes, skipped) where skipped lists (path, reason) of episodes left out (excluded, unreadable,
    a non-finite joint value (the step and joint named), too short, never moving). Raises DatasetError for
    problems a user must fix (unknown robot, joint names that
    do not match the profile, mixed robots without a mapping, no valid episodes at all).
    """
    pairs = find_episode_files(sources)
    mapping: Mapping | None = None
    single = None
    if isinstance(profiles, Mapping):
        mapping = {Path(k).expanduser().resolve(): v for k, v in profiles.items()}
    elif profiles is not None:
        single = profiles
    cache: dict = {}
    curations = CurationCache()
    episodes, skipped, errors = [], [], []
    for source, path in pairs:
        folder_curation = cur = None
        if curation:
            try:
                folder_curation = curations.curation(source, path)
            except CurationError as exc:
                raise DatasetError(str(exc)) from exc
            cur = folder_curation.get(path)
            if cur.excluded:
                skipped.append((path, f"{EXCLUDED_BY_CURATION} ({folder_curation.path}): {cur.reason}"))
                continue
        try:
            reader = EpisodeReader(path)
        except Exception as exc:  # unreadable or not an episode: leave it out, say why
            skipped.append((path, f"cannot be read ({exc}); check it with rdt_core.episode.validate_episode"))
            continue
        try:
            meta = reader.meta
            qpos = np.asarray(reader.qpos, dtype=np.float32)
            action = np.asarray(reader.action, dtype=np.float32)
            stamps = np.asarray(reader.timestamps, dtype=np.int64)
        finally:
            reader.close()
        lo = 0
        if cur is not None and cur.trim is not None:
            try:
                lo, hi = folder_curation.window(path, len(stamps))
            except CurationError as exc:
                raise DatasetError(str(exc)) from exc
            qpos, action, stamps = qpos[lo:hi], action[lo:hi], stamps[lo:hi]
        spec = single
        if mapping is not None:
            spec = mapping.get(path.resolve(), mapping.get(source.resolve()))
        try:
            if spec is None:
                if not meta.robot:
                    raise DatasetError(f"{path}: the episode names no robot; pass profiles={{'{source}': PROFILE}}")
                profile = _resolve_profile(meta.robot, cache)
            else:
                profile = _resolve_profile(spec, cache)
            profile.validate_joint_names(list(meta.joint_names))
        except (DatasetError, ValueError, KeyError, FileNotFoundError, OSError) as exc:
            errors.append(f"{path}: {exc}")
            continue
        if qpos.ndim != 2 or qpos.shape != action.shape or qpos.shape[1] != profile.dof:
            errors.append(f"{path}: qpos {qpos.shape} / action {action.shape} do not match the {profile.name} "
                          f"profile's {profile.dof} joints")
            continue
        bad = nonfinite_problem(f"/{QPOS}", qpos, meta.joint_names, first_step=lo) or \
            nonfinite_problem(f"/{ACTION}", action, meta.joint_names, first_step=lo)
        if bad:
            skipped.append((path, f"{bad}; left out (NaN would reach the statistics and the loss). Re-record or "
                                  "re-convert it: the recorder and bag2hdf5 now leave such steps out (or trim "
                                  "the steps away with rdt-dataset-edit)"))
            continue
        if qpos.shape[0] < max(min_steps, 1):
            skipped.append((path, f"too short ({qpos.shape[0]} steps < min_steps={min_steps})"))
            continue
        start = 0
        if skip_still:
            first = first_moving_step(qpos, still_threshold)
            if first is None:
                skipped.append((path, f"the robot never moves more than {still_threshold} (still-frame rule); "
                                      f"pass skip_still=False to keep it"))
                continue
            start = max(first - 1, 0)
        present = set(meta.camera_names)
        cams = []
        for slot in SLOTS:
            cam = profile.camera_for_slot(slot)
            cams.append(cam.role if cam is not None and cam.role in present else None)
        if present and not any(cams):
            errors.append(f"{path}: none of its cameras {sorted(present)} is a camera of the {profile.name} profile "
                          f"({[c.role for c in profile.cameras]}); fix the profile's camera roles")
            continue
        uni = profile.qpos_to_unified(qpos).astype(np.float64)
        ctrl = float(meta.control_frequency or profile.control_frequency)
        episodes.append(IndexedEpisode(
            path=path, source=source, profile=profile, robot=profile.name, instruction=meta.instruction or "",
            ctrl_freq=ctrl, qpos=qpos, action=action, timestamps=stamps, start=start, cameras=tuple(cams),
            state_mean=uni.mean(0).astype(np.float32), state_std=uni.std(0).astype(np.float32),
            state_norm=np.sqrt((uni ** 2).mean(0)).astype(np.float32), meta=meta, frame_offset=lo,
            curation=cur))
    if errors:
        raise DatasetError("these episodes do not fit their robot profile:\n  " + "\n  ".join(errors))
    robots = sorted({e.robot for e in episodes})
    if len(robots) > 1 and mapping is None and not allow_mixed_robots:
        per = {r: sorted({str(e.source) for e in episodes if e.robot == r}) for r in robots}
        raise DatasetError(
            f"the dataset mixes episodes of different robots {per}; pass an explicit mapping "
            f"profiles={{folder: profile}} for every folder (and a --profile to export with), or train one robot")
    if not episodes:
        why = "; ".join(f"{p.name}: {r}" for p, r in skipped) or "no *.hdf5 files found"
        raise DatasetError(f"no valid episodes in {[str(s) for s in dict.fromkeys(s for s, _ in pairs)] or sources}: "
                           f"{why}. Record episodes with `ros2 run rdt_recorder record` or convert bags with "
                           f"`ros2 run rdt_recorder bag2hdf5`.")
    for path, reason in skipped:
        (log.info if reason.startswith(EXCLUDED_BY_CURATION) else log.warning)("skipping episode %s: %s", path, reason)
    return episodes, skipped


# ---------------------------------------------------------------- the dataset


class EpisodeDataset(Dataset):
    """Map-style dataset: index i is one step of one episode (all steps from each episode's start)."""

    def __init__(self, sources=None, *, episodes: Sequence[IndexedEpisode] | None = None, profiles=None,
                 chunk_size: int = 64, img_history_size: int = 2, skip_still: bool = True,
                 still_threshold: float = 1e-2, min_steps: int = 2, allow_mixed_robots: bool = False,
                 instructions=None, image_aug: bool = False, cond_mask_prob: float = 0.0,
                 state_noise_snr: float | None = None, state_mean=None,
                 feature_store=None, decode_images: bool = True):
        if episodes is None:
            if sources is None:
                raise DatasetError("give episode folders (sources) or indexed episodes")
            episodes, self.skipped = index_episodes(
                sources, profiles=profiles, skip_still=skip_still, still_threshold=still_threshold,
                min_steps=min_steps, allow_mixed_robots=allow_mixed_robots)
        else:
            self.skipped = []
        if not episodes:
            raise DatasetError("no valid episodes to build a dataset from")
        self.episodes = list(episodes)
        self.chunk_size = int(chunk_size)
        self.img_history_size = int(img_history_size)
        self.image_aug = bool(image_aug)
        self.cond_mask_prob = float(cond_mask_prob)
        # official state_noise_snr (dB): Gaussian noise of std state_std / sqrt(10^(snr/10)) on the state
        self.state_noise_snr = None if state_noise_snr is None else float(state_noise_snr)
        self.decode_images = decode_images
        self.feature_store = feature_store
        self.instructions = None if instructions is None else InstructionBank.load(instructions)
        if self.instructions is not None:
            missing = self.instructions.missing(e.instruction for e in self.episodes)
            if missing:
                raise DatasetError(
                    f"no instruction embedding for {missing} in {self.instructions.source}; run "
                    f"`rdt-encode-instruction --model T5_DIR --dataset EPISODE_DIR --out EMB_DIR` and pass EMB_DIR")
            if self.cond_mask_prob > 0 and self.instructions.empty() is None:
                log.warning(
                    "condition masking (cond_mask_prob=%s) cannot mask the instruction: %s holds no embedding "
                    "of the empty instruction (the official data/empty_lang_embed.pt). Write it with "
                    "`rdt-encode-instruction --model T5_DIR --dataset EPISODE_DIR --out EMB_DIR` (or copy the official "
                    "file into EMB_DIR); the state, frames and control frequency are still masked",
                    self.cond_mask_prob, self.instructions.source or "the instruction bank")
        counts = np.array([e.num_samples for e in self.episodes], dtype=np.int64)
        self._ends = np.cumsum(counts)
        # State condition masking puts the mean state of the episode's dataset in place of the state
        # (official: dataset_stat.json's state_mean of that dataset); here a dataset is one robot.
        # state_mean: None (computed from these episodes), one (128,) array, or {robot: (128,) array}.
        robots = sorted({e.robot for e in self.episodes})
        if isinstance(state_mean, Mapping):
            missing = [r for r in robots if r not in state_mean]
            if missing:
                raise DatasetError(f"state_mean has no entry for robot(s) {missing}; give one per robot")
            self.state_means = {r: np.asarray(state_mean[r], dtype=np.float32) for r in robots}
        elif state_mean is not None:
            self.state_means = {r: np.asarray(state_mean, dtype=np.float32) for r in robots}
        else:
            self.state_means = {r: np.concatenate([e.unified_states() for e in self.episodes if e.robot == r])
                                .mean(0).astype(np.float32) for r in robots}
        self.state_mean = self.state_means[robots[0]] if len(robots) == 1 else \
            np.concatenate([e.unified_states() for e in self.episodes]).mean(0).astype(np.float32)
        self._readers: dict[int, EpisodeReader] = {}
        self._pid = os.getpid()
        self._rng: np.random.Generator | None = None

    # -- plumbing: one open file per episode per worker process
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_readers"] = {}
        state["_rng"] = None
        return state

    def _reader(self, ep_index: int) -> EpisodeReader:
        if os.getpid() != self._pid:          # forked into a DataLoader worker: never share h5py handles
            self._readers = {}
            self._pid = os.getpid()
            self._rng = None
        reader = self._readers.get(ep_index)
        if reader is None:
            reader = self._readers[ep_index] = EpisodeReader(self.episodes[ep_index].path)
        return reader

    def rng(self) -> np.random.Generator:
        if self._rng is None or os.getpid() != self._pid:
            # torch seeds every DataLoader worker differently; follow it so workers differ and runs repeat
            self._rng = np.random.default_rng(torch.initial_seed() % (2 ** 63))
        return self._rng

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers = {}

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # -- indexing
    def __len__(self) -> int:
        return int(self._ends[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """(episode index, step) of dataset index ``index``."""
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} steps")
        ep = int(np.searchsorted(self._ends, index, side="right"))
        before = int(self._ends[ep - 1]) if ep else 0
        return ep, self.episodes[ep].start + (index - before)

    @property
    def robots(self) -> list[str]:
        return sorted({e.robot for e in self.episodes})

    @property
    def num_frames_per_sample(self) -> int:
        return self.img_history_size * len(SLOTS)

    def frame_plan(self, ep_index: int, step: int) -> list[tuple[str, int] | None]:
        """(camera role, frame index in the file) for each of the history x slot frames, None where none is
        valid.

        A frame is valid when it is at or after the episode's start and the robot has that camera
        (the official mask: the first history-1 steps have no past frames)."""
        ep = self.episodes[ep_index]
        plan = []
        for h in range(self.img_history_size):
            idx = step - (self.img_history_size - 1) + h
            for role in ep.cameras:
                plan.append((role, idx + ep.frame_offset) if role is not None and idx >= ep.start else None)
        return plan

    def __getitem__(self, index: int) -> dict:
        ep_i, step = self.locate(int(index))
        ep = self.episodes[ep_i]
        prof = ep.profile
        rng = self.rng() if (self.image_aug or self.cond_mask_prob > 0 or self.state_noise_snr is not None) else None
        masked = (lambda: rng.random() < self.cond_mask_prob) if self.cond_mask_prob > 0 else (lambda: False)

        acts = ep.action[step:step + self.chunk_size]
        if acts.shape[0] < self.chunk_size:
            acts = np.concatenate([acts, np.repeat(acts[-1:], self.chunk_size - acts.shape[0], axis=0)])
        state = prof.qpos_to_unified(ep.qpos[step:step + 1]).astype(np.float32)
        if self.state_noise_snr is not None:   # before masking, as officially (a masked state has none)
            sigma = ep.state_std / np.sqrt(10.0 ** (self.state_noise_snr / 10.0))
            state = (state + rng.normal(0.0, 1.0, state.shape) * sigma).astype(np.float32)
        elem_mask = np.asarray(prof.unified_mask(), dtype=np.float32)
        sample = {
            "episode": ep_i, "step": step,
            "ctrl_freq": 0.0 if masked() else ep.ctrl_freq,
            "state": self.state_means[ep.robot][None].copy() if masked() else state,
            "actions": prof.action_to_unified(acts).astype(np.float32),
            "state_elem_mask": np.zeros_like(elem_mask) if masked() else elem_mask,
            "state_mean": ep.state_mean, "state_std": ep.state_std, "state_norm": ep.state_norm,
        }
        plan = self.frame_plan(ep_i, step)
        plan = [p if p is None or not masked() else None for p in plan]   # officially masks frames too
        sample["image_mask"] = np.array([p is not None for p in plan], dtype=bool)
        if self.feature_store is not None:
            sample["image_features"] = self.feature_store.features(ep, plan)
        elif self.decode_images:
            reader = self._reader(ep_i)
            images = []
            for p in plan:
                try:
                    img = None if p is None else reader.image(p[0], p[1])
                except ValueError as exc:        # names the file, the camera and the step
                    raise DatasetError(f"{exc}; re-record the episode or move it out of the dataset") from None
                if img is not None and self.image_aug:
                    img = augment_image(img, rng)
                images.append(img)
            sample["images"] = images
        if self.instructions is not None:
            emb = self.instructions.get(ep.instruction)
            if masked():
                empty = self.instructions.empty()
                emb = emb if empty is None else empty
            sample["lang_embed"] = emb
        return sample


def collate(samples: list[dict]) -> dict:
    """Stack samples into a batch; images stay lists (cameras may differ in size); language embeddings are
    padded to the longest with an attention mask (official DataCollatorForVLAConsumerDataset)."""
    def stack(key, dtype=torch.float32):
        return torch.as_tensor(np.stack([s[key] for s in samples]), dtype=dtype)

    batch = {
        "states": stack("state"),
        "actions": stack("actions"),
        "state_elem_mask": stack("state_elem_mask"),
        "state_mean": stack("state_mean"), "state_std": stack("state_std"), "state_norm": stack("state_norm"),
        "ctrl_freqs": torch.tensor([s["ctrl_freq"] for s in samples], dtype=torch.float32),
        "image_mask": stack("image_mask", torch.bool),
        "episode": torch.tensor([s["episode"] for s in samples], dtype=torch.long),
        "step": torch.tensor([s["step"] for s in samples], dtype=torch.long),
    }
    if "image_features" in samples[0]:
        batch["image_features"] = torch.stack([torch.as_tensor(s["image_features"]) for s in samples])
    if "images" in samples[0]:
        batch["images"] = [s["images"] for s in samples]
    if "lang_embed" in samples[0]:
        embs = [s["lang_embed"] for s in samples]
        longest = max(e.shape[0] for e in embs)
        lang = torch.zeros(len(embs), longest, embs[0].shape[-1], dtype=torch.float32)
        attn = torch.zeros(len(embs), longest, dtype=torch.bool)
        for i, e in enumerate(embs):
            lang[i, :e.shape[0]] = e
            attn[i, :e.shape[0]] = True
        batch["lang_embeds"] = lang
        batch["lang_attn_mask"] = attn
    return batch
