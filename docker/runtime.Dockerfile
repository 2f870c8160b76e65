# syntax=docker/dockerfile:1
# Runtime image: ROS 2 Jazzy + CUDA-enabled PyTorch + this workspace built with colcon.
#
#   docker build -f docker/runtime.Dockerfile -t rdt-ros:runtime .          # from the repository root
#   docker/run-kinova.sh checkpoint:=/models/export ...                      # run it on the robot PC
#
# Build arguments:
#   TORCH_INDEX     PyTorch wheel index; cu124 by default, https://download.pytorch.org/whl/cpu for CI
#   INSTALL_KORTEX  true: also install ros2_kortex (kortex_bringup) so launch_driver:=true works
# The GPU comes from the host driver through the NVIDIA Container Toolkit (docker run --gpus all);
# the PyTorch CUDA wheels carry their own CUDA runtime, so the ROS base image needs no CUDA.
ARG ROS_DISTRO=jazzy
FROM ros:${ROS_DISTRO}-ros-base

ARG TORCH_INDEX=https://download.pytorch.org/whl/cu124
ARG INSTALL_KORTEX=true
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Ubuntu 24.04's Python is "externally managed" (PEP 668): this image is single-purpose, so pip installs
# into the system Python that rclpy uses. numpy stays below 2: the ROS Python extensions of Jazzy (the
# generated message modules) are built against Ubuntu's numpy 1.26.
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_CONSTRAINT=/etc/pip-constraints.txt \
    PYTHONUNBUFFERED=1
RUN echo "numpy<2" > /etc/pip-constraints.txt

# ROS packages the nodes, the fake robot and the launch tests use (also resolved by rosdep below).
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3-pip git \
        ros-${ROS_DISTRO}-control-msgs ros-${ROS_DISTRO}-std-srvs \
        ros-${ROS_DISTRO}-trajectory-msgs ros-${ROS_DISTRO}-launch-testing ros-${ROS_DISTRO}-launch-testing-ros \
        ros-${ROS_DISTRO}-rosidl-default-generators ros-${ROS_DISTRO}-rmw-cyclonedds-cpp \
    && if [ "${INSTALL_KORTEX}" = "true" ]; then \
        apt-get install -y --no-install-recommends ros-${ROS_DISTRO}-kortex-bringup; fi \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /ws
# The repository root is the colcon workspace (colcon.meta applies from here).
COPY . /ws

# Debian/ROS dependencies from the package.xml files (-r: keys that are pip-only, e.g. python3-torch,
# are skipped here and installed by pip below).
RUN apt-get update \
    && rosdep update --rosdistro "${ROS_DISTRO}" \
    && rosdep install --from-paths /ws --ignore-src -y -r --rosdistro "${ROS_DISTRO}" \
    && rm -rf /var/lib/apt/lists/*

# CUDA PyTorch first (from the PyTorch index), then the rest; torch>=2.1 in requirements.txt is then satisfied.
RUN pip install --index-url "${TORCH_INDEX}" torch \
    && pip install -r /ws/requirements.txt
# (pytest and colcon come from Ubuntu/ROS packages: rosdep test_depend and the ros-base image.)

RUN source "/opt/ros/${ROS_DISTRO}/setup.bash" \
    && colcon build --event-handlers console_direct- summary+

COPY docker/entrypoint.sh /entrypoint.sh
RUN chmod +x /entrypoint.sh
ENTRYPOINT ["/entrypoint.sh"]
CMD ["bash"]
