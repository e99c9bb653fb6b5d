"""Residual networks: CIFAR ResNets (He et al. 2015) and Wide-ResNets (Zagoruyko & Komodakis 2016).

Each takes the `mixing` knob of `ResidualBlock`: "add", "beta" (eq. 1 of the
layer-attended paper) or "projection" (the "useful layers" lecture).
"""

from keras import Model, layers

from lacnn_zoo.layers import ConvBNAct, ResidualBlock
from lacnn_zoo.layers.residual import MIXING_MODES
from lacnn_zoo.models.heads import check_head_arguments, classifier_head, model_input
from lacnn_zoo.registry import check_input_shape, register_model
from lacnn_zoo.validation import (
    check_choice,
    check_positive_int,
    check_positive_int_sequence,
    check_unit_interval,
)


def _blocks_per_stage(depth, offset, formula):
    check_positive_int("depth", depth)
    if depth < offset + 6 or (depth - offset) % 6:
        raise ValueError(f"`depth` must be {formula} (n >= 1); received depth={depth!r}.")
    return (depth - offset) // 6


def residual_stages(x, widths, blocks, *, mixing, beta_init, preactivation, dropout, first_conv=None):
    """Stages of residual blocks; returns every block's output (the last is the stage output).

    The first block of every later stage has stride 2.

    `first_conv(stage, filters, strides)` may return a layer config that
    replaces the block's first convolution (attention augmentation), or None.
    """
    outputs = []
    for stage, width in enumerate(widths, start=1):
        for index in range(1, blocks + 1):
            strides = 2 if stage > 1 and index == 1 else 1
            conv = first_conv(stage, width, strides) if first_conv else None
            x = ResidualBlock(
                width,
                strides=strides,
                mixing=mixing,
                beta_init=beta_init,
                preactivation=preactivation,
                dropout=dropout,
                first_conv=conv,
                name=f"stage{stage}_block{index}",
            )(x)
            outputs.append(x)
    return outputs


def _check_residual_knobs(input_shape, widths, mixing, beta_init, dropout):
    widths = check_positive_int_sequence("widths", widths)
    check_choice("mixing", mixing, MIXING_MODES)
    check_unit_interval("beta_init", beta_init)
    check_unit_interval("dropout", dropout, open_right=True)
    check_input_shape(input_shape, min_size=2 ** (len(widths) - 1))
    return widths


def build_resnet(
    *,
    input_shape,
    num_classes,
    include_top,
    pooling,
    classifier_activation,
    name,
    depth=20,
    widths=(16, 32, 64),
    mixing="add",
    beta_init=0.5,
    dropout=0.0,
    first_conv=None,
):
    """CIFAR ResNet: 3x3 stem, `len(widths)` stages of (depth - 2) / 6 basic blocks, pooling, classifier.

    Knobs:
        depth: 6n + 2 (20, 32, 56, 110, ...).
        widths: filters per stage (stem = widths[0]).
        mixing: "add", "beta" or "projection".
        beta_init: initial beta for mixing="beta", in [0, 1].
        dropout: dropout between the two convolutions of a block.
    """
    widths = _check_residual_knobs(input_shape, widths, mixing, beta_init, dropout)
    blocks = _blocks_per_stage(depth, 2, "6n + 2 (20, 32, 56, 110, ...)")
    check_head_arguments(input_shape, include_top, pooling)
    inputs = model_input(input_shape)
    x = ConvBNAct(widths[0], name="stem")(inputs)
    x = residual_stages(
        x, widths, blocks, mixing=mixing, beta_init=beta_init, preactivation=False, dropout=dropout,
        first_conv=first_conv,
    )[-1]
    outputs = classifier_head(
        x, num_classes=num_classes, include_top=include_top, pooling=pooling,
        classifier_activation=classifier_activation,
    )
    return Model(inputs, outputs, name=name)


