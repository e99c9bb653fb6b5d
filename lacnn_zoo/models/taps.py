"""Taps and features: which layers of a functional Keras model feed a layer-attended head or a feature list.

    names, maps = select_taps(model, "blocks")   # e.g. the 16 residual block outputs of ResNet50V2
    features = feature_model(model, "stages")     # timm's features_only: one output per resolution
    feature_info(features)  # [{"name": "conv1_conv", "channels": 64, "reduction": 2}, ...]

Two rules find taps from the graph alone, so they work on any functional model:

* ``"blocks"``: the output of every block.  A block ends where two branches
  join: every ``Add`` or ``Concatenate`` with two or more tensor inputs
  (residual, inverted-residual, ConvNeXt and dense blocks), or the activation
  right after it when the join feeds straight into one (ResNet v1).  The zoo's
  own composite layers count as blocks: every ``ResidualBlock``; a model with
  no block at all (the plain CNN) taps every ``ConvBNAct``.  Blocks without a
  skip connection (the strided first block of a MobileNet or EfficientNet
  stage) have no join and are not taps; ``"stages"`` or a list of names reaches
  them.  The backbone's output is always the last tap, so layers after the last
  block (ResNet v2's final norm, EfficientNet's head convolution) stay in use.
* ``"stages"``: the last layer at each spatial resolution, as timm's
  ``features_only``.  Only "trunk" tensors count, those that every path from the
  input to the output passes through (so a squeeze-excite branch at 1x1 is not
  a stage), and the input itself, padding and preprocessing layers are skipped.
  Where that last layer only widens a block output for what follows (the 1x1
  expansion, norm and activation of an inverted-residual network's next block
  or head), the block output is the stage, as in timm (EfficientNetB0: 16, 24,
  40, 112 and 320 channels, not 96, 144, 240, 672 and 1280).

A list of layer names or a callable ``(model) -> list of names`` picks taps
explicitly. Positions of the rules, ``"stages[2]"`` or ``"blocks[-1]"``, name a
tap stably where Keras names layers by build order (MobileNetV3's ``add_17``,
ConvNeXt's ``activation_18``): the same position is the same layer in any session.  `feature_info` follows
timm's ``feature_info`` (name, channels, reduction) and KerasHub's ``pyramid_outputs`` (a dict ``"P<log2 reduction>"``).
This module imports no model module, so the registry may use it.
"""

import math
import re

import keras

from lacnn_zoo.compat import producer
from lacnn_zoo.layers import ConvBNAct, ResidualBlock
from lacnn_zoo.options import TAP_RULES  # noqa: E402  (Keras-free, for the command line)

_JOINS = ("Add", "Concatenate")  # the class names of both the layers and the keras.ops operations
_ACTIVATIONS = (keras.layers.Activation, keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.ELU,
                keras.layers.PReLU)
_NOT_STAGES = (keras.layers.InputLayer, keras.layers.ZeroPadding2D, keras.layers.Cropping2D,
               keras.layers.Rescaling, keras.layers.Normalization)
_PROBE_SIZE = 256  # input side used to measure reductions of a model with a dynamic height and width


class _Graph:
    """The tensors between a model's inputs and outputs, in topological order, with their producers."""

    def __init__(self, model):
        self.model = model
        self.order, self.parents, self.producer = [], {}, {}
        seen, stack = set(), [(t, False) for t in reversed(model.outputs)]
        while stack:  # iterative post-order DFS: deep graphs (DenseNet) would exceed Python's recursion limit
            tensor, expanded = stack.pop()
            key = id(tensor)
            if expanded:
                self.order.append(tensor)
                continue
            if key in seen:
                continue
            seen.add(key)
            operation, parents = producer(tensor)
            self.parents[key], self.producer[key] = parents, operation
            stack.append((tensor, True))
            stack.extend((p, False) for p in reversed(parents) if id(p) not in seen)
        self.position = {id(t): i for i, t in enumerate(self.order)}
        self.children = {id(t): [] for t in self.order}
        for t in self.order:
            for p in self.parents[id(t)]:
                self.children[id(p)].append(t)

    def name(self, tensor):
        return self.producer[id(tensor)].name

    def trunk(self):
        """Tensors every input-to-output path passes through (cut points of the DAG).

        With all tensors in topological order, tensor k is a cut point exactly when
        no edge jumps over it (an edge u -> v with pos(u) < k < pos(v)).
        """
        reach = [0] * len(self.order)  # the furthest position an edge from before k lands on
        furthest = 0
        for i, t in enumerate(self.order):
            reach[i] = furthest
            for child in self.children[id(t)]:
                furthest = max(furthest, self.position[id(child)])
        return [t for i, t in enumerate(self.order) if reach[i] <= i and self.parents[id(t)]]


