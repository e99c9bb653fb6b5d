"""Layer-attended convolutional networks (Bird 2022, section 3): every layer's output is a tap into the head.

    images -> layer 1 -> layer 2 -> ... -> layer n          (the backbone: plain CNN or residual blocks)
                 |          |                 |
               tap 1      tap 2    ...      tap n           (TapForm: pooled, or resampled + flattened)
                 |          |                 |
             [transform] [transform]     [transform]        (optional per-tap Dense, Fig. 4)
                  \\_________|______ ... ____/
                     mechanism + contraction                 (Innate-Static, Static Trainable-Vector,
                             |                                Self-Attention, Dynamic-Recurrent)
                          logits

With `include_top=False` the model returns the taps themselves (a list of n
outputs, pooled per `pooling`, or the raw maps for `pooling=None`): per-layer
feature extraction.

Special cases (the paper: "both resnets and standard convolutional networks
are special-cases of this architecture"): with Static Trainable-Vector,
`tap_form="pool"`, no tap transform, no hidden contraction, and the attention
vector one-hot on the last tap, the model computes exactly the plain CNN
(`backbone="plain"`) or the ResNet (`backbone="residual"`) with the same
weights; `tests/test_layer_attended.py` checks both.
"""

from keras import Model, layers

from lacnn_zoo.layers import ConvBNAct
from lacnn_zoo.layers.layer_attention import LSTM_DIRECTIONS, MECHANISMS, TAP_FORMS, TapForm
from lacnn_zoo.layers.residual import MIXING_MODES
from lacnn_zoo.models.heads import check_head_arguments, classifier, model_input
from lacnn_zoo.models.plain import plain_backbone, plain_backbone_config
from lacnn_zoo.models.resnet import residual_stages
from lacnn_zoo.registry import register_model
from lacnn_zoo.validation import check_choice, check_positive_int, check_unit_interval

BACKBONES = ("plain", "residual")
ATTENTION_LAYER = "layer_attention"


def _tap_size(tap_size, taps, input_shape):
    if tap_size is None:
        height, width = taps[-1].shape[1:3]  # the smallest tap
        if height is None or width is None:
            raise ValueError(
                "tap_form='resample' needs a fixed input height and width (or an explicit tap_size); "
                f"received input_shape={tuple(input_shape)!r}."
            )
        return (height, width)
    if isinstance(tap_size, int):
        tap_size = (tap_size, tap_size)
    return tuple(check_positive_int("tap_size", s) for s in tap_size)


