"""Residual networks: CIFAR ResNets (He et al. 2015) and Wide-ResNets (Zagoruyko & Komodakis 2016).

One generic builder, `residual_network`, makes every residual model; `build_resnet`
and `build_wide_resnet` only translate their knobs (depth 6n + 2 or 6n + 4, widths or
a widening factor), as keras.applications' presets do over `ResNet`.
Each takes the `mixing` knob of `ResidualBlock`: "add", "beta" (eq. 1 of the
layer-attended paper) or "projection" (the "useful layers" lecture).
"""

import math

from keras import Model, layers

from lacnn_zoo.layers import ConvBNAct, ResidualBlock
from lacnn_zoo.layers.augmented_conv import attention_grid, attention_training_values, resolve_depth
from lacnn_zoo.layers.residual import MIXING_MODES
from lacnn_zoo.models.heads import check_head_arguments, classifier_head, model_input
from lacnn_zoo.models.registry import TRAINING_BYTES_PER_PARAMETER, check_model_size, model_info, register_model
from lacnn_zoo.validation import (
    check_choice,
    check_input_shape,
    check_positive_int,
    check_positive_int_sequence,
    check_unit_interval,
)

__all__ = ["ATTENTION_KNOBS", "build_resnet", "build_wide_resnet", "inert_residual_knobs", "residual_network",
    "residual_stages", "residual_stages_size", "training_memory_estimate"]


def _blocks_per_stage(depth, offset, formula):
    check_positive_int("depth", depth)
    if depth < offset + 6 or (depth - offset) % 6:
        raise ValueError(f"`depth` must be {formula} (n >= 1); received depth={depth!r}.")
    return (depth - offset) // 6


