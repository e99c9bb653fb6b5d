"""The model registry: a decorator turns a small preset function into a listed, buildable name.

    @register_model(builder=build_resnet, family="resnet", paper="He et al. 2015")
    def resnet20():
        "ResNet-20 for CIFAR (3 stages x 3 blocks, 16/32/64 filters)."
        return dict(depth=20)

`build_model("resnet20", mixing="beta")` then calls
`build_resnet(input_shape=..., ..., depth=20, mixing="beta")`.
"""

import dataclasses
import difflib
import fnmatch
import inspect
import os

from lacnn_zoo.compat import deferred_variables_dropped  # no public way to drop deferred variables
from lacnn_zoo.errors import spell
from lacnn_zoo.models.saving import load_model
from lacnn_zoo.models.taps import feature_model
from lacnn_zoo.models.weight_files import keras_reason, mismatch, quietly
from lacnn_zoo.validation import check_choice, check_classifier_activation, check_input_shape, check_positive_int

# Arguments every family builder takes; everything else is a family knob (an "override").
COMMON_ARGUMENTS = ("input_shape", "num_classes", "include_top", "pooling", "classifier_activation", "name")
POOLING_MODES = ("avg", "max", None)

# Training keeps a float32 weight, its gradient and Adam's two moments per parameter.
TRAINING_BYTES_PER_PARAMETER = 16
# The smallest batch the size check assumes a model must train on (BatchNormalization needs a few images).
SIZE_CHECK_BATCH = 8
# Seconds a `weights` download may wait for the server (to connect, and between two reads) before it gives up.
DOWNLOAD_TIMEOUT_S = 60

_REGISTRY = {}


