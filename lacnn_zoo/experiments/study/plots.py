"""The study's figures."""


import numpy as np

from lacnn_zoo.experiments.study.layout import attention_rows, history, lesion_path, row_of
from lacnn_zoo.io import read_json
from lacnn_zoo.options import VARIANTS  # variant -> (registered model, fixed overrides, family)
from lacnn_zoo.plotting import pyplot, save_figure


def _colours(variants):
    plt = pyplot()
    return dict(zip(variants, plt.get_cmap("tab10")(np.arange(len(variants)) % 10)))


def plot_training_curves(out_dir, config, path):
    plt = pyplot()
    depths, variants, seeds = config["depths"], config["variants"], config["seeds"]
    fig, axes = plt.subplots(len(depths), 2, figsize=(11, 3.1 * len(depths)), dpi=100, squeeze=False)
    colours = _colours(variants)
    for row, depth in zip(axes, depths):
        for variant in variants:
            hist = [history(out_dir, variant, depth, s) for s in seeds]
            for ax, key in zip(row, ("loss", "accuracy")):
                values = np.array([[float(r[key]) for r in h] for h in hist])
                mean, std = values.mean(axis=0), values.std(axis=0)
                x = np.arange(1, values.shape[1] + 1)
                ax.plot(x, mean, color=colours[variant], label=variant,
                        linestyle="-" if variant == "plain" else ("--" if "resnet" in variant else ":"),
                        linewidth=2.2 if variant == "plain" else 1.3)
                ax.fill_between(x, mean - std, mean + std, color=colours[variant], alpha=0.12)
        row[0].set_ylabel(f"D={depth}\ntraining loss")
        row[0].set_yscale("log")
        row[1].set_ylabel("training accuracy")
        for ax in row:
            ax.grid(alpha=0.3)
            ax.set_xlabel("epoch")
    axes[0][1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"training set, mean ± std over {len(seeds)} seeds (degradation is a training-set effect)")
    fig.tight_layout()
    save_figure(fig, path)


def plot_test_accuracy(summary, path):
    plt = pyplot()
    config = summary["config"]
    depths, variants = config["depths"], config["variants"]
    colours = _colours(variants)
    fig, ax = plt.subplots(figsize=(10, 4.2), dpi=100)
    width = 0.8 / len(variants)
    for i, variant in enumerate(variants):
        rows = [row_of(summary["accuracy"], d, variant) for d in depths]
        xs = np.arange(len(depths)) + (i - (len(variants) - 1) / 2) * width
        ax.bar(xs, [r["test_acc_mean"] for r in rows], width, yerr=[r["test_acc_std"] for r in rows],
               color=colours[variant], label=variant, capsize=2)
    ax.set_xticks(np.arange(len(depths)), [f"D={d}" for d in depths])
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, ncol=4, loc="lower left")
    fig.tight_layout()
    save_figure(fig, path)


def plot_gradient_ratio(summary, path):
    plt = pyplot()
    config = summary["config"]
    depths, variants = config["depths"], config["variants"]
    colours = _colours(variants)
    epochs = sorted(int(k.split("_e")[1].split("_")[0]) for k in summary["gradients"][0] if k.endswith("_mean"))
    fig, axes = plt.subplots(1, len(depths), figsize=(4.2 * len(depths), 3.6), dpi=100, sharey=True, squeeze=False)
    for ax, depth in zip(axes[0], depths):
        for variant in variants:
            g = row_of(summary["gradients"], depth, variant)
            mean = [g[f"log10_ratio_e{e}_mean"] for e in epochs]
            std = [g[f"log10_ratio_e{e}_std"] for e in epochs]
            if any(m is None for m in mean):
                continue
            ax.errorbar(epochs, mean, yerr=std, marker="o", markersize=3, capsize=2, color=colours[variant],
                        label=variant)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_title(f"D={depth}")
        ax.set_xlabel("epoch (0 = initialisation)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("log10 ||dL/dW first|| / ||dL/dW last||")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("gradient dilution: first-to-last backbone layer gradient-norm ratio (mean ± std over seeds)")
    fig.tight_layout()
    save_figure(fig, path)


def plot_attention(out_dir, config, path):
    mechanisms = [v for v in config["variants"] if VARIANTS[v][2] == "layer_attended"]
    if not mechanisms:
        return
    plt = pyplot()
    depths, seeds = config["depths"], config["seeds"]
    fig, axes = plt.subplots(len(mechanisms), len(depths), figsize=(3.8 * len(depths), 2.6 * len(mechanisms)),
                             dpi=100, squeeze=False)
    for i, m in enumerate(mechanisms):
        for j, depth in enumerate(depths):
            ax = axes[i][j]
            shifts = []
            for s in seeds:
                ep, w = attention_rows(out_dir, m, depth, s)
                shifts.append(w - w[0])
            length = min(len(s) for s in shifts)
            mean = np.mean([s[:length] for s in shifts], axis=0)
            bound = float(np.abs(mean).max()) or 1.0
            image = ax.imshow(mean.T, aspect="auto", origin="lower", cmap="RdBu_r", vmin=-bound, vmax=bound,
                              extent=(-0.5, length - 0.5, 0.5, mean.shape[1] + 0.5))
            ax.plot(np.arange(length), np.argmax(mean, axis=1) + 1, color="k", marker=".", linewidth=0.8)
            fig.colorbar(image, ax=ax, fraction=0.05)
            ax.set_title(f"{m.replace('lacnn_', '')}, D={depth}", fontsize=8)
            ax.set_xlabel("epoch", fontsize=7)
            ax.set_ylabel("layer (1 = lowest)", fontsize=7)
    fig.suptitle(f"attention shift from before training, w_e - w_0 (mean of {len(seeds)} seeds); black: argmax layer")
    fig.tight_layout()
    save_figure(fig, path)


def plot_robustness(out_dir, config, path):
    plt = pyplot()
    depths, variants, seeds = config["depths"], config["variants"], config["seeds"]
    colours = _colours(variants)
    fig, axes = plt.subplots(2, len(depths), figsize=(4.2 * len(depths), 6.4), dpi=100, sharey=True,
                             squeeze=False)
    for j, depth in enumerate(depths):
        for i, kind in enumerate(("zero", "reinit")):
            ax = axes[i][j]
            for variant in variants:
                lesions = [read_json(lesion_path(out_dir, variant, depth, s)) for s in seeds]
                drops = np.array([[les["clean"] - v for v in les[kind]] for les in lesions])
                x = (np.arange(drops.shape[1]) + 1) / drops.shape[1]
                ax.plot(x, drops.mean(axis=0), color=colours[variant], label=variant, marker=".", markersize=3,
                        linewidth=1)
            ax.set_title(f"D={depth}: {'output zeroed' if kind == 'zero' else 'weights re-initialised'}", fontsize=9)
            ax.set_xlabel("lesioned layer (relative depth, 1 = last)")
            ax.grid(alpha=0.3)
        axes[0][j].set_ylabel("test accuracy drop")
        axes[1][j].set_ylabel("test accuracy drop")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"robustness: one backbone layer lesioned at test time (mean of {len(seeds)} seeds)")
    fig.tight_layout()
    save_figure(fig, path)
