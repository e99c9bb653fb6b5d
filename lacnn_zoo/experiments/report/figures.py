"""The report's figures, drawn from what `measures` computed: PNG files written atomically, or, with `path=None`,
the matplotlib figure itself (`Interpretation`'s plots, for a notebook)."""

import numpy as np
from matplotlib.ticker import MaxNLocator

from lacnn_zoo.plotting import pyplot, save_figure


def _done(fig, path):
    """Write `fig` to `path` and release it (None); with `path=None` return the figure."""
    if path is None:
        return fig
    save_figure(fig, path)
    return None


OUTLIER = 2.0  # a first-epoch value above this many times the highest later value clips the axis


def _clip_first_epoch(ax, curves, label):
    """Clip `ax`'s y-axis above the later epochs when a first-epoch value would flatten them; returns the sentence
    that says so (None when nothing is clipped). `curves`: {name: values per epoch}."""
    later = [v for values in curves.values() for v in values[1:] if np.isfinite(v)]
    first = {name: values[0] for name, values in curves.items() if len(values) and np.isfinite(values[0])}
    if len(later) < 2 or not first:
        return None
    top, low = max(later), min(later + list(first.values()))
    high = {name: v for name, v in first.items() if v > OUTLIER * top and v > top + 1e-12}
    if not high or top <= low:
        return None
    ax.set_ylim(low - 0.05 * (top - low), top + 0.15 * (top - low))
    said = ", ".join(f"{name} {v:.3g}" for name, v in high.items())
    ax.text(0.98, 0.97, f"epoch 1 above the axis: {said}", transform=ax.transAxes, ha="right", va="top",
            fontsize=7, color="dimgrey")
    return (f"The {label} panel's axis is clipped above epoch 2 onwards: epoch 1's {said} would flatten the rest "
            "(the values are in history.csv).")