def residual_stages_size(input_shape, widths, blocks, *, mixing, preactivation, attention=None, augment_stages=()):
    """`(parameters, activations)` of `residual_stages` on a `(height, width, channels)` input, from the knobs alone.

    `parameters` is exact (BatchNormalization's moving statistics included, as in
    `Model.count_params`).  `activations` estimates the values one image keeps
    for the backward pass at its peak: seven maps of each block's output size,
    plus what each augmented block's attention keeps (`attention_training_values`:
    three (heads, HW, HW) tensors unblocked, the relative tables when its query
    blocks are rematerialised), plus the largest single block's working set.
    Unknown (None) spatial sizes count as 1.

    Args:
        input_shape: `(height, width, channels)` of the stages' input.
        widths: filters per stage.
        blocks: residual blocks per stage.
        mixing: the `ResidualBlock` mixing ("beta" adds one parameter per block, "projection" a filters x filters
            matrix).
        preactivation: pre-activation blocks (Wide-ResNet ordering).
        attention: the `AugmentedConv2D` settings (the keyword arguments `residual_stages` takes), or None.
        augment_stages: stages (1-based) whose blocks' first convolution is an `AugmentedConv2D`.

    Returns:
        `(parameters, activations)`: the parameter count and the per-image activation values, two ints.
    """
    def block(stage, channels, filters, height, width, strides):
        """(parameters, activations kept, transient working set) of one block."""
        params = kept = working = 0
        if attention is not None and stage in augment_stages:
            heads = attention["heads"]
            dk = resolve_depth("dk", attention["dk"], filters, heads, attention["min_key_dims_per_head"])
            dv = resolve_depth("dv", attention["dv"], filters, heads)
            grid = attention_grid(height, width, 1, attention.get("attention_downsample", 1))
            relative = (2 * grid[0] - 1 + 2 * grid[1] - 1) * (dk // heads) if attention["relative"] else 0
            params += 9 * channels * (filters - dv) + (channels + 1) * (2 * dk + dv) + (dv + 1) * dv + relative
            kept, working = attention_training_values(
                *grid, heads, dk, dv, attention.get("query_chunk", "auto"), attention.get("rematerialize", True))
        else:
            params += 9 * channels * filters
        params += 9 * filters * filters + 4 * (channels if preactivation else filters) + 4 * filters
        if strides != 1 or channels != filters:  # shortcut projection (+ BN unless pre-activation)
            params += channels * filters + (0 if preactivation else 4 * filters)
        params += {"beta": 1, "projection": filters * filters}.get(mixing, 0)
        return params, kept + 7 * height * width * filters, working

    height, width, channels = (1 if s is None else s for s in input_shape)
    params = activations = transient = 0
    for stage, filters in enumerate(widths, start=1):
        # The first block of a stage may stride and project; the other blocks - 1 are alike, so the sum is in
        # closed form and an absurd depth is refused at once rather than walked block by block.
        strides = 2 if stage > 1 else 1
        height, width = math.ceil(height / strides), math.ceil(width / strides)
        first = block(stage, channels, filters, height, width, strides)
        rest = block(stage, filters, filters, height, width, 1) if blocks > 1 else (0, 0, 0)
        params += first[0] + (blocks - 1) * rest[0]
        activations += first[1] + (blocks - 1) * rest[1]
        transient = max(transient, first[2], rest[2])
        channels = filters
    return params, activations + transient


def training_memory_estimate(name, *, input_shape=None, batch_size=128, num_classes=10, **overrides):
    """Predicted peak bytes of one float32 training step (Adam) of a registered residual model, from its knobs.

    weights: `TRAINING_BYTES_PER_PARAMETER` bytes per parameter (weights, gradients, two Adam moments);
    activations: 4 bytes x `batch_size` x the per-image values of `residual_stages_size` (a model estimate:
    compare with `lacnn-zoo bench NAME --memory` where the batch fits).

    Args:
        name: a registered model of the resnet, wide_resnet or aa_resnet families.
        input_shape: `(height, width, channels)`; None means the model's `default_input_shape`.
        batch_size: images per training step.
        num_classes: classifier width.
        **overrides: the model's knobs, as `build_model` takes them.

    Returns:
        {"params", "batch_size", "input_shape", "weights_bytes", "activation_bytes", "total_bytes",
        "total_gib"}.

    Raises:
        ValueError: `name` is not a model of a residual family.
    """
    info = model_info(name)
    if info.builder not in (build_resnet, build_wide_resnet):
        raise ValueError(f"training_memory_estimate covers the resnet, wide_resnet and aa_resnet families; "
                         f"{name!r} is in {info.family!r}.")
    knobs = {**info.knobs, **overrides}
    input_shape = tuple(input_shape or info.default_input_shape)
    preactivation = "width" in knobs
    widths = tuple(w * knobs["width"] for w in (16, 32, 64)) if preactivation else tuple(knobs["widths"])
    blocks = (knobs["depth"] - (4 if preactivation else 2)) // 6
    attention = _attention(*(knobs[k] for k in ("heads", "dk", "dv", "relative", "min_key_dims_per_head",
                                                "query_chunk", "rematerialize", "attention_downsample",
                                                "image_loop")))
    _, activations = residual_stages_size(
        (*input_shape[:2], 16 if preactivation else widths[0]), widths, blocks, mixing=knobs["mixing"],
        preactivation=preactivation, attention=attention, augment_stages=tuple(knobs["augment_stages"]),
    )
    params = info.num_params(input_shape=input_shape, num_classes=num_classes, **overrides)
    weights = TRAINING_BYTES_PER_PARAMETER * params
    activation_bytes = 4 * batch_size * activations
    total = weights + activation_bytes
    return {"params": params, "batch_size": batch_size, "input_shape": list(input_shape), "weights_bytes": weights,
            "activation_bytes": activation_bytes, "total_bytes": total, "total_gib": round(total / 2**30, 2)}


def residual_stages(x, widths, blocks, *, mixing, beta_init, preactivation, dropout, attention=None,
                    augment_stages=(), size_knobs=None):
    """Stages of residual blocks; returns every block's output (the last is the stage output).

    The first block of every later stage has stride 2.  In the stages listed in
    `augment_stages` (1-based) the first convolution of every block is an
    `AugmentedConv2D` with the `attention` arguments.  Before building, the
    stages' size is checked against the machine's memory (`check_model_size`);
    `size_knobs` names the knobs that set it in the error (default: widths, blocks).

    Args:
        x: the stages' input, a symbolic tensor `(batch, height, width, channels)`.
        widths: filters per stage.
        blocks: residual blocks per stage.
        mixing: the `ResidualBlock` mixing rule ("add", "beta" or "projection").
        beta_init: the `ResidualBlock` beta at initialisation (mixing="beta").
        preactivation: pre-activation blocks (Wide-ResNet ordering).
        dropout: the `ResidualBlock` dropout rate.
        attention: the `AugmentedConv2D` keyword arguments of the augmented stages, or None.
        augment_stages: stages (1-based) whose blocks' first convolution is an `AugmentedConv2D`.
        size_knobs: `{knob: value}` the memory check's error names; None names widths and blocks.

    Returns:
        A list of every block's output tensor, in order (the last is the last stage's output).

    Raises:
        ValueError: the stages' training step would not fit in the machine's memory (`check_model_size`).
    """
    params, activations = residual_stages_size(
        tuple(x.shape[1:]), widths, blocks, mixing=mixing, preactivation=preactivation, attention=attention,
        augment_stages=augment_stages,
    )
    check_model_size(params, activations, knobs=size_knobs or dict(widths=widths, blocks=blocks))
    outputs = []
    for stage, width in enumerate(widths, start=1):
        for index in range(1, blocks + 1):
            strides = 2 if stage > 1 and index == 1 else 1
            x = ResidualBlock(
                width,
                strides=strides,
                mixing=mixing,
                beta_init=beta_init,
                preactivation=preactivation,
                dropout=dropout,
                attention=attention if stage in augment_stages else None,
                name=f"stage{stage}_block{index}",
            )(x)
            outputs.append(x)
    return outputs


def _check_augment_stages(augment_stages, num_stages):
    stages = tuple(range(1, num_stages + 1))
    if isinstance(augment_stages, (str, bytes)) or not hasattr(augment_stages, "__iter__") or any(
        s not in stages for s in augment_stages
    ):
        raise ValueError(
            f"`augment_stages` must list stage numbers from {stages} (e.g. (3,) for the last, smallest stage); "
            f"received augment_stages={augment_stages!r}."
        )
    return tuple(sorted(set(augment_stages)))


def _attention(heads, dk, dv, relative, min_key_dims_per_head, query_chunk="auto", rematerialize=True,
               attention_downsample=1, image_loop=False):
    return dict(heads=heads, dk=dk, dv=dv, relative=relative, min_key_dims_per_head=min_key_dims_per_head,
                query_chunk=query_chunk, rematerialize=rematerialize, attention_downsample=attention_downsample,
                image_loop=image_loop)


def residual_network(
    *,
    input_shape,
    num_classes,
    include_top,
    pooling,
    classifier_activation,
    name,
    stem_width,
    widths,
    blocks,
    preactivation,
    mixing,
    beta_init,
    dropout,
    augment_stages,
    attention,
    size_knobs,
):
    """The one residual builder behind every ResNet, Wide-ResNet and AA preset (keras.applications' `ResNet`).

    Stem: a 3x3 convolution of `stem_width` filters (with BN-ReLU unless `preactivation`); then
    `len(widths)` stages of `blocks` `ResidualBlock`s; pre-activation networks end with BN-ReLU,
    since their blocks end on the mixing; then the classifier head.

    Args:
        input_shape: `(height, width, channels)`, as `build_model` resolves it.
        num_classes: classifier width (with `include_top=True`).
        include_top: add the classifier; with False the model returns the (pooled) features.
        pooling: `"avg"`, `"max"` or None, as `build_model`.
        classifier_activation: None (logits) or the classifier's activation, e.g. `"softmax"`.
        name: the model's name.
        stem_width: filters of the stem convolution.
        widths: filters per stage (validated positive ints).
        blocks: residual blocks per stage.
        preactivation: Wide-ResNet block ordering, bare-convolution stem and final BN-ReLU.
        mixing: the `ResidualBlock` mixing rule.
        beta_init: the `ResidualBlock` beta at initialisation (mixing="beta").
        dropout: the `ResidualBlock` dropout rate.
        augment_stages: stages (1-based) whose blocks' first convolution is an `AugmentedConv2D`.
        attention: that layer's keyword arguments.
        size_knobs: the knobs that set the size, named by the memory check's error.

    Returns:
        A functional `keras.Model` named `name`.
    """
    check_choice("mixing", mixing, MIXING_MODES)
    check_unit_interval("beta_init", beta_init)
    check_unit_interval("dropout", dropout, open_right=True)
    augment_stages = _check_augment_stages(augment_stages, len(widths))
    check_input_shape(input_shape, min_size=2 ** (len(widths) - 1), allow_dynamic=not augment_stages)
    check_head_arguments(input_shape, include_top, pooling)
    inputs = model_input(input_shape)
    if preactivation:
        x = layers.Conv2D(stem_width, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                          name="stem")(inputs)
    else:
        x = ConvBNAct(stem_width, name="stem")(inputs)
    x = residual_stages(
        x, widths, blocks, mixing=mixing, beta_init=beta_init, preactivation=preactivation, dropout=dropout,
        attention=attention, augment_stages=augment_stages, size_knobs=size_knobs,
    )[-1]
    if preactivation:
        x = layers.BatchNormalization(name="final_bn")(x)
        x = layers.Activation("relu", name="final_relu")(x)
    outputs = classifier_head(
        x, num_classes=num_classes, include_top=include_top, pooling=pooling,
        classifier_activation=classifier_activation,
    )
    return Model(inputs, outputs, name=name)


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
    augment_stages=(),
    heads=8,
    dk=0.2,
    dv=0.1,
    relative=True,
    min_key_dims_per_head=1,
    query_chunk="auto",
    rematerialize=True,
    attention_downsample=1,
    image_loop=False,
):
    """CIFAR ResNet: 3x3 stem, `len(widths)` stages of (depth - 2) / 6 basic blocks, pooling, classifier.

    Args:
        input_shape: `(height, width, channels)`, as `build_model` resolves it.
        num_classes: classifier width (with `include_top=True`).
        include_top: add the classifier; with False the model returns the (pooled) features.
        pooling: `"avg"`, `"max"` or None, as `build_model`.
        classifier_activation: None (logits) or the classifier's activation, e.g. `"softmax"`.
        name: the model's name.
        depth: 6n + 2 (20, 32, 56, 110, ...).
        widths: filters per stage (stem = widths[0]).
        mixing: "add", "beta" or "projection".
        beta_init: initial beta for mixing="beta", in [0, 1].
        dropout: dropout between the two convolutions of a block.
        augment_stages: stages (1-based) whose blocks get an attention-augmented first
            convolution (Bello et al. 2019); () for none.
        heads: `AugmentedConv2D` heads (paper: 8).
        dk: `AugmentedConv2D` total key depth, an int or a ratio of the block's filters (paper: 0.2).
        dv: `AugmentedConv2D` total value depth, an int or a ratio of the block's filters (paper: 0.1).
        relative: add `AugmentedConv2D`'s 2-D relative position logits (paper: True).
        min_key_dims_per_head: floor for dk / heads when `dk` is a ratio.
        query_chunk: query pixels per block of `AugmentedConv2D`'s attention; "auto" picks it from the memory
            budget, None attends all queries at once (the values do not change).
        rematerialize: recompute each query block's logits in the backward pass instead of storing them.
        attention_downsample: 1, or 2 to attend over a 3x3/stride-2 pooled grid and upsample (a change of the
            model).
        image_loop: attend one image at a time (same values; faster on a CPU, see `AugmentedConv2D`).

    Returns:
        A functional `keras.Model` named `name`.

    Raises:
        ValueError: a knob is refused (e.g. a depth that is not 6n + 2), or the model is too large to train on
            this machine.
    """
    widths = check_positive_int_sequence("widths", widths)
    return residual_network(
        stem_width=widths[0], widths=widths, blocks=_blocks_per_stage(depth, 2, "6n + 2 (20, 32, 56, 110, ...)"),
        preactivation=False, input_shape=input_shape, num_classes=num_classes, include_top=include_top,
        pooling=pooling, classifier_activation=classifier_activation, name=name, mixing=mixing,
        beta_init=beta_init, dropout=dropout, augment_stages=augment_stages,
        attention=_attention(heads, dk, dv, relative, min_key_dims_per_head, query_chunk, rematerialize,
                             attention_downsample, image_loop),
        size_knobs=dict(depth=depth, widths=widths),
    )


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
    augment_stages=(),
    heads=8,
    dk=0.2,
    dv=0.1,
    relative=True,
    min_key_dims_per_head=1,
    query_chunk="auto",
    rematerialize=True,
    attention_downsample=1,
    image_loop=False,
):
    """Wide-ResNet-depth-width: 16-filter stem, pre-activation blocks, stages of 16k/32k/64k filters.

    Args:
        input_shape: `(height, width, channels)`, as `build_model` resolves it.
        num_classes: classifier width (with `include_top=True`).
        include_top: add the classifier; with False the model returns the (pooled) features.
        pooling: `"avg"`, `"max"` or None, as `build_model`.
        classifier_activation: None (logits) or the classifier's activation, e.g. `"softmax"`.
        name: the model's name.
        depth: 6n + 4 (16, 22, 28, 40, ...).
        width: widening factor k.
        mixing: "add", "beta" or "projection".
        beta_init: initial beta for mixing="beta", in [0, 1].
        dropout: dropout between the two convolutions of a block.
        augment_stages: stages (1-based) whose blocks get an attention-augmented first
            convolution (Bello et al. 2019); () for none.
        heads: `AugmentedConv2D` heads (paper: 8).
        dk: `AugmentedConv2D` total key depth, an int or a ratio of the block's filters (paper: 0.2).
        dv: `AugmentedConv2D` total value depth, an int or a ratio of the block's filters (paper: 0.1).
        relative: add `AugmentedConv2D`'s 2-D relative position logits (paper: True).
        min_key_dims_per_head: floor for dk / heads when `dk` is a ratio.
        query_chunk: query pixels per block of `AugmentedConv2D`'s attention; "auto" picks it from the memory
            budget, None attends all queries at once (the values do not change).
        rematerialize: recompute each query block's logits in the backward pass instead of storing them.
        attention_downsample: 1, or 2 to attend over a 3x3/stride-2 pooled grid and upsample (a change of the
            model).
        image_loop: attend one image at a time (same values; faster on a CPU, see `AugmentedConv2D`).

    Returns:
        A functional `keras.Model` named `name`.

    Raises:
        ValueError: a knob is refused (e.g. a depth that is not 6n + 4), or the model is too large to train on
            this machine.
    """
    check_positive_int("width", width)
    return residual_network(
        stem_width=16, widths=(16 * width, 32 * width, 64 * width),
        blocks=_blocks_per_stage(depth, 4, "6n + 4 (16, 22, 28, 40, ...)"), preactivation=True,
        input_shape=input_shape, num_classes=num_classes, include_top=include_top, pooling=pooling,
        classifier_activation=classifier_activation, name=name, mixing=mixing, beta_init=beta_init,
        dropout=dropout, augment_stages=augment_stages,
        attention=_attention(heads, dk, dv, relative, min_key_dims_per_head, query_chunk, rematerialize,
                             attention_downsample, image_loop),
        size_knobs=dict(depth=depth, width=width),
    )


