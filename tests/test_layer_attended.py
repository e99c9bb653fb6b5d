"""The four layer-attended mechanisms against NumPy references, the special cases, and the monitor."""

import csv
import json
import os
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import random_batch
from reference import (
    bidirectional_lstm_states,
    lstm_last_state,
    lstm_states,
    multi_head_attention,
    resize_bilinear,
    softmax,
)

from lacnn_zoo import build_model, layer_attended, list_models, model_info
from lacnn_zoo.layers.layer_attention import MECHANISMS as MECHANISM_CLASSES
from lacnn_zoo.layers.layer_attention import (
    DynamicRecurrent,
    InnateStatic,
    Knob,
    StaticTrainableVector,
    TapForm,
    TapSelfAttention,
)
from lacnn_zoo.models import layer_attended as layer_attended_module
from lacnn_zoo.models.layer_attended import layer_attended_head, tap_names
from lacnn_zoo.training.monitor import LayerAttentionMonitor, layer_weights
from lacnn_zoo.validation import check_positive_int

MECHANISMS = list(MECHANISM_CLASSES)
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
rng = np.random.default_rng(7)


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def _taps(widths, batch=5, source=None):
    return [(source or rng).normal(size=(batch, w)).astype("float32") for w in widths]


# --- tap forms -------------------------------------------------------------------------------------

