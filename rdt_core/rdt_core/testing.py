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
