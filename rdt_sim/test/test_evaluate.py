"""The evaluation CLI: seeded episodes per mode and latency, success with its 95 % interval, the report."""
import json
import subprocess
import sys

import pytest

from rdt_sim.evaluate import main, summarize, wilson_interval


def test_wilson_interval_known_values():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    lo, hi = wilson_interval(45, 50)
    assert lo == pytest.approx(0.7864, abs=1e-4) and hi == pytest.approx(0.9565, abs=1e-4)


def test_summary_groups_by_mode_and_latency():
    rows = [dict(mode="ours", latency_s=0.1, success=s, time_to_success_s=5.0 if s else None, max_command_gap_s=0.02,
                 jerk_at_switches=1.0, jerk_max=2.0) for s in (True, True, False)]
    rows.append(dict(rows[0], mode="sync", max_command_gap_s=0.12))
    s = summarize(rows)
    assert [(x["mode"], x["successes"], x["episodes"]) for x in s] == [("ours", 2, 3), ("sync", 1, 1)]
    assert s[0]["success_rate"] == pytest.approx(2 / 3) and s[1]["max_command_gap_s"] == 0.12


def test_cli_writes_episodes_summary_and_report(tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["--task", "transfer_cube", "--policy", "chunked-expert", "--latency", "0,0.3", "--mode", "ours,sync",
               "--episodes", "2", "--seed", "4", "--out", str(out), "--strip-frames", "3", "--resolution", "32x40",
               "--no-shadows"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "sync" in printed and "report:" in printed
    summary = json.loads((out / "summary.json").read_text())["summary"]
    assert {(s["mode"], s["latency_s"]) for s in summary} == {("ours", 0.0), ("ours", 0.3), ("sync", 0.0), ("sync", 0.3)}
    assert all(s["episodes"] == 2 and 0 <= s["ci95"][0] <= s["success_rate"] <= s["ci95"][1] for s in summary)
    lines = (out / "episodes.csv").read_text().splitlines()
    assert len(lines) == 1 + 8 and "seed" in lines[0]
    page = (out / "report.html").read_text()
    assert "success_vs_latency.png" in page and (out / "success_vs_latency.png").stat().st_size > 1000
    strips = sorted(p.name for p in (out / "strips").glob("*.png"))
    assert len(strips) == 8 and "sync_0.3s_seed5.png" in strips


def test_bad_arguments_are_named():
    run = lambda *a: subprocess.run([sys.executable, "-m", "rdt_sim.evaluate", *a], capture_output=True, text=True,  # noqa: E731
                                    timeout=120)
    r = run("--task", "transfer_cube", "--policy", "/nonexistent/export", "--out", "/tmp/x")
    assert r.returncode == 2 and "no such checkpoint" in r.stderr
    r = run("--task", "transfer_cube", "--policy", "expert", "--mode", "fast", "--out", "/tmp/x")
    assert r.returncode == 2 and "--mode ['fast']" in r.stderr
    r = run("--task", "transfer_cube", "--policy", "expert", "--latency", "a,b", "--out", "/tmp/x")
    assert r.returncode == 2 and "comma-separated seconds" in r.stderr
