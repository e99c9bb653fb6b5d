"""Train a set of models under one recipe and compare them, testing the layer-attended paper's predictions.

    lacnn-zoo compare                       # default set on digits, 3 seeds
    lacnn-zoo compare plain_cnn_tiny 'lacnn_*_tiny' --seeds 0 1 2 --epochs 20 --out runs/compare

Every model is trained by `lacnn_zoo.training.train` with the same data,
split, seeds and recipe (AdamW, cosine decay, batch 64).  Written to `--out`:

    compare.csv / compare.json   per model: parameters, test accuracy (mean, spread over seeds),
                                 epochs to reach the target validation accuracy, time per epoch,
                                 first-to-last-layer gradient-norm ratios
    learning_curves.png          validation accuracy against epoch, one colour per model
    layer_attention.png          per-layer attention of the layer-attended models against epoch
    gradient_norms.png           per-layer gradient norm at initialisation and after early epochs
    <model>/seed<k>/             each run's folder (history, checkpoint, attention CSV, grad_norms.csv)

Finished runs are reused when the command is run again, so an interrupted
comparison resumes where it stopped.
"""

import csv
import os
import re
import time

import keras
import numpy as np

from lacnn_zoo import training  # `training.train`: looked up at each call, as tests replace it
from lacnn_zoo.data import load_dataset
from lacnn_zoo.errors import spell
from lacnn_zoo.io import write_csv, write_json
from lacnn_zoo.models.registry import model_info, resolve_models
from lacnn_zoo.options import check_bounded
from lacnn_zoo.plotting import pyplot, save_figure
from lacnn_zoo.training.loop import _input_convention
from lacnn_zoo.training.run_folder import RunFolder

DEFAULT_MODELS = [
    "plain_cnn_tiny", "resnet8", "resnet8_beta", "resnet8_projection", "aa_resnet8",
    "lacnn_innate_static_tiny", "lacnn_static_vector_tiny", "lacnn_self_attention_tiny",
    "lacnn_dynamic_recurrent_tiny",
]


def _kernel_groups(model):
    """(top-level layer name, its trainable kernels) in depth order: the "layers" of the gradient profile."""
    groups = []
    for layer in model.layers:
        kernels = [v for v in layer.trainable_weights if len(v.shape) >= 2]
        if kernels:
            groups.append((layer.name, kernels))
    return groups


def gradient_norms(model, x, y, loss_fn):
    """L2 norm of dLoss/dW over each top-level layer's kernels, training-mode forward pass, no side effects.

    The forward pass is `model.stateless_call`, so BatchNorm statistics are
    not updated by the measurement.  Returns [(layer name, norm), ...] in
    depth order.  TensorFlow and JAX backends.
    """
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        watched = [tf.identity(t) for t in trainable]
        with tf.GradientTape() as tape:
            tape.watch(watched)
            out, _ = model.stateless_call(watched, non_trainable, x, training=True)
            loss = loss_fn(y, out)
        grads = tape.gradient(loss, watched)
    elif backend == "jax":
        import jax

        def loss_of(values):
            out, _ = model.stateless_call(values, non_trainable, x, training=True)
            return loss_fn(y, out)

        grads = jax.grad(loss_of)(trainable)
    else:
        raise NotImplementedError(f"gradient_norms supports the tensorflow and jax backends, not {backend!r}.")
    by_variable = {id(v): g for v, g in zip(model.trainable_variables, grads)}
    norms = []
    for name, kernels in _kernel_groups(model):
        squares = [np.sum(np.square(keras.ops.convert_to_numpy(by_variable[id(k)]))) for k in kernels
                   if by_variable[id(k)] is not None]
        norms.append((name, float(np.sqrt(np.sum(squares)))))
    return norms


