"""Observe per-layer attention: `layer_weights(model, x)` and the `LayerAttentionMonitor` callback.

Section 4 of the layer-attended paper predicts that, from equal attention,
the weight first moves to the lowest layer and then climbs to higher layers as
training goes on.  The monitor records the per-layer weights on a fixed batch
at every epoch (and once before training), writes `layer_attention.csv`,
TensorBoard scalars (TensorFlow backend) and, at the end, `layer_attention.png`.

Every measure but one starts at 1/n for identically distributed taps (see
`layer_weights`).  Real taps are not identically distributed at
initialisation (their scales differ from layer to layer), so read every
trajectory against its epoch-0 row, the before-training measurement; the plot
draws that row as dotted lines, and the 1/n line as well where the measure
starts equal.
"""

import csv
import os

import keras
import numpy as np

from lacnn_zoo.io import write_csv
from lacnn_zoo.models.layer_attended import ATTENTION_LAYER, tap_names
from lacnn_zoo.plotting import pyplot, save_figure

FLAT = 0.005  # a trajectory within this of 1/n everywhere is said to be flat on the figure

__all__ = ["LayerAttentionMonitor", "TapReader", "is_layer_attended", "layer_weights", "plot_layer_attention"]


def is_layer_attended(model):
    """Whether `model` has a layer-attention layer (named `ATTENTION_LAYER`), as the lacnn_* models do.

    Args:
        model: a Keras model.

    Returns:
        True for a layer-attended model, False otherwise.
    """
    try:
        model.get_layer(ATTENTION_LAYER)
    except ValueError:
        return False
    return True


def _attention_layer(model):
    if not is_layer_attended(model):
        raise ValueError(
            f"Model {model.name!r} has no layer-attention layer (named {ATTENTION_LAYER!r}); "
            "per-layer weights exist for the lacnn_* models only."
        )
    return model.get_layer(ATTENTION_LAYER)


class TapReader:
    """Reads a layer-attended model's per-layer weights; holds the sub-model from images to formed taps.

    Calling it on a batch of images returns their per-layer weights, as `layer_weights` does.

    Args:
        model: a layer-attended model (a lacnn_* model); any other raises ValueError.
    """

    def __init__(self, model):
        self.mechanism = _attention_layer(model)
        self.starts_equal = bool(getattr(self.mechanism, "weights_start_equal", True))
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        self.taps = keras.Model(inputs, self.mechanism.input, name=f"{model.name}_taps")

    def __call__(self, x):
        taps = self.taps(x, training=False)
        taps = taps if isinstance(taps, (list, tuple)) else [taps]
        return keras.ops.convert_to_numpy(self.mechanism.layer_weights(list(taps)))


def layer_weights(model, x):
    """Per-layer attention of a layer-attended model for a batch: array (batch, n_layers), rows sum to 1.

    With t_i the formed tap of layer i (width d_i) and y the mechanism's output:

    * Static Trainable-Vector: ``x = softmax(layer_logits)``, the same row for every input.
    * Self-Attention: ``mean_{h,q} A[b, h, q, :]``, the attention probabilities averaged over heads
      and queries.
    * Dynamic-Recurrent, ``lstm_readout="attention"`` (default): ``a = softmax_i(v^T h_i)``, the
      softmax that weights the taps (read, not inferred).
    * Innate-Static (and Dynamic-Recurrent with ``lstm_readout="final_state"``): width-normalised
      occlusion shares ``o_i / sum_j o_j``, ``o_i = ||y - y(t_i = 0)||_2 / sqrt(d_i)``.

    All but the final-state occlusion start at 1/n for identically distributed taps at
    initialisation (`mechanism.weights_start_equal`); see `LayerAttention`.

    Args:
        model: a layer-attended model (a lacnn_* model).
        x: a batch of inputs, as the model takes them.

    Returns:
        A NumPy array of shape (batch, n_layers), each row summing to 1 (the lowest layer first).

    Raises:
        ValueError: `model` has no layer-attention layer.
    """
    return TapReader(model)(x)


