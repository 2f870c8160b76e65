#!/usr/bin/env python3
"""What `colcon test` ran: tests run / passed / failed / skipped per package, and why tests were skipped.

Run with the project's venv (scripts/colcon_test.sh does). Reads the JUnit files colcon's test steps write (build/<pkg>/pytest.xml for ament_python, build/<pkg>/
test_results/**/*.xml for ament_cmake). Skips decided by rdt_core.testing (reason starting with its
ROS_SKIP_PREFIX) are ROS tests skipped because ROS 2 is not sourced: without ROS that is one line; with
--require-ros (CI, RDT_REQUIRE_ROS=1) any such skip fails the run.

    python scripts/test_summary.py [--build-base build] [--require-ros]
"""
from __future__ import annotations

import argparse
import collections
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from rdt_core.testing import ROS_SKIP_PREFIX  # the venv has rdt_core installed (make venv)


def junit_files(build_base: Path) -> dict[str, list[Path]]:
    """package -> its JUnit result files."""
    out: dict[str, list[Path]] = {}
    for pkg_dir in sorted(p for p in build_base.iterdir() if p.is_dir()) if build_base.is_dir() else []:
        files = [pkg_dir / "pytest.xml"] if (pkg_dir / "pytest.xml").is_file() else []
        files += sorted((pkg_dir / "test_results").rglob("*.xml")) if (pkg_dir / "test_results").is_dir() else []
        if files:
            out[pkg_dir.name] = files
    return out


def read_cases(path: Path) -> list[dict]:
    """Every testcase of a JUnit file: {name, outcome (passed|failed|skipped), reason}."""
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, reason = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped" and outcome == "passed":
                outcome, reason = "skipped", (child.get("message") or child.text or "").strip()
        name = f"{case.get('classname', '')}::{case.get('name', '')}".strip(":")
        cases.append({"name": name, "outcome": outcome, "reason": reason})
    return cases


def clean_reason(reason: str) -> str:
    """pytest writes skip messages as "path:line: reason"; keep the reason."""
    parts = reason.split(": ", 1)
    return parts[1] if len(parts) == 2 and ":" in parts[0] and parts[0].rsplit(":", 1)[-1].isdigit() else reason


def summarize(build_base: Path) -> dict:
    counts = collections.Counter()
    per_package: dict[str, collections.Counter] = {}
    skips: dict[str, list[str]] = collections.defaultdict(list)    # reason -> tests
    for pkg, files in junit_files(build_base).items():
        c = per_package.setdefault(pkg, collections.Counter())
        for f in files:
            for case in read_cases(f):
                c[case["outcome"]] += 1
                counts[case["outcome"]] += 1
                if case["outcome"] == "skipped":
                    skips[clean_reason(case["reason"])].append(f"{pkg}: {case['name']}")
    return {"counts": counts, "per_package": per_package, "skips": dict(skips)}


def report(summary: dict, require_ros: bool) -> tuple[list[str], int]:
    """(lines to print, exit status): 1 when --require-ros and a ROS test was skipped, or nothing ran."""
    c = summary["counts"]
    ran = c["passed"] + c["failed"]
    lines = [f"tests: {ran} ran ({c['passed']} passed, {c['failed']} failed), {c['skipped']} skipped"]
    for pkg, pc in summary["per_package"].items():
        lines.append(f"  {pkg}: {pc['passed'] + pc['failed']} ran, {pc['failed']} failed, {pc['skipped']} skipped")
    ros = {r: t for r, t in summary["skips"].items() if r.startswith(ROS_SKIP_PREFIX)}
    other = {r: t for r, t in summary["skips"].items() if r not in ros}
    status = 0
    if ros:
        tests = sorted({t.split("::")[0] for ts in ros.values() for t in ts})
        n = sum(len(t) for t in ros.values())
        lines.append(f"ROS 2 not sourced: skipped {n} ROS tests ({', '.join(tests)}); source ROS 2 "
                     f"(/opt/ros/<distro>/setup.bash) and run `make test` again to run them")
        if require_ros:
            lines.append("FAILED: RDT_REQUIRE_ROS=1 but ROS tests were skipped: " + "; ".join(ros))
            status = 1
    for reason, tests in sorted(other.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"skipped {len(tests)}: {reason}")
        lines.extend(f"    {t}" for t in tests[:5])
        if len(tests) > 5:
            lines.append(f"    ... and {len(tests) - 5} more")
    if ran == 0:
        lines.append("FAILED: no test ran (no JUnit results under the build folder)")
        status = 1
    return lines, status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-base", type=Path, default=Path("build"))
    parser.add_argument("--require-ros", action="store_true", help="a skipped ROS test is a failure (CI)")
    args = parser.parse_args(argv)
    lines, status = report(summarize(args.build_base), args.require_ros)
    print("\n".join(lines))
    return status


if __name__ == "__main__":
    sys.exit(main())
