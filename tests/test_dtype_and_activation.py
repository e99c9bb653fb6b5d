"""Layers keep a callable activation through `.keras`, and follow their dtype policy (mixed precision)."""

import keras
import numpy as np
import pytest
from conftest import random_batch

from lacnn_zoo import build_model
from lacnn_zoo.layers import ConvBNAct, ResidualBlock
from lacnn_zoo.layers.augmented_conv import AugmentedConv2D
from lacnn_zoo.layers.layer_attention import MECHANISMS, InnateStatic


@keras.saving.register_keras_serializable(package="lacnn_zoo_tests")
def doubled_relu(x):
    return 2.0 * keras.ops.relu(x)


@pytest.mark.parametrize("activation", [keras.activations.gelu, doubled_relu], ids=["gelu", "registered"])
def test_callable_activation_survives_a_keras_round_trip(activation, tmp_path):
    inputs = keras.Input((6, 5, 3))
    conv = ConvBNAct(4, activation=activation, name="conv")(inputs)
    taps = [keras.layers.GlobalAveragePooling2D()(conv), keras.layers.Flatten()(conv)]
    outputs = InnateStatic(3, activation=activation, name="mechanism")(taps)
    model = keras.Model(inputs, outputs)
    x, _ = random_batch((6, 5, 3), n=2)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert reloaded.get_layer("conv").activation is activation
    assert reloaded.get_layer("mechanism")._activation_fn is activation
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(reloaded(x)), keras.ops.convert_to_numpy(model(x)))

    # The activation is applied: conv's output is activation(BN(conv(x))) computed from its sub-layers.
    layer = model.get_layer("conv")
    pre = layer.bn(layer.conv(x), training=False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)),
                               keras.ops.convert_to_numpy(activation(pre)), rtol=1e-6)


def _sub_layers(layer):
    """Every layer held by `layer`'s attributes, recursively (not `layer` itself)."""
    found = []
    for value in vars(layer).values():
        if isinstance(value, keras.layers.Layer) and value is not layer and value not in found:
            found.append(value)
            found.extend(s for s in _sub_layers(value) if s not in found)
    return found


@pytest.mark.parametrize("make,input_shape", [
    (lambda: ConvBNAct(8, dtype="mixed_bfloat16"), (2, 6, 6, 3)),
    (lambda: ResidualBlock(8, strides=2, mixing="projection", dropout=0.1, dtype="mixed_bfloat16"), (2, 6, 6, 4)),
    (lambda: ResidualBlock(8, preactivation=True, attention=dict(dk=4, dv=2, heads=2), dtype="mixed_bfloat16"),
     (2, 6, 6, 4)),
    (lambda: AugmentedConv2D(8, strides=2, dk=4, dv=2, heads=2, dtype="mixed_bfloat16"), (2, 7, 5, 3)),
])
def test_sub_layers_follow_the_layers_dtype_policy(make, input_shape):
    # The global policy stays float32: only the layer's own policy can make its sub-layers bfloat16.
    layer = make()
    out = layer(np.ones(input_shape, "float32"))
    subs = _sub_layers(layer)
    assert subs
    for sub in subs:
        assert sub.compute_dtype == "bfloat16", sub.name
        assert all(w.dtype == "float32" for w in sub.weights), sub.name
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"


@pytest.mark.parametrize("mechanism", sorted(MECHANISMS))
def test_mechanism_sub_layers_follow_the_dtype_policy(mechanism):
    options = dict(lstm_units=4, direction="bidirectional") if mechanism == "dynamic_recurrent" else {}
    layer = MECHANISMS[mechanism](3, dtype="mixed_bfloat16", **options)
    layer([np.ones((2, 4), "float32")] * 3)
    for sub in _sub_layers(layer):
        assert sub.compute_dtype == "bfloat16", sub.name


@pytest.fixture
def mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


# One model per family (layer_attended twice: the LSTM and the transformer mechanisms).
@pytest.mark.parametrize("name", ["plain_cnn_tiny", "resnet8_beta", "wrn10_2", "aa_resnet8",
                                  "lacnn_dynamic_recurrent_tiny", "lacnn_self_attention_tiny"])
def test_mixed_bfloat16_builds_and_trains_a_step(name, mixed_bfloat16):
    model = build_model(name, input_shape=(8, 8, 1))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=keras.losses.SparseCategoricalCrossentropy(True))
    x, y = random_batch((8, 8, 1), n=8)
    loss = float(model.train_on_batch(x, y))
    assert np.isfinite(loss)
    assert all(w.dtype == "float32" for w in model.weights)
    custom = [layer for layer in model.layers if type(layer).__module__.startswith("lacnn_zoo")]
    assert custom
    for layer in custom:
        for sub in [layer, *_sub_layers(layer)]:
            assert sub.compute_dtype == "bfloat16", (layer.name, sub.name)
