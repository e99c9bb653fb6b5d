"""Backbones and their taps: which layers of a functional Keras model feed a layer-attended head or a feature list.

    model = resolve_backbone("ResNet50V2", input_shape=(64, 64, 3))  # keras.applications, weights=None
    names, maps = select_taps(model, "blocks")                        # 16 residual block outputs
    extractor = feature_extractor("DenseNet121", "stages", input_shape=(64, 64, 3))
    feature_info(extractor)  # [{"name": "conv1_relu", "channels": 64, "reduction": 2}, ...]

Two rules find taps from the graph alone, so they work on any functional model:

* ``"blocks"``: the output of every block.  A block ends where two branches
  join: every ``Add`` or ``Concatenate`` with two or more tensor inputs
  (residual, inverted-residual, ConvNeXt and dense blocks), or the activation
  right after it when the join feeds straight into one (ResNet v1).  The zoo's
  own composite layers count as blocks: every ``ResidualBlock``; a model with
  no block at all (the plain CNN) taps every ``ConvBNAct``.  Blocks without a
  skip connection (the strided first block of a MobileNet or EfficientNet
  stage) have no join and are not taps; ``"stages"`` or a list of names reaches
  them.
* ``"stages"``: the last layer at each spatial resolution, as timm's
  ``features_only``.  Only "trunk" tensors count, those that every path from the
  input to the output passes through (so a squeeze-excite branch at 1x1 is not
  a stage), and the input itself, padding and preprocessing layers are skipped.

A list of layer names or a callable ``(model) -> list of names`` picks taps
explicitly.  `feature_info` follows timm's ``feature_info`` (name, channels,
reduction) and KerasHub's ``pyramid_outputs`` (a dict ``"P<log2 reduction>"``).
"""

import math

import keras

from lacnn_zoo.registry import list_models, model_info

TAP_RULES = ("blocks", "stages")
_JOINS = ("Add", "Concatenate")  # the class names of both the layers and the keras.ops operations
_ACTIVATIONS = (keras.layers.Activation, keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.ELU,
                keras.layers.PReLU)
_NOT_STAGES = (keras.layers.InputLayer, keras.layers.ZeroPadding2D, keras.layers.Cropping2D,
               keras.layers.Rescaling, keras.layers.Normalization)
_PROBE_SIZE = 256  # input side used to measure reductions of a model with a dynamic height and width


def application_names():
    """The constructors of `keras.applications` (`"ResNet50V2"`, `"EfficientNetB0"`, ...)."""
    return sorted(n for n in dir(keras.applications) if n[:1].isupper() and callable(getattr(keras.applications, n)))


def accepted_backbones():
    """Every backbone name `resolve_backbone` builds: keras.applications constructors and zoo models."""
    return set(application_names()) | set(list_models())


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
        return getattr(keras.applications, backbone)(include_top=False, weights=weights, **kwargs)
    if isinstance(backbone, str) and backbone in list_models():
        if weights is not None:
            raise ValueError(
                f"`backbone_weights` must be None for a zoo backbone ({backbone!r}); load trained weights into "
                f"the built model instead; received backbone_weights={weights!r}."
            )
        from lacnn_zoo.registry import build_model

        return build_model(backbone, input_shape=input_shape or model_info(backbone).default_input_shape,
                           include_top=False, pooling=None)
    raise ValueError(f"`backbone` must be {_backbone_help()}; received backbone={backbone!r}.")


# --- the graph ------------------------------------------------------------------------------------

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
            operation, node_index, _ = tensor._keras_history
            node = operation._inbound_nodes[node_index]
            parents = list(node.arguments.keras_tensors)
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
    from lacnn_zoo.layers import ConvBNAct, ResidualBlock

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
    return taps


def _stage_taps(graph):
    trunk = [t for t in graph.trunk() if len(t.shape) == 4 and not isinstance(graph.producer[id(t)], _NOT_STAGES)]
    last = {}
    for t, size in zip(trunk, _spatial_sizes(graph.model, trunk)[1]):
        last[size] = t  # later trunk tensors at the same resolution replace earlier ones
    return sorted(last.values(), key=lambda t: graph.position[id(t)])


def _accepted_taps():
    return ("'blocks', 'stages', a list of layer names of the backbone, or a callable (model) -> list of "
            "layer names")


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
        unknown = [n for n in taps if n not in by_name]
        if unknown:
            raise ValueError(
                f"`taps` must be {_accepted_taps()}; model {model.name!r} has no layer(s) {unknown} "
                "(see `[layer.name for layer in model.layers]`)."
            )
        tensors = [by_name[n] for n in taps]
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


# --- features -------------------------------------------------------------------------------------

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


def feature_extractor(backbone, features="stages", *, input_shape=None, backbone_weights=None, name=None):
    """A model whose outputs are the list of feature maps at `features` (timm's `features_only=True`).

    Args:
        backbone, input_shape, backbone_weights: as `resolve_backbone`.
        features: `"stages"`, `"blocks"`, a list of layer names or a callable (as `select_taps`).
        name: the model's name (default `"<backbone name>_features"`).

    Returns:
        A functional `keras.Model` with the backbone's inputs and one output per feature map,
        lowest first, and the attributes `feature_info` (a list of `{"name", "channels",
        "reduction"}`) and `pyramid_outputs` (KerasHub's dict `{"P<log2 reduction>": map}` for the
        last map at each power-of-two reduction).  `feature_info(model)` recomputes the list from
        the graph of any such model, also after `.keras` reloading.
    """
    model = resolve_backbone(backbone, input_shape=input_shape, weights=backbone_weights)
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
    """timm-style `[{"name", "channels", "reduction"}, ...]` of every output of a feature model."""
    graph = _Graph(model)
    names = [graph.name(t) for t in model.outputs]
    flat = [n for n, t in zip(names, model.outputs) if len(t.shape) != 4]
    if flat:
        raise ValueError(
            f"`model` must output 4-D feature maps (a model from feature_extractor or build_model(..., "
            f"include_top=False, pooling=None)); outputs {flat} of {model.name!r} are not."
        )
    return _describe(model, names, list(model.outputs))
