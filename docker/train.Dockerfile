# syntax=docker/dockerfile:1
# Training image: CUDA PyTorch + rdt_core + rdt_training, DeepSpeed and accelerate (no ROS needed).
#
#   docker build -f docker/train.Dockerfile -t rdt-ros:train .
#   docker run --rm -it --gpus all --ipc host -v ~/data:/data -v ~/models:/models -v ~/runs:/runs rdt-ros:train \
#       accelerate launch --num_processes 8 -m rdt_training.train --deepspeed zero2 --data /data/pick_cube \
#       --init /models/rdt-1b --vision-encoder /models/siglip-so400m-patch14-384 --out /runs/pick_cube
#
# The devel variant (not -runtime) because DeepSpeed compiles its fused CUDA ops (Adam, ...) with nvcc
# on first use; --ipc host gives the data loader workers enough shared memory.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-devel

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/rdt
COPY requirements.txt ./
# torch is already in the image (torch>=2.1 satisfied); the rest, then DeepSpeed.
RUN pip install -r requirements.txt && pip install "deepspeed>=0.14" "accelerate>=0.30"
COPY rdt_core ./rdt_core
COPY rdt_training ./rdt_training
RUN pip install --no-deps ./rdt_core ./rdt_training

WORKDIR /workspace
CMD ["bash"]
