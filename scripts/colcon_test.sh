#!/usr/bin/env bash
# colcon build + colcon test + colcon test-result in the project's venv; fails when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
source .venv/bin/activate

skip=()
if [ -n "${ROS_DISTRO:-}" ] && command -v rosidl >/dev/null 2>&1 || [ -n "${AMENT_PREFIX_PATH:-}" ]; then
  echo "ROS 2 ${ROS_DISTRO:-} is sourced: building every package, rdt_msgs included."
else
  echo "ROS 2 is not sourced: skipping rdt_msgs (it needs rosidl); source /opt/ros/<distro>/setup.bash to build it."
  skip=(--packages-ignore rdt_msgs)
fi

colcon build "${skip[@]}" --event-handlers console_cohesion- summary+
colcon test "${skip[@]}" --event-handlers console_cohesion+ summary+ --return-code-on-test-failure
colcon test-result --verbose
