"""Backbones for layer attention and feature extraction: a model, a keras.applications name or a zoo name.

    model = resolve_backbone("ResNet50V2", input_shape=(64, 64, 3))  # keras.applications, weights=None
    extractor = feature_extractor("DenseNet121", "stages", input_shape=(64, 64, 3))
    extractor.feature_info  # [{"name": "conv1_relu", "channels": 64, "reduction": 2}, ...]

Which layers are tapped is decided by `lacnn_zoo.models.taps` from the graph alone.
"""

import keras
import numpy as np

from lacnn_zoo.compat import fresh_layer_names
from lacnn_zoo.errors import ZooError
from lacnn_zoo.models.registry import build_model, list_models, model_info
from lacnn_zoo.models.taps import feature_model


def application_names():
    """The constructors of `keras.applications` (`"ResNet50V2"`, `"EfficientNetB0"`, ...)."""
    return sorted(n for n in dir(keras.applications) if n[:1].isupper() and callable(getattr(keras.applications, n)))


def accepted_backbones():
    """Every backbone name `resolve_backbone` builds: keras.applications constructors and zoo models."""
    return set(application_names()) | set(list_models())


def input_convention(backbone, channels=3):
    """The inputs a `keras.applications` backbone's weights were trained on, or None for any other backbone.

    Read off the family's own `keras.applications.<family>.preprocess_input` (so it is Keras' convention, not
    a copy of its constants) and expressed in the zoo's preprocessing terms, on pixels scaled to [0, 1]:
    `x = (p[..., order] - mean) / std`, with `channel_order` "BGR" where the family reverses the channels
    (the "caffe" mode of ResNet50/101/152 and VGG). Returns a dict with `mean`, `std`, `channel_order` and
    `convention` (the function's name). With one input channel (grey images, only possible with
    `backbone_weights=None`) the channels' mean and std are averaged.

    Args:
        backbone: a `keras.applications` constructor name such as "ResNet50V2"; anything else gives None.
        channels: the images' channels: 3, or 1 to average the mean and std over the channels.

    Returns:
        A dict `{"mean", "std", "channel_order", "convention"}` (mean and std lists of floats, one per channel,
        on pixels in [0, 1]), or None when `backbone` is not a `keras.applications` name.

    Raises:
        ZooError: the family's `preprocess_input` is not a per-channel affine map, or reorders the channels
            other than as RGB or BGR.
    """
    if not isinstance(backbone, str) or backbone not in application_names():
        return None
    family = getattr(keras.applications, backbone).__module__.rsplit(".", 1)[-1]
    preprocess_input = getattr(keras.applications, family).preprocess_input
    probe = np.zeros((4, 1, 1, 3), "float32")
    for c in range(3):
        probe[c + 1, 0, 0, c] = 255.0
    out = np.asarray(keras.ops.convert_to_numpy(preprocess_input(probe.copy())), "float64")[:, 0, 0, :]
    offset, gains = out[0], out[1:] - out[0]  # gains[i, j]: output channel j's response to input channel i
    order = np.argmax(np.abs(gains), axis=0)  # the input channel that feeds each output channel
    slope = gains[order, np.arange(3)] / 255.0
    if sorted(order) != [0, 1, 2] or np.abs(gains).sum() - np.abs(gains[order, np.arange(3)]).sum() > 1e-6:
        raise ZooError(f"keras.applications.{family}.preprocess_input is not a per-channel affine map.")
    std = 1.0 / (255.0 * slope)
    mean = -offset * std + 0.0  # no -0.0
    convention = {"mean": mean.tolist(), "std": std.tolist(), "channel_order": "BGR" if list(order) == [2, 1, 0]
                  else "RGB", "convention": f"keras.applications.{family}.preprocess_input"}
    if list(order) not in ([0, 1, 2], [2, 1, 0]):
        raise ZooError(f"keras.applications.{family}.preprocess_input reorders channels as {list(order)}.")
    if channels == 1:
        convention.update(mean=[float(np.mean(mean))], std=[float(np.mean(std))], channel_order="RGB")
    return convention


def _backbone_help():
    return ("a functional keras.Model, a keras.applications constructor name such as 'ResNet50V2', "
            "'MobileNetV3Small', 'EfficientNetB0', 'DenseNet121' or 'ConvNeXtTiny', or a zoo model name "
            "from lacnn_zoo.list_models()")


