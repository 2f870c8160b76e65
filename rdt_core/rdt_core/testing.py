"""Helpers for the packages' ROS tests (nothing here imports rclpy, nor pytest until a helper needs it)."""
from __future__ import annotations

import contextlib
import os
import time


def wait_for(predicate, timeout: float = 60.0, period: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass (then one last look): tests wait for
    behaviour, with timeouts generous enough for CI's shared cores, never for a fixed duration."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(period)
    return bool(predicate())


@contextlib.contextmanager
def isolated_ros_domain(fallback: int):
    """Run the enclosed ROS test on a ROS_DOMAIN_ID of its own, so its commands never reach a robot on the
    default domain nor a test running beside it: an id from domain_coordinator (held while the test runs)
    where that package is installed, else ``fallback`` (give each test module a different one)."""
    lease = None
    try:
        from domain_coordinator import get_coordinated_domain_id
        lease = get_coordinated_domain_id()  # holds a bound port while it lives
        domain = str(lease)
    except ImportError:
        domain = str(int(fallback))
    before = os.environ.get("ROS_DOMAIN_ID")
    os.environ["ROS_DOMAIN_ID"] = domain
    try:
        yield domain
    finally:
        if before is None:
            os.environ.pop("ROS_DOMAIN_ID", None)
        else:
            os.environ["ROS_DOMAIN_ID"] = before
        del lease


class SmallDisk:
    """Where a full disk can be provoked: ``path`` (a folder), ``kind`` ("tmpfs": a real filesystem of
    ``size`` bytes, so every process sees ENOSPC and free space shrinks; "rlimit": a per-file size limit
    set in the child processes started with ``popen_kwargs()``, whose writes then fail with EFBIG)."""

    def __init__(self, path, kind: str, size: int):
        self.path, self.kind, self.size = path, kind, size

    def popen_kwargs(self) -> dict:
        if self.kind != "rlimit":
            return {}

        def limit():  # runs in the child before exec; CPython ignores SIGXFSZ, so writes fail with EFBIG
            import resource
            import signal
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.size, self.size))
        return {"preexec_fn": limit}


@contextlib.contextmanager
def small_disk(base, size: int = 20 * 2**20, kind: str = "auto"):
    """A :class:`SmallDisk` under ``base``: with ``kind="auto"`` a tmpfs of ``size`` bytes mounted there when
    this process may mount (root, or CAP_SYS_ADMIN), else the per-file size limit; ``kind="rlimit"`` always
    the limit. Unmounted (and emptied) on exit."""
    import shutil
    import subprocess
    from pathlib import Path

    mnt = Path(base) / "small_disk"
    mnt.mkdir(parents=True, exist_ok=True)
    mounted = False
    if kind not in ("auto", "rlimit"):
        raise ValueError(f"kind must be 'auto' or 'rlimit', got {kind!r}")
    if kind == "auto" and os.name == "posix" and shutil.which("mount"):
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                              capture_output=True, text=True)
        mounted = proc.returncode == 0
    try:
        yield SmallDisk(mnt, "tmpfs" if mounted else "rlimit", size)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


#: What every ROS test needs at least; a test module names the rest (message packages, launch_testing, ...).
ROS_MODULES = ("rclpy", "launch_ros", "control_msgs", "rdt_msgs")
#: Start of the reason of every skip decided here: scripts/test_summary.py counts such skips as ROS tests skipped.
ROS_SKIP_PREFIX = "needs a sourced ROS 2"
REQUIRE_ROS_ENV = "RDT_REQUIRE_ROS"


def missing_ros_modules(*extra: str) -> list[str]:
    """The modules of ``ROS_MODULES + extra`` that cannot be imported here (found without importing them)."""
    import importlib.util

    missing = []
    for name in dict.fromkeys(ROS_MODULES + extra):
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent package missing, or a half-installed module
            found = False
        if not found:
            missing.append(name)
    return missing


class RosRequiredError(RuntimeError):
    """RDT_REQUIRE_ROS=1 (CI) but part of ROS 2 is missing: the ROS tests must run, not skip."""


def ros_skip_reason(*extra: str) -> str | None:
    """The one decision for every ROS test: None when ``ROS_MODULES + extra`` are all importable; else the skip
    reason, or, under RDT_REQUIRE_ROS=1, a RosRequiredError naming what is missing (a failure, not a skip)."""
    missing = missing_ros_modules(*extra)
    if not missing:
        return None
    reason = (f"{ROS_SKIP_PREFIX} with this workspace built; missing {', '.join(missing)} "
              f"(source ROS 2, then `make test`)")
    if os.environ.get(REQUIRE_ROS_ENV) == "1":
        raise RosRequiredError(f"{REQUIRE_ROS_ENV}=1: {reason}. The ROS install is incomplete: "
                               f"fix it (in CI: ../shared/ros2/install.sh, then source env.sh) instead of skipping")
    return reason


def ros_test_mark(*extra: str):
    """``pytestmark = ros_test_mark("std_srvs")``: skip the module's tests where ROS 2 is missing (a mark, not a
    module-level skip: launch_testing's pytest plugin imports every test module while collecting, and a Skipped
    raised there would skip the whole test directory). Under RDT_REQUIRE_ROS=1 it raises instead."""
    import pytest

    reason = ros_skip_reason(*extra)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def skip_module_without_ros(*extra: str) -> None:
    """For launch_testing modules, which import ROS at module level: skip the whole module where ROS 2 is missing
    (launch_testing itself then is too, so its plugin is not loaded); under RDT_REQUIRE_ROS=1 it raises instead."""
    import pytest

    reason = ros_skip_reason(*extra)
    if reason is not None:
        pytest.skip(reason, allow_module_level=True)


@contextlib.contextmanager
def read_only_folder(base):
    """A folder nobody can write into, for "read-only output" tests: a read-only tmpfs mounted under ``base``
    (root may write through permissions, not through a read-only mount), or a mode 0555 folder when this
    process is not root. Yields None when neither works (root without mount)."""
    import subprocess
    from pathlib import Path

    folder = Path(base) / "read_only"
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0
    try:
        yield folder if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
