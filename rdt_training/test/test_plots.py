"""The one loss-curve helper the demo and the sim pipeline share."""
import numpy as np

from rdt_training.plots import plot_loss


def test_plot_loss_writes_a_png_of_the_curve(tmp_path):
    import matplotlib.image

    history = [(step, 1.0 / (1 + step) + 0.01) for step in range(1, 101)]
    path = plot_loss(history, tmp_path / "loss.png", "test run")
    assert path == tmp_path / "loss.png"
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert np.ptp(img[..., :3]) > 0.5  # drawn on, not a blank canvas


def test_plot_loss_without_steps_writes_nothing(tmp_path):
    assert plot_loss([], tmp_path / "loss.png") is None
    assert not (tmp_path / "loss.png").exists()
