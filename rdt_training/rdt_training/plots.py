"""The training loss curve as a PNG (for the demo's and the sim pipeline's reports)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_loss(loss_history, path: Path, title: str = "RDT fine-tuning") -> Path | None:
    """``loss_history``: TrainResult.loss_history, (optimizer step, loss) pairs. Plots the loss and its running
    mean on a log scale; returns ``path``, or None (nothing written) when no step was taken."""
    if not loss_history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, losses = zip(*loss_history)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(steps, losses, lw=0.8, alpha=0.5, label="loss")
    k = max(1, len(losses) // 20)
    smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
    ax.plot(steps[k - 1:], smooth, lw=2, label=f"mean of {k}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("diffusion MSE")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
