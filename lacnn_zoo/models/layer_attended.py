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

With `include_top=False` the model is the backbone without the head, as for
every family (and keras.applications): its last feature map, pooled per
`pooling` (the map itself for `pooling=None`). The taps themselves come from
`features`: `build_model(name, include_top=False, features="blocks")` returns
one map per tap of the plain or residual backbone (per-layer feature extraction).

Special cases (the paper: "both resnets and standard convolutional networks
are special-cases of this architecture"): with Static Trainable-Vector,
`tap_form="pool"`, no tap transform, no hidden contraction, and the attention
vector one-hot on the last tap, the model computes exactly the plain CNN
(`backbone="plain"`) or the ResNet (`backbone="residual"`) with the same
weights; `tests/test_layer_attended.py` checks both.
"""

import inspect
import numbers

import keras
from keras import Model, layers

from lacnn_zoo.compat import producer
from lacnn_zoo.layers import ConvBNAct
from lacnn_zoo.layers.layer_attention import MECHANISMS, TAP_FORMS, TapForm
from lacnn_zoo.layers.residual import MIXING_MODES
from lacnn_zoo.models.backbones import accepted_backbones, feature_extractor, own_input_shape, resolve_backbone
from lacnn_zoo.models.heads import check_head_arguments, classifier, classifier_head, model_input
from lacnn_zoo.models.plain import plain_backbone, plain_backbone_config
from lacnn_zoo.models.registry import register_model
from lacnn_zoo.models.resnet import residual_stages
from lacnn_zoo.models.taps import feature_info, feature_model, select_taps
from lacnn_zoo.validation import check_choice, check_classifier_activation, check_positive_int, check_unit_interval

__all__ = ["build_layer_attended", "feature_extractor", "feature_info", "layer_attended", "layer_attended_head",
           "tap_names"]

BACKBONES = ("plain", "residual")
ATTENTION_LAYER = "layer_attention"
POOLING_MODES = ("avg", "max", None)
# The head's own knobs; every mechanism's knobs (its layer's `KNOBS`) join them before `contraction_units`
# (`head_knob_names()`). Their defaults are build_layer_attended's and the layers' (`head_defaults()`), pooling
# the zoo's.
HEAD_OWN_KNOBS = ("mechanism", "pooling", "tap_form", "tap_size", "tap_transform", "tap_units", "contraction_units")


def mechanism_knob_defaults():
    """`{knob: default}` of every mechanism's knobs, in `MECHANISMS` order; the defaults are the layers'."""
    return {name: default for layer in MECHANISMS.values() for name, default in layer.knob_defaults().items()}


def head_knob_names():
    """The head's knobs in the builder's order: its own, the mechanisms' before `contraction_units`."""
    return (*HEAD_OWN_KNOBS[:-1], *mechanism_knob_defaults(), HEAD_OWN_KNOBS[-1])


def head_defaults():
    """`{knob: default}` of every head knob: `build_layer_attended`'s, the mechanisms' and `pooling="avg"`."""
    parameters = inspect.signature(build_layer_attended).parameters
    defaults = {**{k: parameters[k].default for k in HEAD_OWN_KNOBS if k != "pooling"}, **mechanism_knob_defaults()}
    return {"pooling": "avg", **{k: defaults[k] for k in head_knob_names() if k != "pooling"}}


def _transformed_by_default(mechanism):
    """Whether `tap_transform=None` transforms the taps: for the mechanisms that need taps of one common width."""
    return any(name == mechanism and layer.needs_common_width for name, layer in MECHANISMS.items())


def _check_tap_size(tap_size):
    """None, a positive int or a (height, width) pair of positive ints; returns None or the pair."""
    if tap_size is None:
        return None
    if isinstance(tap_size, numbers.Integral) and not isinstance(tap_size, bool):
        tap_size = (tap_size, tap_size)
    pair = isinstance(tap_size, (tuple, list)) and len(tap_size) == 2
    if not pair or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in tap_size):
        raise ValueError(
            "`tap_size` must be None (the smallest tap's size), a positive int or a (height, width) pair of "
            f"positive ints; received tap_size={tap_size!r}."
        )
    return tuple(int(s) for s in tap_size)


