#!/usr/bin/env bash
# Run the RDT policy for a Kinova Gen3 from the runtime image, on the robot PC.
#
#   MODELS=~/models docker/run-kinova.sh checkpoint:=/models/rdt-1b-pick vision_encoder:=/models/siglip-so400m-patch14-384 \
#       instruction:=/models/instructions/pick_cube.pt launch_driver:=true robot_ip:=192.168.1.10
#
# Arguments are passed to `ros2 launch rdt_bringup kinova.launch.py`. Host networking so DDS reaches the
# driver and the cameras; --gpus all needs the NVIDIA Container Toolkit; cameras: every /dev/video* and
# the USB bus (RealSense), with cgroup rules so cameras plugged in later work too; sys_nice and an rtprio
# limit let the policy node's control thread run under SCHED_FIFO (README: Real-time priority).
set -euo pipefail
IMAGE=${IMAGE:-rdt-ros:runtime}
MODELS=${MODELS:-$HOME/models}          # checkpoints, SigLIP, instruction embeddings (read-only)
DATA=${DATA:-$HOME/rdt_episodes}        # recorded episodes

devices=()
for dev in /dev/video*; do
  if [ -e "$dev" ]; then devices+=(--device "$dev"); fi
done

exec docker run --rm -it \
  --network host --ipc host \
  --gpus all \
  --cap-add sys_nice --ulimit rtprio=99 \
  ${devices[@]+"${devices[@]}"} \
  -v /dev/bus/usb:/dev/bus/usb \
  --device-cgroup-rule 'c 81:* rmw' \
  --device-cgroup-rule 'c 189:* rmw' \
  -v "$MODELS":/models:ro \
  -v "$DATA":/root/rdt_episodes \
  -e ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-0}" \
  -e RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}" \
  "$IMAGE" \
  ros2 launch rdt_bringup kinova.launch.py "$@"
