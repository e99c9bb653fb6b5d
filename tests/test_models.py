"""Every registered model, parametrised over `list_models()` as timm does: a new registration is tested for free."""

import math

import keras
import numpy as np
import pytest
from conftest import random_batch

from lacnn_zoo import build_model, list_models, model_info

MODELS = list_models()
SHAPES = [(32, 32, 3), (28, 28, 1), (8, 8, 1), (24, 40, 3)]


def min_input_size(name):
    knobs = model_info(name).knobs
    stages = len(knobs["widths"]) if "widths" in knobs else 3
    return 2 ** (stages - 1) if knobs.get("downsample", "stride") else 1


# Where a test runs every preset through an expensive path (export, another backend), the two 36M-parameter
# presets run at widening factor 2: the same layers and graph (k only sets the filters). At k = 10 one export
# took a test worker past 10 GB.
NARROWER = {"wrn28_10": {"width": 2}, "aa_wrn28_10": {"width": 2}}


def smallest_shape(name):
    """The cheapest of SHAPES the model accepts (training and round trips run there)."""
    allowed = [s for s in SHAPES if min(s[:2]) >= min_input_size(name)]
    return min(allowed, key=lambda s: s[0] * s[1])


def expected_features(name, input_shape, pooling):
    """Shapes of the `include_top=False` outputs, derived from the knobs (not from the model)."""
    info = model_info(name)
    knobs = info.knobs
    factor = min_input_size(name)

    def shape(channels, stage_factor):
        h, w = (math.ceil(s / stage_factor) for s in input_shape[:2])
        return (None, channels) if pooling else (None, h, w, channels)

    if info.family == "layer_attended":  # the backbone's last stage, as for every family
        stages = len(knobs["widths"])
        return [shape(knobs["widths"][-1], 2 ** (stages - 1) if knobs.get("downsample", "stride") else 1)]
    channels = 64 * knobs["width"] if "width" in knobs else knobs["widths"][-1]
    return [shape(channels, factor)]


@pytest.mark.parametrize("input_shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", MODELS)
def test_builds_at_input_shape(name, input_shape):
    if min(input_shape[:2]) < min_input_size(name):
        pytest.skip("input smaller than the model's downsampling allows")
    model = build_model(name, input_shape=input_shape, num_classes=7)
    assert model.name == name
    assert model.input.shape == (None, *input_shape)
    assert model.output.shape == (None, 7)


@pytest.mark.parametrize("name", MODELS)
def test_heads_and_pooling(name):
    shape = (24, 40, 3)
    for pooling in ("avg", "max", None):
        top = build_model(name, input_shape=shape, num_classes=5, pooling=pooling, classifier_activation="softmax")
        assert top.output.shape == (None, 5)
        x, _ = random_batch(shape, n=2)
        probs = keras.ops.convert_to_numpy(top(x))
        np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)
        features = build_model(name, input_shape=shape, include_top=False, pooling=pooling)
        assert [tuple(o.shape) for o in features.outputs] == expected_features(name, shape, pooling)


@pytest.mark.parametrize("name", MODELS)
def test_one_training_step_lowers_the_loss(name):
    shape = smallest_shape(name)
    model = build_model(name, input_shape=shape, num_classes=10)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=keras.losses.SparseCategoricalCrossentropy(True),
                  run_eagerly=True)
    x, y = random_batch(shape, n=8)
    before = float(model.train_on_batch(x, y))  # loss before the update
    after = float(model.train_on_batch(x, y))  # same batch, after one step
    assert np.isfinite(before) and after < before


@pytest.mark.parametrize("name", MODELS)
def test_keras_round_trip_gives_identical_predictions(name, tmp_path):
    shape = smallest_shape(name)
    model = build_model(name, input_shape=shape, num_classes=10)
    x, y = random_batch(shape, n=4)
    # Move BatchNorm statistics and every weight away from their initial values first.
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(True), run_eagerly=True)
    model.train_on_batch(x, y)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    assert type(reloaded) is type(model)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(reloaded(x, training=False)),
        keras.ops.convert_to_numpy(model(x, training=False)),
    )


@pytest.mark.parametrize("name", MODELS)
def test_bad_inputs_raise_clear_errors(name):
    too_small = min_input_size(name) - 1
    if too_small >= 1:
        with pytest.raises(ValueError, match=r"input_shape.*at least"):
            build_model(name, input_shape=(too_small, too_small, 3))
    with pytest.raises(ValueError, match="input_shape"):
        build_model(name, input_shape=(32, 32))
    with pytest.raises(ValueError, match="num_classes"):
        build_model(name, num_classes=0)
    with pytest.raises(ValueError, match="pooling"):
        build_model(name, pooling="mean")
    with pytest.raises(ValueError, match="Unknown override"):
        build_model(name, not_a_knob=1)
    with pytest.raises(ValueError, match="classifier_activation"):
        build_model(name, classifier_activation="not_an_activation")
    knobs = model_info(name).knobs
    if "beta_init" in knobs:  # with the knobs under which beta_init takes effect
        beta_mixing = {"mixing": "beta", **({"backbone": "residual"} if "backbone" in knobs else {})}
        for beta in (-0.1, 1.5):
            with pytest.raises(ValueError, match=r"beta_init.*\[0, 1\]"):
                build_model(name, beta_init=beta, **beta_mixing)
    if "depth" in knobs:
        for depth in (0, -3):
            with pytest.raises(ValueError, match="depth"):
                build_model(name, depth=depth)
    if "widths" in knobs:
        with pytest.raises(ValueError, match="widths"):
            build_model(name, widths=())
