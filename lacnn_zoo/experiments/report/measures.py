"""What the report's figures show, computed: the confusion matrix, per-class precision and recall, the highest
losses, calibration (reliability bins and the expected calibration error), the learning rate of each epoch, and
the accuracy with each layer-attention tap zeroed."""

import math

import keras
import numpy as np

from lacnn_zoo.layers.augmented_conv import AugmentedConv2D
from lacnn_zoo.models.layer_attended import ATTENTION_LAYER
from lacnn_zoo.training.inference import image_scores
from lacnn_zoo.training.recipes import make_schedule


def confusion_matrix(labels, predicted, num_classes):
    """Counts [true class, predicted class] (rows sum to each class's test images)."""
    labels, predicted = np.asarray(labels, "int64"), np.asarray(predicted, "int64")
    return np.bincount(labels * num_classes + predicted, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def precision_recall(confusion):
    """Per class: precision (correct / predicted as the class) and recall (correct / of the class); NaN where
    nothing was predicted as, or nothing belongs to, the class."""
    correct = np.diag(confusion).astype("float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = correct / confusion.sum(axis=0)
        recall = correct / confusion.sum(axis=1)
    return precision, recall


def f1(precision, recall):
    """Per class: the harmonic mean of precision and recall; NaN where either is NaN, 0 where both are 0."""
    precision, recall = np.asarray(precision, "float64"), np.asarray(recall, "float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        score = 2 * precision * recall / (precision + recall)
    return np.where((precision == 0) & (recall == 0), 0.0, score)


def macro(values):
    """The unweighted mean over the classes that define the measure (NaN classes left out), NaN if none does."""
    values = np.asarray(values, "float64")
    return float(np.mean(values[~np.isnan(values)])) if np.any(~np.isnan(values)) else float("nan")


def most_confused(confusion, names, least=1):
    """fastai's `most_confused`: the off-diagonal cells of the confusion matrix with at least `least` images, as
    `(true name, predicted name, images)`, most images first (ties in class order)."""
    k = len(names)
    cells = [(names[i], names[j], int(confusion[i, j])) for i in range(k) for j in range(k)
             if i != j and confusion[i, j] >= least]
    return sorted(cells, key=lambda c: -c[2])


def row_normalised(confusion):
    """Each row divided by its class's images (the recall of each predicted class per true class); a class
    without test images gives a row of NaN."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return confusion / confusion.sum(axis=1, keepdims=True)


def nll_brier(log_p, labels):
    """The mean negative log-likelihood of the true class and the multi-class Brier score
    (mean over images of sum_k (p_k - [k = true])^2)."""
    _, losses, _, brier = image_scores(np.asarray(log_p), np.asarray(labels, "int64"))
    return float(np.mean(losses)), float(np.mean(brier))


def top_losses(log_p, labels, n):
    """Indices of the `n` examples with the highest cross-entropy -log p(true class), highest first."""
    return highest(-log_p[np.arange(len(labels)), labels], n)


def highest(losses, n):
    """Indices of the `n` highest `losses`, highest first (ties to the earlier example)."""
    return np.argsort(-np.asarray(losses), kind="stable")[:n]


def reliability(probabilities, labels, bins=10):
    """Reliability bins of the top-1 confidence and the expected calibration error (Guo et al. 2017).

    Bin m holds the confidences in ((m-1)/M, m/M] (the first bin also 0); ECE = sum_m |B_m|/N |acc(B_m) - conf(B_m)|.
    Returns {"edges", "counts", "confidence", "accuracy" (NaN for empty bins), "ece"}.
    """
    return reliability_of(probabilities.max(axis=-1), probabilities.argmax(axis=-1) == labels, bins)


def reliability_of(confidence, correct, bins=10):
    """`reliability` from each example's top-1 confidence and whether its prediction is right."""
    confidence, correct = np.asarray(confidence, "float64"), np.asarray(correct, bool)
    index = np.clip(np.ceil(confidence * bins).astype("int64") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / counts
        accuracy = np.bincount(index, weights=correct.astype("float64"), minlength=bins) / counts
    gaps = np.where(counts > 0, np.abs(accuracy - mean_confidence), 0.0)
    return {"edges": np.linspace(0, 1, bins + 1), "counts": counts, "confidence": mean_confidence,
            "accuracy": accuracy, "ece": float(np.sum(counts / counts.sum() * gaps))}


def learning_rates(config, steps_per_epoch, epochs, replicas=1):
    """The learning rate at the end of each epoch, from the recipe recorded in run.json (`make_schedule`, the
    schedule training compiled), times the replicas when the run scaled it."""
    schedule = make_schedule(config, epochs=config["epochs"], steps_per_epoch=steps_per_epoch)
    scale = replicas if config.get("scale_lr") else 1
    rates = []
    for epoch in range(epochs):
        step = (epoch + 1) * steps_per_epoch
        value = schedule(step) if callable(schedule) else schedule
        rates.append(scale * float(keras.ops.convert_to_numpy(value)))
    return rates


def steps_per_epoch(train_images, batch_size):
    return max(1, math.ceil(train_images / batch_size))


def head_and_taps(model):
    """`(taps, head)`: the model from images to the formed taps that enter the layer-attention mechanism, and
    the model from those taps to the outputs."""
    mechanism = model.get_layer(ATTENTION_LAYER)
    taps = list(mechanism.input) if isinstance(mechanism.input, (list, tuple)) else [mechanism.input]
    return keras.Model(model.inputs, taps), keras.Model(taps, model.outputs)


def tap_lesions(model, batches):
    """Top-1 accuracy with each tap zeroed as the head sees it (the mechanism receives zeros for that tap; the
    backbone and the other taps are untouched), beside the intact accuracy: which taps the classifier relies on.
    `batches` yields `(inputs, labels)`; one batch is held at a time.

    Returns {"intact": accuracy, "zeroed": [accuracy with tap i zeroed, ...]}.
    """
    taps_model, head = head_and_taps(model)
    correct, zeroed, images = 0, np.zeros(len(taps_model.outputs), "int64"), 0
    for x, y in batches:
        taps = taps_model.predict_on_batch(x)
        taps = [np.asarray(t) for t in (taps if isinstance(taps, (list, tuple)) else [taps])]
        y = np.asarray(y)

        correct += _right(head, taps, y)
        for i in range(len(taps)):
            zeroed[i] += _right(head, [np.zeros_like(t) if j == i else t for j, t in enumerate(taps)], y)
        images += len(y)
    return {"intact": correct / images, "zeroed": [int(z) / images for z in zeroed]}


def _right(head, taps, labels):
    return int(np.sum(np.asarray(head.predict_on_batch(taps)).argmax(axis=-1) == labels))


def array_batches(x, y, batch_size=256):
    """`(x, y)` in batches of `batch_size`, for `tap_lesions`."""
    for start in range(0, len(y), batch_size):
        yield x[start:start + batch_size], y[start:start + batch_size]


def augmented_layers(model):
    """One attention-augmented layer per stage: [(block name, block)], the first block of each stage whose
    first convolution is an AugmentedConv2D."""
    chosen = {}
    for layer in model.layers:
        if isinstance(getattr(layer, "conv1", None), AugmentedConv2D):
            chosen.setdefault(layer.name.split("_")[0], (layer.name, layer))
    return list(chosen.values())  # keyed by stage, reported by block name


def attention_maps(model, block, images, queries):
    """Per head, the attention weights of `queries` (pixels of the attention grid) in `block`'s augmented
    convolution, for `images`: (images, heads, queries, H, W)."""
    inputs = keras.Model(model.inputs, block.input).predict_on_batch(images)
    if block.preactivation:
        inputs = keras.ops.relu(block.bn1(inputs, training=False))
    return np.asarray(keras.ops.convert_to_numpy(block.conv1.attention_map(inputs, queries)))


def query_pixels(grid):
    """Three query pixels of an attention grid: its centre and the centres of two opposite quadrants."""
    height, width = grid
    return [(height // 2, width // 2), (height // 4, width // 4), (min(height - 1, 3 * height // 4),
                                                                  min(width - 1, 3 * width // 4))]
