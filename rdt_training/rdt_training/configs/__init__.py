"""Configuration files shipped with rdt_training (``python -m rdt_training.configs zero2`` prints a path).

``zero2.json``: DeepSpeed ZeRO stage 2 (optimizer state and gradients sharded over the GPUs; weights
replicated), with the batch / accumulation / precision / clipping values left "auto" so that accelerate
fills them from the rdt-train options. Multi-GPU: ``accelerate launch --num_processes N --module
rdt_training.train EPISODES ... --deepspeed zero2`` (add --num_machines/--machine_rank/--main_process_ip
for several nodes).
"""
from __future__ import annotations

import sys
from pathlib import Path

_DIR = Path(__file__).resolve().parent
FILES = {"zero2": "zero2.json"}


def config_path(name: str) -> Path:
    """Path of a shipped config by name (``zero2``)."""
    if name not in FILES:
        raise ValueError(f"unknown config {name!r}; shipped: {sorted(FILES)}")
    path = _DIR / FILES[name]
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed package; reinstall rdt_training "
                                f"(its package_data must include configs/*.json)")
    return path


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    print(config_path(argv[0] if argv else "zero2"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
