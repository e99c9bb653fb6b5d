"""BatchNormalization statistics from a batch: realistic inference-mode activations for untrained models."""

import keras


def calibrate_batchnorm(model, x):
    """Set every BatchNormalization's moving mean and variance to its statistics on the batch `x`.

    One forward pass in training mode with momentum 0, so each layer's moving
    statistics become exactly the batch statistics of its input.  Afterwards
    inference mode computes what training mode computed on `x`.  Useful before
    comparing runtimes on an untrained or freshly modified network, whose
    initial statistics (mean 0, variance 1) let activations grow with depth.
    Dropout is active during that pass but does not change any weight.
    """
    layers = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
              if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    try:
        for layer in layers:
            layer.momentum = 0.0
        model(x, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return model
