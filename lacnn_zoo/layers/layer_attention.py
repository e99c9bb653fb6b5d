"""Layer attention: combining the per-layer taps of a convolutional backbone (Bird 2022, sections 3-4).

After each layer of the backbone the tensor is duplicated: one copy feeds the
next layer, the other is a *tap* (Fig. 3).  `TapForm` brings every tap to a
vector (pooled, or resampled to a common spatial size and flattened, which
keeps positional information); an optional per-tap Dense layer (the
"reformative" transform of Fig. 4) gives every tap its own representation of
one common width; a mechanism then weights the taps, concatenates and
contracts them (Figs. 5 and 6).

Every mechanism is a `LayerAttention` layer that takes the list of n tap
vectors and returns the contracted vector, and exposes `layer_weights(taps)`:
a `(batch, n)` array whose rows are non-negative and sum to 1.

Every mechanism owns its knobs (`KNOBS`, a `{knob: Knob}` table; the defaults
are its constructor's): the builders (`lacnn_zoo.models.layer_attended`), the
mechanism search (`tuning`) and the tests read them from `MECHANISMS`, so a
new knob is written once, here.
"""

import inspect
import math
from typing import Callable, NamedTuple, Optional

import keras
from keras import layers, ops

from lacnn_zoo.validation import check_choice, check_positive_int

TAP_FORMS = ("pool", "resample")
POOL_MODES = ("avg", "max", None)


class Knob(NamedTuple):
    """One knob of a layer-attention mechanism, as the builders take it (`build_layer_attended(heads=...)`).

    Its default is the default of the mechanism's constructor argument (`LayerAttention.knob_defaults`).

    Attributes:
        check: `check(name, value)` returns the value, or raises a ValueError naming the knob.
        search: the values the mechanism search (`tuning`) tries, as one `hp.Choice`; empty: not searched.
        arg: the constructor argument the knob sets, when it is not the knob's name (`lstm_direction` sets
            `direction`).
    """

    check: Callable
    search: tuple = ()
    arg: Optional[str] = None


def one_of(choices):
    """A knob check that accepts the values of `choices` only."""
    def check(name, value):
        return check_choice(name, value, choices)

    return check


def optional(check):
    """A knob check that also accepts None (the mechanism's own choice, e.g. a key width of the tap width)."""
    def check_optional(name, value):
        return None if value is None else check(name, value)

    return check_optional