def build_layer_attended(
    *,
    input_shape,
    num_classes,
    include_top,
    pooling,
    classifier_activation,
    name,
    mechanism="static_vector",
    backbone="plain",
    widths=(32, 64, 128),
    depth=2,
    downsample="stride",
    mixing="add",
    beta_init=0.5,
    tap_form="pool",
    tap_size=None,
    tap_transform=None,
    tap_units=64,
    heads=4,
    key_width=None,
    lstm_units=64,
    lstm_direction="forward",
    contraction_units=None,
):
    """A layer-attended network.

    Knobs:
        mechanism: "innate_static", "static_vector", "self_attention" or "dynamic_recurrent".
        backbone: "plain" (a tap after every Conv-BN-ReLU layer) or "residual" (after every block).
        widths, depth, downsample: the backbone's stages (as `plain_cnn`; for a residual backbone
            `depth` is blocks per stage and downsampling is by stride).
        mixing, beta_init: residual mixing of a residual backbone.
        tap_form: "pool" (global pooling per `pooling`; flattening when pooling=None) or
            "resample" (every map resampled to `tap_size`, default the smallest tap's size, and flattened).
        tap_transform: per-tap Dense(tap_units) + ReLU; default on for self_attention and
            dynamic_recurrent (which need a common width), off otherwise.
        tap_units: width of the tap transform.
        heads, key_width: self-attention heads and total key width (divisible by heads).
        lstm_units, lstm_direction: the Dynamic-Recurrent LSTM ("forward" or "bidirectional").
        contraction_units: None contracts straight to the logits; an int adds a hidden
            contraction of that width (ReLU) before the classifier.
    """
    check_choice("mechanism", mechanism, tuple(MECHANISMS))
    check_choice("backbone", backbone, BACKBONES)
    check_choice("tap_form", tap_form, TAP_FORMS)
    check_choice("lstm_direction", lstm_direction, LSTM_DIRECTIONS)
    check_choice("mixing", mixing, MIXING_MODES)
    check_unit_interval("beta_init", beta_init)
    check_positive_int("tap_units", tap_units)
    if contraction_units is not None:
        check_positive_int("contraction_units", contraction_units)
    if tap_transform is None:
        tap_transform = mechanism in ("self_attention", "dynamic_recurrent")
    if not isinstance(tap_transform, bool):
        raise ValueError(f"`tap_transform` must be True, False or None; received tap_transform={tap_transform!r}.")
    if backbone == "residual":
        check_positive_int("depth", depth)
        if downsample != "stride":
            raise ValueError(f"A residual backbone downsamples by stride; received downsample={downsample!r}.")
    widths, depths = plain_backbone_config(input_shape, widths, depth, downsample)
    if include_top and tap_form == "pool":
        check_head_arguments(input_shape, include_top, pooling)

    inputs = model_input(input_shape)
    if backbone == "plain":
        taps = plain_backbone(inputs, widths, depths, downsample)
    else:
        stem = ConvBNAct(widths[0], name="stem")(inputs)
        taps = residual_stages(stem, widths, depth, mixing=mixing, beta_init=beta_init, preactivation=False,
                               dropout=0.0)

    if not include_top:
        if pooling is None:
            return Model(inputs, taps, name=name)
        pooled = [TapForm("pool", pool=pooling, name=f"tap{i}_{pooling}_pool")(t) for i, t in enumerate(taps, 1)]
        return Model(inputs, pooled, name=name)

    size = _tap_size(tap_size, taps, input_shape) if tap_form == "resample" else None
    formed = [
        TapForm(tap_form, pool=pooling, size=size, name=f"tap{i}_form")(t) for i, t in enumerate(taps, start=1)
    ]
    if tap_transform:
        formed = [
            layers.Dense(tap_units, activation="relu", name=f"tap{i}_transform")(t)
            for i, t in enumerate(formed, start=1)
        ]
    options = {
        "self_attention": dict(heads=heads, key_width=key_width),
        "dynamic_recurrent": dict(lstm_units=lstm_units, direction=lstm_direction),
    }.get(mechanism, {})
    if contraction_units is None:
        contracted = MECHANISMS[mechanism](num_classes, name=ATTENTION_LAYER, **options)(formed)
        x = layers.Identity(name="logits")(contracted)
        if classifier_activation is not None:
            x = layers.Activation(classifier_activation, name="probabilities")(x)
    else:
        contracted = MECHANISMS[mechanism](
            contraction_units, activation="relu", name=ATTENTION_LAYER, **options
        )(formed)
        x = classifier(contracted, num_classes=num_classes, classifier_activation=classifier_activation)
    return Model(inputs, x, name=name)


_PAPER = "Bird 2022, Layer-Attended Convolutional Networks, section 3"
_TINY = dict(widths=(16, 32, 64), depth=2)


def _register(name, description, default_input_shape=(32, 32, 3), **knobs):
    def preset():
        return knobs

    preset.__doc__ = description
    register_model(build_layer_attended, family="layer_attended", paper=_PAPER,
                   default_input_shape=default_input_shape, name=name)(preset)


_DESCRIPTIONS = {
    "innate_static": "Innate-Static (Fig. 5): concatenated taps, many-to-few contraction",
    "static_vector": "Static Trainable-Vector: softmax layer weights, then concatenation and contraction",
    "self_attention": "Self-Attention: transformer attention over the per-layer taps",
    "dynamic_recurrent": "Dynamic-Recurrent (Fig. 6): an LSTM over the taps, lowest layer first",
}

for _mechanism, _text in _DESCRIPTIONS.items():
    _register(f"lacnn_{_mechanism}", f"{_text}; plain_cnn backbone (6 taps, 32/64/128 filters).",
              mechanism=_mechanism)
    _register(f"lacnn_{_mechanism}_tiny", f"{_text}; 6 taps, 16/32/64 filters; trains in seconds on CPU.",
              default_input_shape=(8, 8, 1), mechanism=_mechanism, **_TINY)

_register(
    "lacnn_static_vector_resnet8",
    "Static Trainable-Vector over the blocks of ResNet-8 (the ResNet as a special case).",
    default_input_shape=(8, 8, 1), mechanism="static_vector", backbone="residual", widths=(16, 32, 64), depth=1,
)