def test_tap_form_pooling_and_resampling_reference():
    x = rng.normal(size=(2, 8, 6, 3)).astype("float32")
    np.testing.assert_allclose(_np(TapForm("pool", pool="avg")(x)), x.mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(_np(TapForm("pool", pool="max")(x)), x.max(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_allclose(_np(TapForm("pool", pool=None)(x)), x.reshape(2, -1), rtol=1e-6)
    # Resampling 8x6 -> 2x3 is the mean of each 4x2 block, flattened row-major with channels last.
    blocks = x.reshape(2, 2, 4, 3, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(_np(TapForm("resample", size=(2, 3))(x)), blocks.reshape(2, -1), rtol=1e-5)
    # Not divisors (8 -> 3 rows, 6 -> 4 columns, non-square): bilinear resizing with half-pixel centres and no
    # antialiasing, against the NumPy reference.
    expected = resize_bilinear(x.astype(np.float64), 3, 4).reshape(2, -1)
    np.testing.assert_allclose(_np(TapForm("resample", size=(3, 4))(x)), expected, rtol=1e-5, atol=1e-6)
    up = rng.normal(size=(2, 3, 5, 2)).astype("float32")  # upsampling 3x5 -> 4x7 (also not block means)
    np.testing.assert_allclose(_np(TapForm("resample", size=(4, 7))(up)),
                               resize_bilinear(up.astype(np.float64), 4, 7).reshape(2, -1), rtol=1e-5, atol=1e-6)


# --- mechanisms against the equations -------------------------------------------------------------

def test_static_trainable_vector_reference():
    taps = _taps([3, 4, 2])
    layer = StaticTrainableVector(5)
    layer(taps)
    logits = rng.normal(size=3)
    layer.layer_logits.assign(logits)
    x = softmax(logits)
    kernel, bias = _np(layer.contraction.kernel), _np(layer.contraction.bias)
    expected = np.concatenate([x[i] * taps[i] for i in range(3)], axis=-1) @ kernel + bias
    np.testing.assert_allclose(_np(layer(taps)), expected, rtol=1e-5, atol=1e-6)
    weights = _np(layer.layer_weights(taps))
    np.testing.assert_allclose(weights, np.broadcast_to(x, (5, 3)), rtol=1e-6)


def test_static_trainable_vector_starts_equal():
    layer = StaticTrainableVector(4)
    taps = _taps([2, 2, 2, 2])
    layer(taps)
    np.testing.assert_allclose(_np(layer.layer_weights(taps)), 0.25, rtol=1e-6)


def test_innate_static_reference_and_contribution_shares():
    taps = _taps([3, 4, 2])
    layer = InnateStatic(6)
    out = _np(layer(taps))
    kernel, bias = _np(layer.contraction.kernel), _np(layer.contraction.bias)
    np.testing.assert_allclose(out, np.concatenate(taps, -1) @ kernel + bias, rtol=1e-5, atol=1e-6)
    # Linear contraction: o_i = ||W_i^T t_i|| / sqrt(d_i), w_i = o_i / sum_j o_j.
    rows = np.split(kernel, np.cumsum([3, 4])[:2], axis=0)
    norms = np.stack([np.linalg.norm(t @ w, axis=-1) / np.sqrt(w.shape[0]) for t, w in zip(taps, rows)], axis=-1)
    np.testing.assert_allclose(_np(layer.layer_weights(taps)), norms / norms.sum(-1, keepdims=True), rtol=1e-4)


def test_self_attention_reference():
    taps = _taps([8, 8, 8, 8])
    layer = TapSelfAttention(3, heads=2, key_width=6)
    layer(taps)
    layer.layer_embedding.assign(rng.normal(size=(4, 8)))
    mha = layer.attention
    weights = [_np(w) for w in (
        mha.query_dense.kernel, mha.query_dense.bias, mha.key_dense.kernel, mha.key_dense.bias,
        mha.value_dense.kernel, mha.value_dense.bias, mha.output_dense.kernel, mha.output_dense.bias,
    )]
    assert weights[0].shape == (8, 2, 3)
    tokens = np.stack(taps, axis=1) + _np(layer.layer_embedding)[None]  # layer identity embedding
    attended, probs = multi_head_attention(tokens, *weights)
    kernel, bias = _np(layer.contraction.kernel), _np(layer.contraction.bias)
    np.testing.assert_allclose(_np(layer(taps)), attended.reshape(5, -1) @ kernel + bias, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_np(layer.layer_weights(taps)), probs.mean(axis=(1, 2)), rtol=1e-4, atol=1e-6)


def _lstm_weights(cell):
    return _np(cell.kernel), _np(cell.recurrent_kernel), _np(cell.bias)


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_dynamic_recurrent_attention_reference(direction):
    """Fig. 6 read as DIANet: s_i = v^T h_i, a = softmax(s), y = W [a_1 t_1; ...; a_n t_n] + b."""
    local = np.random.default_rng(11)  # its own stream: the checks below must not depend on which tests ran
    taps = _taps([4, 4, 4, 4], source=local)
    layer = DynamicRecurrent(3, lstm_units=5, direction=direction)
    assert layer.readout == "attention"
    layer(taps)
    np.testing.assert_allclose(_np(layer.layer_weights(taps)), 0.25, rtol=1e-6)  # v starts at 0: equal attention
    factor = 2 if direction == "bidirectional" else 1
    v = local.normal(size=(factor * 5, 1)) * 5.0
    layer.score.kernel.assign(v)
    sequence = np.stack(taps, 1).astype(np.float64)
    if direction == "forward":
        h = lstm_states(sequence, *_lstm_weights(layer.recurrent.cell))
    else:
        h = bidirectional_lstm_states(sequence, _lstm_weights(layer.recurrent.forward_layer.cell),
                                      _lstm_weights(layer.recurrent.backward_layer.cell))
    a = softmax((h @ v)[..., 0], axis=-1)
    assert np.abs(a - 0.25).max() > 0.1 and np.abs(a - a[:, ::-1]).max() > 0.1  # far from constant and symmetric
    kernel, bias = _np(layer.contraction.kernel), _np(layer.contraction.bias)
    expected = np.concatenate([a[:, i:i + 1] * taps[i] for i in range(4)], axis=-1) @ kernel + bias
    np.testing.assert_allclose(_np(layer(taps)), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_np(layer.layer_weights(taps)), a, rtol=1e-4, atol=1e-6)  # read, not inferred


def test_dynamic_recurrent_final_state_weights_are_occlusion_shares():
    taps = _taps([4, 4, 4, 4], source=np.random.default_rng(12))
    layer = DynamicRecurrent(3, lstm_units=5, readout="final_state")
    layer(taps)
    assert not layer.weights_start_equal and not hasattr(layer, "score")
    weights = _lstm_weights(layer.recurrent.cell)
    kernel, bias = _np(layer.contraction.kernel), _np(layer.contraction.bias)
    sequence = np.stack(taps, 1).astype(np.float64)
    y = lstm_last_state(sequence, *weights) @ kernel + bias
    shares = []
    for i in range(4):
        occluded = sequence.copy()
        occluded[:, i] = 0.0
        shares.append(np.linalg.norm(y - lstm_last_state(occluded, *weights) @ kernel - bias, axis=-1))
    expected = np.stack(shares, -1) / np.sum(shares, 0)[:, None]
    assert np.abs(expected - expected[:, ::-1]).max() > 0.05 and np.abs(expected - 0.25).max() > 0.05
    np.testing.assert_allclose(_np(layer.layer_weights(taps)), expected, rtol=1e-4, atol=1e-6)


def test_dynamic_recurrent_reads_lowest_to_highest():
    taps = _taps([4, 4, 4])
    layer = DynamicRecurrent(3, lstm_units=5, readout="final_state")
    out = _np(layer(taps))
    cell = layer.recurrent.cell
    h = lstm_last_state(np.stack(taps, 1).astype(np.float64), _np(cell.kernel), _np(cell.recurrent_kernel),
                        _np(cell.bias))
    kernel, bias = _np(layer.contraction.kernel), _np(layer.contraction.bias)
    np.testing.assert_allclose(out, h @ kernel + bias, rtol=1e-4, atol=1e-5)
    reversed_h = lstm_last_state(np.stack(taps[::-1], 1).astype(np.float64), _np(cell.kernel),
                                 _np(cell.recurrent_kernel), _np(cell.bias))
    assert not np.allclose(out, reversed_h @ kernel + bias, atol=1e-4)  # the order is really used
    bidirectional = DynamicRecurrent(3, lstm_units=5, direction="bidirectional", readout="final_state")
    assert bidirectional(taps).shape == (5, 3) and bidirectional.contraction.kernel.shape == (10, 3)


def test_dynamic_recurrent_saved_before_the_readout_knob_loads_and_predicts_as_before():
    """A `.keras` file written by the zoo before `readout` existed (commit 8a64a31: a functional model of three
    4-wide taps into DynamicRecurrent(3, lstm_units=5)) has no `readout` in its config: it must load as the final
    state readout, its only form then, and predict and weigh its layers exactly as it did."""
    path = os.path.join(DATA, "dynamic_recurrent_before_readout.keras")
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    layer_configs = [c["config"] for c in config["config"]["layers"] if c["class_name"] == "DynamicRecurrent"]
    assert layer_configs and "readout" not in layer_configs[0]
    saved = np.load(os.path.join(DATA, "dynamic_recurrent_before_readout.npz"))
    model = keras.saving.load_model(path)
    attention = model.get_layer("layer_attention")
    assert attention.readout == "final_state"
    taps = list(saved["taps"])
    # Same weights, same graph: equal to float32 round-off (bit-exact on the machine that wrote the file).
    np.testing.assert_allclose(_np(model(taps)), saved["y"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(_np(attention.layer_weights(taps)), saved["weights"], rtol=1e-6)
    # A new save records the readout, so a new default can never change what an old file means.
    assert attention.get_config()["readout"] == "final_state"
    assert DynamicRecurrent.from_config(DynamicRecurrent(3).get_config()).readout == "attention"


@pytest.mark.parametrize("readout", ["attention", "final_state"])
def test_dynamic_recurrent_readout_round_trips(readout, tmp_path):
    inputs = [keras.Input((4,)) for _ in range(3)]
    model = keras.Model(inputs, DynamicRecurrent(3, lstm_units=5, readout=readout, name="layer_attention")(inputs))
    if readout == "attention":
        model.get_layer("layer_attention").score.kernel.assign(rng.normal(size=(5, 1)))
    taps = _taps([4, 4, 4], batch=2)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    assert reloaded.get_layer("layer_attention").readout == readout
    np.testing.assert_array_equal(_np(reloaded(taps)), _np(model(taps)))
    np.testing.assert_array_equal(_np(reloaded.get_layer("layer_attention").layer_weights(taps)),
                                  _np(model.get_layer("layer_attention").layer_weights(taps)))


# --- unbiased per-layer weights at initialisation --------------------------------------------------

WIDTHS = (16, 16, 32, 32, 64, 64)


def _initial_weights(mechanism, seeds=3, batch=64, **knobs):
    """Batch- and seed-mean `layer_weights` of a freshly built head (tap transforms as the zoo builds them)
    for identically distributed random taps (i.i.d. standard normal features) of widths 16/16/32/32/64/64."""
    rows = []
    for seed in range(seeds):
        keras.utils.set_random_seed(seed)
        inputs = [keras.Input((1, 1, w)) for w in WIDTHS]
        head = keras.Model(inputs, layer_attended_head(inputs, num_classes=10, mechanism=mechanism, **knobs))
        attention = head.get_layer("layer_attention")
        formed = keras.Model(inputs, attention.input)
        noise = np.random.default_rng(100 + seed)
        taps = formed([noise.normal(size=(batch, 1, 1, w)).astype("float32") for w in WIDTHS])
        rows.append(_np(attention.layer_weights(list(taps))).mean(axis=0))
    return np.mean(rows, axis=0)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_every_mechanism_starts_equal_for_identically_distributed_taps(mechanism):
    """Section 4 starts from equal attention: with identically distributed taps of different widths, every
    default measure is 1/6 at initialisation within 0.02 (3 seeds x 64 inputs).  The raw occlusion share of
    Innate-Static gave 0.11 ... 0.23 (growing like sqrt(width)); Dynamic-Recurrent's final-state occlusion
    0.06 ... 0.35."""
    weights = _initial_weights(mechanism)
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(weights, 1 / 6, atol=0.02)


def test_final_state_occlusion_is_biased_at_initialisation_and_says_so():
    """The option's measure is not equal at initialisation: the final state remembers the last taps read best.
    `weights_start_equal` is False, so the monitor reads it against its before-training row."""
    weights = _initial_weights("dynamic_recurrent", seeds=2, lstm_readout="final_state")
    assert np.all(np.diff(weights) > 0) and weights[-1] > 2 * weights[0]


# --- whole models ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("tap_form", ["pool", "resample"])
def test_model_shapes_and_weight_rows(mechanism, tap_form):
    shape = (12, 10, 2)
    model = build_model("lacnn_static_vector_tiny", mechanism=mechanism, tap_form=tap_form,
                        input_shape=shape, num_classes=4, contraction_units=16)
    x, _ = random_batch(shape, n=6)
    assert model(x).shape == (6, 4)
    if mechanism == "dynamic_recurrent":  # the score vector starts at 0 (equal attention); move it
        model.get_layer("layer_attention").score.kernel.assign(rng.normal(size=(64, 1)))
    weights = layer_weights(model, x)
    assert weights.shape == (6, 6)  # (batch, n_layers): 3 stages x 2 layers
    assert np.all(weights >= 0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    if mechanism in ("self_attention", "innate_static", "dynamic_recurrent"):
        assert not np.allclose(weights, 1 / 6)  # per-input measures, not a constant


def test_resample_keeps_positions_and_transform_widths():
    model = build_model("lacnn_innate_static", input_shape=(16, 16, 3), tap_form="resample", tap_transform=True,
                        tap_units=24)
    # Taps of 16x16 (x2), 8x8 (x2), 4x4 (x2) all resampled to the smallest, 4x4, then 24 features each.
    assert [model.get_layer(f"tap{i}_form").output.shape[-1] for i in range(1, 7)] == [
        16 * 32, 16 * 32, 16 * 64, 16 * 64, 16 * 128, 16 * 128]
    assert model.get_layer("layer_attention").contraction.kernel.shape == (6 * 24, 10)


def test_include_top_false_is_the_backbone_and_features_give_every_tap():
    bare = build_model("lacnn_dynamic_recurrent", input_shape=(24, 40, 3), include_top=False, pooling="avg")
    assert len(bare.outputs) == 1 and tuple(bare.output.shape) == (None, 128)  # as every family: one tensor
    plain = build_model("plain_cnn", input_shape=(24, 40, 3), include_top=False, pooling="avg")
    assert tuple(plain.output.shape) == tuple(bare.output.shape)
    model = build_model("lacnn_dynamic_recurrent", input_shape=(24, 40, 3), include_top=False, features="blocks")
    assert [tuple(o.shape) for o in model.outputs] == [
        (None, 24, 40, 32), (None, 24, 40, 32), (None, 12, 20, 64), (None, 12, 20, 64),
        (None, 6, 10, 128), (None, 6, 10, 128)]


def _copy_weights_by_name(source, target):
    for layer in source.layers:
        if layer.weights and layer.name != "logits":
            target.get_layer(layer.name).set_weights(layer.get_weights())


@pytest.mark.parametrize("baseline,la_name,depth", [("plain_cnn_tiny", "plain", 2), ("resnet8", "residual", 1)])
def test_one_hot_static_vector_is_exactly_the_baseline(baseline, la_name, depth, digits):
    """The paper's claim: the plain CNN and the ResNet are special cases of the layer-attended net."""
    shape = (8, 8, 1)
    base = build_model(baseline, input_shape=shape)
    knobs = dict(widths=(16, 32, 64), depth=depth, backbone=la_name)
    la = build_model("lacnn_static_vector_tiny", input_shape=shape, **knobs)
    x = digits.test[0][:32]
    base.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(True))
    base.fit(x, digits.test[1][:32], epochs=1, verbose=0)  # non-trivial BN statistics and weights
    _copy_weights_by_name(base, la)
    attention = la.get_layer("layer_attention")
    n = attention.num_layers
    attention.layer_logits.assign([-1e4] * (n - 1) + [0.0])  # softmax is exactly one-hot in float32
    kernel, bias = base.get_layer("logits").get_weights()
    contraction = np.random.default_rng(0).normal(size=attention.contraction.kernel.shape).astype("float32")
    contraction[-kernel.shape[0]:] = kernel  # rows of the last tap; the others meet a zero weight
    attention.contraction.set_weights([contraction, bias])
    np.testing.assert_array_equal(layer_weights(la, x)[0], [0.0] * (n - 1) + [1.0])
    np.testing.assert_allclose(_np(la(x, training=False)), _np(base(x, training=False)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_gradient_reaches_the_first_layer(mechanism):
    model = build_model("lacnn_static_vector_tiny", mechanism=mechanism, input_shape=(8, 8, 1))
    x, y = random_batch((8, 8, 1), n=8)
    first = model.get_layer("stage1_layer1").conv.kernel
    with tf.GradientTape() as tape:
        loss = keras.losses.sparse_categorical_crossentropy(y, model(x, training=True), from_logits=True)
    grad = tape.gradient(loss, first.value)
    assert grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_each_mechanism_trains_on_digits(mechanism, digits):
    model = build_model("lacnn_static_vector_tiny", mechanism=mechanism, input_shape=(8, 8, 1))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = digits.train
    history = model.fit(x, y, batch_size=64, epochs=3, verbose=0, validation_data=digits.validation)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert history.history["val_accuracy"][-1] > 0.5


def test_round_trip_keeps_layer_weights(tmp_path):
    model = build_model("lacnn_self_attention_tiny", input_shape=(8, 8, 1))
    x, _ = random_batch((8, 8, 1), n=4)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(layer_weights(reloaded, x), layer_weights(model, x))


@pytest.mark.parametrize("knobs,match", [
    (dict(depth=0), "depth"),
    (dict(widths=()), "widths"),
    (dict(mechanism="self_attention", heads=3, tap_units=64), r"divisible by `heads`"),
    (dict(mechanism="self_attention", key_width=10, heads=4), r"key_width.*divisible"),
    (dict(tap_form="crop"), r"tap_form.*'pool', 'resample'"),
    (dict(mechanism="transformer"), "mechanism"),
    (dict(mechanism="dynamic_recurrent", tap_transform=False), "common width"),
    (dict(mechanism="dynamic_recurrent", lstm_direction="backward"), "lstm_direction"),
    (dict(contraction_units=0), "contraction_units"),
    (dict(backbone="dense"), "backbone"),
    (dict(tap_form="resample", tap_size=2.0), r"`tap_size` must be None.*positive int"),
    (dict(tap_form="resample", tap_size=(2, 2, 2)), "`tap_size`"),
    (dict(taps="layers"), r"`taps` must be 'blocks', 'stages'"),
])
def test_bad_knobs_raise_clear_errors(knobs, match):
    with pytest.raises(ValueError, match=match):
        build_model("lacnn_static_vector_tiny", input_shape=(8, 8, 1), **knobs)


def test_taps_knob_selects_stages_of_the_zoo_backbone():
    model = build_model("lacnn_static_vector_tiny", taps="stages", input_shape=(8, 8, 1))
    # The last layer at each of the three resolutions (8x8, 4x4, 2x2) of the 3 x 2-layer plain CNN.
    assert tap_names(model) == ["stage1_layer2", "stage2_layer2", "stage3_layer2"]
    assert model.get_layer("layer_attention").contraction.kernel.shape == (16 + 32 + 64, 10)
    assert tap_names(build_model("lacnn_static_vector_resnet8")) == [f"stage{s}_block1" for s in (1, 2, 3)]


def test_layer_weights_refuses_other_models():
    with pytest.raises(ValueError, match="layer-attention"):
        layer_weights(build_model("plain_cnn_tiny", input_shape=(8, 8, 1)), np.zeros((1, 8, 8, 1)))


def test_monitor_writes_csv_png_and_tensorboard(tmp_path, digits):
    model = build_model("lacnn_static_vector_tiny", input_shape=(8, 8, 1))
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    monitor = LayerAttentionMonitor(digits.validation[0][:64], tmp_path, tensorboard_dir=str(tmp_path / "tb"))
    model.fit(*digits.train, batch_size=128, epochs=2, verbose=0, callbacks=[monitor])
    with open(tmp_path / "layer_attention.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch"] + [f"layer_{i}" for i in range(1, 7)]
    table = np.array(rows[1:], dtype=float)
    assert table[:, 0].tolist() == [0, 1, 2]
    np.testing.assert_allclose(table[0, 1:], 1 / 6, rtol=1e-5)  # equal attention before training
    np.testing.assert_allclose(table[:, 1:].sum(axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(table[-1, 1:], 1 / 6)  # it moved
    with open(tmp_path / "layer_attention.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path / "tb"))


def test_every_layer_attended_preset_is_registered():
    names = list_models("lacnn_*")
    for mechanism in MECHANISMS:
        assert f"lacnn_{mechanism}" in names and f"lacnn_{mechanism}_tiny" in names


# --- every mechanism owns its knobs -----------------------------------------------------------------

@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_a_mechanism_s_knobs_reach_the_builder_with_its_layer_s_defaults(mechanism):
    layer = MECHANISM_CLASSES[mechanism]
    defaults = layer.knob_defaults()
    info = model_info(f"lacnn_{mechanism}_tiny")
    assert {k: info.knobs[k] for k in defaults} == defaults
    attention = build_model(f"lacnn_{mechanism}_tiny").get_layer("layer_attention")
    assert type(attention) is layer
    config = attention.get_config()
    assert {arg: config[arg] for arg in layer.knob_arguments(defaults)} == layer.knob_arguments(defaults)
    # Its knobs are inert under every other mechanism, and only there.
    for other in MECHANISMS:
        inert = info.inert_knobs({"mechanism": other})
        assert all((k in inert) == (other != mechanism) for k in defaults), (other, inert)
    for name, knob in layer.KNOBS.items():  # every searched value is one the knob accepts
        assert [knob.check(name, v) for v in knob.search] == list(knob.search)


def test_the_builder_names_every_mechanism_knob_before_the_contraction():
    import inspect

    names = list(inspect.signature(layer_attended_module.build_layer_attended).parameters)
    knobs = [k for layer in MECHANISM_CLASSES.values() for k in layer.KNOBS]
    assert knobs == ["heads", "key_width", "lstm_units", "lstm_direction", "lstm_readout"]  # today's
    at = names.index("contraction_units")
    assert names[at - len(knobs):at] == knobs and names[at - len(knobs) - 1] == "tap_units"
    with pytest.raises(TypeError, match="unexpected keyword argument 'head'"):
        layer_attended_module.build_layer_attended(input_shape=(8, 8, 1), num_classes=2, include_top=True,
                                                   pooling="avg", classifier_activation=None, name="x", head=2)


class GatedInnateStatic(InnateStatic):
    """Innate-Static grown one knob, `gate_units` (default 3, searched over 3 and 5): what adding a knob takes."""

    KNOBS = {"gate_units": Knob(check_positive_int, search=(3, 5))}
    KNOBS_TARGET = "the test's gate"

    def __init__(self, units, activation=None, gate_units=3, **kwargs):
        super().__init__(units, activation=activation, **kwargs)
        self._set_knobs(gate_units=gate_units)


def grow_a_knob(monkeypatch):
    """Make "innate_static" `GatedInnateStatic`, and derive the builder's signature again, as importing does."""
    builder = layer_attended_module.build_layer_attended
    monkeypatch.setitem(MECHANISM_CLASSES, "innate_static", GatedInnateStatic)
    monkeypatch.setattr(builder, "__signature__", builder.__signature__)  # restored after the test
    layer_attended_module._name_mechanism_knobs(builder)


def test_a_knob_added_to_a_mechanism_reaches_every_builder_and_its_checks(monkeypatch):
    """Only the mechanism class changes: the builders take the knob, with its default, check it and refuse it
    under another mechanism (tests/test_tuning.py: the search searches it)."""
    grow_a_knob(monkeypatch)
    assert model_info("lacnn_innate_static_tiny").knobs["gate_units"] == 3
    assert layer_attended_module.head_defaults()["gate_units"] == 3
    model = build_model("lacnn_innate_static_tiny", gate_units=5)
    assert model.get_layer("layer_attention").gate_units == 5
    assert model.get_layer("layer_attention").get_config()["gate_units"] == 5
    assert build_model("lacnn_innate_static_tiny").get_layer("layer_attention").gate_units == 3
    with pytest.raises(ValueError, match="`gate_units` must be a positive integer"):
        build_model("lacnn_innate_static_tiny", gate_units=0)
    with pytest.raises(ValueError, match="gate_units.* cannot take effect.*the test's gate, and mechanism='static"):
        build_model("lacnn_static_vector_tiny", gate_units=5)
    backbone = build_model("plain_cnn_tiny", include_top=False, pooling=None)
    given = layer_attended(backbone, mechanism="innate_static", gate_units=5)
    assert isinstance(given.get_layer("layer_attention"), GatedInnateStatic)
    assert given.get_layer("layer_attention").gate_units == 5
    with pytest.raises(ValueError, match="`gate_units` cannot take effect on this head: it sets the test's gate"):
        layer_attended(backbone, mechanism="self_attention", gate_units=5)


@pytest.mark.parametrize("mechanism,extra", [
    ("innate_static", {}), ("static_vector", {}), ("self_attention", {}),
    ("dynamic_recurrent", {"lstm_readout": "attention"}), ("dynamic_recurrent", {"lstm_readout": "final_state"}),
])
def test_all_zero_taps_give_uniform_finite_weights(mechanism, extra):
    model = build_model(f"lacnn_{mechanism}_tiny", **extra)
    layer = model.get_layer("layer_attention")
    taps = [keras.ops.zeros((3, int(t.shape[-1]))) for t in layer.input]
    weights = keras.ops.convert_to_numpy(layer.layer_weights(taps))
    assert np.isfinite(weights).all()
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, rtol=1e-5)
    if mechanism != "self_attention":  # its layer embeddings tell zero taps apart by position, by design
        np.testing.assert_allclose(weights, np.full((3, len(taps)), 1 / len(taps)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [(2, 2, 2), (2,), ()])
def test_a_resample_tap_size_must_be_height_and_width(size):
    with pytest.raises(ValueError, match=r"`tap_size` must be \(height, width\)"):
        TapForm("resample", size=size)
