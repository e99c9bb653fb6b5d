"""Lesions: the test accuracy of a trained network with one backbone unit's output zeroed or re-initialised."""

import keras
import numpy as np

from lacnn_zoo.experiments.compare import BACKBONE_LAYER
from lacnn_zoo.training.inference import top1

# ---------------------------------------------------------------------------------------------------- lesions

@keras.saving.register_keras_serializable(package="lacnn_zoo_study")
class OutputGate(keras.layers.Layer):
    """Multiplies its input by a non-trainable scalar (1: pass, 0: the layer's output replaced by zeros)."""

    def build(self, input_shape):
        self.gate = self.add_weight(name="gate", shape=(), initializer="ones", trainable=False)

    def call(self, x):
        return x * keras.ops.cast(self.gate, x.dtype)


def backbone_units(model):
    """Names of the backbone's layers in depth order: plain layers, ResNet stem and blocks, a layer-attended
    network's tapped layers (top-level layers named stem / stage*_* that hold weights).

    Args:
        model: a functional `keras.Model` of the study.

    Returns:
        A list of layer names, in the model's layer order.
    """
    return [layer.name for layer in model.layers if BACKBONE_LAYER.match(layer.name) and layer.weights]


def gated_model(model, units):
    """A model sharing `model`'s layers (and weights) with an `OutputGate` after each of `units`.

    Built with `keras.models.clone_model(clone_function=identity, call_function=...)`, so it works for every
    functional model (plain, residual, layer-attended).  Returns (gated model, {unit: gate layer}).

    Args:
        model: a functional `keras.Model`.
        units: names of `model`'s layers to gate.

    Returns:
        `(gated, gates)`: the gated `keras.Model` and a dict `{unit: OutputGate}` (each gate at 1: no change).

    Raises:
        ValueError: a name of `units` is not a layer of `model`.
    """
    gates = {}

    def call_function(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        if layer.name in units:
            gates[layer.name] = OutputGate(name=f"{layer.name}_gate")
            out = gates[layer.name](out)
        return out

    gated = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call_function)
    missing = sorted(set(units) - set(gates))
    if missing:
        raise ValueError(f"`units` {missing} are not layers of {model.name!r}.")
    return gated, gates


def _accuracy(model, x, y, batch_size=500):
    """Top-1 accuracy; `predict_on_batch` (one traced function, no per-call data pipeline) in chunks."""
    return top1(lambda batch: keras.ops.convert_to_numpy(model.predict_on_batch(batch)), x, np.asarray(y).reshape(-1),
                batch_size=batch_size)


def lesion_accuracies(model, x, y, *, units=None, seed=0):
    """Test accuracy with each backbone layer lesioned in turn; the model is left as it was.

    Returns {"clean", "units", "zero": [...], "reinit": [...], "zero_branch": [...] or None}:
    zero: the unit's output replaced by zeros (an `OutputGate` at 0); reinit: its weights (BatchNormalization's
    statistics included) replaced by a fresh draw of its initialisers (`keras.models.clone_model` under `seed`);
    zero_branch (residual blocks only): the block's residual branch f(x) set to 0 (its last BatchNormalization's
    gamma and beta zeroed), the shortcut kept: Veit et al.'s (2016) lesion.

    Args:
        model: a trained functional `keras.Model`.
        x: test images, a NumPy array.
        y: their integer labels.
        units: names of the layers to lesion; None means `backbone_units(model)`.
        seed: the seed of the re-initialisation.

    Returns:
        A dict: "clean" (the accuracy without lesion), "units" (the names), and per unit, in that order, the
        accuracies "zero", "reinit" and "zero_branch" (None for a unit that is no residual block; the whole
        entry None when the model has no residual blocks, or pre-activation ones).
    """
    units = list(units or backbone_units(model))
    gated, gates = gated_model(model, units)
    result = {"clean": _accuracy(gated, x, y), "units": units, "zero": [], "reinit": []}
    for unit in units:
        gates[unit].gate.assign(0.0)
        result["zero"].append(_accuracy(gated, x, y))
        gates[unit].gate.assign(1.0)
    keras.utils.set_random_seed(seed)
    fresh = keras.models.clone_model(model)
    for unit in units:
        layer, saved = model.get_layer(unit), model.get_layer(unit).get_weights()
        layer.set_weights(fresh.get_layer(unit).get_weights())
        result["reinit"].append(_accuracy(gated, x, y))
        layer.set_weights(saved)
    blocks = [u for u in units if hasattr(model.get_layer(u), "bn2") and hasattr(model.get_layer(u), "mixing")]
    if blocks and not any(model.get_layer(u).preactivation for u in blocks):
        result["zero_branch"] = []
        for unit in units:
            layer = model.get_layer(unit)
            if unit not in blocks:
                result["zero_branch"].append(None)
                continue
            bn = layer.bn2
            saved = [bn.gamma.numpy(), bn.beta.numpy()]
            bn.gamma.assign(np.zeros_like(saved[0]))
            bn.beta.assign(np.zeros_like(saved[1]))
            result["zero_branch"].append(_accuracy(gated, x, y))
            bn.gamma.assign(saved[0])
            bn.beta.assign(saved[1])
    else:
        result["zero_branch"] = None
    return result


def mean_drop(lesion, kind):
    """Clean accuracy minus the lesioned one, averaged over the units that have that lesion (None if none).

    Args:
        lesion: a `lesion_accuracies` result.
        kind: the lesion, "zero", "reinit" or "zero_branch".

    Returns:
        The mean drop (float), or None when no unit has that lesion.
    """
    values = [v for v in (lesion.get(kind) or []) if v is not None]
    return float(lesion["clean"] - np.mean(values)) if values else None