def _tap_size(tap_size, taps):
    if tap_size is not None:
        return _check_tap_size(tap_size)
    sizes = [tuple(t.shape[1:3]) for t in taps]
    if any(None in size for size in sizes):
        raise ValueError(
            "tap_form='resample' needs a fixed input height and width (or an explicit tap_size); "
            f"received taps of spatial sizes {sizes}."
        )
    return min(sizes, key=lambda size: size[0] * size[1])  # the smallest tap


def check_head_knobs(*, mechanism, pooling, tap_form, tap_size, tap_transform, tap_units, contraction_units,
                     **mechanism_knobs):
    """Validate the knobs of `layer_attended_head` (`mechanism_knobs`: every mechanism's, each checked by its
    `Knob.check`); returns `tap_transform` resolved from None."""
    check_choice("mechanism", mechanism, tuple(MECHANISMS))
    check_choice("pooling", pooling, POOLING_MODES)
    check_choice("tap_form", tap_form, TAP_FORMS)
    _check_tap_size(tap_size)
    check_positive_int("tap_units", tap_units)
    for layer in MECHANISMS.values():
        for name, knob in layer.KNOBS.items():
            knob.check(name, mechanism_knobs[name])
    if contraction_units is not None:
        check_positive_int("contraction_units", contraction_units)
    if tap_transform is None:
        tap_transform = _transformed_by_default(mechanism)
    if not isinstance(tap_transform, bool):
        raise ValueError(f"`tap_transform` must be True, False or None; received tap_transform={tap_transform!r}.")
    return tap_transform


def layer_attended_head(taps, *, num_classes, classifier_activation=None, **knobs):
    """The layer-attended head (section 3): tap forms, optional per-tap transforms, mechanism, contraction.

    Args:
        taps: the tap tensors, feature maps `(batch, height, width, channels)`, lowest layer first.
        num_classes: classifier width.
        classifier_activation: None for logits, or e.g. "softmax" (a layer named `probabilities`).
        **knobs: `mechanism`, `pooling`, `tap_form`, `tap_size`, `tap_transform`, `tap_units`,
            `heads`, `key_width`, `lstm_units`, `lstm_direction`, `lstm_readout`, `contraction_units`, as
            `build_layer_attended` (defaults in `head_defaults()`; the mechanisms' knobs are their layers' `KNOBS`).

    Returns:
        The output tensor.  Layers are named `tap{i}_form`, `tap{i}_transform`, `layer_attention`
        (the mechanism), `logits` and `probabilities`.
    """
    defaults = head_defaults()
    unknown = sorted(set(knobs) - set(defaults))
    if unknown:
        raise ValueError(f"Unknown head knob(s) {unknown}; accepted: {sorted(defaults)}.")
    k = {**defaults, **knobs}
    tap_transform = check_head_knobs(**k)
    if k["tap_form"] == "pool" and k["pooling"] is None and any(None in t.shape[1:3] for t in taps):
        raise ValueError(
            "`pooling=None` with tap_form='pool' flattens every tap, which needs a fixed input height and width; "
            "use pooling='avg' or 'max'."
        )
    size = _tap_size(k["tap_size"], taps) if k["tap_form"] == "resample" else None
    formed = [
        TapForm(k["tap_form"], pool=k["pooling"], size=size, name=f"tap{i}_form")(t)
        for i, t in enumerate(taps, start=1)
    ]
    if tap_transform:
        # He initialisation (variance 2 / fan_in) keeps the transformed taps' scale independent of the tap's
        # width, so taps of different widths but one distribution come out identically distributed (Glorot's
        # 2 / (fan_in + fan_out) gave a 16-wide tap 0.4 and a 64-wide tap 1.0 of the input variance).
        formed = [
            layers.Dense(k["tap_units"], activation="relu", kernel_initializer="he_normal",
                         name=f"tap{i}_transform")(t)
            for i, t in enumerate(formed, start=1)
        ]
    mechanism = MECHANISMS[k["mechanism"]]
    options = mechanism.knob_arguments(k)
    if k["contraction_units"] is None:
        x = mechanism(num_classes, name=ATTENTION_LAYER, **options)(formed)
        x = layers.Identity(name="logits", dtype="float32")(x)  # float32 logits under a mixed policy
        if classifier_activation is not None:
            x = layers.Activation(classifier_activation, name="probabilities", dtype="float32")(x)
        return x
    x = mechanism(k["contraction_units"], activation="relu", name=ATTENTION_LAYER, **options)(formed)
    return classifier(x, num_classes=num_classes, classifier_activation=classifier_activation)


