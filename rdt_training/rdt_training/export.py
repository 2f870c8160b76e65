"""Export a trained runner in the layout RDTPolicy loads: HF ``config.json`` + ``model.safetensors`` with
``profile.json`` and ``dataset_stats.json`` beside them (and, for small encoders, the SigLIP tower and the
instruction embeddings used, so the export is self-contained)."""
from __future__ import annotations

import shutil
from pathlib import Path

from rdt_core.checkpoint import save_pretrained

VISION_SUBDIR = "vision"
INSTRUCTIONS_SUBDIR = "instructions"
# A SigLIP tower smaller than this is copied into the export (the tiny demo tower); the released
# so400m tower (~1.7 GB) is not duplicated: training.json names the directory it came from.
COPY_VISION_MAX_PARAMS = 50_000_000


def export_model(runner, out_dir, *, profile, stats: dict, vision=None, vision_source: str | None = None,
                 instruction_files=(), training: dict | None = None) -> Path:
    """Write the export and return its directory (written beside, then renamed over an old export)."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name("." + out_dir.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    info = dict(training or {})
    info["vision_encoder"] = vision_source
    extra = {"profile.json": profile.to_dict(), "dataset_stats.json": stats, "training.json": info}
    save_pretrained(runner, tmp, extra_json=extra)
    if vision is not None and sum(p.numel() for p in vision.model.parameters()) <= COPY_VISION_MAX_PARAMS:
        vision.model.save_pretrained(tmp / VISION_SUBDIR)
        vision.processor.save_pretrained(tmp / VISION_SUBDIR)
    files = [Path(f) for f in instruction_files]
    if files:
        (tmp / INSTRUCTIONS_SUBDIR).mkdir()
        for f in files:
            shutil.copy2(f, tmp / INSTRUCTIONS_SUBDIR / f.name)
    if out_dir.exists():
        old = out_dir.with_name("." + out_dir.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old)
    else:
        tmp.rename(out_dir)
    return out_dir