class GradientNormMonitor(keras.callbacks.Callback):
    """Per-layer gradient norms on a fixed batch before training and after the listed epochs; CSV rows."""

    def __init__(self, x, y, path, epochs=(1, 2, 3)):
        super().__init__()
        self.x, self.y, self.path, self.epochs = np.asarray(x), np.asarray(y), os.fspath(path), set(epochs)
        self.rows = []
        self.loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def _record(self, epoch):
        # An epoch recorded before a kill and run again replaces its rows (a resumed run keeps the earlier ones).
        self.rows = [r for r in self.rows if int(r["epoch"]) != epoch]
        for index, (name, norm) in enumerate(gradient_norms(self.model, self.x, self.y, self.loss), start=1):
            self.rows.append({"epoch": epoch, "layer_index": index, "layer": name, "grad_norm": norm})
        write_csv(self.rows, self.path, fieldnames=["epoch", "layer_index", "layer", "grad_norm"])

    def on_train_begin(self, logs=None):
        if os.path.exists(self.path):  # a resumed run: its rows so far (the file is written atomically)
            self.rows = read_csv(self.path)
        if not any(int(r["epoch"]) == 0 for r in self.rows):
            self._record(0)

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 in self.epochs:
            self._record(epoch + 1)


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


BACKBONE_LAYER = re.compile(r"^(stem|stage\d+_)")


def backbone_profile(grad_rows, epoch):
    """Gradient norms of the convolutional backbone's layers (stem, stage*_*), first to last, at `epoch`."""
    return [float(r["grad_norm"]) for r in grad_rows
            if int(r["epoch"]) == epoch and BACKBONE_LAYER.match(r["layer"])]


def epochs_to_reach(history, target):
    """First epoch (1-based) whose validation accuracy reaches `target`, or None."""
    for row in history:
        if float(row["val_accuracy"]) >= target:
            return int(row["epoch"]) + 1
    return None


def run_one(name, seed, out_dir, epochs, dataset, grad_epochs, verbose=0, overrides=None, run_dir=None,
            tensorboard=True, **data_kwargs):
    """Train one (model, seed) under the shared recipe; reuse or resume an existing run folder.

    The run folder is `<out_dir>/<name>/seed<seed>` unless `run_dir` names it (the depth study keeps one
    per variant, depth and seed).  `overrides` go to the models whose knobs take them (e.g. `backbone` to
    the layer-attended ones); `data_kwargs` (`data_dir`, `download`, `image_size`, `augment`) to the data
    set, as for `train`.  `tensorboard=False` skips the TensorBoard logs.
    """
    run = run_dir or os.path.join(out_dir, name, f"seed{seed}")
    if RunFolder(run).is_finished():
        return RunFolder(run).metrics()
    data_kwargs = {k: v for k, v in data_kwargs.items() if v}
    resume = RunFolder(run).is_run()
    applicable = model_info(name).applicable(overrides)  # the knobs this model has and would use
    # The gradient batch is what the run trains on: a keras.applications backbone's inputs, as `train` gives it.
    convention = None if dataset == "digits" else _input_convention(applicable, run, resume)
    data = load_dataset(dataset, seed=seed, normalization=convention, **data_kwargs)
    x, y = data.sample(64, split="validation")
    monitor = GradientNormMonitor(x, y, os.path.join(run, "grad_norms.csv"), epochs=grad_epochs)
    result = training.train(name, dataset=dataset, epochs=epochs, seed=seed, output_dir=run, resume=resume,
                            overwrite=not resume, callbacks=[monitor], verbose=verbose, overrides=applicable,
                            tensorboard=tensorboard, **data_kwargs)
    return result.metrics