def _is_join(graph, tensor):
    return type(graph.producer[id(tensor)]).__name__ in _JOINS and len(graph.parents[id(tensor)]) >= 2


def _block_taps(graph):
    taps = []
    for t in graph.order:
        producer = graph.producer[id(t)]
        if isinstance(producer, ResidualBlock):
            taps.append(t)
        elif _is_join(graph, t):
            children = graph.children[id(t)]
            follows = len(children) == 1 and isinstance(graph.producer[id(children[0])], _ACTIVATIONS)
            taps.append(children[0] if follows else t)
    if not taps:
        taps = [t for t in graph.order if isinstance(graph.producer[id(t)], ConvBNAct)]
    # The backbone's own output ends the list, so no layer after the last block (a final norm, a head
    # convolution) is cut off.
    tapped = {id(t) for t in taps}
    return taps + [t for t in graph.model.outputs if id(t) not in tapped and len(t.shape) == 4]


def _before_expansion(graph, tensor):
    """The block output an expansion tail starts from, or `tensor` when it ends no expansion.

    An inverted-residual network (MobileNetV2/V3, EfficientNet) widens the block output with a 1x1 convolution,
    a norm and an activation before the next stage's strided convolution, and before its head; timm's stage
    features are the block outputs, not these widened maps. Walking back over activations and norms, the tail
    is an expansion when it reaches a 1x1 convolution with more output than input channels."""
    t = tensor
    while True:
        producer, parents = graph.producer[id(t)], graph.parents[id(t)]
        if len(parents) != 1:
            return tensor
        if isinstance(producer, (*_ACTIVATIONS, keras.layers.BatchNormalization, keras.layers.LayerNormalization)):
            t = parents[0]
            continue
        if (type(producer) is keras.layers.Conv2D and tuple(producer.kernel_size) == (1, 1)
                and tuple(producer.strides) == (1, 1) and t.shape[-1] > parents[0].shape[-1]):
            return parents[0]
        return tensor


def _stage_taps(graph):
    trunk = [t for t in graph.trunk() if len(t.shape) == 4 and not isinstance(graph.producer[id(t)], _NOT_STAGES)]
    last = {}
    for t, size in zip(trunk, _spatial_sizes(graph.model, trunk)[1]):
        last[size] = t  # later trunk tensors at the same resolution replace earlier ones
    return sorted((_before_expansion(graph, t) for t in last.values()), key=lambda t: graph.position[id(t)])


def _accepted_taps():
    return ("'blocks', 'stages', a list of layer names of the backbone or of positions such as 'stages[2]' or "
            "'blocks[-1]', or a callable (model) -> list of layer names")


_POSITION = re.compile(r"^(blocks|stages)\[(-?\d+)\]$")


def _by_position(graph, name, cache):
    """The tensor at a position of a rule ("stages[2]"): a name that survives another build order, where Keras'
    automatic layer names (`add_17`, `activation_18`) do not."""
    rule, index = _POSITION.match(name).groups()
    if rule not in cache:
        cache[rule] = _block_taps(graph) if rule == "blocks" else _stage_taps(graph)
    found = cache[rule]
    if not -len(found) <= int(index) < len(found):
        raise ValueError(f"`taps` position {name!r} is outside the {len(found)} {rule} of model "
                         f"{graph.model.name!r} (positions 0 to {len(found) - 1}, or negative from the end).")
    return found[int(index)]