def compared_curves(names, histories, path, title, colours=None):
    """Validation accuracy and loss per epoch (from 1) of several runs, one line per run (its validation of the
    averaged weights dotted, in the same colour, when it trained with --ema); `colours`: each run's colour number
    (runs of one group share one), by default one per run."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    for ax, key in zip(axes, ("accuracy", "loss")):
        for i, (name, history) in enumerate(zip(names, histories)):
            colour = f"C{(colours[i] if colours else i) % 10}"
            epochs = [int(r["epoch"]) + 1 for r in history]
            for prefix, style, suffix in (("val_", "-", ""), ("val_ema_", ":", " (averaged weights)")):
                if not any(r.get(prefix + key) for r in history):
                    continue
                values = [float(r[prefix + key]) if r.get(prefix + key) not in (None, "") else np.nan
                          for r in history]
                ax.plot(epochs, values, style, color=colour, marker="." if len(epochs) < 30 else None,
                        label=name + suffix)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"validation {key}", fontsize=9)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06 + 0.04 * ((len(labels) - 1) // 4), 1, 1))
    return _done(fig, path)


def learning_curves(history, rates, best, path, title):
    """Loss and accuracy (training and validation) per epoch, the learning rate, the best epoch marked. A
    first-epoch value that would flatten the rest of a panel (above `OUTLIER` times the highest later value) is
    left above a clipped axis and named on the panel; returns those sentences for the page."""
    plt = pyplot()
    epochs = [int(r["epoch"]) + 1 for r in history]
    panels = [("loss", "loss"), ("accuracy", "accuracy")] + ([("learning rate", None)] if rates else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), dpi=110)
    notes = []
    for ax, (label, key) in zip(axes, panels):
        if key is None:
            ax.plot(epochs, rates[:len(epochs)], color="tab:purple")
        else:
            curves = {}
            for prefix, style, name in (("", "-", "training"), ("val_", "--", "validation"),
                                        ("val_ema_", ":", "validation, averaged weights (--ema)")):
                if prefix == "val_ema_" and not any(r.get(prefix + key) for r in history):
                    continue
                values = [float(r[prefix + key]) if r.get(prefix + key) not in (None, "") else np.nan for r in history]
                ax.plot(epochs, values, style, label=name)
                curves[f"{name.split(',')[0]} {key}"] = np.asarray(values, "float64")
            ax.legend(fontsize=8)
            note = _clip_first_epoch(ax, curves, label)
            if note:
                notes.append(note)
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
    return notes


def confusion(matrix, names, path, title):
    plt = pyplot()
    k = len(names)
    size = min(12, 2.5 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(size, size * 0.85), dpi=110)
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_xticks(range(k), names, rotation=90 if k > 10 else 0, fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    if k <= 20:  # counts, or shares of a row (a row of a class without images is NaN: left blank)
        shares = np.issubdtype(np.asarray(matrix).dtype, np.floating)
        top = np.nanmax(matrix) if np.any(np.isfinite(matrix)) else 1
        for i in range(k):
            for j in range(k):
                if np.isfinite(matrix[i, j]) and matrix[i, j]:
                    ax.text(j, i, f"{matrix[i, j]:.2f}" if shares else int(matrix[i, j]), ha="center",
                            va="center", fontsize=7, color="white" if matrix[i, j] > (top or 1) / 2 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _done(fig, path)


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
    fig, axes = plt.subplots(lines, columns, figsize=(2.6 * columns, 3.0 * lines), dpi=110, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, row in zip(axes.flat, images, rows):
        ax.axis("on")
        _show(ax, image)
        name = row.get("label", "")
        name = name if len(name) <= 28 else "…" + name[-27:]
        ax.set_title(f"{name}\ntrue {row['true']}\npredicted {row['predicted']} ({row['probability']:.2f})\n"
                     f"loss {row['loss']:.2f}", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _done(fig, path)


FEW = 10  # a reliability bin of fewer images is drawn faded: its accuracy says little


def reliability(bins, path, title):
    """Accuracy against confidence per bin (faded under `FEW` images, each bar labelled with its count), the
    diagonal of perfect calibration, and the counts; ECE, NLL and Brier score in the title."""
    plt = pyplot()
    fig, (ax, count_ax) = plt.subplots(2, 1, figsize=(7, 5.2), dpi=110, sharex=True,
                                       gridspec_kw={"height_ratios": [3, 1]})
    edges = bins["edges"]
    centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    counts = np.asarray(bins["counts"])
    accuracy = np.nan_to_num(bins["accuracy"])
    for centre, value, count in zip(centres, accuracy, counts):
        if count:
            ax.bar(centre, value, width=width * 0.95, color="tab:blue", alpha=1.0 if count >= FEW else 0.3)
            ax.text(centre, value + 0.01, str(int(count)), ha="center", va="bottom", fontsize=6)
    from matplotlib.patches import Patch

    diagonal = ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")[0]
    dots = ax.plot(centres, bins["confidence"], "o", color="tab:orange", markersize=4, label="mean confidence")[0]
    handles = [Patch(color="tab:blue", label="accuracy (number: images)"),
               Patch(color="tab:blue", alpha=0.3, label=f"accuracy of under {FEW} images"), diagonal, dots]
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.1)
    scores = f"ECE {bins['ece']:.4f}" + "".join(f", {k} {bins[key]:.4f}" for k, key in (("NLL", "nll"),
                                                                                          ("Brier", "brier"))
                                                 if bins.get(key) is not None)
    ax.set_title(f"{title}: {scores}", fontsize=9)
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # off the bars
    count_ax.bar(centres, counts, width=width * 0.95, color="tab:gray")
    count_ax.set_xlabel("top-1 confidence")
    count_ax.set_ylabel("images")
    fig.tight_layout()
    return _done(fig, path)


def lesions(names, intact, zeroed, path, title):
    """Each tap's accuracy drop when it is zeroed, on the drops' own scale (a 0-1 accuracy axis hides a drop of
    0.006), each bar labelled with its drop; the intact accuracy in the title, no legend over the bars."""
    plt = pyplot()
    drops = np.array([intact - z for z in zeroed], "float64")
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(names) + 2), 3.8), dpi=110)
    bars = ax.bar(range(len(names)), drops, color=["tab:red" if d > 0 else "tab:blue" for d in drops], alpha=0.8)
    ax.axhline(0, color="black", linewidth=0.8)
    span = max(float(np.max(np.abs(drops))) if len(drops) else 0.0, 1e-4)
    ax.set_ylim(float(drops.min(initial=0.0)) - 0.15 * span, float(drops.max(initial=0.0)) + 0.2 * span)
    for bar, drop in zip(bars, drops):
        ax.text(bar.get_x() + bar.get_width() / 2, drop + (0.03 * span if drop >= 0 else -0.03 * span),
                f"{drop:.4f}", ha="center", va="bottom" if drop >= 0 else "top", fontsize=7)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("accuracy drop (intact − zeroed)")
    ax.set_title(f"{title} (intact accuracy {intact:.4f})", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _done(fig, path)


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
            top = float(np.max(maps[i, :, q]))
            for h in range(heads):
                image = row[h + 1].imshow(maps[i, h, q], cmap="magma", vmin=0.0, vmax=top)
                row[h + 1].plot(x, y, "c+", markersize=7)
                row[h + 1].set_xticks([])
                row[h + 1].set_yticks([])
                row[h + 1].set_title(f"head {h + 1}", fontsize=7)
            bar = fig.colorbar(image, ax=list(row[1:]), fraction=0.02, pad=0.01)  # one scale for the row's heads
            bar.ax.tick_params(labelsize=6)
            bar.set_label("weight", fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _done(fig, path)


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
    return _done(fig, path)
