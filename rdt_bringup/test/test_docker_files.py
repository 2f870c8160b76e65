"""docker/ checked without a Docker engine: scripts parse, every COPY source exists in the repository,
the base images and entrypoint are the documented ones."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


@pytest.mark.parametrize("script", ["entrypoint.sh", "run-kinova.sh", "test.sh"])
def test_shell_scripts_parse_and_are_executable(script):
    path = DOCKER / script
    assert path.stat().st_mode & 0o111, f"chmod +x docker/{script}"
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not available")
    subprocess.run([bash, "-n", str(path)], check=True)


@pytest.mark.parametrize("dockerfile", ["runtime.Dockerfile", "train.Dockerfile"])
def test_copy_sources_exist_and_ignore_file_sits_beside(dockerfile):
    text = (DOCKER / dockerfile).read_text()
    for line in re.findall(r"^COPY\s+(.+)$", text, flags=re.M):
        *sources, _ = line.split()
        for src in sources:
            assert (ROOT / src).exists(), f"{dockerfile}: COPY source {src} is missing"
    ignore = (DOCKER / f"{dockerfile}.dockerignore").read_text().split()
    assert {".venv", "build", "install", "log"} <= set(ignore)


def test_runtime_image_is_ros_jazzy_with_cuda_torch_and_sources_the_workspace():
    text = (DOCKER / "runtime.Dockerfile").read_text()
    assert re.search(r"^ARG ROS_DISTRO=jazzy$", text, flags=re.M)
    assert "FROM ros:${ROS_DISTRO}-ros-base" in text
    assert "download.pytorch.org/whl/cu" in text and "rosdep install" in text and "colcon build" in text
    assert 'ENTRYPOINT ["/entrypoint.sh"]' in text
    entry = (DOCKER / "entrypoint.sh").read_text()
    assert "source /ws/install/setup.bash" in entry and 'exec "$@"' in entry


def test_run_script_uses_host_network_gpus_cameras_and_a_model_volume():
    text = (DOCKER / "run-kinova.sh").read_text()
    for needle in ("--network host", "--gpus all", "/dev/video", "/dev/bus/usb", ":/models:ro",
                   "ros2 launch rdt_bringup kinova.launch.py"):
        assert needle in text


def test_train_image_has_cuda_pytorch_deepspeed_and_our_training_packages():
    text = (DOCKER / "train.Dockerfile").read_text()
    assert re.search(r"^FROM pytorch/pytorch:[\d.]+-cuda12[\d.]*-cudnn9-(devel|runtime)$", text, flags=re.M)
    assert "deepspeed" in text and "accelerate" in text
    assert "./rdt_core" in text and "./rdt_training" in text
