"""Transfer learning: initialise a model from another run's weights, and the backbone to freeze under a new head."""

import keras

from lacnn_zoo.models.layer_attended import tap_names
from lacnn_zoo.models.saving import load_model
from lacnn_zoo.models.weight_files import keras_reason, mismatch, quietly
from lacnn_zoo.training.monitor import is_layer_attended


def backbone_layers(model):
    """The layers that compute the taps of a layer-attended model, or the last feature map of another classifier.

    Everything else (tap forms and transforms, the mechanism, pooling and the classifier) is the head.
    """
    if is_layer_attended(model):
        outputs = [model.get_layer(name).output for name in tap_names(model)]
    else:
        try:
            outputs = [model.get_layer("logits").input]
        except ValueError:
            raise ValueError(
                f"`freeze_backbone` needs a classifier with a 'logits' layer; {model.name!r} has none."
            ) from None
    trunk = keras.Model(model.inputs, outputs)
    return [layer for layer in trunk.layers if not isinstance(layer, keras.layers.InputLayer)]


def load_initial_weights(model, path):
    """Initialise `model` from a `.keras` file (by layer name and weight shapes) or a same-architecture `.weights.h5`.

    Returns the names of the layers loaded; raises ValueError when nothing matches.
    """
    if path.endswith(".weights.h5"):
        try:
            with quietly():  # Keras warns once per nested container of a misfit file before it raises
                model.load_weights(path)
        except Exception as e:  # Keras raises several types for an architecture mismatch
            why = mismatch(model, path) or keras_reason(e)
            raise ValueError(
                f"`init_weights` {path!r} does not fit {model.name!r} ({why}); a .weights.h5 file needs the same "
                "architecture. Use a .keras file to copy the layers that match by name."
            ) from None
        return [layer.name for layer in model.layers if layer.weights]

    source = {layer.name: layer for layer in load_model(path, compile=False).layers}
    loaded = []
    for layer in model.layers:
        other = source.get(layer.name)
        if not layer.weights or other is None:
            continue
        if [tuple(w.shape) for w in layer.weights] == [tuple(w.shape) for w in other.weights]:
            layer.set_weights(other.get_weights())
            loaded.append(layer.name)
    if not loaded:
        raise ValueError(
            f"`init_weights` {path!r} shares no layer (same name and weight shapes) with {model.name!r}."
        )
    return loaded
