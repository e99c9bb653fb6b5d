"""The report's figures, drawn from what `measures` computed (PNG files, written atomically)."""

import numpy as np
from matplotlib.ticker import MaxNLocator

from lacnn_zoo.plotting import pyplot, save_figure


def learning_curves(history, rates, best, path, title):
    """Loss and accuracy (training and validation) per epoch, the learning rate, the best epoch marked."""
    plt = pyplot()
    epochs = [int(r["epoch"]) + 1 for r in history]
    panels = [("loss", "loss"), ("accuracy", "accuracy")] + ([("learning rate", None)] if rates else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), dpi=110)
    for ax, (label, key) in zip(axes, panels):
        if key is None:
            ax.plot(epochs, rates[:len(epochs)], color="tab:purple")
        else:
            for prefix, style, name in (("", "-", "training"), ("val_", "--", "validation"),
                                        ("val_ema_", ":", "validation, averaged weights (--ema)")):
                if prefix == "val_ema_" and not any(r.get(prefix + key) for r in history):
                    continue
                values = [float(r[prefix + key]) if r.get(prefix + key) not in (None, "") else np.nan for r in history]
                ax.plot(epochs, values, style, label=name)
            ax.legend(fontsize=8)
        if best is not None:
            ax.axvline(best + 1, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(label + (f" (best epoch {best + 1} dotted)" if best is not None and key == "accuracy" else ""),
                     fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def confusion(matrix, names, path, title):
    plt = pyplot()
    k = len(names)
    size = min(12, 2.5 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(size, size * 0.85), dpi=110)
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_xticks(range(k), names, rotation=90 if k > 10 else 0, fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    if k <= 20:
        top = matrix.max() or 1
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if matrix[i, j] > top / 2 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def _show(ax, image):
    image = np.clip(image, 0, 1)
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None,
              vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def top_losses(images, rows, path, title):
    """Images with their true class, predicted class and its probability, loss (fastai's plot_top_losses)."""
    plt = pyplot()
    columns = min(4, len(rows))
    lines = -(-len(rows) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(2.6 * columns, 2.8 * lines), dpi=110, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, row in zip(axes.flat, images, rows):
        ax.axis("on")
        _show(ax, image)
        ax.set_title(f"true {row['true']}\npredicted {row['predicted']} ({row['probability']:.2f})\n"
                     f"loss {row['loss']:.2f}", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def reliability(bins, path, title):
    """Accuracy against confidence per bin, the diagonal of perfect calibration, and the counts."""
    plt = pyplot()
    fig, (ax, count_ax) = plt.subplots(2, 1, figsize=(5, 5.2), dpi=110, sharex=True,
                                       gridspec_kw={"height_ratios": [3, 1]})
    edges = bins["edges"]
    centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    ax.bar(centres, np.nan_to_num(bins["accuracy"]), width=width * 0.95, color="tab:blue", label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.plot(centres, bins["confidence"], "o", color="tab:orange", markersize=4, label="mean confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}: ECE {bins['ece']:.4f}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    count_ax.bar(centres, bins["counts"], width=width * 0.95, color="tab:gray")
    count_ax.set_xlabel("top-1 confidence")
    count_ax.set_ylabel("images")
    fig.tight_layout()
    save_figure(fig, path)


def lesions(names, intact, zeroed, path, title):
    """Accuracy with each tap zeroed, beside the intact accuracy."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(names) + 2), 3.8), dpi=110)
    ax.bar(range(len(names)), zeroed, color="tab:red", alpha=0.8, label="tap zeroed")
    ax.axhline(intact, color="black", linestyle="--", label=f"intact {intact:.3f}")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def attention(images, maps, queries, grid, path, title):
    """Rows: a test image's query pixels; columns: the image with the query marked, then each head's weights."""
    plt = pyplot()
    count, heads = maps.shape[0], maps.shape[1]
    rows = count * len(queries)
    fig, axes = plt.subplots(rows, heads + 1, figsize=(1.7 * (heads + 1), 1.8 * rows), dpi=110, squeeze=False)
    for i in range(count):
        height, width = images[i].shape[:2]
        for q, (y, x) in enumerate(queries):
            row = axes[i * len(queries) + q]
            _show(row[0], images[i])
            row[0].plot((x + 0.5) * width / grid[1] - 0.5, (y + 0.5) * height / grid[0] - 0.5, "r+", markersize=9)
            row[0].set_title(f"image {i + 1}, query ({y}, {x})", fontsize=7)
            for h in range(heads):
                row[h + 1].imshow(maps[i, h, q], cmap="magma")
                row[h + 1].plot(x, y, "c+", markersize=7)
                row[h + 1].set_xticks([])
                row[h + 1].set_yticks([])
                row[h + 1].set_title(f"head {h + 1}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def tuning_curves(curves, path, title, objective):
    """The best trial's validation curve per mechanism."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for name, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=name)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(objective)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
