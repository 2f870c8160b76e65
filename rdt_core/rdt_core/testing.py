"""Helpers for the packages' ROS tests (nothing here imports rclpy)."""
from __future__ import annotations

import contextlib
import os


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