# The `AugmentedConv2D` settings: they shape only the blocks of `augment_stages`.
ATTENTION_KNOBS = ("heads", "dk", "dv", "relative", "min_key_dims_per_head", "query_chunk", "rematerialize",
                   "attention_downsample", "image_loop")


def inert_residual_knobs(knobs):
    """`{knob: why}`: the knobs of a residual builder that its other knobs leave without effect.

    Args:
        knobs: a residual model's knobs, `{knob: value}`.

    Returns:
        A dict `{knob: why}`: `beta_init` unless mixing="beta", and the `ATTENTION_KNOBS` when `augment_stages`
        is empty.
    """
    inert = {}
    if knobs.get("mixing") != "beta":
        inert["beta_init"] = f"it is the initial beta of mixing='beta', and mixing={knobs.get('mixing')!r}"
    if not knobs.get("augment_stages"):
        inert.update(dict.fromkeys(ATTENTION_KNOBS, "it sets the attention-augmented convolutions, and "
                                                    "augment_stages=() has none (set augment_stages)"))
    return inert


build_resnet.inert_knobs = build_wide_resnet.inert_knobs = inert_residual_knobs

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


_BELLO = "Bello et al. 2019, Attention Augmented Convolutional Networks"


@register_model(build_wide_resnet, family="aa_resnet", paper=_BELLO)
def aa_wrn28_10():
    """AA-Wide-ResNet-28-10 (paper's CIFAR-100 setting): every block's first conv augmented, Nh=8, dk=0.2 Fout.

    At least 20 key dimensions per head, dv=0.1 Fout.
    """
    return dict(depth=28, width=10, augment_stages=(1, 2, 3), heads=8, dk=0.2, dv=0.1, min_key_dims_per_head=20)


@register_model(build_resnet, family="aa_resnet", paper=_BELLO)
def aa_resnet20():
    """AA-ResNet-20: every block's first conv augmented (4 heads; dk, dv rounded to multiples of 4)."""
    return dict(depth=20, augment_stages=(1, 2, 3), heads=4, dk=0.2, dv=0.1)


@register_model(build_resnet, family="aa_resnet", paper=_BELLO, default_input_shape=(8, 8, 1))
def aa_resnet8():
    """AA-ResNet-8: 3 augmented blocks, 2 heads, dk=0.25, dv=0.125 Fout; trains on CPU in seconds."""
    return dict(depth=8, augment_stages=(1, 2, 3), heads=2, dk=0.25, dv=0.125)


@register_model(build_resnet, family="aa_resnet", paper=_BELLO, default_input_shape=(8, 8, 1))
def aa_resnet8_late():
    """AA-ResNet-8 with attention only in the last (smallest) stage, as the paper does when memory is short."""
    return dict(depth=8, augment_stages=(3,), heads=2, dk=0.25, dv=0.125)
