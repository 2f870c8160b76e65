"""Reliability under attack (issue 11), measured in one run and printed as one table:

- SIGKILL of a live recorder at random moments while it records, while it stops, and of ``recover`` while it
  rebuilds: the share of the steps that had to survive (older than 1 s / committed) that did;
- a really full disk (a 20 MiB tmpfs where mount is permitted, else a 20 MiB per-file size limit), thresholds
  0 and 4 MiB, and a filler process: whether the recorder process lived, and the steps kept of those reported;
- malformed bags (tests' catalogue): exit code, the message naming what it must, nothing left under a final name;
- the fuzzed control runtime and the unsafe-pickle tests at every loader (run with pytest, counted here).

    python bench/fault_bench.py [--kills 4] [--seed 0] [--skip-pytest]
"""
from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "rdt_recorder" / "test"))

from rdt_core.testing import small_disk  # noqa: E402
from rdt_recorder.bag2hdf5 import main as _bag2hdf5  # noqa: E402,F401  (importable before the trials start)
import malformed_bags  # noqa: E402
import recorder_faults  # noqa: E402

rows: list[tuple[str, str, str, str]] = []


def row(group: str, case: str, ok: bool, detail: str) -> None:
    rows.append((group, case, "ok" if ok else "FAIL", detail))
    print(f"  {group:<10} {case:<44} {'ok' if ok else 'FAIL'}  {detail[:100]}", file=sys.stderr, flush=True)


def kills(tmp: Path, n: int, rng: random.Random) -> None:
    for phase, lo, hi in (("record", 1.5, 4.0), ("stop", 0.0, 1.2)):      # s into the phase
        shares = []
        for k in range(n):
            delay = rng.uniform(lo, hi)
            try:
                t = recorder_faults.kill_trial(tmp / f"{phase}{k}", phase, delay)
                shares.append(t.share)
                detail = t.detail
            except AssertionError as exc:
                shares.append(0.0)
                detail = f"error: {exc}"
            row("SIGKILL", f"during {phase} ({delay:.2f} s)", shares[-1] == 1.0, f"{shares[-1]:.0%} kept; {detail}")
    for k in range(max(1, n // 2)):
        delays = (rng.uniform(0.02, 0.2), rng.uniform(0.2, 0.8))
        t = recorder_faults.kill_recover_trial(tmp / f"recover{k}", delays)
        row("SIGKILL", f"recover killed at {delays[0]:.2f} and {delays[1]:.2f} s", t.share == 1.0,
            f"{t.share:.0%} kept; {t.detail}")


def disk_full(tmp: Path) -> None:
    for kind in ("auto", "rlimit"):
        for min_free, filler in ((0, False), (4 * 2**20, False), (0, True)):
            with small_disk(tmp / f"{kind}{min_free}{filler}", kind=kind) as disk:
                if filler and disk.kind != "tmpfs":
                    continue
                name = f"{disk.kind} 20 MiB, threshold {min_free // 2**20} MiB" + (", filler" if filler else "")
                t = recorder_faults.disk_full_trial(disk, min_free, filler=filler)
                alive = "died" not in t.detail
                row("ENOSPC", name, alive and t.share == 1.0, f"process {'alive' if alive else 'DIED'}; {t.detail}")


def bags(tmp: Path) -> None:
    for i, case in enumerate(malformed_bags.CASES):
        r = malformed_bags.run_case(case, tmp / f"bag{i}")
        ok = (r["code"] == case.code and not r["missing_words"] and not r["hidden"]
              and len(r["finals"]) == case.episodes)
        lines = r["text"].splitlines()
        line = next((ln for key in ("error:", "warning:") for ln in lines if ln.split(" ", 1)[-1].startswith(key)
                     or ln.startswith(key)), "")
        row("bag2hdf5", case.name, ok, f"exit {r['code']}, {len(r['finals'])} episode(s); {line.strip()[:110]}"
            + (f"; missing {r['missing_words']}" if r["missing_words"] else "")
            + (f"; left {r['hidden']}" if r["hidden"] else ""))


def pytest_group(group: str, tmp: Path, *targets: str) -> None:
    xml = tmp / f"{group}.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", *targets],
                   cwd=ROOT, capture_output=True, text=True)
    cases = list(ET.parse(xml).iter("testcase"))
    failed = [c.get("name") for c in cases if c.find("failure") is not None or c.find("error") is not None]
    skipped = [c.get("name") for c in cases if c.find("skipped") is not None]
    row(group, f"{len(cases)} tests", not failed and len(cases) > 0,
        f"{len(cases) - len(failed) - len(skipped)} passed, {len(skipped)} skipped"
        + (f"; failed: {failed[:4]}" if failed else ""))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=4, help="SIGKILL trials per phase")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-pytest", action="store_true", help="leave out the fuzz and pickle test groups")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fault_bench_") as d:
        tmp = Path(d)
        kills(tmp, args.kills, rng)
        disk_full(tmp)
        bags(tmp)
        if not args.skip_pytest:
            pytest_group("fuzz", tmp, "rdt_policy_node/test/test_safety_runtime.py", "-k", "fuzz")
            pytest_group("pickles", tmp, "rdt_training/test/test_unsafe_pickles.py")
    widths = [max(len(r[i]) for r in rows + [("group", "case", "result", "")]) for i in range(3)]
    print(f"\nfault_bench: {len(rows)} cases in {time.monotonic() - t0:.0f} s")
    print("  ".join(h.ljust(w) for h, w in zip(("group", "case", "result"), widths)) + "  detail")
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3][:140])
    failed = [r for r in rows if r[2] != "ok"]
    print(f"{len(rows) - len(failed)} of {len(rows)} ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
