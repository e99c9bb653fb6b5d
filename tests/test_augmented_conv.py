"""AugmentedConv2D against a per-pixel NumPy loop of eqs. 1-4 of Bello et al.: catches the published port bugs."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from reference import conv2d, same_padding, softmax

from lacnn_zoo import build_model
from lacnn_zoo.layers.augmented_conv import AugmentedConv2D, rel_to_abs

rng = np.random.default_rng(11)


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def avg_pool_same(x):
    """2x2 / stride 2 average pooling, "same" padding, padding excluded from the mean (TensorFlow's rule)."""
    (pt, pb), (pl, pr) = same_padding(x.shape[1], 2, 2), same_padding(x.shape[2], 2, 2)
    padded = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=np.nan)
    out_h, out_w = padded.shape[1] // 2, padded.shape[2] // 2
    windows = padded[:, : 2 * out_h, : 2 * out_w].reshape(x.shape[0], out_h, 2, out_w, 2, x.shape[3])
    return np.nanmean(windows, axis=(2, 4))


def reference_layer(layer, x):
    """Eqs. 1-4, one query pixel at a time, heads concatenated in order, W^O, then Concat[conv, MHA]."""
    x = x.astype(np.float64)
    conv = conv2d(x, _np(layer.conv.kernel), layer.strides)
    a = avg_pool_same(x) if layer.strides == 2 else x
    qkv = a @ _np(layer.qkv.kernel)[0, 0] + _np(layer.qkv.bias)
    dk, dv, nh = layer.key_depth, layer.value_depth, layer.heads
    dkh, dvh = dk // nh, dv // nh
    batch, height, width, _ = a.shape
    out = np.zeros((batch, height, width, dv))
    for b in range(batch):
        for h in range(nh):
            q = qkv[b, :, :, h * dkh:(h + 1) * dkh]
            k = qkv[b, :, :, dk + h * dkh: dk + (h + 1) * dkh]
            v = qkv[b, :, :, 2 * dk + h * dvh: 2 * dk + (h + 1) * dvh]
            for yi in range(height):
                for xi in range(width):
                    logits = np.zeros((height, width))
                    for yj in range(height):
                        for xj in range(width):
                            key = k[yj, xj].copy()
                            if layer.relative:
                                key += _np(layer.rel_width)[xj - xi + width - 1]  # r^W_{x_j - x_i}
                                key += _np(layer.rel_height)[yj - yi + height - 1]  # r^H_{y_j - y_i}
                            logits[yj, xj] = q[yi, xi] @ key / np.sqrt(dkh)
                    weights = softmax(logits.reshape(-1))
                    out[b, yi, xi, h * dvh:(h + 1) * dvh] = weights @ v.reshape(-1, dvh)
    mha = out @ _np(layer.attention_output.kernel)[0, 0] + _np(layer.attention_output.bias)
    return np.concatenate([conv, mha], axis=-1)


@pytest.mark.parametrize("length", [1, 2, 5, 8])
def test_rel_to_abs_is_the_gather_at_j_minus_i(length):
    x = rng.normal(size=(3, length, 2 * length - 1)).astype("float32")
    got = _np(rel_to_abs(x))
    i, j = np.meshgrid(np.arange(length), np.arange(length), indexing="ij")
    np.testing.assert_array_equal(got, x[:, i, j - i + length - 1])