def resolve_backbone(backbone, *, input_shape=None, weights=None):
    """A functional model without its classifier.

    Args:
        backbone: a functional `keras.Model` (used as it is), a `keras.applications`
            constructor name (built with `include_top=False, weights=weights`), or a
            zoo model name (built with `include_top=False, pooling=None`).
        input_shape: `(height, width, channels)`; None means the constructor's default
            (for `keras.applications` with `weights=None`: any height and width).  It
            must be None or match for a `keras.Model`.
        weights: `keras.applications` weights: None (random; nothing is downloaded),
            `"imagenet"` or a file path.  Zoo models accept only None.

    Preprocessing: ResNet*, MobileNet(V2), DenseNet and Xception applications take
    their own `keras.applications.<family>.preprocess_input` inputs (no preprocessing
    layer inside); EfficientNet, EfficientNetV2, MobileNetV3, RegNet and ConvNeXt
    include Rescaling/Normalization layers and take raw pixels in [0, 255].  With
    `weights=None` either kind trains from scratch on any consistently scaled input.
    """
    if isinstance(backbone, keras.Sequential):
        return _functional(backbone, input_shape)
    if isinstance(backbone, keras.Model):
        try:
            outputs = backbone.outputs
        except AttributeError:  # a subclassed model has no symbolic outputs
            outputs = None
        if not outputs:
            raise ValueError(f"`backbone` must be {_backbone_help()}; received a subclassed or unbuilt model.")
        if input_shape is not None and tuple(backbone.inputs[0].shape[1:]) != tuple(input_shape):
            raise ValueError(
                f"`input_shape` must be None or the backbone's own input shape {tuple(backbone.inputs[0].shape[1:])} "
                f"for a keras.Model backbone; received input_shape={tuple(input_shape)!r}."
            )
        if weights is not None:
            raise ValueError(f"`backbone_weights` must be None for a keras.Model backbone; received {weights!r}.")
        return backbone
    if isinstance(backbone, str) and backbone in application_names():
        kwargs = {} if input_shape is None else {"input_shape": tuple(input_shape)}
        try:
            with fresh_layer_names():  # the same automatic names (and so tap names) in every build
                return getattr(keras.applications, backbone)(include_top=False, weights=weights, **kwargs)
        except Exception as e:
            if not isinstance(e, ValueError) and "URL fetch failure" not in str(e):
                raise
            if "URL fetch failure" in str(e):  # keras.utils.get_file could not download: no network
                raise ZooError(
                    f"`backbone_weights`={weights!r}: keras.applications.{backbone} could not download its weights "
                    "(no network?). Pass a local weights file (e.g. one downloaded once into ~/.keras/models), or "
                    "backbone_weights=None to train from scratch."
                ) from None  # e.g. "Input size must be at least 32x32": say which argument to change
            raise ValueError(
                f"`input_shape` or `backbone_weights` does not suit keras.applications.{backbone} "
                f"(input_shape={input_shape!r}, backbone_weights={weights!r}): {e}"
            ) from e
    if isinstance(backbone, str) and backbone in list_models():
        if weights is not None:
            raise ValueError(
                f"`backbone_weights` must be None for a zoo backbone ({backbone!r}); load trained weights into "
                f"the built model instead; received backbone_weights={weights!r}."
            )

        return build_model(backbone, input_shape=input_shape or model_info(backbone).default_input_shape,
                           include_top=False, pooling=None)
    raise ValueError(f"`backbone` must be {_backbone_help()}; received backbone={backbone!r}.")


def own_input_shape(model):
    """The input shape a model was built with (a Sequential without an `Input` has none: None)."""
    try:
        return tuple(model.inputs[0].shape[1:])
    except (AttributeError, ValueError, TypeError, IndexError):
        return None


def _functional(sequential, input_shape):
    """A `keras.Sequential` as a functional model over the same layers (so its layers can be tapped).

    A Sequential built with an `Input` keeps its input shape; one without takes `input_shape`.
    """
    own = own_input_shape(sequential)
    if own is not None and input_shape is not None and tuple(input_shape) != own:
        raise ValueError(f"`input_shape` must be None or the Sequential backbone's own input shape {own}; received "
                         f"input_shape={tuple(input_shape)!r}.")
    shape = own or input_shape
    if shape is None:
        raise ValueError("`input_shape` is needed for a keras.Sequential backbone without an Input: pass "
                         "input_shape=(height, width, channels).")
    if not sequential.layers:
        raise ValueError("`backbone` is an empty keras.Sequential.")
    inputs = keras.Input(tuple(shape))
    x = inputs
    for layer in sequential.layers:
        x = layer(x)
    return keras.Model(inputs, x, name=sequential.name)


def feature_extractor(backbone, features="stages", *, input_shape=None, backbone_weights=None, name=None):
    """`feature_model` of any backbone: a model whose outputs are its feature maps (timm's `features_only`).

    Args:
        backbone: as `resolve_backbone`'s `backbone`.
        features: `"stages"`, `"blocks"`, a list of layer names or a callable (see `lacnn_zoo.models.taps`).
        input_shape: as `resolve_backbone`'s `input_shape`.
        backbone_weights: as `resolve_backbone`'s `weights`.
        name: the model's name (default `"<backbone name>_features"`).

    Returns:
        A functional `keras.Model` with one output per feature map, lowest first, and the
        attributes `feature_info` and `pyramid_outputs` (see `lacnn_zoo.models.taps.feature_model`).
    """
    return feature_model(resolve_backbone(backbone, input_shape=input_shape, weights=backbone_weights), features,
                         name=name)