def summarise(names, seeds, out_dir, target, grad_epoch):
    rows = []
    for name in names:
        runs = [os.path.join(out_dir, name, f"seed{s}") for s in seeds]
        metrics = [RunFolder(r).metrics() for r in runs]
        reach = [epochs_to_reach(RunFolder(r).history(), target) for r in runs]
        reached = [e for e in reach if e is not None]
        ratios = {0: [], grad_epoch: []}
        for r in runs:
            grads = read_csv(os.path.join(r, "grad_norms.csv"))
            for epoch in ratios:
                backbone = backbone_profile(grads, epoch)
                if backbone and backbone[-1] > 0:
                    ratios[epoch].append(backbone[0] / backbone[-1])
        accuracy = [m["test_accuracy"] for m in metrics]
        rows.append({
            "model": name,
            "family": model_info(name).family,
            "params": metrics[0]["params"],
            "test_accuracy_mean": float(np.mean(accuracy)),
            "test_accuracy_std": float(np.std(accuracy)),
            "seeds": len(seeds),
            f"epochs_to_val_{target:g}": float(np.mean(reached)) if reached else None,
            "runs_reaching_target": len(reached),
            "time_per_epoch_s": float(np.mean([m["time_per_epoch_s"] for m in metrics])),
            "grad_first_over_last_init": float(np.mean(ratios[0])) if ratios[0] else None,
            f"grad_first_over_last_epoch{grad_epoch}": (
                float(np.mean(ratios[grad_epoch])) if ratios[grad_epoch] else None),
        })
    return rows


