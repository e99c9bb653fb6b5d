"""Headless matplotlib for the PNGs the zoo writes (attention trajectories, comparisons, search reports)."""

from lacnn_zoo.io import atomic_path

__all__ = ["counted", "plot_mechanisms", "pyplot", "save_figure"]


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
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png")
    finally:
        pyplot().close(fig)


def counted(n, noun):
    """`n` and `noun`, plural unless `n` is 1: `counted(1, "trial")` is "1 trial", `counted(3, "trial")` "3 trials".

    Args:
        n: the count.
        noun: the singular noun.

    Returns:
        The phrase, a string.
    """
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def plot_mechanisms(table, path, title):
    """The search's best validation accuracy per mechanism as horizontal bars from zero, with each mechanism's
    spread over its executions (sample std, where it has two or more) and its counts; a mechanism the search did
    not draw is said so, without a bar. Drawn by `python -m tuning` (mechanisms.png) and the search's report.

    Args:
        table: the rows of mechanisms.json's "mechanisms": dicts with `mechanism`, `trials`, `best_val_accuracy`,
            `val_accuracy_mean`, `val_accuracy_std` and `params_of_best` (None where a mechanism had no trial).
        path: the PNG file to write.
        title: the figure's title.
    """
    plt = pyplot()
    names = [str(r.get("mechanism")) for r in table]
    tried = [bool(r.get("trials")) and r.get("best_val_accuracy") is not None for r in table]
    best = [r["best_val_accuracy"] if t else 0.0 for r, t in zip(table, tried)]
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.45 * max(len(names), 1)), dpi=110)
    colours = plt.get_cmap("tab10")([i % 10 for i in range(len(names))])
    bars = ax.barh(names, best, color=colours)
    for i, (row, ok) in enumerate(zip(table, tried)):
        mean, std = row.get("val_accuracy_mean"), row.get("val_accuracy_std")
        if ok and mean is not None and std is not None:  # the mean ± std of every execution, as a whisker
            ax.errorbar(mean, i, xerr=std, fmt="o", color="black", markersize=3, capsize=3, linewidth=1)
    for bar, row, ok in zip(bars, table, tried):
        params = row.get("params_of_best")
        counts = f"{params:,} params, " if isinstance(params, int) else ""
        label = (f" {bar.get_width():.3f}  ({counts}{counted(row.get('trials'), 'trial')})" if ok else
                 " no trial (the search did not draw it)")
        mean, std = row.get("val_accuracy_mean"), row.get("val_accuracy_std")
        right = max(bar.get_width(), mean + std if ok and mean is not None and std is not None else 0.0)
        ax.text(right + 0.01, bar.get_y() + bar.get_height() / 2, label, va="center", fontsize=8)
    ax.set_xlim(0.0, 1.35)
    ax.set_xticks([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_xlabel("best validation accuracy (bar); mean ± std over every execution (whisker)")
    ax.set_ylabel("mechanism")
    ax.set_title(title, fontsize=10)
    ax.invert_yaxis()
    fig.tight_layout()
    save_figure(fig, path)