def memory_budget_bytes():
    """The machine's physical memory in bytes, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_model_size(params, activations, *, knobs):
    """Refuse, before anything is allocated, a model that could not train in this machine's memory.

    The estimate is `16 * params` bytes (float32 weights, gradients and Adam's two moments) plus
    `4 * activations` bytes per image for a batch of `SIZE_CHECK_BATCH` images, where `params`
    and `activations` (values kept for the backward pass, per image) come from the family's knobs.

    Args:
        params: parameter count.
        activations: activation values per image.
        knobs: `{knob: value}` that set the size, named in the error.
    """
    budget = memory_budget_bytes()
    weights = TRAINING_BYTES_PER_PARAMETER * params
    needed = weights + 4 * SIZE_CHECK_BATCH * activations
    if budget is None or needed <= budget:
        return
    described = ", ".join(f"{k}={v!r}" for k, v in knobs.items())
    raise ValueError(
        f"{described} is too large to build: about {params:,} parameters and {activations:,} activation values "
        f"per image, so one training step at batch {SIZE_CHECK_BATCH} needs about {needed / 2**30:,.1f} GiB "
        f"({weights / 2**30:,.1f} GiB of float32 weights, gradients and Adam moments) and this machine has "
        f"{budget / 2**30:,.1f} GiB. Choose a smaller {' or '.join(f'`{k}`' for k in knobs)}."
    )


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one name (timm's "pretrained_cfg" counterpart).

    Args:
        name: the registered name.
        family: the family name (`list_families`).
        paper: citation of the architecture.
        description: the preset's docstring, cleaned (`inspect.cleandoc`).
        default_input_shape: the input shape the preset was designed for, a tuple.
        preset: the knobs the preset sets.
        builder: the family builder `build_model` calls.
    """

    name: str
    family: str
    paper: str
    description: str
    default_input_shape: tuple
    preset: dict
    builder: object = dataclasses.field(repr=False, compare=False)

    @property
    def knobs(self):
        """The overrides `build_model` accepts for this model, with their default values."""
        params = inspect.signature(self.builder).parameters
        knobs = {k: p.default for k, p in params.items() if k not in COMMON_ARGUMENTS}
        knobs.update(self.preset)
        return knobs

    def inert_knobs(self, overrides=None):
        """`{knob: why}` for the knobs that cannot take effect on this model with `overrides` (a mechanism's
        knobs under another mechanism, `beta_init` without beta mixing...): the builder's `inert_knobs` rule."""
        rule = getattr(self.builder, "inert_knobs", None)
        return rule({**self.knobs, **(overrides or {})}) if rule is not None else {}

    def applicable(self, overrides):
        """The `overrides` that take effect on this model: knobs it has and that the others leave active (for the
        commands that pass one set of knobs to every model that takes them)."""
        known = {k: v for k, v in (overrides or {}).items() if k in self.knobs}
        inert = self.inert_knobs(known)
        return {k: v for k, v in known.items() if k not in inert}

    def num_params(self, input_shape=None, num_classes=10, **overrides):
        """Parameter count, without allocating a single weight.

        The model is built under `keras.StatelessScope(initialize_variables=False)`, where Keras
        creates every variable with its shape but defers its value; the deferred variables are
        then dropped from Keras' list of variables to initialise, so no later scope allocates them.
        """
        import keras

        with deferred_variables_dropped(), keras.StatelessScope(initialize_variables=False):
            model = build_model(self.name, input_shape=input_shape, num_classes=num_classes, **overrides)
        return int(model.count_params())

    def as_dict(self):
        return {
            "name": self.name,
            "family": self.family,
            "paper": self.paper,
            "description": self.description,
            "default_input_shape": list(self.default_input_shape),
            "preset": dict(self.preset),
        }


def register_model(builder, *, family, paper="", default_input_shape=(32, 32, 3), name=None):
    """Register a preset: a function of no arguments returning the builder's knobs.

    Args:
        builder: the family builder, called as `builder(input_shape=..., num_classes=...,
            include_top=..., pooling=..., classifier_activation=..., name=..., **knobs)`.
        family: family name shown by `list_models` and `model_info`.
        paper: citation of the architecture.
        default_input_shape: the input size the preset was designed for.
        name: registered name; defaults to the function's name.

    Returns:
        A decorator that registers the preset function it is applied to and returns that function unchanged.

    Raises:
        ValueError: when the decorator is applied: the name is already registered, or the preset sets knobs
            that `builder` does not take.
    """

    def decorator(preset_fn):
        model_name = name or preset_fn.__name__
        if model_name in _REGISTRY:
            raise ValueError(f"A model named {model_name!r} is already registered.")
        preset = dict(preset_fn())
        accepted = set(inspect.signature(builder).parameters) - set(COMMON_ARGUMENTS)
        unknown = sorted(set(preset) - accepted)
        if unknown:
            raise ValueError(f"Preset {model_name!r} sets knobs {unknown} that {builder.__name__} does not take.")
        _REGISTRY[model_name] = ModelInfo(
            name=model_name,
            family=family,
            paper=paper,
            description=inspect.cleandoc(preset_fn.__doc__ or ""),
            default_input_shape=tuple(default_input_shape),
            preset=preset,
            builder=builder,
        )
        return preset_fn

    return decorator


def list_models(pattern="*", family=None):
    """Sorted registered names matching a wildcard pattern (or a list of them), e.g. `"resnet*"`.

    Args:
        pattern: an `fnmatch` wildcard pattern (case-sensitive), or a list of them (a name matching any is listed).
        family: list only this family's names; None lists every family.

    Returns:
        A sorted list of registered names.
    """
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    names = [
        n
        for n, info in _REGISTRY.items()
        if any(fnmatch.fnmatchcase(n, p) for p in patterns) and (family is None or info.family == family)
    ]
    return sorted(names)


def resolve_models(patterns):
    """Names matching each pattern in turn, in the order given (sorted within a wildcard), without repeats.

    Args:
        patterns: a wildcard pattern, or a list of them (names or wildcards, as `list_models` takes).

    Returns:
        A list of registered names; a pattern that matches none adds nothing.
    """
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    names = []
    for pattern in patterns:
        for name in list_models(pattern):
            if name not in names:
                names.append(name)
    return names


def list_families():
    """The families of the registered models (`ModelInfo.family`).

    Returns:
        A sorted list of family names, each once.
    """
    return sorted({info.family for info in _REGISTRY.values()})


def model_info(name):
    """The `ModelInfo` record of a registered name; unknown names list the closest valid ones.

    Args:
        name: a registered name (`list_models()`).

    Returns:
        The name's `ModelInfo`.

    Raises:
        ValueError: `name` is not registered (the error suggests the closest names).
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown model name {name!r}.{hint} `lacnn_zoo.list_models()` lists all {len(_REGISTRY)} names."
        )
    return _REGISTRY[name]


def build_model(
    name,
    *,
    input_shape=None,
    num_classes=10,
    include_top=True,
    pooling="avg",
    classifier_activation=None,
    features=None,
    weights=None,
    weights_hash=None,
    **overrides,
):
    """Build a registered model by name.

    Args:
        name: a name from `list_models()`.
        input_shape: `(height, width, channels)`, any channel count; None (the default) means the
            model's registered `default_input_shape`, as in `keras.applications`.
        num_classes: classifier width (with `include_top=True`).
        include_top: add the classifier (for layer-attended models, the whole head).  With `False` the
            model returns the backbone's features, one tensor for every family: pooled per `pooling`, or
            the feature map when `pooling=None` (use `features` for a list of maps, e.g. every tap).
        pooling: `"avg"`, `"max"` or `None` (flatten before the classifier / no pooling).
        classifier_activation: `None` returns logits; e.g. `"softmax"` returns probabilities.
        features: with `include_top=False`, return the feature maps instead: `"stages"` (the last
            layer at every resolution, timm's `features_only`), `"blocks"` (every block / layer
            output), or a list of layer names. The model has `feature_info` (name, channels,
            reduction per map) and `pyramid_outputs` (KerasHub's `{"P<level>": map}`).
        weights: as `keras.applications`: None (initialised), a local `.weights.h5` or `.keras` file of
            the same architecture, or an http(s)/file URL of one, downloaded once into Keras' cache
            (`keras.utils.get_file`) and checked against `weights_hash` (its sha256, required for a URL).
        **overrides: the family's knobs (see `model_info(name).knobs`); unknown ones are errors.

    Returns:
        A `keras.Model` named `name`, input `"images"`.

    Raises:
        ValueError: for an unknown name or knob, a bad value, or a size whose training step would
            not fit in the machine's memory (`check_model_size`, checked before any weight exists).
    """
    info = model_info(name)
    accepted = info.knobs
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise ValueError(
            f"Unknown override(s) {unknown} for model {name!r}. Accepted knobs: {sorted(accepted)}."
        )
    refuse_inert(name, info, overrides)
    check_positive_int("num_classes", num_classes)
    _check_outputs(include_top, pooling, classifier_activation, features)
    knobs = {**info.preset, **overrides}
    input_shape = check_input_shape(info.default_input_shape if input_shape is None else input_shape)
    model = info.builder(
        input_shape=input_shape,
        num_classes=num_classes,
        include_top=include_top,
        pooling=None if features is not None else pooling,
        classifier_activation=classifier_activation,
        name=name,
        **knobs,
    )
    if weights is not None:
        load_weights(model, weights, weights_hash)
    elif weights_hash is not None:
        raise ValueError(f"`weights_hash` checks a downloaded `weights` file; received weights_hash={weights_hash!r} "
                         "with weights=None.")
    if features is None:
        return model

    return feature_model(model, features, name=f"{name}_features")


def _check_outputs(include_top, pooling, classifier_activation, features):
    """Check `build_model`'s output arguments, refusing one that the others leave without effect."""
    check_choice("pooling", pooling, POOLING_MODES)
    if not isinstance(include_top, bool):
        raise ValueError(f"`include_top` must be True or False; received include_top={include_top!r}.")
    check_classifier_activation(classifier_activation)
    if features is not None and include_top:
        raise ValueError(
            f"`features` returns feature maps, so it needs include_top=False; received features={features!r} "
            "with include_top=True."
        )
    if classifier_activation is not None and not include_top:
        raise ValueError(f"`classifier_activation` applies to the classifier, and include_top=False builds none; "
                         f"received classifier_activation={classifier_activation!r}.")
    if features is not None and pooling != "avg":
        raise ValueError(f"`pooling` applies to the one pooled output, and `features` returns the feature maps "
                         f"unpooled; received pooling={pooling!r} with features={features!r}.")


def refuse_inert(name, info, overrides):
    """Refuse a knob given in `overrides` that cannot take effect on model `name` (one line naming it, why, and
    the knobs the model uses)."""
    inert = info.inert_knobs(overrides)
    given = [k for k in overrides if k in inert]
    if given:
        uses = ", ".join(sorted(k for k in info.knobs if k not in inert))
        knob = given[0]
        raise ValueError(f"{spell(f'`{knob}`', f'--set {knob}')} cannot take effect on {name!r}: {inert[knob]}. The "
                         f"knobs it uses: {uses}.")


def load_weights(model, weights, weights_hash=None):
    """Load `weights` (a local `.weights.h5`/`.keras` file, or a URL of one with its sha256) into `model`."""
    weights = os.fspath(weights)
    url = weights.startswith(("http://", "https://", "file://"))
    if not weights.endswith((".weights.h5", ".keras")):
        raise ValueError(f"`weights` must be None, a .weights.h5 or .keras file, or a URL of one; received "
                         f"weights={weights!r}.")
    if url:
        if not weights_hash:
            raise ValueError(f"`weights_hash` (the file's sha256) is needed to download weights={weights!r}, so "
                             "that a changed or damaged file is refused.")
        weights = _download(weights, weights_hash)
    elif os.path.isdir(weights):
        raise IsADirectoryError(f"`weights` {weights!r} is a folder; pass a .weights.h5 or .keras file.")
    elif not os.path.exists(weights):
        raise FileNotFoundError(f"`weights` file {weights!r} does not exist.")
    else:
        _check_hash(weights, weights_hash)  # and that it can be read: Keras takes an unreadable file for a misfit

    try:
        with quietly():  # Keras warns once per nested container of a misfit file before it raises
            if weights.endswith(".weights.h5"):
                model.load_weights(weights)
            else:
                model.set_weights(load_model(weights, compile=False).get_weights())
    except Exception as e:  # Keras raises several types for another architecture or a damaged file
        why = mismatch(model, weights) or f"{keras_reason(e)}; they must come from the same architecture"
        raise ValueError(f"`weights` {weights!r} do not fit {model.name!r}: {why}.") from None
    return model


def _check_hash(path, weights_hash):
    """Refuse a local `weights` file that cannot be read, or whose sha256 is not `weights_hash` (when given)."""
    import hashlib

    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b"") if weights_hash is not None else ():
                digest.update(block)
    except OSError as e:
        raise PermissionError(f"`weights` {path!r} cannot be read ({e.strerror or e}).") from None
    if weights_hash is not None and digest.hexdigest() != str(weights_hash).lower():
        raise ValueError(f"`weights` {path!r} does not match weights_hash={weights_hash!r} (its sha256 is "
                         f"{digest.hexdigest()}); nothing was loaded.")


def _download(url, weights_hash):
    """`url` downloaded once into Keras' cache and checked against its sha256; the path of the cached file.

    `keras.utils.get_file` waits for an answer as long as the socket does (forever by default): the download
    runs under a socket timeout of `DOWNLOAD_TIMEOUT_S` seconds (to connect, and between two reads).
    """
    import socket

    import keras

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return keras.utils.get_file(origin=url, file_hash=weights_hash, hash_algorithm="sha256",
                                    cache_subdir="lacnn_zoo")
    except ValueError as e:  # a hash mismatch
        raise ValueError(f"`weights` {url!r} does not match weights_hash={weights_hash!r} "
                         f"({str(e).splitlines()[0]}); nothing was loaded.") from None
    except Exception as e:  # keras.utils.get_file raises a bare Exception for a failed download
        reason = getattr(e, "reason", None) or e
        if isinstance(reason, TimeoutError) or "timed out" in str(e):
            reason = f"no answer within {DOWNLOAD_TIMEOUT_S} s"
        raise ValueError(f"`weights` {url!r} could not be downloaded ({str(reason).splitlines()[0]}); check the "
                         "network, or pass a local file.") from None
    finally:
        socket.setdefaulttimeout(previous)