@keras.saving.register_keras_serializable(package="lacnn_zoo")
class TapForm(layers.Layer):
    """Bring one tap (a feature map) to a vector.

    * ``form="pool"``: global average (``pool="avg"``) or max (``"max"``) pooling
      to ``(batch, channels)``; ``pool=None`` flattens the whole map.
    * ``form="resample"``: adaptive average pooling to ``size = (h, w)`` when the
      map's height and width are multiples of it (exact block means), bilinear
      resizing otherwise, then flattening to ``(batch, h * w * channels)``.
      Positions survive, which global pooling throws away.

    Args:
        form: ``"pool"`` or ``"resample"``.
        pool: ``"avg"``, ``"max"`` or None (``form="pool"`` only).
        size: ``(h, w)`` target of ``form="resample"``.

    Examples:
        >>> TapForm("resample", size=(2, 2))(keras.ops.ones((3, 8, 4, 5))).shape
        (3, 20)
    """

    def __init__(self, form="pool", pool="avg", size=None, **kwargs):
        super().__init__(**kwargs)
        self.form = check_choice("tap_form", form, TAP_FORMS)
        self.pool = check_choice("pooling", pool, POOL_MODES)
        if form == "resample":
            if size is None or len(size) != 2:
                raise ValueError(f"`tap_size` must be (height, width) for tap_form='resample'; received {size!r}.")
            size = tuple(check_positive_int("tap_size", s) for s in size)
        self.size = None if size is None else tuple(size)

    def _out_hw(self, input_shape):
        return self.size if self.form == "resample" else tuple(input_shape[1:3])

    def call(self, inputs):
        if self.form == "pool":
            if self.pool == "avg":
                return ops.mean(inputs, axis=(1, 2))
            if self.pool == "max":
                return ops.max(inputs, axis=(1, 2))
            return ops.reshape(inputs, (-1, math.prod(inputs.shape[1:])))
        height, width, channels = inputs.shape[1:]
        h, w = self.size
        if height % h == 0 and width % w == 0:
            blocks = ops.reshape(inputs, (-1, h, height // h, w, width // w, channels))
            resampled = ops.mean(blocks, axis=(2, 4))
        else:
            resampled = ops.image.resize(inputs, (h, w), interpolation="bilinear")
        return ops.reshape(resampled, (-1, h * w * channels))

    def compute_output_shape(self, input_shape):
        if self.form == "pool" and self.pool is not None:
            return (input_shape[0], input_shape[-1])
        h, w = self._out_hw(input_shape)
        return (input_shape[0], h * w * input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(form=self.form, pool=self.pool, size=None if self.size is None else list(self.size))
        return config


class LayerAttention(layers.Layer):
    """Base of the four mechanisms: n tap vectors in, one contracted vector out.

    Subclasses implement `combine(taps, training)` (everything before the
    contraction) and may override `layer_weights(taps)`.  The contraction is a
    Dense layer named `contraction` ("many-to-few fully connected").

    The default `layer_weights` is a width-normalised occlusion share: with
    ``y = self(taps)``, ``y_(i)`` the output when tap i is replaced by zeros and
    ``d_i`` the width of tap i,

        ``o_i = ||y - y_(i)||_2 / sqrt(d_i)``,   ``w_i = o_i / sum_j o_j``

    (uniform if every difference is 0).  For a contraction that is linear in the
    concatenated taps (Innate-Static without a hidden activation)
    ``y - y_(i) = W_i^T t_i`` exactly, a sum of ``d_i`` terms ``W_i[k] t_i[k]``.
    At initialisation those terms are independent with a common variance
    (every kernel entry has the same distribution), so ``E||W_i^T t_i||^2`` is
    ``d_i`` times a per-feature term and the raw norm grows like
    ``sqrt(d_i)``: taps of 16/16/32/32/64/64 identically distributed features
    would get 0.11 ... 0.23 before any training.  Dividing by ``sqrt(d_i)``
    (the root-mean-square contribution per input feature) removes that, so
    identically distributed taps start at ``1/n`` whatever their widths, and the
    share is unchanged by any reparametrisation that leaves the function alone
    (scaling a tap by c and its kernel rows by 1/c).  For taps of one common
    width it is the plain occlusion share.

    `weights_start_equal` says whether the weights start at ``1/n`` for
    identically distributed taps at initialisation (True for every mechanism
    except Dynamic-Recurrent's ``readout="final_state"``, whose weights must be
    read against the before-training row).

    `KNOBS` is the mechanism's own knobs, `{knob: Knob}`, each setting one
    constructor argument (kept in the config); `KNOBS_TARGET` is what they set,
    for the refusal of a knob under another mechanism ("it sets ...").
    `needs_common_width` says whether the taps must share one width (the
    builders then give them the per-tap transform by default).

    Args:
        units: width of the contraction.
        activation: activation after the contraction (None for logits).
    """

    weights_start_equal = True
    needs_common_width = False
    KNOBS = {}
    KNOBS_TARGET = None

    def __init__(self, units, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.units = check_positive_int("units", units)
        self._activation_fn = keras.activations.get(activation)

    @classmethod
    def knob_defaults(cls):
        """`{knob: default}`: the defaults of the constructor arguments the knobs set."""
        parameters = inspect.signature(cls.__init__).parameters
        return {name: parameters[knob.arg or name].default for name, knob in cls.KNOBS.items()}

    @classmethod
    def knob_arguments(cls, knobs):
        """The constructor arguments of `knobs` (`{knob: value}`, every knob of this mechanism)."""
        return {knob.arg or name: knobs[name] for name, knob in cls.KNOBS.items()}

    def _set_knobs(self, **arguments):
        """Check every knob (in `KNOBS` order) and keep it as the attribute of its constructor argument."""
        for name, knob in self.KNOBS.items():
            arg = knob.arg or name
            setattr(self, arg, knob.check(name, arguments[arg]))

    def _check_taps(self, input_shape):
        is_list = isinstance(input_shape, (list, tuple)) and input_shape
        if not is_list or not isinstance(input_shape[0], (list, tuple)):
            raise ValueError(f"{type(self).__name__} takes a list of tap tensors; received shape {input_shape!r}.")
        for shape in input_shape:
            if len(shape) != 2:
                raise ValueError(f"Taps must be vectors (batch, features); received a tap of shape {shape}.")
        self.num_layers = len(input_shape)
        self.tap_widths = [int(s[-1]) for s in input_shape]

    def _equal_widths(self, input_shape, what):
        if len(set(self.tap_widths)) != 1:
            raise ValueError(
                f"{what} needs taps of one common width (set tap_transform=True, which maps every tap to "
                f"`tap_units` features); received tap widths {self.tap_widths}."
            )
        return self.tap_widths[0]

    def build_contraction(self, features):
        self.contraction = layers.Dense(self.units, name="contraction", dtype=self.dtype_policy)
        self.contraction.build((None, features))

    def call(self, taps, training=None):
        return self._activation_fn(self.contraction(self.combine(list(taps), training=training)))

    def layer_weights(self, taps):
        return self.occlusion_shares(taps)

    def occlusion_shares(self, taps):
        """``w_i = o_i / sum_j o_j`` with ``o_i = ||y - y_(i)||_2 / sqrt(d_i)`` (see the class docstring)."""
        taps = list(taps)
        reference = self(taps, training=False)
        shares = []
        for i, tap in enumerate(taps):
            occluded = taps[:i] + [ops.zeros_like(tap)] + taps[i + 1:]
            norm = ops.sqrt(ops.sum(ops.square(reference - self(occluded, training=False)), axis=-1))
            shares.append(norm / math.sqrt(int(tap.shape[-1])))
        return _normalise_rows(ops.stack(shares, axis=-1))

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.units)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, activation=keras.activations.serialize(self._activation_fn))
        config.update({knob.arg or name: getattr(self, knob.arg or name) for name, knob in self.KNOBS.items()})
        return config


def _normalise_rows(scores):
    total = ops.sum(scores, axis=-1, keepdims=True)
    uniform = ops.ones_like(scores) / ops.cast(ops.shape(scores)[-1], scores.dtype)
    return ops.where(total > 0, scores / ops.maximum(total, 1e-30), uniform)


@keras.saving.register_keras_serializable(package="lacnn_zoo")
class InnateStatic(LayerAttention):
    """Innate-Static (Fig. 5): concatenate all taps, contract with a many-to-few Dense layer.

    ``y = act(W [t_1; ...; t_n] + b)``.  The attention is innate in W; per-layer
    weights are the width-normalised occlusion shares of `LayerAttention`: for a
    linear contraction (no hidden activation)

        ``w_i = (||W_i^T t_i||_2 / sqrt(d_i)) / sum_j (||W_j^T t_j||_2 / sqrt(d_j))``

    with ``W_i`` the ``d_i`` rows of W that meet tap i.  They start at ``1/n``
    for identically distributed taps of any widths.
    """

    def build(self, input_shape):
        self._check_taps(input_shape)
        self.build_contraction(sum(self.tap_widths))

    def combine(self, taps, training=None):
        return ops.concatenate(taps, axis=-1)


@keras.saving.register_keras_serializable(package="lacnn_zoo")
class StaticTrainableVector(LayerAttention):
    """Static Trainable-Vector: ``y = act(W [x_1 t_1; ...; x_n t_n] + b)``, ``x = softmax(layer_logits)``.

    Every ``x_i`` is in [0, 1] and they sum to 1 for any value of the trainable
    `layer_logits`; zeros at initialisation give equal attention ``1/n``
    (section 4's starting point).  `layer_weights` returns ``x`` for every row.
    """

    def build(self, input_shape):
        self._check_taps(input_shape)
        self.layer_logits = self.add_weight(
            name="layer_logits", shape=(self.num_layers,), initializer="zeros", trainable=True
        )
        self.build_contraction(sum(self.tap_widths))

    def attention_vector(self):
        return ops.softmax(self.layer_logits)

    def combine(self, taps, training=None):
        x = self.attention_vector()
        return ops.concatenate([x[i] * tap for i, tap in enumerate(taps)], axis=-1)

    def layer_weights(self, taps):
        batch = ops.shape(taps[0])[0]
        return ops.broadcast_to(self.attention_vector()[None, :], (batch, self.num_layers))


@keras.saving.register_keras_serializable(package="lacnn_zoo")
class TapSelfAttention(LayerAttention):
    """Self-Attention: transformer attention over the sequence of taps, then concatenation and contraction.

    Tokens are ``z_i = t_i + e_i`` with a learned embedding ``e_i`` (`layer_embedding`)
    of the layer a token came from; multi-head attention
    ``softmax(Q K^T / sqrt(d_head)) V`` over the n tokens gives n outputs that
    are concatenated and contracted.  Which layers matter is decided per input.
    `layer_weights` is the attention probability matrix averaged over heads and
    queries: row b is ``mean_{h,q} A[b, h, q, :]`` (each A row sums to 1, so the
    average does too).

    Args:
        heads: attention heads.
        key_width: total query/key width; must be divisible by `heads`
            (default: the tap width).
    """

    needs_common_width = True
    KNOBS = {
        "heads": Knob(check_positive_int, search=(2, 4)),
        "key_width": Knob(optional(check_positive_int), search=(32, 64)),
    }
    KNOBS_TARGET = "the self-attention mechanism"

    def __init__(self, units, activation=None, heads=4, key_width=None, **kwargs):
        super().__init__(units, activation=activation, **kwargs)
        self._set_knobs(heads=heads, key_width=key_width)
        if self.key_width is not None and self.key_width % self.heads:
            raise ValueError(
                f"`key_width` must be divisible by `heads`; received key_width={key_width}, heads={heads}."
            )

    def build(self, input_shape):
        self._check_taps(input_shape)
        width = self._equal_widths(input_shape, "Self-Attention")
        key_width = self.key_width or width
        if key_width % self.heads:
            raise ValueError(
                f"The key width ({key_width}, the tap width unless key_width is set) must be divisible by "
                f"`heads`; received heads={self.heads}."
            )
        self.layer_embedding = self.add_weight(
            name="layer_embedding", shape=(self.num_layers, width),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )
        self.attention = layers.MultiHeadAttention(self.heads, key_width // self.heads, name="attention",
                                                    dtype=self.dtype_policy)
        tokens = (None, self.num_layers, width)
        self.attention.build(tokens, tokens)
        self.build_contraction(self.num_layers * width)

    def _attend(self, taps, training=None):
        tokens = ops.stack(taps, axis=1) + self.layer_embedding[None]
        return self.attention(tokens, tokens, return_attention_scores=True, training=training)

    def combine(self, taps, training=None):
        attended, _ = self._attend(taps, training=training)
        return ops.reshape(attended, (-1, self.num_layers * self.tap_widths[0]))

    def layer_weights(self, taps):
        _, scores = self._attend(list(taps), training=False)  # (batch, heads, queries, keys)
        return ops.mean(scores, axis=(1, 2))


LSTM_DIRECTIONS = ("forward", "bidirectional")
LSTM_READOUTS = ("attention", "final_state")


@keras.saving.register_keras_serializable(package="lacnn_zoo")
class DynamicRecurrent(LayerAttention):
    """Dynamic-Recurrent (Fig. 6, dashed line): an LSTM reads the taps from the lowest layer to the highest.

    ``readout="attention"`` (the default; DIANet-style dynamic attention, as Fig. 6
    draws it: the taps pass through an attention mechanism, are concatenated and
    contracted).  With ``h_1, ..., h_n`` the LSTM's per-step outputs over
    ``t_1, ..., t_n`` (lowest layer first; forward and backward outputs
    concatenated when bidirectional)::

        s_i = v^T h_i,    a = softmax(s_1, ..., s_n),
        y = act(W [a_1 t_1; ...; a_n t_n] + b)

    Every ``a_i`` is in [0, 1] and they sum to 1; they depend on the input (the
    LSTM has seen layers 1..i when it scores layer i).  The score vector ``v``
    (`score`) starts at zero, so every layer starts at ``1/n`` for every input
    (section 4's "equal attention weighting"), as Static Trainable-Vector's
    zero logits do; its gradient is not zero, so it moves from the first step.
    `layer_weights` returns ``a``: the weights are read, not inferred.

    ``readout="final_state"`` (the zoo's first form): the LSTM's final state
    (both final states when bidirectional) is contracted,
    ``y = act(W h_n + b)``; the gates decide what of each layer propagates.
    `layer_weights` is then the occlusion share of `LayerAttention`.  That
    share is NOT equal at initialisation: the final state forgets early steps,
    so with identically distributed taps it rises from the first tap read to
    the last (about 0.06 ... 0.35 over 6 taps); read it against the
    before-training row (`weights_start_equal` is False).

    Saved models from before the knob existed have no ``readout`` in their
    config; `from_config` gives them ``"final_state"``, the only form they
    could have, so they load their weights and predict as before.

    Args:
        lstm_units: LSTM state size.
        direction: ``"forward"`` (lowest to highest layer) or ``"bidirectional"``.
        readout: ``"attention"`` or ``"final_state"``.
    """

    needs_common_width = True
    KNOBS = {
        "lstm_units": Knob(check_positive_int, search=(32, 64)),
        "lstm_direction": Knob(one_of(LSTM_DIRECTIONS), search=LSTM_DIRECTIONS, arg="direction"),
        "lstm_readout": Knob(one_of(LSTM_READOUTS), arg="readout"),
    }
    KNOBS_TARGET = "the Dynamic-Recurrent LSTM"

    def __init__(self, units, activation=None, lstm_units=64, direction="forward", readout="attention", **kwargs):
        super().__init__(units, activation=activation, **kwargs)
        self._set_knobs(lstm_units=lstm_units, direction=direction, readout=readout)

    @property
    def weights_start_equal(self):
        return self.readout == "attention"

    def build(self, input_shape):
        self._check_taps(input_shape)
        width = self._equal_widths(input_shape, "Dynamic-Recurrent")
        sequences = self.readout == "attention"
        lstm = layers.LSTM(self.lstm_units, return_sequences=sequences, name="lstm", dtype=self.dtype_policy)
        self.recurrent = (
            layers.Bidirectional(lstm, name="bidirectional", dtype=self.dtype_policy)
            if self.direction == "bidirectional" else lstm
        )
        self.recurrent.build((None, self.num_layers, width))
        factor = 2 if self.direction == "bidirectional" else 1
        if sequences:
            self.score = layers.Dense(1, use_bias=False, kernel_initializer="zeros", name="score",
                                      dtype=self.dtype_policy)
            self.score.build((None, self.num_layers, factor * self.lstm_units))
            self.build_contraction(self.num_layers * width)
        else:
            self.build_contraction(factor * self.lstm_units)

    def attention_weights(self, taps, training=None):
        """``a = softmax_i(v^T h_i)``, shape (batch, n) (``readout="attention"`` only)."""
        outputs = self.recurrent(ops.stack(taps, axis=1), training=training)  # (batch, n, factor * lstm_units)
        return ops.softmax(ops.squeeze(self.score(outputs), axis=-1), axis=-1)

    def combine(self, taps, training=None):
        if self.readout == "final_state":
            return self.recurrent(ops.stack(taps, axis=1), training=training)
        a = self.attention_weights(taps, training=training)
        return ops.concatenate([a[:, i:i + 1] * tap for i, tap in enumerate(taps)], axis=-1)

    def layer_weights(self, taps):
        if self.readout == "final_state":
            return self.occlusion_shares(taps)
        return self.attention_weights(list(taps), training=False)

    @classmethod
    def from_config(cls, config):
        # A config without `readout` was saved before the knob existed, when the final state was the only form.
        return super().from_config({"readout": "final_state", **config})


# The four mechanisms by the name the builders' `mechanism` knob takes; each class owns its knobs (`KNOBS`).
MECHANISMS = {
    "innate_static": InnateStatic,
    "static_vector": StaticTrainableVector,
    "self_attention": TapSelfAttention,
    "dynamic_recurrent": DynamicRecurrent,
}