def select_taps(model, taps="blocks"):
    """The tap layers of `model`: `(names, tensors)`, lowest layer first for the rules.

    Args:
        model: a functional `keras.Model`.
        taps: `"blocks"`, `"stages"`, a list of layer names (kept in the order given), or a
            callable `(model) -> list of layer names`.

    Every tap must be a 4-D feature map `(batch, height, width, channels)`.
    """
    graph = _Graph(model)
    if callable(taps) and not isinstance(taps, str):
        taps = taps(model)
    if isinstance(taps, str):
        if taps not in TAP_RULES:
            raise ValueError(f"`taps` must be {_accepted_taps()}; received taps={taps!r}.")
        tensors = _block_taps(graph) if taps == "blocks" else _stage_taps(graph)
    elif isinstance(taps, (list, tuple)) and all(isinstance(n, str) for n in taps):
        by_name = {}
        for t in graph.order:
            by_name.setdefault(graph.name(t), t)
        unknown = [n for n in taps if n not in by_name and not _POSITION.match(n)]
        if unknown:
            raise ValueError(
                f"`taps` must be {_accepted_taps()}; model {model.name!r} has no layer(s) {unknown} "
                "(see `[layer.name for layer in model.layers]`)."
            )
        cache = {}
        tensors = [by_name[n] if n in by_name else _by_position(graph, n, cache) for n in taps]
    else:
        raise ValueError(f"`taps` must be {_accepted_taps()}; received taps={taps!r}.")
    if not tensors:
        raise ValueError(
            f"`taps` found no tap in model {model.name!r} with taps={taps!r}; use {_accepted_taps()}."
        )
    flat = [graph.name(t) for t in tensors if len(t.shape) != 4]
    if flat:
        raise ValueError(
            f"`taps` must name layers whose outputs are 4-D feature maps (batch, height, width, channels); "
            f"{flat} are not."
        )
    return [graph.name(t) for t in tensors], tensors


def _spatial_sizes(model, tensors):
    """(input size, tap sizes), probing a dynamic-size model with a fixed input to read the reductions."""
    shapes = [tuple(t.shape) for t in model.inputs]
    if all(None not in shape[1:3] for shape in shapes) or not tensors:
        return shapes[0][1:3], [tuple(t.shape[1:3]) for t in tensors]
    probes = [keras.KerasTensor((1, *(_PROBE_SIZE if d is None else d for d in shape[1:]))) for shape in shapes]
    specs = keras.Model(model.inputs, list(tensors)).compute_output_spec(probes)
    return probes[0].shape[1:3], [tuple(spec.shape[1:3]) for spec in specs]


def _describe(model, names, tensors):
    (height, _), sizes = _spatial_sizes(model, tensors)
    return [
        {"name": n, "channels": int(t.shape[-1]), "reduction": int(round(height / size[0]))}
        for n, t, size in zip(names, tensors, sizes)
    ]


def feature_model(model, features="stages", *, name=None):
    """A model with `model`'s inputs whose outputs are the feature maps at `features`, lowest first.

    Args:
        model: a functional `keras.Model`.
        features: `"stages"`, `"blocks"`, a list of layer names or a callable (as `select_taps`).
        name: the new model's name (default `"<model name>_features"`).

    Returns:
        A functional `keras.Model` (sharing `model`'s layers) with the attributes `feature_info`
        (a list of `{"name", "channels", "reduction"}`, timm's convention) and `pyramid_outputs`
        (KerasHub's dict `{"P<log2 reduction>": map}` at power-of-two reductions).
        `feature_info(model)` recomputes the list from the graph, also after `.keras` reloading.
    """
    names, tensors = select_taps(model, features)
    extractor = keras.Model(model.input, list(tensors), name=name or f"{model.name}_features")
    extractor.feature_info = _describe(model, names, tensors)
    extractor.pyramid_outputs = {
        f"P{int(math.log2(info['reduction']))}": t
        for info, t in zip(extractor.feature_info, tensors)
        if info["reduction"] >= 1 and math.log2(info["reduction"]).is_integer()
    }
    return extractor


def feature_info(model):
    """timm-style `[{"name", "channels", "reduction"}, ...]` of every output of a feature model.

    Args:
        model: a feature model (from `feature_extractor` or `build_model(..., include_top=False,
            pooling=None)`), also one reloaded from a `.keras` file.

    Returns:
        A list with one dict per output, in order: its layer's `name`, its `channels` and its `reduction`
        (input height / map height, an int).

    Raises:
        ValueError: an output of `model` is not a 4-D feature map.
    """
    graph = _Graph(model)
    names = [graph.name(t) for t in model.outputs]
    flat = [n for n, t in zip(names, model.outputs) if len(t.shape) != 4]
    if flat:
        raise ValueError(
            f"`model` must output 4-D feature maps (a model from feature_extractor or build_model(..., "
            f"include_top=False, pooling=None)); outputs {flat} of {model.name!r} are not."
        )
    return _describe(model, names, list(model.outputs))
