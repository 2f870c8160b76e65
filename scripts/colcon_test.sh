#!/usr/bin/env bash
# colcon build + colcon test + colcon test-result in the project's venv; fails when any test fails, and ends by
# saying how many tests ran and which were skipped, with their reasons (scripts/test_summary.py).
# RDT_REQUIRE_ROS=1 (CI): ROS 2 must be sourced, and a skipped ROS test is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source .venv/bin/activate

require=()
if [ "${RDT_REQUIRE_ROS:-}" = 1 ]; then
  require=(--require-ros)
fi
skip=()
if [ -n "${ROS_DISTRO:-}" ] && [ -n "${AMENT_PREFIX_PATH:-}" ]; then
  echo "ROS 2 ${ROS_DISTRO} is sourced: building and testing every package, rdt_msgs included."
elif [ ${#require[@]} -gt 0 ]; then
  echo "RDT_REQUIRE_ROS=1 but ROS 2 is not sourced (ROS_DISTRO / AMENT_PREFIX_PATH unset): source" \
       "/opt/ros/<distro>/setup.bash (or ../shared/ros2/env.sh .venv) first." >&2
  exit 1
else
  echo "ROS 2 is not sourced: skipping rdt_msgs (it needs rosidl) and the ROS tests; source /opt/ros/<distro>/setup.bash to run them."
  skip=(--packages-ignore rdt_msgs)
fi

rm -f build/*/pytest.xml   # the summary reads this run's results only
colcon build "${skip[@]}" --event-handlers console_cohesion- summary+
if [ -f install/setup.bash ] && [ ${#skip[@]} -eq 0 ]; then
  # The tests see the whole workspace (rdt_msgs, the launch files and executables of every package), as on a
  # robot PC after `source install/setup.bash`.
  set +u; source install/setup.bash; set -u
fi
status=0
# one package at a time: the ROS and launch tests of two packages at once load two cores past what they prove
colcon test "${skip[@]}" --executor sequential --event-handlers console_cohesion+ summary+ --return-code-on-test-failure || status=$?
colcon test-result --verbose || status=$?
python scripts/test_summary.py --build-base build "${require[@]}" || status=$?
exit $status
