"""The static pages (Jinja2 templates in ``templates/``): ``index.html`` and one page per episode under
``episodes/``. No server and nothing fetched: styles and scripts are inlined, media are relative files."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape


def _env() -> Environment:
    env = Environment(loader=PackageLoader("rdt_training.review", "templates"),
                      autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda v, fmt="{:.2f}": "-" if v is None else fmt.format(v)
    env.filters["tojson_attr"] = lambda v: json.dumps(v, default=str)
    return env


def edit_command(folder: str, *args: str) -> str:
    """The shell line of one rdt-dataset-edit action."""
    return " ".join(["rdt-dataset-edit", shlex.quote(folder), *map(shlex.quote, args)])


def _row(e) -> dict:
    """What the index table shows of one episode (sort keys are the raw numbers)."""
    q, mo, info = e.quality, e.motion, e.info
    cams = e.media.get("cameras", {})
    frozen = max((c["frozen_run_s"] for c in cams.values()), default=0.0)
    return {
        "e": e, "duration": info.get("duration_s"), "steps": info.get("steps"),
        "instruction": info.get("instruction", ""), "dropped": q.get("dropped_frames"),
        "skipped": q.get("skipped_steps"), "nan": e.nan_steps,
        "skew": max(q.get("skew_max_ms", {}).values(), default=None) if q else None,
        "idle_start": mo.get("idle_start_s"), "idle_end": mo.get("idle_end_s"),
        "speed": mo.get("max_speed"), "speed_frac": mo.get("max_speed_limit_frac"),
        "speed_joint": mo.get("max_speed_joint", ""), "gripper": mo.get("gripper_events"),
        "frozen": frozen if e.ok else None,
        "frozen_flagged": any(": frozen for " in f for f in e.flags),
        "outliers": e.outliers,
    }


def write_pages(out: Path, episodes: list, *, sources: list[str]) -> Path:
    env = _env()
    folders = sorted({e.folder for e in episodes})
    rows = [_row(e) for e in episodes]
    summary = {
        "episodes": len(episodes), "readable": sum(e.ok for e in episodes),
        "flagged": sum(bool(e.flags) for e in episodes),
        "excluded": sum(bool(e.curation.get("excluded")) for e in episodes),
        "trimmed": sum(bool(e.curation.get("trim")) for e in episodes),
        "minutes": sum(e.info.get("duration_s", 0.0) for e in episodes if e.ok) / 60.0,
    }
    index = out / "index.html"
    index.write_text(env.get_template("index.html").render(
        rows=rows, summary=summary, sources=sources,
        trim_idle=[edit_command(f, "trim-idle") for f in folders]))
    (out / "episodes").mkdir(exist_ok=True)
    for k, e in enumerate(episodes):
        if not e.ok:
            continue
        prev = next((episodes[j] for j in range(k - 1, -1, -1) if episodes[j].ok), None)
        nxt = next((episodes[j] for j in range(k + 1, len(episodes)) if episodes[j].ok), None)
        commands = {
            "include": edit_command(e.folder, "include", e.key),
            "trim_idle": edit_command(e.folder, "trim-idle", e.key),
            "trim_clear": edit_command(e.folder, "trim", e.key, "--clear"),
        }
        page = env.get_template("episode.html").render(
            e=e, row=_row(e), prev=prev, next=nxt, commands=commands,
            edit_prefix=edit_command(e.folder), key_q=shlex.quote(e.key),
            geometry=e.plots["time"], extra_json=json.dumps(e.meta.get("extra", {}), indent=2, sort_keys=True))
        (out / "episodes" / f"{e.slug}.html").write_text(page)
    return index
