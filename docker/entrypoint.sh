#!/usr/bin/env bash
# Entrypoint of the runtime image: source ROS 2 and the built workspace, then run the command.
set -e
# shellcheck disable=SC1090
source "/opt/ros/${ROS_DISTRO}/setup.bash"
# shellcheck disable=SC1091
source /ws/install/setup.bash
exec "$@"
