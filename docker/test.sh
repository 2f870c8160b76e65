#!/usr/bin/env bash
# Build the runtime image (CPU PyTorch, so no GPU is needed) and run colcon test in it: every package,
# rdt_msgs and the ROS tests (rclpy, launch_testing) included.
#   docker/test.sh                 # IMAGE=rdt-ros:test by default
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-rdt-ros:test}

DOCKER_BUILDKIT=1 docker build -f docker/runtime.Dockerfile -t "$IMAGE" \
  --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu \
  --build-arg INSTALL_KORTEX=false .

docker run --rm "$IMAGE" bash -c '
  cd /ws &&
  colcon test --event-handlers console_cohesion+ summary+ --return-code-on-test-failure &&
  colcon test-result --verbose'