def _without_head(source, pooling, name):
    """`include_top=False`: the backbone's last feature map, pooled per `pooling` (the map for None)."""
    x = classifier_head(source.output, num_classes=None, include_top=False, pooling=pooling,
                        classifier_activation=None)
    return Model(source.input, x, name=name)


def _name_mechanism_knobs(builder):
    """Give `builder` the signature that names every mechanism's knob, with its default, before
    `contraction_units` (what its `**mechanism_knobs` takes): the registry (`model_info(name).knobs`,
    `build_model`'s accepted overrides) and help() read it."""
    vars(builder).pop("__signature__", None)  # from the code again (**mechanism_knobs), when called anew
    signature = inspect.signature(builder)
    parameters = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    at = [p.name for p in parameters].index("contraction_units")
    knobs = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
             for name, default in mechanism_knob_defaults().items()]
    builder.__signature__ = signature.replace(parameters=parameters[:at] + knobs + parameters[at:])
    return builder


@_name_mechanism_knobs
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
    taps=None,
    backbone_weights=None,
    widths=(32, 64, 128),
    depth=2,
    downsample="stride",
    mixing="add",
    beta_init=0.5,
    tap_form="pool",
    tap_size=None,
    tap_transform=None,
    tap_units=64,
    contraction_units=None,
    **mechanism_knobs,
):
    """A layer-attended network.

    Knobs:
        mechanism: "innate_static", "static_vector", "self_attention" or "dynamic_recurrent".
        backbone: "plain" (a tap after every Conv-BN-ReLU layer), "residual" (after every block),
            a keras.applications constructor name ("ResNet50V2", "MobileNetV3Small",
            "EfficientNetB0", ...; built with include_top=False), a zoo model name, or a
            functional keras.Model (whose own input is used; `input_shape` is then ignored).
        taps: which backbone layers are tapped: "blocks" (the default: every block), "stages"
            (the last layer at each resolution), a list of layer names or a callable
            (model) -> names; see `lacnn_zoo.models.backbones`.
        backbone_weights: keras.applications weights (None: random, nothing downloads; "imagenet").
        widths, depth, downsample: the stages of a "plain" or "residual" backbone (as `plain_cnn`;
            for a residual backbone `depth` is blocks per stage and downsampling is by stride).
        mixing, beta_init: residual mixing of a "residual" backbone.
        tap_form: "pool" (global pooling per `pooling`; flattening when pooling=None) or
            "resample" (every map resampled to `tap_size`, default the smallest tap's size, and flattened).
        tap_size: int or (height, width) for tap_form="resample".
        tap_transform: per-tap Dense(tap_units) + ReLU; default on for self_attention and
            dynamic_recurrent (which need a common width), off otherwise.
        tap_units: width of the tap transform.
        heads, key_width: self-attention heads and total key width (divisible by heads).
        lstm_units, lstm_direction: the Dynamic-Recurrent LSTM ("forward" or "bidirectional").
        lstm_readout: "attention" (default: the LSTM's per-step outputs score the layers, a softmax
            over layers weights the taps, which are concatenated and contracted) or "final_state"
            (the LSTM's final state is contracted; the zoo's first form).
        contraction_units: None contracts straight to the logits; an int adds a hidden
            contraction of that width (ReLU) before the classifier.

    The mechanisms' knobs (`heads` ... `lstm_readout`) are their layers' `KNOBS`, with the layers' defaults;
    the signature names each of them.
    """
    defaults = mechanism_knob_defaults()
    unknown = sorted(set(mechanism_knobs) - set(defaults))
    if unknown:  # what Python says of an unknown keyword
        raise TypeError(f"build_layer_attended() got an unexpected keyword argument {unknown[0]!r}")
    head = dict(mechanism=mechanism, pooling=pooling, tap_form=tap_form, tap_size=tap_size,
                tap_transform=tap_transform, tap_units=tap_units, contraction_units=contraction_units,
                **{**defaults, **mechanism_knobs})
    check_head_knobs(**head)
    if isinstance(backbone, str) and backbone in BACKBONES:
        source = _zoo_backbone(backbone, input_shape, name, backbone_weights=backbone_weights, widths=widths,
                               depth=depth, downsample=downsample, mixing=mixing, beta_init=beta_init,
                               head_pools=include_top and tap_form == "pool", pooling=pooling)
    else:
        source = _given_backbone(backbone, input_shape, backbone_weights)
    _, tapped = select_taps(source, "blocks" if taps is None else taps)
    if not include_top:
        return _without_head(source, pooling, name)
    outputs = layer_attended_head(tapped, num_classes=num_classes, classifier_activation=classifier_activation,
                                  **head)
    return Model(source.input, outputs, name=name)


