"""The search space: which attention mechanism, and each mechanism's own knobs.

`MechanismHyperModel.build(hp)` reads as the space.  `hp.Choice("mechanism")`
picks among the zoo's families; knobs that belong to one mechanism live under
`hp.conditional_scope("mechanism", [...])`, so they are active (and searched)
only when that mechanism is chosen.  Depth, width and learning rate are
shared.  A layer-attention mechanism's own knobs and the values searched for
them are its layer's (`KNOBS`, each `Knob.search`), read through the registry.
`build` only assembles a small model; it is cheap, as Keras Tuner calls it
repeatedly.
"""

import keras_tuner

from lacnn_zoo import build_model, model_info
from lacnn_zoo.training import compile_model
from tuning.options import CANDIDATES, OBJECTIVES, RESIDUAL  # noqa: E402, F401  (Keras-free tables)


def check_mechanisms(mechanisms):
    if mechanisms is None:
        return list(CANDIDATES)
    if isinstance(mechanisms, str):
        mechanisms = [m.strip() for m in mechanisms.split(",") if m.strip()]
    mechanisms = list(dict.fromkeys(mechanisms))
    if not mechanisms:
        raise ValueError(f"`mechanisms` is empty; choose from {list(CANDIDATES)}.")
    unknown = [m for m in mechanisms if m not in CANDIDATES]
    if unknown:
        raise ValueError(f"Unknown mechanism(s) {unknown}; accepted: {list(CANDIDATES)}.")
    return mechanisms


def attention_mechanism(candidate):
    """The layer-attention class of a layer-attended candidate (None for the other families): its registered
    model's builder's `mechanisms` table at the model's `mechanism` knob. The class owns its knobs (`KNOBS`)."""
    base, fixed = CANDIDATES[candidate]
    info = model_info(base)
    mechanisms = getattr(info.builder, "mechanisms", None)
    return None if mechanisms is None else mechanisms[{**info.knobs, **fixed}["mechanism"]]


class MechanismHyperModel(keras_tuner.HyperModel):
    """Search over attention mechanisms (and their knobs) for one data set.

    Args:
        input_shape: `(height, width, channels)` of the data.
        num_classes: classifier width.
        mechanisms: the subset of `CANDIDATES` to search (default: all).
        widths: the candidate first-stage widths (stages double it).
        weight_decay: AdamW weight decay.
        overrides: fixed knobs for every searched model that has them, e.g. `{"backbone": "EfficientNetB0"}`
            puts the layer-attended mechanisms on that backbone; they take precedence over searched values.
    """

    def __init__(self, input_shape, num_classes, mechanisms=None, widths=(16, 32), weight_decay=1e-4,
                 overrides=None, **kwargs):
        super().__init__(**kwargs)
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.mechanisms = check_mechanisms(mechanisms)
        self.widths = list(widths)
        self.weight_decay = weight_decay
        self.overrides = dict(overrides or {})
        bases = {CANDIDATES[m][0] for m in self.mechanisms}
        unused = sorted(k for k in self.overrides if not any(k in model_info(b).knobs for b in bases))
        if unused:
            raise ValueError(f"Override(s) {unused} apply to none of the searched mechanisms {self.mechanisms}.")
        # The searched layer-attended candidates (in CANDIDATES order) and their layer-attention classes.
        self.layer_attention = {m: attention_mechanism(m) for m in CANDIDATES if m in self.mechanisms}
        self.layer_attention = {m: layer for m, layer in self.layer_attention.items() if layer is not None}

    def _in(self, hp, names):
        """conditional_scope for the searched mechanisms among `names` (None when none is searched)."""
        active = [m for m in names if m in self.mechanisms]
        return hp.conditional_scope("mechanism", active) if active else None

    def build(self, hp):
        mechanism = hp.Choice("mechanism", self.mechanisms)
        if mechanism not in self.mechanisms:  # a trial of an older project with another space
            raise ValueError(
                f"Trial asks for mechanism {mechanism!r}, which is not in this search space {self.mechanisms}."
            )
        width = hp.Choice("width", self.widths)
        depth = hp.Int("depth", 1, 2)
        learning_rate = hp.Float("learning_rate", 1e-3, 1e-2, sampling="log")
        knobs = {"widths": (width, 2 * width, 4 * width)}

        residual = self._in(hp, RESIDUAL)
        if residual:
            with residual:
                blocks = hp.Int("blocks_per_stage", 1, 2)
        if "resnet_beta" in self.mechanisms:
            with hp.conditional_scope("mechanism", ["resnet_beta"]):
                beta_init = hp.Float("beta_init", 0.1, 0.9, step=0.2)
        if "attention_augmented" in self.mechanisms:
            with hp.conditional_scope("mechanism", ["attention_augmented"]):
                aa_heads = hp.Choice("aa_heads", [1, 2])
                aa_key_ratio = hp.Choice("aa_key_ratio", [0.25, 0.5])
                aa_relative = hp.Boolean("aa_relative", default=True)
        layer_attended = self._in(hp, self.layer_attention)
        if layer_attended:
            with layer_attended:
                tap_form = hp.Choice("tap_form", ["pool", "resample"])
        # The tap transform is searched where the mechanism takes taps of different widths (it is on otherwise).
        static = self._in(hp, [m for m, layer in self.layer_attention.items() if not layer.needs_common_width])
        if static:
            with static:
                tap_transform = hp.Boolean("tap_transform", default=False)
        own = {}  # each mechanism's own searched knobs
        for candidate, layer in self.layer_attention.items():
            searched = {name: knob.search for name, knob in layer.KNOBS.items() if knob.search}
            if searched:
                with hp.conditional_scope("mechanism", [candidate]):
                    own[candidate] = {name: hp.Choice(name, list(values)) for name, values in searched.items()}

        base, fixed = CANDIDATES[mechanism]
        knobs.update(fixed)
        if mechanism == "plain":
            knobs["depth"] = depth
        elif mechanism in RESIDUAL:
            knobs["depth"] = 6 * blocks + 2
            if mechanism == "resnet_beta":
                knobs["beta_init"] = beta_init
            if mechanism == "attention_augmented":
                knobs.update(heads=aa_heads, dk=aa_key_ratio, dv=aa_key_ratio / 2, relative=aa_relative)
        else:
            knobs.update(depth=depth, tap_form=tap_form)
            if not self.layer_attention[mechanism].needs_common_width:
                knobs["tap_transform"] = tap_transform
            knobs.update(own.get(mechanism, {}))
        info = model_info(base)
        knobs.update({k: v for k, v in self.overrides.items() if k in info.knobs})
        inert = info.inert_knobs(knobs)  # e.g. the searched widths under --set backbone=MobileNetV3Small
        knobs = {k: v for k, v in knobs.items() if k not in inert}
        model = build_model(base, input_shape=self.input_shape, num_classes=self.num_classes, **knobs)
        # The training command's recipe, at a constant learning rate (trials differ in length under Hyperband).
        return compile_model(model, learning_rate=learning_rate, weight_decay=self.weight_decay, decay_steps=None)