def build_wide_resnet(
    *,
    input_shape,
    num_classes,
    include_top,
    pooling,
    classifier_activation,
    name,
    depth=28,
    width=10,
    mixing="add",
    beta_init=0.5,
    dropout=0.0,
    first_conv=None,
):
    """Wide-ResNet-depth-width: pre-activation blocks, stages of 16k/32k/64k filters.

    Knobs:
        depth: 6n + 4 (16, 22, 28, 40, ...).
        width: widening factor k.
        mixing, beta_init, dropout: as for `build_resnet`.
    """
    check_positive_int("width", width)
    widths = (16 * width, 32 * width, 64 * width)
    _check_residual_knobs(input_shape, widths, mixing, beta_init, dropout)
    blocks = _blocks_per_stage(depth, 4, "6n + 4 (16, 22, 28, 40, ...)")
    check_head_arguments(input_shape, include_top, pooling)
    inputs = model_input(input_shape)
    x = layers.Conv2D(16, 3, padding="same", use_bias=False, kernel_initializer="he_normal", name="stem")(inputs)
    x = residual_stages(
        x, widths, blocks, mixing=mixing, beta_init=beta_init, preactivation=True, dropout=dropout,
        first_conv=first_conv,
    )[-1]
    x = layers.BatchNormalization(name="final_bn")(x)
    x = layers.Activation("relu", name="final_relu")(x)
    outputs = classifier_head(
        x, num_classes=num_classes, include_top=include_top, pooling=pooling,
        classifier_activation=classifier_activation,
    )
    return Model(inputs, outputs, name=name)


_HE = "He et al. 2015, Deep Residual Learning for Image Recognition"
_WRN = "Zagoruyko & Komodakis 2016, Wide Residual Networks"


@register_model(build_resnet, family="resnet", paper=_HE, default_input_shape=(8, 8, 1))
def resnet8():
    """ResNet-8: 3 stages x 1 block, 16/32/64 filters; trains in seconds on CPU."""
    return dict(depth=8)


@register_model(build_resnet, family="resnet", paper=_HE + "; Bird 2022 eq. 1", default_input_shape=(8, 8, 1))
def resnet8_beta():
    """ResNet-8 with the paper's eq. 1 mixing, beta trainable per block from 0.5."""
    return dict(depth=8, mixing="beta", beta_init=0.5)


@register_model(build_resnet, family="resnet", paper=_HE + "; Sankaran 2018", default_input_shape=(8, 8, 1))
def resnet8_projection():
    """ResNet-8 with the lecture's projection mixing h = W1 f(h) + W2 h."""
    return dict(depth=8, mixing="projection")


@register_model(build_resnet, family="resnet", paper=_HE)
def resnet20():
    """ResNet-20 for CIFAR (3 x 3 blocks, 16/32/64 filters, 0.27M parameters)."""
    return dict(depth=20)


@register_model(build_resnet, family="resnet", paper=_HE)
def resnet32():
    """ResNet-32 for CIFAR (3 x 5 blocks, 16/32/64 filters, 0.46M parameters)."""
    return dict(depth=32)


@register_model(build_resnet, family="resnet", paper=_HE)
def resnet56():
    """ResNet-56 for CIFAR (3 x 9 blocks, 16/32/64 filters, 0.85M parameters)."""
    return dict(depth=56)


@register_model(build_resnet, family="resnet", paper=_HE)
def resnet110():
    """ResNet-110 for CIFAR (3 x 18 blocks, 16/32/64 filters, 1.7M parameters)."""
    return dict(depth=110)


@register_model(build_wide_resnet, family="wide_resnet", paper=_WRN, default_input_shape=(8, 8, 1))
def wrn10_2():
    """Wide-ResNet-10-2: 3 stages x 1 pre-activation block, 32/64/128 filters; trains on CPU."""
    return dict(depth=10, width=2)


@register_model(build_wide_resnet, family="wide_resnet", paper=_WRN)
def wrn28_10():
    """Wide-ResNet-28-10 (3 x 4 blocks, 160/320/640 filters, 36.5M parameters): the AA paper's baseline."""
    return dict(depth=28, width=10)
