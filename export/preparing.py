"""The model an export converts: loaded with the zoo's loader, in float32, ending in logits or probabilities,
with open height and width when asked, and traceable by the converters."""

import numpy as np

from export.formats import ExportError
from lacnn_zoo import load_model
from lacnn_zoo.compat import flatten_layers


def load_trained_model(path):
    """Load a `.keras` file with the zoo's loader (safe mode on, every zoo class registered).

    Args:
        path: the `.keras` file.

    Returns:
        The `keras.Model`, not compiled.

    Raises:
        ExportError: the loader's refusal (not a `.keras` archive, an unknown class, ...), with its message.
    """
    try:
        return load_model(path, compile=False)
    except ValueError as e:
        raise ExportError(str(e)) from e


def _with_output(model, output):
    """A model whose single output is the logits or the softmax probabilities."""
    import keras

    names = [layer.name for layer in model.layers]
    last = model.layers[-1]
    if output == "logits":
        if last.name == "logits":
            return model
        if "logits" in names:
            return keras.Model(model.inputs[0], model.get_layer("logits").output, name=model.name)
        raise ExportError(f"Model {model.name!r} has no layer named 'logits'; is it a classifier?")
    if last.name == "probabilities":
        return model
    if last.name == "logits":
        probs = keras.layers.Softmax(name="probabilities")(model.outputs[0])
        return keras.Model(model.inputs[0], probs, name=model.name)
    raise ExportError(f"Model {model.name!r} ends in {last.name!r}; cannot add probabilities.")


def _dynamic_size_copy(model):
    """The same model with height and width left open, weights copied; ExportError where the model needs them."""
    import keras

    config = model.get_config()
    input_layers = [layer for layer in config["layers"] if layer["class_name"] == "InputLayer"]
    if len(input_layers) != 1:
        raise ExportError("dynamic_size needs a model with exactly one input.")
    shape = input_layers[0]["config"]["batch_shape"]
    input_layers[0]["config"]["batch_shape"] = [shape[0], None, None, shape[-1]]
    height, width, channels = shape[1:]
    probe = np.zeros((1, 2 * height, width + 4, channels), "float32")
    try:
        dynamic = keras.Model.from_config(config)
        dynamic.set_weights(model.get_weights())
        dynamic(probe, training=False)  # layers sized from the input fail only when run at another size
    except Exception as e:
        raise ExportError(
            f"Model {model.name!r} cannot take a variable input size ({type(e).__name__}: {e}). Models with "
            "attention-augmented layers, resampled taps or flattening heads need their fixed size: export "
            "without dynamic_size."
        ) from e
    return dynamic


def _as_float32(model):
    """A model trained under a mixed dtype policy, rebuilt with every layer in float32 and its weights copied
    (the weights of a mixed-precision model are float32 already, so nothing is rounded)."""

    def retype(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy" and isinstance(node.get("config"), dict):
                return {**node, "config": {**node["config"], "name": "float32"}}
            return {k: retype(v) for k, v in node.items()}
        if isinstance(node, list):
            return [retype(v) for v in node]
        return "float32" if node in ("mixed_bfloat16", "mixed_float16", "bfloat16", "float16") else node

    mixed = {layer.dtype_policy.name for layer in flatten_layers(model, include_self=True)}
    if mixed <= {"float32"}:
        return model
    try:
        rebuilt = model.__class__.from_config(retype(model.get_config()))
        rebuilt.set_weights(model.get_weights())
    except Exception as e:
        raise ExportError(f"Could not rebuild {model.name!r} in float32 for export ({type(e).__name__}: {e}).") from e
    return rebuilt


def _constant_preprocessing(model):
    """Normalization layers (EfficientNet's, for one) hold their mean and variance as eager tensors, which
    tf2onnx turns into unfed graph inputs; as NumPy arrays they are traced as constants (same values)."""
    import keras

    for layer in flatten_layers(model):
        if isinstance(layer, keras.layers.Normalization) and layer.mean is not None:
            layer.mean = np.asarray(layer.mean)
            layer.variance = np.asarray(layer.variance)


def _disable_cudnn(model):
    """Keras bakes a cuDNN LSTM kernel into the traced graph when a GPU is visible; tf2onnx cannot convert it."""
    for layer in flatten_layers(model):
        if hasattr(layer, "use_cudnn"):
            layer.use_cudnn = False


def prepared_model(model, output, dynamic_size):
    """`(model, fixed input shape)`: in float32, ending in `output`, with open height and width if asked, and
    traceable by the converters."""
    model = _as_float32(model)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ExportError("Export handles single-input, single-output classifiers (include_top=True).")
    fixed_shape = tuple(model.inputs[0].shape[1:])
    model = _with_output(model, output)
    if dynamic_size:
        model = _dynamic_size_copy(model)
    _disable_cudnn(model)
    _constant_preprocessing(model)
    return model, fixed_shape
