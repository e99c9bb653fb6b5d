"""BatchNormalization statistics re-estimated from data: realistic inference-mode activations for untrained models,
and statistics of their own for weights that were never trained with any (the EMA's averaged weights)."""

import contextlib

import keras

from lacnn_zoo.compat import flatten_layers
from lacnn_zoo.options import check_bounded


def batchnorm_layers(model):
    """The model's BatchNormalization layers that training updates (nested models included; frozen ones left
    out: they run in inference mode and keep their statistics)."""
    return [layer for layer in flatten_layers(model)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]


def moving_statistics(layers):
    """NumPy copies of each layer's moving mean and variance, in order (what `set_moving_statistics` puts back)."""
    return [keras.ops.convert_to_numpy(v).copy() for layer in layers
            for v in (layer.moving_mean, layer.moving_variance)]


def set_moving_statistics(layers, values):
    """Assign `values` (from `moving_statistics`) to the layers' moving means and variances, bit for bit."""
    variables = [v for layer in layers for v in (layer.moving_mean, layer.moving_variance)]
    if len(variables) != len(values):
        raise ValueError(f"{len(values)} statistics for the {len(variables)} moving statistics of {len(layers)} "
                         "batch-norm layers.")
    for variable, value in zip(variables, values):
        variable.assign(value)


@contextlib.contextmanager
def _batch_statistics(layers):
    """Inside, each of `layers` normalises with its batch's statistics and folds them into its moving ones (its
    training mode), whatever mode the model is called in; the class's own `call` is back on exit."""
    for layer in layers:
        call = layer.call  # the bound method of the layer's class
        object.__setattr__(layer, "call", lambda inputs, *args, _call=call, training=None, **kwargs:
                           _call(inputs, *args, training=True, **kwargs))
    try:
        yield
    finally:
        for layer in layers:
            object.__delattr__(layer, "call")


class BatchStatistics:
    """The per-batch mean and (biased) variance of the input of each of `model`'s trainable batch-norm layers,
    as training mode computes them, with the rest of the model in inference mode: one forward pass per batch
    (`stateless_call`: the model's variables are left alone), compiled once when `compile` (keep the object
    then: repeated use pays off the tracing; a one-off runs eagerly).

    `statistics(x)` returns NumPy arrays, per layer (`batchnorm_layers` order) its mean then its variance.
    """

    def __init__(self, model, compile=False):
        self.model = model
        self.layers = batchnorm_layers(model)
        index = {id(v): i for i, v in enumerate(model.non_trainable_variables)}
        self._positions = [index[id(v)] for layer in self.layers for v in (layer.moving_mean, layer.moving_variance)]
        self._function = _compiled(self._statistics) if compile else self._statistics

    def _statistics(self, trainable, non_trainable, x):
        _, updated = self.model.stateless_call(trainable, non_trainable, x, training=False)
        return [updated[i] for i in self._positions]

    def __call__(self, x):
        trainable = [v.value for v in self.model.trainable_variables]
        non_trainable = [v.value for v in self.model.non_trainable_variables]
        for i in self._positions:  # zero moving statistics and momentum 0: the update is the batch's own, exactly
            non_trainable[i] = keras.ops.zeros(non_trainable[i].shape, non_trainable[i].dtype)
        momenta = [layer.momentum for layer in self.layers]
        try:
            for layer in self.layers:  # read when the function is traced (the first batch of each shape)
                layer.momentum = 0.0
            with _batch_statistics(self.layers):
                return [keras.ops.convert_to_numpy(v) for v in self._function(trainable, non_trainable, x)]
        finally:
            for layer, momentum in zip(self.layers, momenta):
                layer.momentum = momentum


def _compiled(function):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(function, reduce_retracing=True)
    if backend == "jax":
        import jax

        return jax.jit(function)
    return function


def calibrate_batchnorm(model, x, batch_size=None, statistics=None):
    """Set every BatchNormalization's moving mean and variance to the statistics of its inputs over `x`.

    `x` is cut into batches of `batch_size` (None: one batch). Each layer's moving statistics become the
    averages over the batches, weighted by their sizes, of its per-batch mean and (biased) variance: what the
    moving averages of training estimate, without their momentum's lag. The old statistics play no part (they
    are replaced, not updated with a momentum), and every batch counts in proportion to its images.

    Only the batch-norm layers run in training mode; the rest of the model runs in inference mode (dropout and
    every random layer off), so the statistics depend on the weights and `x` alone, and no random state is
    consumed (`BatchStatistics`; pass a compiled one as `statistics` to calibrate one model again and again).
    Afterwards inference mode on one batch computes what that forward pass computed. Frozen (non-trainable)
    batch-norm layers keep their statistics, as training keeps them. Useful before timing an untrained network
    (its initial statistics, mean 0 and variance 1, let activations grow with depth), and for weights that no
    forward pass produced statistics for (`lacnn_zoo.training.ema`). Returns `model`.

    Args:
        model: a `keras.Model`; its trainable BatchNormalization layers (nested models included) are calibrated.
        x: the input images, a NumPy array (anything with `len` and slicing).
        batch_size: images per forward pass; None passes all of `x` as one batch.
        statistics: a `BatchStatistics` of `model` to reuse (e.g. a compiled one); None makes an uncompiled one.

    Returns:
        `model`, its batch-norm layers' moving means and variances set in place.
    """
    statistics = statistics or BatchStatistics(model)
    n = len(x)
    size = n if batch_size is None else max(1, int(batch_size))
    totals = None
    for start in range(0, n, size):
        batch = x[start:start + size]
        values = [len(batch) * v.astype("float64") for v in statistics(batch)]
        totals = values if totals is None else [t + v for t, v in zip(totals, values)]
    if totals is not None:
        set_moving_statistics(statistics.layers, [(t / n).astype("float32") for t in totals])
    return model


def set_batchnorm_momentum(model, momentum):
    """Set the momentum of every BatchNormalization of `model` (frozen ones and nested models, a backbone,
    included); returns how many layers were set.

    Keras' convention: `moving = momentum * moving + (1 - momentum) * batch` (PyTorch's and timm's momentum 0.1 is
    Keras' 0.9). keras.applications backbones use 0.99 or 0.999, which leaves the moving statistics of a short
    run from scratch near their initial values; 0.9 follows the features faster. The momentum is part of each
    layer's config (the zoo's composite layers keep it as `bn_momentum` in theirs), so a saved model keeps it.
    """
    momentum = check_bounded("momentum", momentum, "bn_momentum", "--bn-momentum")
    every = flatten_layers(model)
    layers = [layer for layer in every if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.momentum = momentum
    for layer in every:  # the zoo's composite layers build their own BatchNormalization: their config keeps it
        if hasattr(layer, "bn_momentum"):
            layer.bn_momentum = momentum
    return len(layers)
