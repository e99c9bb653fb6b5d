"""Warnings for a run that learned nothing useful: one line each, with the likely cause and what to try.

    chance       the test (or best validation) accuracy is within reach of guessing (1 / classes)
    overfitting  the training accuracy far exceeds the best validation accuracy
    batchnorm    on the same training images, training mode (batch statistics) scores far above inference mode
                 (the moving statistics): batch normalization's statistics do not describe the features

`train` stores them in metrics.json (`"warnings"`: a list of `{"kind", "message"}`) and prints them at its end;
each trial of the search prints its own and keeps them in its executions.json; the report shows them at the top
of the page. The thresholds, and why, are `CHANCE_ALPHA`, `CHANCE_SHARE`, `OVERFIT_GAP` and `MODE_GAP`.
NumPy and `keras.ops`; nothing here changes a model.
"""

import math

import numpy as np

from lacnn_zoo.compat import flatten_layers
from lacnn_zoo.errors import spell

__all__ = ["CHANCE_ALPHA", "CHANCE_SHARE", "KINDS", "MODE_GAP", "MODE_SAMPLE", "OVERFIT_GAP", "batchnorm_layers",
    "chance_threshold", "check_chance", "check_mode_gap", "check_overfitting", "diagnose", "lines", "mode_accuracies",
    "run_warnings"]

# Chance: an accuracy is "at chance" when it is not above 1/classes by a one-sided exact binomial test at 1% on
# the split's size (it could be guessing), or when it recovers less than min(half of chance, a tenth of the way
# from chance to 1) above chance: on a large split a statistically significant 0.12 on ten classes is still a
# run that learned nothing, while 0.09 on a thousand classes (90x chance) is not flagged.
CHANCE_ALPHA = 0.01
CHANCE_SHARE = (0.5, 0.1)
# Overfitting: training accuracy 25 points above the best validation accuracy. Healthy runs of the zoo stay far
# below it (digits: under 5 points; CIFAR-100 under a paper's recipe: about 20); the validation accuracy of a
# split of 75 images has a standard error of at most 0.058, so 0.25 is more than 4 of them.
OVERFIT_GAP = 0.25
# Batch-norm statistics: training-mode accuracy 15 points above inference mode on MODE_SAMPLE training images.
# The standard error of the difference of the two accuracies on 512 images is at most 0.031 (0.15 is about 5 of
# them), and a healthy network loses a few points at most to the noise of batch statistics.
MODE_GAP = 0.15
MODE_SAMPLE = 512

KINDS = ("chance", "overfitting", "batchnorm")


def _critical_count(n, p, alpha):
    """The smallest k with P(X >= k) <= alpha for X ~ Binomial(n, p) (n + 1 when there is none)."""
    start = int(math.floor(n * p))  # the tail from below the mean is above any alpha < 1/2
    counts = np.arange(start, n + 1)
    lgamma = np.vectorize(math.lgamma)
    log_pmf = (math.lgamma(n + 1) - lgamma(counts + 1) - lgamma(n - counts + 1)
               + counts * math.log(p) + (n - counts) * math.log1p(-p))
    tails = np.cumsum(np.exp(log_pmf)[::-1])[::-1]  # tails[j] = P(X >= start + j)
    below = np.flatnonzero(tails <= alpha)
    return int(start + below[0]) if len(below) else n + 1


def chance_threshold(num_classes, n=None):
    """The accuracy at or above which a split of `n` images (None: unknown) is not at chance for `num_classes`.

    Args:
        num_classes: the number of classes (chance is `1 / num_classes`).
        n: the number of images the accuracy was measured on; None (or 0) for the practical margin alone.

    Returns:
        A float: the larger of the practical margin above chance (`CHANCE_SHARE`) and the exact binomial test's
            critical accuracy at `CHANCE_ALPHA` (the latter only when `n` images suffice for the test).
    """
    chance = 1.0 / num_classes
    practical = chance + min(CHANCE_SHARE[0] * chance, CHANCE_SHARE[1] * (1 - chance))
    if not n or num_classes < 2:
        return practical
    critical = _critical_count(n, chance, CHANCE_ALPHA)
    return max(practical, critical / n) if critical <= n else practical  # too few images to test: practical alone


def _flag(name, value):
    """`--name value` inside a command, `name=value` (the Python argument, a string quoted) outside."""
    shown = repr(value) if isinstance(value, str) else value
    return spell(f"{name.replace('-', '_')}={shown}", f"--{name} {value}")