def inert_head_knobs(knobs):
    """`{knob: why}`: the head knobs that the mechanism, tap form and tap transform leave without effect."""
    k = {**head_defaults(), **knobs}
    mechanism, inert = k["mechanism"], {}
    for name, layer in MECHANISMS.items():
        if mechanism != name:
            inert.update(dict.fromkeys(layer.KNOBS, f"it sets {layer.KNOBS_TARGET}, and mechanism={mechanism!r}"))
    transform = k["tap_transform"] if k["tap_transform"] is not None else _transformed_by_default(mechanism)
    if not transform:
        inert["tap_units"] = f"it is the width of the tap transform, which is off for mechanism={mechanism!r} " \
                             f"with tap_transform={k['tap_transform']!r}"
    if k["tap_form"] != "resample":
        inert["tap_size"] = f"it is the size taps are resampled to, and tap_form={k['tap_form']!r}"
    return inert


def _refuse_inert_head_knobs(given, head):
    inert = inert_head_knobs(head)
    for knob in given:
        if knob in inert:
            raise ValueError(f"`{knob}` cannot take effect on this head: {inert[knob]}.")


def inert_layer_attended_knobs(knobs):
    """`{knob: why}`: the knobs of `build_layer_attended` that its other knobs leave without effect."""
    head = set(head_knob_names()) - {"pooling"}
    inert = inert_head_knobs({k: v for k, v in knobs.items() if k in head})
    backbone = knobs.get("backbone", "plain")
    shown = backbone if isinstance(backbone, str) else type(backbone).__name__
    if not (isinstance(backbone, str) and backbone in BACKBONES):
        inert.update(dict.fromkeys(("widths", "depth", "downsample", "mixing", "beta_init"),
                                   f"it shapes the zoo's 'plain' or 'residual' backbone, and backbone={shown!r}"))
        return inert
    inert["backbone_weights"] = f"it loads keras.applications weights, and backbone={shown!r} is the zoo's own"
    if backbone == "plain":
        inert.update(dict.fromkeys(("mixing", "beta_init"), "it sets the residual mixing, and backbone='plain'"))
    elif knobs.get("mixing") != "beta":
        inert["beta_init"] = f"it is the initial beta of mixing='beta', and mixing={knobs.get('mixing')!r}"
    return inert