@pytest.mark.parametrize("height,width", [(5, 7), (4, 4), (1, 1), (1, 6), (3, 2)])
def test_relative_logits_equal_naive_gather(height, width):
    layer = AugmentedConv2D(8, dk=4, dv=2, heads=2)
    layer.build((None, height, width, 3))
    q = rng.normal(size=(2, 2, height, width, 2)).astype("float32")
    width_term, height_term = (_np(t) for t in layer.relative_logits(q))
    rw, rh = _np(layer.rel_width), _np(layer.rel_height)
    assert rw.shape == (2 * width - 1, 2) and rh.shape == (2 * height - 1, 2)
    naive_w = np.zeros((2, 2, height, width, width))
    naive_h = np.zeros((2, 2, height, width, height))
    for yi in range(height):
        for xi in range(width):
            for xj in range(width):
                naive_w[:, :, yi, xi, xj] = q[:, :, yi, xi] @ rw[(xj - xi) + width - 1]
            for yj in range(height):
                naive_h[:, :, yi, xi, yj] = q[:, :, yi, xi] @ rh[(yj - yi) + height - 1]
    np.testing.assert_allclose(width_term[:, :, :, :, 0, :], naive_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(height_term[:, :, :, :, :, 0], naive_h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape,strides,relative", [
    ((2, 5, 7, 3), 1, True),
    ((1, 4, 4, 2), 1, True),
    ((2, 5, 7, 3), 2, True),   # odd, non-square, downsampled
    ((1, 6, 3, 4), 1, False),
    ((1, 1, 1, 3), 1, True),
])
def test_layer_equals_per_pixel_reference(shape, strides, relative):
    layer = AugmentedConv2D(12, strides=strides, dk=6, dv=4, heads=2, relative=relative)
    x = rng.normal(size=shape).astype("float32")
    got = _np(layer(x))
    for w in layer.weights:  # non-trivial biases and relative tables
        w.assign(rng.normal(size=w.shape) * 0.5)
    got = _np(layer(x))
    expected = reference_layer(layer, x)
    assert got.shape == expected.shape == (shape[0], -(-shape[1] // strides), -(-shape[2] // strides), 12)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_content_attention_is_permutation_equivariant_and_relative_is_not():
    x = rng.normal(size=(1, 4, 5, 3)).astype("float32")
    perm = rng.permutation(20)

    def permute(t):
        return t.reshape(t.shape[0], 20, -1)[:, perm].reshape(t.shape)

    for relative, equivariant in ((False, True), (True, False)):
        # kernel_size=1 makes the convolution branch pixel-wise, so only the attention can break equivariance.
        layer = AugmentedConv2D(8, kernel_size=1, dk=4, dv=4, heads=2, relative=relative)
        layer(x)
        if relative:
            for w in (layer.rel_width, layer.rel_height):
                w.assign(rng.normal(size=w.shape))
        same = np.allclose(_np(layer(permute(x))), permute(_np(layer(x))), atol=1e-5)
        assert same is equivariant


def test_gradients_reach_relative_tables():
    layer = AugmentedConv2D(8, dk=4, dv=4, heads=2)
    x = rng.normal(size=(2, 5, 6, 3)).astype("float32")
    layer(x)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(layer(x)))
    grads = tape.gradient(loss, [layer.rel_width.value, layer.rel_height.value])
    assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


def test_paper_defaults_and_ratios():
    layer = AugmentedConv2D(160)  # kappa = 2 upsilon = 0.2, Nh = 8
    assert (layer.key_depth, layer.value_depth, layer.heads) == (32, 16, 8)
    floor = AugmentedConv2D(160, min_key_dims_per_head=20)
    assert floor.key_depth == 160
    assert AugmentedConv2D(20, dk=0.2, dv=0.1, heads=4).key_depth == 4  # rounded to a multiple of heads


@pytest.mark.parametrize("kwargs,match", [
    (dict(dk=6, heads=4), r"dk.*divisible by `heads`"),
    (dict(dv=6, heads=4), r"dv.*divisible by `heads`"),
    (dict(dk=0, heads=2), "dk"),
    (dict(dk=2, heads=4), r"dk.*divisible"),
    (dict(dv=16, dk=8, heads=4), r"dv.*< filters"),
    (dict(dv=0.5, dk=8, heads=4, filters=4), r"dv.*< filters"),
    (dict(dk=4.5, heads=1), "whole"),
    (dict(strides=3), "strides"),
])
def test_bad_arguments(kwargs, match):
    kwargs = {"filters": 16, **kwargs}
    with pytest.raises(ValueError, match=match):
        AugmentedConv2D(**kwargs)


def test_dynamic_input_size_is_refused():
    with pytest.raises(ValueError, match="fixed input height"):
        build_model("aa_resnet8", input_shape=(None, None, 1))
    with pytest.raises(ValueError, match="fixed input height and width"):
        AugmentedConv2D(8, dk=4, dv=2, heads=2).build((None, None, 5, 3))
    with pytest.raises(ValueError, match="augment_stages"):
        build_model("aa_resnet8", input_shape=(8, 8, 1), augment_stages=(4,))


def test_round_trip_is_exact(tmp_path):
    layer_model = build_model("aa_resnet8", input_shape=(9, 7, 2))
    x = rng.normal(size=(3, 9, 7, 2)).astype("float32")
    layer_model.save(tmp_path / "aa.keras")
    reloaded = keras.saving.load_model(tmp_path / "aa.keras")
    np.testing.assert_array_equal(_np(reloaded(x)), _np(layer_model(x)))
    conv = reloaded.get_layer("stage1_block1").conv1
    assert isinstance(conv, AugmentedConv2D) and conv.rel_width.shape == (13, 2)


def test_only_listed_stages_are_augmented():
    model = build_model("aa_resnet8_late", input_shape=(8, 8, 1))
    kinds = {layer.name: type(layer.conv1).__name__ for layer in model.layers if hasattr(layer, "conv1")}
    assert kinds == {"stage1_block1": "Conv2D", "stage2_block1": "Conv2D", "stage3_block1": "AugmentedConv2D"}


def test_wide_resnet_parameter_counts_against_the_paper():
    # Bello et al.: WRN-28-10 36.3M -> AA-WRN-28-10 36.2M on CIFAR-100 (a 0.3% reduction).
    base = build_model("wrn28_10", num_classes=100).count_params()
    aa = build_model("aa_wrn28_10", num_classes=100).count_params()
    assert base == pytest.approx(36.3e6, rel=0.01) and aa == pytest.approx(36.2e6, rel=0.01)
    assert aa < base