def plot_learning_curves(names, seeds, out_dir, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    colours = plt.get_cmap("tab10")(np.arange(len(names)) % 10)
    for name, colour in zip(names, colours):
        curves = [[float(r["val_accuracy"]) for r in RunFolder(os.path.join(out_dir, name, f"seed{s}")).history()]
                  for s in seeds]
        length = min(len(c) for c in curves)
        mean = np.mean([c[:length] for c in curves], axis=0)
        ax.plot(np.arange(1, length + 1), mean, color=colour, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation accuracy (mean of {len(seeds)} seeds)")
    ax.set_title("learning curves, one recipe")
    ax.set_ylim(0.5, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)


def plot_attention(names, seeds, out_dir, path):
    attended = [n for n in names if os.path.exists(os.path.join(out_dir, n, f"seed{seeds[0]}", "layer_attention.csv"))]
    if not attended:
        return False
    plt = pyplot()
    cols = min(2, len(attended))
    rows = -(-len(attended) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.6 * rows), dpi=110, squeeze=False)
    for ax, name in zip(axes.flat, attended):
        tables = [np.array([[float(v) for v in r.values()] for r in
                            read_csv(os.path.join(out_dir, name, f"seed{s}", "layer_attention.csv"))]) for s in seeds]
        length = min(len(t) for t in tables)
        mean = np.mean([t[:length] for t in tables], axis=0)
        layers = mean.shape[1] - 1
        colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, layers))
        for i in range(layers):
            ax.plot(mean[:, 0], mean[:, i + 1], color=colours[i], label=f"layer {i + 1}")
        ax.axhline(1 / layers, color="grey", linestyle=":", linewidth=1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch (0 = before training)")
        ax.set_ylabel("attention weight")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    for ax in list(axes.flat)[len(attended):]:
        ax.set_visible(False)
    fig.suptitle(f"per-layer attention (mean of {len(seeds)} seeds); section 4 predicts: lowest layer first, then up")
    fig.tight_layout()
    save_figure(fig, path)
    return True


def plot_gradient_norms(names, seeds, out_dir, path, grad_epoch):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), dpi=110, sharey=True)
    colours = plt.get_cmap("tab10")(np.arange(len(names)) % 10)
    for ax, epoch in zip(axes, (0, grad_epoch)):
        for name, colour in zip(names, colours):
            profiles = [backbone_profile(read_csv(os.path.join(out_dir, name, f"seed{s}", "grad_norms.csv")), epoch)
                        for s in seeds]
            length = min(len(p) for p in profiles)
            if length == 0:
                continue
            mean = np.mean([p[:length] for p in profiles], axis=0)
            ax.plot(np.arange(1, length + 1), mean, marker="o", markersize=3, color=colour, label=name)
        ax.set_yscale("log")
        ax.set_xlabel("backbone layer or block (1 = first)")
        ax.set_title("at initialisation" if epoch == 0 else f"after epoch {epoch}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("||dL/dW|| per layer (log)")
    axes[1].legend(fontsize=7, loc="best")
    fig.suptitle("gradient dilution: do early layers get smaller gradients?")
    fig.tight_layout()
    save_figure(fig, path)


def check_seeds(seeds):
    """One or more distinct seeds, each in the range NumPy and scikit-learn accept (refused before any run)."""
    listed = list(seeds) if not isinstance(seeds, (str, bytes)) and hasattr(seeds, "__iter__") else []
    checked = [check_bounded("seed", s, "seeds", "--seeds") for s in listed]
    if not checked or len(set(checked)) != len(checked):
        raise ValueError(f"{spell('`seeds`', '--seeds')} must be one or more distinct seeds; received {seeds!r}.")
    return checked


def compare(models=None, *, seeds=(0, 1, 2), epochs=20, dataset="digits", target=0.95, out_dir="runs/compare",
            grad_epochs=(1, 2, 3), verbose=0, log=print, overrides=None, **data_kwargs):
    """Train and compare; returns the summary rows (also in compare.csv / compare.json).

    `overrides` (e.g. `{"backbone": "MobileNetV3Small"}`) reach every model that has the knob; the
    others train as registered. `data_kwargs` are `train`'s data options.
    """
    names = resolve_models(models) if models else list(DEFAULT_MODELS)
    if not names:
        raise ValueError(f"No registered model matches {models!r}.")
    unused = sorted(k for k in (overrides or {}) if not any(k in model_info(n).knobs for n in names))
    if unused:
        raise ValueError(f"Override(s) {unused} apply to none of the compared models {names}.")
    seeds = check_seeds(seeds)
    epochs = check_bounded("epochs", epochs, flag="--epochs")
    target = check_bounded("accuracy", target, "target", "--target")
    grad_epochs = tuple(sorted(e for e in grad_epochs if e <= epochs)) or (epochs,)
    start = time.perf_counter()
    for name in names:
        for seed in seeds:
            t0 = time.perf_counter()
            m = run_one(name, seed, out_dir, epochs, dataset, grad_epochs, verbose=verbose, overrides=overrides,
                        **data_kwargs)
            log(f"{name:<30} seed {seed}: test accuracy {m['test_accuracy']:.4f} ({time.perf_counter() - t0:.0f} s)")
    grad_epoch = grad_epochs[-1]
    rows = summarise(names, seeds, out_dir, target, grad_epoch)
    plot_learning_curves(names, seeds, out_dir, os.path.join(out_dir, "learning_curves.png"))
    plot_attention(names, seeds, out_dir, os.path.join(out_dir, "layer_attention.png"))
    plot_gradient_norms(names, seeds, out_dir, os.path.join(out_dir, "gradient_norms.png"), grad_epoch)
    write_csv(rows, os.path.join(out_dir, "compare.csv"))
    write_json(os.path.join(out_dir, "compare.json"), {
        "models": rows, "seeds": seeds, "epochs": epochs, "dataset": dataset, "target": target,
        "wall_time_s": time.perf_counter() - start, "backend": keras.backend.backend(),
    })
    return rows


def print_rows(rows, file=None):
    import sys

    file = file or sys.stdout
    target_key = next(k for k in rows[0] if k.startswith("epochs_to_val_"))
    grad_key = next(k for k in rows[0] if k.startswith("grad_first_over_last_epoch"))
    print(f"{'model':<30} {'params':>8} {'test acc':>15} {target_key:>18} {'s/epoch':>8} "
          f"{'grad 1st/last init':>19} {grad_key:>30}", file=file)
    for r in rows:
        reach = f"{r[target_key]:.1f} ({r['runs_reaching_target']}/{r['seeds']})" if r[target_key] else \
            f"- (0/{r['seeds']})"
        g0 = f"{r['grad_first_over_last_init']:.3f}" if r["grad_first_over_last_init"] else "-"
        g1 = f"{r[grad_key]:.3f}" if r[grad_key] else "-"
        print(f"{r['model']:<30} {r['params']:>8,} {r['test_accuracy_mean']:>8.4f} ±{r['test_accuracy_std']:.4f} "
              f"{reach:>18} {r['time_per_epoch_s']:>8.2f} {g0:>19} {g1:>30}", file=file)