build_layer_attended.inert_knobs = inert_layer_attended_knobs
# The mechanisms by name: the search (`tuning`, which uses the zoo through its public modules) reads each one's
# knobs and their searched values as `model_info(name).builder.mechanisms[mechanism].KNOBS`.
build_layer_attended.mechanisms = MECHANISMS


def _zoo_backbone(backbone, input_shape, name, *, backbone_weights, widths, depth, downsample, mixing, beta_init,
                  head_pools, pooling):
    """The "plain" or "residual" backbone of the layer-attended presets, as a functional model."""
    check_choice("mixing", mixing, MIXING_MODES)
    check_unit_interval("beta_init", beta_init)
    if backbone == "residual":
        check_positive_int("depth", depth)
        if downsample != "stride":
            raise ValueError(f"A residual backbone downsamples by stride; received downsample={downsample!r}.")
    if backbone_weights is not None:
        raise ValueError(f"`backbone_weights` must be None for backbone={backbone!r}; received {backbone_weights!r}.")
    widths, depths = plain_backbone_config(input_shape, widths, depth, downsample)
    if head_pools:
        check_head_arguments(input_shape, True, pooling)
    inputs = model_input(input_shape)
    if backbone == "plain":
        maps = plain_backbone(inputs, widths, depths, downsample)
    else:
        stem = ConvBNAct(widths[0], name="stem")(inputs)
        maps = residual_stages(stem, widths, depth, size_knobs=dict(widths=widths, depth=depth), mixing=mixing,
                               beta_init=beta_init, preactivation=False, dropout=0.0)
    return Model(inputs, maps[-1], name=f"{name}_backbone")


def _given_backbone(backbone, input_shape, backbone_weights):
    """A keras.applications name, a zoo model name or a keras.Model, resolved to a functional model."""
    if isinstance(backbone, str) and backbone not in accepted_backbones():
        raise ValueError(
            f"`backbone` must be 'plain', 'residual', a keras.applications constructor name such as "
            f"'ResNet50V2', 'MobileNetV3Small' or 'EfficientNetB0', a zoo model name or a functional "
            f"keras.Model; received backbone={backbone!r}."
        )
    # A functional model brings its own input; a Sequential without an Input takes the model's input_shape.
    own_input = isinstance(backbone, keras.Model) and (
        not isinstance(backbone, keras.Sequential) or own_input_shape(backbone) is not None)
    return resolve_backbone(backbone, input_shape=None if own_input else input_shape, weights=backbone_weights)