def check_chance(num_classes, test=None, validation=None):
    """A chance warning, or None. `test` and `validation` are `(accuracy, images)` or None.

    Args:
        num_classes: the number of classes; fewer than 2 (or None) gives no warning.
        test: `(accuracy, images)` of the test split (`images` may be None), or None.
        validation: `(accuracy, images)` of the best validation epoch, or None.

    Returns:
        A dict `{"kind": "chance", "message"}` when an accuracy is below `chance_threshold`, else None.
    """
    if not num_classes or num_classes < 2:
        return None
    chance = 1.0 / num_classes
    at_chance = [(name, accuracy, n) for name, (accuracy, n) in (("test", test or (None, None)),
                                                                 ("best validation", validation or (None, None)))
                 if accuracy is not None and accuracy < chance_threshold(num_classes, n)]
    if not at_chance:
        return None
    shown = "; ".join(f"{name} accuracy {accuracy:.4f}" + (
        f" on {n} images (below {chance_threshold(num_classes, n):.4f} counts as chance)" if n else "")
        for name, accuracy, n in at_chance)
    return dict(kind="chance", message=(
        f"{shown}: within reach of chance (1/{num_classes} = {chance:.4f}), the model learned nothing it can use on "
        "new images. Likely causes: overfitting or batch-norm statistics (see the other warnings), or too few "
        f"epochs. Try augmentation ({_flag('augment', 'crop-flip')}), a smaller backbone, "
        f"{_flag('bn-momentum', 0.9)}, pretrained backbone weights from a file "
        f"({spell('backbone_weights=PATH', '--set backbone_weights=PATH')}), or more epochs."))


def check_overfitting(train_accuracy, val_accuracy, measured=""):
    """An overfitting warning, or None: a training accuracy (`measured` says how, e.g. " (inference mode, 512
    training images)") against the best validation one.

    Args:
        train_accuracy: the training accuracy, or None (no warning).
        val_accuracy: the best validation accuracy, or None (no warning).
        measured: text shown after the training accuracy in the message, saying how it was measured.

    Returns:
        A dict `{"kind": "overfitting", "message"}` when the gap exceeds `OVERFIT_GAP`, else None.
    """
    if train_accuracy is None or val_accuracy is None or train_accuracy - val_accuracy <= OVERFIT_GAP:
        return None
    return dict(kind="overfitting", message=(
        f"training accuracy {train_accuracy:.4f}{measured} is {train_accuracy - val_accuracy:.2f} above the best "
        f"validation accuracy {val_accuracy:.4f} (more than {OVERFIT_GAP}): the model memorises its training images "
        f"(overfitting). Try augmentation ({_flag('augment', 'crop-flip')} or randaugment, "
        f"{_flag('mixup', 0.2)}), a smaller backbone, more weight decay, pretrained backbone weights from a file, "
        "or more images."))


def check_mode_gap(modes):
    """A batch-norm warning, or None. `modes` is `mode_accuracies`' result (or None).

    Args:
        modes: `{"inference", "training", "images"}` as `mode_accuracies` returns it, or None (no warning).

    Returns:
        A dict `{"kind": "batchnorm", "message"}` when training mode scores more than `MODE_GAP` above
            inference mode, else None.
    """
    if not modes or modes["training"] - modes["inference"] <= MODE_GAP:
        return None
    return dict(kind="batchnorm", message=(
        f"on {modes['images']} training images the model scores {modes['training']:.4f} in training mode (batch "
        f"statistics) but {modes['inference']:.4f} in inference mode (its moving statistics): batch "
        "normalization's moving averages do not describe the features it learned. Likely cause: a momentum too "
        "slow for this run's number of steps (keras.applications backbones use 0.99 or 0.999). Try "
        f"{_flag('bn-momentum', 0.9)}, more epochs, or pretrained backbone weights from a file."))


def batchnorm_layers(model):
    """Every BatchNormalization layer of `model`, nested models included.

    Args:
        model: a Keras model.

    Returns:
        A list of the `keras.layers.BatchNormalization` layers (trainable or not), depth first.
    """
    import keras

    return [layer for layer in flatten_layers(model)
            if isinstance(layer, keras.layers.BatchNormalization)]


