"""Residual mixing checked against a NumPy reference of the equations, and beta's range."""

import math

import keras
import numpy as np
import pytest
from reference import batch_norm, conv2d, preactivation_block, relu

from lacnn_zoo import build_model
from lacnn_zoo.layers import ResidualBlock


def _randomise_bn(bn, rng):
    c = bn.gamma.shape[0]
    bn.gamma.assign(rng.uniform(0.5, 1.5, c))
    bn.beta.assign(rng.normal(size=c) * 0.1)
    bn.moving_mean.assign(rng.normal(size=c) * 0.1)
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, c))


def _bn(bn, x):
    return batch_norm(x, *(np.asarray(v, dtype=np.float64) for v in
                           (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance)), eps=bn.epsilon)


@pytest.mark.parametrize("mixing", ["add", "beta", "projection"])
@pytest.mark.parametrize("strides,in_channels", [(1, 6), (2, 4), (1, 4)])
def test_post_activation_block_matches_reference(mixing, strides, in_channels):
    rng = np.random.default_rng(1)
    block = ResidualBlock(6, strides=strides, mixing=mixing, beta_init=0.3)
    x = rng.normal(size=(2, 7, 5, in_channels)).astype("float32")
    block.build(x.shape)
    for bn in (block.bn1, block.bn2) + ((block.shortcut_bn,) if block.has_projection else ()):
        _randomise_bn(bn, rng)
    if mixing == "beta":
        block.beta_angle.assign(0.9)

    k1 = np.asarray(block.conv1.kernel, np.float64)
    k2 = np.asarray(block.conv2.kernel, np.float64)
    f = _bn(block.bn2, conv2d(relu(_bn(block.bn1, conv2d(x, k1, strides))), k2))
    if block.has_projection:
        shortcut = _bn(block.shortcut_bn, conv2d(x, np.asarray(block.shortcut_conv.kernel, np.float64), strides))
    else:
        shortcut = x
    if mixing == "add":
        expected = relu(f + shortcut)
    elif mixing == "beta":
        beta = math.sin(0.9) ** 2
        np.testing.assert_allclose(float(block.beta), beta, rtol=1e-6)
        expected = relu(beta * f + (1 - beta) * shortcut)  # eq. 1
    else:
        w1 = np.asarray(block.mix_residual.kernel, np.float64)[0, 0]
        expected = relu(f @ w1 + shortcut)  # h = W1 f(h) + W2 h
    got = keras.ops.convert_to_numpy(block(x, training=False))
    assert block.has_projection == (strides != 1 or in_channels != 6)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_beta_initial_value_and_endpoints():
    for beta_init in (0.0, 0.25, 1.0):
        block = ResidualBlock(4, mixing="beta", beta_init=beta_init)
        block.build((None, 4, 4, 4))
        assert float(block.beta) == pytest.approx(beta_init, abs=1e-7)


def test_beta_stays_in_unit_interval_under_a_huge_learning_rate(digits):
    model = build_model("resnet8_beta", input_shape=(8, 8, 1))
    blocks = [layer for layer in model.layers if isinstance(layer, ResidualBlock)]
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=50.0),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = digits.train
    model.fit(x[:256], y[:256], batch_size=32, epochs=2, verbose=0)
    betas = np.array([float(b.beta) for b in blocks])
    angles = np.array([float(b.beta_angle) for b in blocks])
    assert np.all((betas >= 0) & (betas <= 1)), betas
    # The test is only meaningful if the weights really were pushed far.
    assert np.max(np.abs(angles - math.asin(math.sqrt(0.5)))) > 0.5, angles


def _bn_params(bn):
    return (*(np.asarray(v, dtype=np.float64) for v in (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance)),
            bn.epsilon)


@pytest.mark.parametrize("mixing", ["add", "beta", "projection"])
@pytest.mark.parametrize("strides,in_channels", [(1, 6), (2, 4), (1, 4)])
def test_preactivation_block_matches_reference(mixing, strides, in_channels):
    """The Wide-ResNet block against `reference.preactivation_block`, written from the equations."""
    rng = np.random.default_rng(2)
    block = ResidualBlock(6, strides=strides, mixing=mixing, beta_init=0.3, preactivation=True, dropout=0.3)
    x = rng.normal(size=(2, 7, 5, in_channels)).astype("float32")
    block.build(x.shape)
    for bn in (block.bn1, block.bn2):
        _randomise_bn(bn, rng)
    if mixing == "beta":
        block.beta_angle.assign(0.9)  # beta = sin(0.9)^2 = 0.61: a swap of beta and 1 - beta shows
    kernel = lambda conv: np.asarray(conv.kernel, np.float64)  # noqa: E731
    beta = math.sin(0.9) ** 2
    mix = {
        "add": lambda f, s: f + s,
        "beta": lambda f, s: beta * f + (1 - beta) * s,  # eq. 1
        "projection": lambda f, s: f @ kernel(block.mix_residual)[0, 0] + s,
    }[mixing]
    expected = preactivation_block(
        x, _bn_params(block.bn1), kernel(block.conv1), _bn_params(block.bn2), kernel(block.conv2),
        shortcut_conv=kernel(block.shortcut_conv) if block.has_projection else None, stride=strides, mix=mix)
    got = keras.ops.convert_to_numpy(block(x, training=False))
    assert block.has_projection == (strides != 1 or in_channels != 6)
    # Negative inputs reach the output: no ReLU after the mixing.
    assert (expected < 0).any()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_wide_resnet_block_is_preactivation():
    block = ResidualBlock(8, strides=2, preactivation=True)
    block.build((None, 8, 8, 4))
    assert block.shortcut_bn is None and block.bn1.gamma.shape == (4,)


def test_calibrate_batchnorm_makes_inference_match_training_mode():
    from conftest import random_batch

    from lacnn_zoo.layers.batchnorm import calibrate_batchnorm

    model = build_model("resnet20", input_shape=(8, 8, 1))
    x, _ = random_batch((8, 8, 1), n=16)
    training = keras.ops.convert_to_numpy(model(x, training=True))
    assert not np.allclose(keras.ops.convert_to_numpy(model(x, training=False)), training, atol=1e-2)
    calibrate_batchnorm(model, x)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x, training=False)), training, rtol=1e-3, atol=1e-3)
    assert all(layer.momentum == 0.99 for layer in model._flatten_layers()
               if isinstance(layer, keras.layers.BatchNormalization))