def layer_attended(
    backbone,
    *,
    taps="blocks",
    mechanism="static_vector",
    num_classes=10,
    input_shape=None,
    backbone_weights=None,
    include_top=True,
    features=None,
    classifier_activation=None,
    name=None,
    **head_knobs,
):
    """Put the layer-attended head on any functional backbone (as DIANet and MRLA do for theirs).

    Args:
        backbone: a functional `keras.Model`, a `keras.Sequential` (its layers are tapped; one without an
            `Input` needs `input_shape`), a `keras.applications` constructor name
            (`"ResNet50V2"`, `"MobileNetV3Small"`, `"EfficientNetB0"`, `"DenseNet121"`,
            `"ConvNeXtTiny"`, ...; built with `include_top=False`) or a zoo model name (built with
            `include_top=False, pooling=None`).
        taps: `"blocks"` (every residual/dense/inverted-residual block output), `"stages"` (the last
            layer at each spatial resolution), a list of layer names, or a callable
            `(model) -> list of layer names`.  `tap_names(model)` reads them back, also after reloading.
        mechanism: "innate_static", "static_vector", "self_attention" or "dynamic_recurrent".
        num_classes: classifier width.
        input_shape: `(height, width, channels)` for a named backbone; None is the constructor's default
            (for keras.applications with `backbone_weights=None`, any height and width).
        backbone_weights: keras.applications weights: None (random, nothing downloads), "imagenet" or a path.
        include_top: as `build_model`: `include_top=False` returns the backbone without the head (its last
            map, pooled per the `pooling` knob, the map itself for None).
        features: as `build_model`: with `include_top=False`, `"stages"`, `"blocks"` or layer names return
            the backbone's feature maps instead, timm's `features_only`.
        classifier_activation: None (logits) or e.g. "softmax".
        name: model name (default `"<backbone>_layer_attended"`).
        **head_knobs: `pooling`, `tap_form`, `tap_size`, `tap_transform`, `tap_units`, `heads`,
            `key_width`, `lstm_units`, `lstm_direction`, `lstm_readout`, `contraction_units` (see
            `build_layer_attended`).

    Preprocessing: the backbone's own (see `lacnn_zoo.models.backbones.resolve_backbone`): EfficientNet,
    MobileNetV3 and ConvNeXt take raw pixels in [0, 255]; ResNet*V2, DenseNet and MobileNet(V2) take
    `keras.applications.<family>.preprocess_input(images)`.

    Returns:
        A functional `keras.Model` with the backbone's inputs, its layers (names unchanged) and the head
        of `layer_attended_head`; the mechanism layer is `layer_attention`.

    Examples:
        >>> model = layer_attended("ResNet50V2", input_shape=(64, 64, 3))
        >>> tap_names(model)[:2]
        ['conv2_block1_out', 'conv2_block2_out']
    """
    defaults = head_defaults()
    unknown = sorted(set(head_knobs) - set(defaults))
    if unknown:
        raise ValueError(
            f"Unknown keyword argument(s) {unknown} for layer_attended; accepted head knobs: "
            f"{sorted(set(defaults) - {'mechanism'})}."
        )
    check_positive_int("num_classes", num_classes)
    check_classifier_activation(classifier_activation)
    if not isinstance(include_top, bool):
        raise ValueError(f"`include_top` must be True or False; received include_top={include_top!r}.")
    if features is not None and include_top:
        raise ValueError(f"`features` returns feature maps, so it needs include_top=False; received "
                         f"features={features!r} with include_top=True.")
    head = {**head_knobs, "mechanism": mechanism}
    check_head_knobs(**{**defaults, **head})
    _refuse_inert_head_knobs(head_knobs, head)
    source = resolve_backbone(backbone, input_shape=input_shape, weights=backbone_weights)
    _, tapped = select_taps(source, taps)
    if features is not None:
        return feature_model(source, features, name=name or f"{source.name}_features")
    if not include_top:
        return _without_head(source, {**defaults, **head}["pooling"], name or f"{source.name}_features")
    outputs = layer_attended_head(tapped, num_classes=num_classes, classifier_activation=classifier_activation,
                                  **head)
    return Model(source.input, outputs, name=name or f"{source.name}_layer_attended")


def tap_names(model):
    """The names of the backbone layers a layer-attended model taps, lowest first (read from its graph).

    Args:
        model: a layer-attended `keras.Model` (one with a layer named `ATTENTION_LAYER`), e.g. reloaded from a
            `.keras` file.

    Returns:
        A list of layer names, one per tap, lowest first.

    Raises:
        ValueError: `model` has no layer named `ATTENTION_LAYER`.
    """
    try:
        attention = model.get_layer(ATTENTION_LAYER)
    except ValueError:
        raise ValueError(
            f"`model` must be a layer-attended model (with a layer named {ATTENTION_LAYER!r}); "
            f"{model.name!r} has none."
        ) from None
    names = []
    for i in range(1, attention.num_layers + 1):
        tap = model.get_layer(f"tap{i}_form").input  # the tensor the tap's former was called on
        names.append(producer(tap)[0].name)
    return names


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