def mode_accuracies(model, x, y, batch_size=64):
    """Top-1 accuracy of `model` on `(x, y)` in inference mode and in training mode (batch statistics, dropout on),
    in batches of `batch_size`: `{"inference", "training", "images"}`, or None when the model has no trainable
    BatchNormalization (a frozen one runs in inference mode either way). The training-mode pass is
    `stateless_call`: the model's moving statistics (and every other variable) are left as they were.

    Args:
        model: a Keras classifier (one score per class on its last axis).
        x: input images, an array (sliced in batches).
        y: integer labels, one per image.
        batch_size: images per batch; a last batch of a single image is skipped (batch statistics of one image
            are meaningless).

    Returns:
        A dict `{"inference": float, "training": float, "images": int}` (the two accuracies and the number of
            images scored), or None when the model has no trainable BatchNormalization or no image was scored.
    """
    import keras

    if not any(layer.trainable for layer in batchnorm_layers(model)) or not len(y):
        return None
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    hits, count = {"inference": 0, "training": 0}, 0
    for start in range(0, len(y), batch_size):
        xb, yb = x[start:start + batch_size], np.asarray(y[start:start + batch_size]).reshape(-1)
        if len(yb) < 2:  # batch statistics of one image are meaningless
            break
        inference = model(xb, training=False)
        training, _ = model.stateless_call(trainable, non_trainable, xb, training=True)
        for name, out in (("inference", inference), ("training", training)):
            hits[name] += int(np.sum(np.argmax(keras.ops.convert_to_numpy(out), axis=-1) == yb))
        count += len(yb)
    if not count:
        return None
    return {"inference": hits["inference"] / count, "training": hits["training"] / count, "images": count}


def diagnose(num_classes, *, test=None, validation=None, train_accuracy=None, modes=None):
    """Every warning that applies, as a list of `{"kind", "message"}` (chance first).

    `train_accuracy` is the last epoch's (history.csv); with `modes`, the overfitting check compares the
    inference-mode accuracy on the training sample instead, the mode validation runs in, so that stale batch-norm
    statistics (their own warning) are not taken for memorisation.

    Args:
        num_classes: the number of classes.
        test: `(accuracy, images)` of the test split, or None.
        validation: `(accuracy, images)` of the best validation epoch, or None.
        train_accuracy: the last epoch's training accuracy, or None.
        modes: `mode_accuracies`' result on training images, or None.

    Returns:
        A list of warning dicts `{"kind", "message"}` (chance, overfitting, batchnorm, in that order); empty
            when none applies.
    """
    val = (validation or (None,))[0]
    overfit = (check_overfitting(modes["inference"], val, f" (inference mode, {modes['images']} training images)")
               if modes else check_overfitting(train_accuracy, val))
    found = [check_chance(num_classes, test=test, validation=validation), overfit, check_mode_gap(modes)]
    return [w for w in found if w is not None]


def run_warnings(model, data, *, train_accuracy, val_accuracy, test_accuracy=None, batch_size=64):
    """The warnings of a trained `model` on `data` (`DataSplits`): the split sizes from `data`, the training
    sample of the batch-norm check its first `MODE_SAMPLE` training images.

    Args:
        model: the trained Keras model (its best checkpoint).
        data: the run's `DataSplits`.
        train_accuracy: the last epoch's training accuracy, or None.
        val_accuracy: the best validation accuracy, or None.
        test_accuracy: the test accuracy, or None.
        batch_size: batch size of the batch-norm check (`mode_accuracies`).

    Returns:
        A list of warning dicts `{"kind", "message"}`, as `diagnose` returns it.
    """
    x, y = data.sample(MODE_SAMPLE, split="train")
    y = np.asarray(y)
    if y.ndim > 1:  # one-hot labels
        y = y.argmax(axis=-1)
    return diagnose(
        data.num_classes,
        test=None if test_accuracy is None else (test_accuracy, data.size("test")),
        validation=None if val_accuracy is None else (val_accuracy, data.size("validation")),
        train_accuracy=train_accuracy,
        modes=mode_accuracies(model, x, y, batch_size=batch_size),
    )


def lines(warnings, prefix="Warning"):
    """Each warning as the line printed: `Warning (kind): message`.

    Args:
        warnings: warning dicts `{"kind", "message"}`, or None.
        prefix: the word before `(kind)`.

    Returns:
        A list of strings, one per warning (empty for None or no warnings).
    """
    return [f"{prefix} ({w.get('kind')}): {w.get('message')}" for w in warnings or ()]
