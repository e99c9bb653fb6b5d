"""The plain sequential CNN of the layer-attended paper's Fig. 1."""

import math
import numbers

from keras import Model, layers

from lacnn_zoo.layers import ConvBNAct
from lacnn_zoo.models.heads import check_head_arguments, classifier_head, model_input
from lacnn_zoo.models.registry import check_model_size, register_model
from lacnn_zoo.validation import check_choice, check_input_shape, check_positive_int_sequence

DOWNSAMPLE_MODES = ("stride", "pool", None)


def stage_depths(depth, widths):
    """`depth` is layers per stage: one int for every stage, or one per stage."""
    if isinstance(depth, numbers.Integral) and not isinstance(depth, bool):
        depth = (depth,) * len(widths)
    depths = check_positive_int_sequence("depth", depth)
    if len(depths) != len(widths):
        raise ValueError(
            f"`depth` must be an int or have one entry per stage ({len(widths)} stages); received depth={depth!r}."
        )
    return depths


def plain_backbone_config(input_shape, widths, depth, downsample):
    """Validate the backbone knobs; returns (widths, depths)."""
    widths = check_positive_int_sequence("widths", widths)
    depths = stage_depths(depth, widths)
    check_choice("downsample", downsample, DOWNSAMPLE_MODES)
    min_size = 2 ** (len(widths) - 1) if downsample else 1
    check_input_shape(input_shape, min_size=min_size)
    return widths, depths


def plain_backbone_size(input_shape, widths, depths, downsample):
    """`(parameters, activations)` of `plain_backbone` on a `(height, width, channels)` input, from the knobs alone.

    `parameters` is exact (BatchNormalization's moving statistics included); `activations`
    estimates the values one image keeps for the backward pass: three maps (convolution,
    normalisation, activation) per layer.  Unknown (None) spatial sizes count as 1.
    """
    height, width, channels = (1 if s is None else s for s in input_shape)
    params = activations = 0
    for stage, (filters, n_layers) in enumerate(zip(widths, depths), start=1):  # closed form per stage: an
        if stage > 1 and downsample:  # absurd depth is refused at once, not walked layer by layer
            height, width = math.ceil(height / 2), math.ceil(width / 2)
        params += 9 * channels * filters + 4 * filters + (n_layers - 1) * (9 * filters * filters + 4 * filters)
        activations += 3 * height * width * filters * n_layers
        channels = filters
    return params, activations


def plain_backbone(x, widths, depths, downsample):
    """Stack ConvBNAct layers; returns the output of EVERY layer (the taps of Fig. 3).

    Stages after the first halve the spatial size, by a stride-2 first layer
    (`"stride"`) or a 2x2 max pooling before it (`"pool"`).  The stack's size is
    checked against the machine's memory before any layer is built.
    """
    params, activations = plain_backbone_size(tuple(x.shape[1:]), widths, depths, downsample)
    check_model_size(params, activations, knobs=dict(widths=widths, depth=depths))
    outputs = []
    for stage, (width, n_layers) in enumerate(zip(widths, depths), start=1):
        for index in range(1, n_layers + 1):
            first_of_later_stage = stage > 1 and index == 1
            strides = 2 if first_of_later_stage and downsample == "stride" else 1
            if first_of_later_stage and downsample == "pool":
                x = layers.MaxPooling2D(2, padding="same", name=f"stage{stage}_pool")(x)
            x = ConvBNAct(width, strides=strides, name=f"stage{stage}_layer{index}")(x)
            outputs.append(x)
    return outputs


def build_plain_cnn(
    *,
    input_shape,
    num_classes,
    include_top,
    pooling,
    classifier_activation,
    name,
    widths=(32, 64, 128),
    depth=2,
    downsample="stride",
):
    """Sequential Conv-BN-ReLU stages, global pooling, linear classifier.

    Knobs:
        widths: filters of each stage.
        depth: layers per stage (int, or one per stage).
        downsample: "stride", "pool" or None, between stages.
    """
    widths, depths = plain_backbone_config(input_shape, widths, depth, downsample)
    check_head_arguments(input_shape, include_top, pooling)
    inputs = model_input(input_shape)
    features = plain_backbone(inputs, widths, depths, downsample)[-1]
    outputs = classifier_head(
        features,
        num_classes=num_classes,
        include_top=include_top,
        pooling=pooling,
        classifier_activation=classifier_activation,
    )
    return Model(inputs, outputs, name=name)


_PAPER = "Bird 2022, Layer-Attended Convolutional Networks, Fig. 1"


@register_model(build_plain_cnn, family="plain", paper=_PAPER)
def plain_cnn():
    """Plain CNN: 3 stages x 2 Conv-BN-ReLU layers, 32/64/128 filters (the layer-attended backbone)."""
    return dict(widths=(32, 64, 128), depth=2)


@register_model(build_plain_cnn, family="plain", paper=_PAPER, default_input_shape=(8, 8, 1))
def plain_cnn_tiny():
    """Plain CNN: 3 stages x 2 layers, 16/32/64 filters (the lacnn_*_tiny backbone); trains in seconds on CPU."""
    return dict(widths=(16, 32, 64), depth=2)


@register_model(build_plain_cnn, family="plain", paper=_PAPER)
def plain_cnn_deep():
    """Plain CNN: 3 stages x 4 layers, 32/64/128 filters (deep enough for gradient dilution to show)."""
    return dict(widths=(32, 64, 128), depth=4)
