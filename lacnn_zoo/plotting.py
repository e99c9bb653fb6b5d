"""Headless matplotlib for the PNGs the zoo writes (attention trajectories, comparisons, search reports)."""

from lacnn_zoo.io import atomic_path

__all__ = ["pyplot", "save_figure"]


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (imported on first use, not at import time).

    Returns:
        The `matplotlib.pyplot` module.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path):
    """Write `fig` as a PNG atomically and release it.

    Args:
        fig: the matplotlib figure; closed once written.
        path: the PNG file to write (its folder is created when missing).
    """
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    pyplot().close(fig)
