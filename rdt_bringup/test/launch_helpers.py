"""What the launch tests share: a ROS domain of their own, the launch files' documented arguments, a probe
node spinning in the background, and the ``ros2`` command line (``ros2 service call``, ``ros2 launch``).

ROS is imported inside the functions: the test modules decide with rdt_core.testing whether ROS is there
before they import this."""
from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import threading
from pathlib import Path

from rdt_core.testing import isolated_ros_domain

_HELD = contextlib.ExitStack()


def hold_ros_domain(fallback: int) -> str:
    """Set a ROS_DOMAIN_ID of this test module's own (domain_coordinator's lease, held until the process ends)
    before the launch starts: the launched nodes command arms, which must never reach a robot on the
    developer's domain or another test running beside this one."""
    return _HELD.enter_context(isolated_ros_domain(fallback))


def launch_file(name: str) -> str:
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory("rdt_bringup"), "launch", name)


def launched(name: str, arguments: dict[str, str]):
    """What a launch test's generate_test_description returns: rdt_bringup's launch file ``name`` with
    ``arguments``, through the real launch machinery, then ReadyToTest."""
    import launch
    import launch_testing.actions
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    return launch.LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(launch_file(name)), launch_arguments=arguments.items()),
        launch_testing.actions.ReadyToTest(),
    ])


def documented_arguments(name: str) -> dict[str, str]:
    """{argument: default} of the installed launch file's ARGUMENTS list (its documented interface)."""
    spec = importlib.util.spec_from_file_location(f"_launch_{Path(name).stem.replace('.', '_')}", launch_file(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {arg: default for arg, default, _text in module.ARGUMENTS}


def config_file(name: str) -> Path:
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("rdt_bringup")) / "config" / name


#: the freshness limit the launch tests run the policy node with: the shipped 0.25 s holds the arm whenever a
#: shared, loaded test machine delivers a camera frame late (right on a robot, not what these tests are about;
#: the stale-observation hold is tested with controlled clocks in rdt_policy_node's tests)
LOADED_MACHINE_OBSERVATION_AGE_S = 3.0


def policy_params(config: str, work: Path, **overrides) -> Path:
    """config/<config> with the policy node's ``overrides`` and the loaded-machine freshness limit, written to
    ``work``: the params_file a launch test passes."""
    import yaml

    params = yaml.safe_load(config_file(config).read_text())
    node = params["rdt_policy_node"]["ros__parameters"]
    node.update({"max_observation_age_s": LOADED_MACHINE_OBSERVATION_AGE_S, **overrides})
    path = work / f"params_{config}"
    path.write_text(yaml.safe_dump(params))
    return path


def write_instruction(folder: Path, name: str, width: int = 32, tokens: int = 5, seed: int = 0) -> Path:
    """An instruction embedding file of the tiny model's width (rdt_core's writer, the official format)."""
    import torch

    from rdt_core.encoders.language import InstructionEmbedding, save_instruction_embedding

    gen = torch.Generator().manual_seed(seed)
    path = folder / f"{name}.pt"
    save_instruction_embedding(path, InstructionEmbedding(name, name.replace("_", " "),
                                                          torch.randn(1, tokens, width, generator=gen)))
    return path


class Probe:
    """A node spinning in a thread of its own that records what arrives: ``listen`` returns a list that
    fills with (message, source timestamp in seconds) pairs."""

    def __init__(self, name: str):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def listen(self, msg_type, topic: str, depth: int = 50, qos=None) -> list:
        got: list = []

        def on_message(msg, info):
            with self.lock:
                got.append((msg, info["source_timestamp"] * 1e-9))
        self.node.create_subscription(msg_type, topic, on_message, qos or depth)
        return got

    def now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(timeout=10)
        self.node.destroy_node()
        self.context.try_shutdown()


def ros2(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run the ``ros2`` command line (in this test's ROS domain) and return what it printed."""
    return subprocess.run(["ros2", *args], capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


def service_call(service: str, srv_type: str, request: str = "{}") -> str:
    """``ros2 service call``: its output (the response), failing the test when the call itself fails."""
    run = ros2("service", "call", service, srv_type, request)
    assert run.returncode == 0 and "response:" in run.stdout, \
        f"ros2 service call {service} failed ({run.returncode}):\n{run.stdout}\n{run.stderr}"
    return run.stdout
