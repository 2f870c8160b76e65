"""`make demo` end to end, shortened: real recorder threads, real training, real closed loop, real files."""
import json
from pathlib import Path

from rdt_bringup import demo
from rdt_core.episode import EpisodeReader, validate_episode
from rdt_core.policy import RDTPolicy


def test_demo_records_trains_deploys_and_reports(tmp_path):
    out = tmp_path / "demo"
    rc = demo.main(["--out", str(out), "--episodes", "2", "--episode-seconds", "2",
                    "--train-steps", "40", "--policy-seconds", "3"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())

    # 1. episodes from the live recorder: valid, on the 25 Hz grid, with the instruction
    assert len(summary["episodes"]) == 2
    for path in summary["episodes"]:
        assert validate_episode(path).ok
        with EpisodeReader(path) as r:
            assert r.meta.robot == "kinova_gen3" and r.meta.instruction == demo.INSTRUCTION
            assert r.num_steps >= 40
            steps = r.timestamps[1:] - r.timestamps[:-1]
            assert (steps == 40_000_000).all()

    # 2. training ran and exported what the policy loads
    assert summary["train_steps"] == 40 and summary["loss_last10"] < 0.8 * summary["loss_first10"]
    export = out / "run" / "export"
    lang = export / "instructions" / Path(summary["instruction_embedding"]).name
    policy = RDTPolicy.from_paths(export, export / "vision", None, lang)
    assert policy.instruction.instruction == demo.INSTRUCTION
    assert policy.profile.name == "kinova_gen3" and policy.horizon == 64

    # 3. the closed loop produced chunks and commands; 4. the report and its figures exist
    assert summary["chunks"] >= 1
    commands = (out / "policy" / "commands.csv").read_text().splitlines()
    assert commands[0].split(",")[1:] == policy.profile.joint_names and len(commands) > 25
    page = (out / "report.html").read_text()
    for png in ("loss.png", "policy.png", "distance.png"):
        assert (out / png).stat().st_size > 1000 and png in page
    assert "tiny" in page and "distance to target" in page

    # the report links the review page of the recorded episodes, built from the recorder's own attributes
    assert summary["review"] == "review/index.html" and 'href="review/index.html"' in page
    review = json.loads((out / "review" / "review.json").read_text())
    assert [Path(e["path"]).name for e in review["episodes"]] == [Path(p).name for p in summary["episodes"]]
    for e in review["episodes"]:
        assert e["ok"] and e["quality"]["dropped_frames"] is not None and e["quality"]["skipped_steps"] is not None
        assert (out / "review" / "media" / e["slug"] / "video.mp4").stat().st_size > 1000
        assert (out / "review" / "episodes" / f"{e['slug']}.html").is_file()