class LayerAttentionMonitor(keras.callbacks.Callback):
    """Record the batch-mean per-layer weights every epoch; write CSV, TensorBoard scalars and a PNG.

    Args:
        x: a fixed batch of inputs (e.g. the first 256 validation images).
        output_dir: folder for `layer_attention.csv` and `layer_attention.png`.
        tensorboard_dir: where to write scalars `layer_attention/layer_i` (TensorFlow backend only);
            None to skip.

    Rows are `epoch, layer_1, ..., layer_n`; epoch 0 is before any training,
    epoch k after k epochs.  A resumed run appends to the existing file.
    """

    def __init__(self, x, output_dir, tensorboard_dir=None):
        super().__init__()
        self.x = np.asarray(x)
        self.output_dir = os.fspath(output_dir)
        self.csv_path = os.path.join(self.output_dir, "layer_attention.csv")
        self.png_path = os.path.join(self.output_dir, "layer_attention.png")
        self.tensorboard_dir = tensorboard_dir
        self.rows = []
        self._reader = None
        self._writer = None

    def _record(self, epoch):
        weights = self._reader(self.x).mean(axis=0)
        self.rows = [r for r in self.rows if r[0] != epoch] + [[epoch, *map(float, weights)]]
        self._write_csv()
        if self._writer is not None:
            import tensorflow as tf

            with self._writer.as_default():
                for i, w in enumerate(weights, start=1):
                    tf.summary.scalar(f"layer_attention/layer_{i}", w, step=epoch)
            self._writer.flush()

    def _write_csv(self):
        header = ["epoch", *(f"layer_{i}" for i in range(1, len(self.rows[0])))]
        write_csv([dict(zip(header, row)) for row in sorted(self.rows)], self.csv_path, fieldnames=header)

    def on_train_begin(self, logs=None):
        self._reader = TapReader(self.model)
        if self.tensorboard_dir and keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(self.tensorboard_dir)
        if os.path.exists(self.csv_path):
            with open(self.csv_path) as f:
                self.rows = [[int(r[0]), *map(float, r[1:])] for r in list(csv.reader(f))[1:]]
        if not any(r[0] == 0 for r in self.rows):
            self._record(0)

    def on_epoch_end(self, epoch, logs=None):
        self._record(epoch + 1)

    def on_train_end(self, logs=None):
        if self.rows:
            starts_equal = self._reader.starts_equal if self._reader is not None else True
            plot_layer_attention(self.rows, self.png_path, title=f"{self.model.name}: per-layer attention",
                                 starts_equal=starts_equal, names=tap_names(self.model))


def plot_layer_attention(rows, path, title="per-layer attention", starts_equal=True, names=None):
    """Draw attention per layer against epoch (one line and colour per layer) to a PNG, atomically.

    The epoch-0 row (before training) is drawn as a dotted line per layer: the reference every
    trajectory is read against.  The 1/n line is drawn where the measure starts equal for identically
    distributed taps (`starts_equal`); when every weight stays within ±0.005 of it, the figure says so (its
    y-axis is then a magnified view of a flat profile).

    Args:
        rows: rows `[epoch, weight_1, ..., weight_n]` (as in layer_attention.csv), in any order.
        path: the PNG file to write.
        title: the figure's title.
        starts_equal: whether to draw the 1/n line (the measure starts equal for identically distributed taps).
        names: the taps' names in column order (`tap_names(model)`, as the report's lesion figure names them);
            None labels them "layer 1" ... "layer n".
    """
    plt = pyplot()
    rows = np.asarray(sorted(rows), dtype=float)
    epochs, weights = rows[:, 0], rows[:, 1:]
    n = weights.shape[1]
    if names is not None and len(names) != n:
        raise ValueError(f"`names` must name each of the {n} taps of `rows`; received {len(names)} names.")
    labels = list(names) if names is not None else [f"layer {i + 1}" for i in range(n)]
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, n))
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for i in range(n):
        ax.plot(epochs, weights[:, i], marker="o", markersize=3, color=colours[i], label=labels[i])
    if starts_equal:
        ax.axhline(1.0 / n, color="grey", linestyle=":", linewidth=1, label="equal (1/n)")
        if np.max(np.abs(weights - 1.0 / n)) <= FLAT:
            ax.text(0.02, 0.97, f"every weight within ±{FLAT} of uniform (1/n = {1.0 / n:.4f}): a magnified axis",
                    transform=ax.transAxes, va="top", fontsize=8, color="dimgrey")
    if epochs.min() == 0:
        start = weights[np.argmin(epochs)]
        for i in range(n):
            ax.axhline(start[i], color=colours[i], linestyle=":", linewidth=0.8, alpha=0.6)
    ax.set_xlabel("epoch (0 = before training)")
    ax.set_ylabel("attention weight (batch mean)")
    ax.set_title(title)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, title="lowest to highest")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
