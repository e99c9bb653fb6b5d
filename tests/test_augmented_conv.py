"""AugmentedConv2D against a per-pixel NumPy loop of eqs. 1-4 of Bello et al.: catches the published port bugs."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from reference import average_pool, conv2d, resize_bilinear, same_padding, softmax

from lacnn_zoo import build_model
from lacnn_zoo.layers import augmented_conv
from lacnn_zoo.layers.augmented_conv import AugmentedConv2D, auto_query_chunk, rel_to_abs

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
    """Eqs. 1-4, one query pixel at a time, heads concatenated in order, W^O, then Concat[conv, MHA].

    With attention_downsample=2: attention over the 3x3/stride-2 average-pooled grid, bilinear resize after W^O.
    """
    x = x.astype(np.float64)
    conv = conv2d(x, _np(layer.conv.kernel), layer.strides)
    a = avg_pool_same(x) if layer.strides == 2 else x
    if getattr(layer, "attention_downsample", 1) == 2:
        a = average_pool(a, 3, 2)
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
    if mha.shape[1:3] != conv.shape[1:3]:
        mha = resize_bilinear(mha, *conv.shape[1:3])
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


def _randomised(layer, x):
    layer(x)
    for w in layer.weights:  # non-trivial biases and relative tables
        w.assign(rng.normal(size=w.shape) * 0.5)
    return layer


# 35 queries (5x7) in blocks of 1, 3, 8 (none divides 35) and 35; 4x3 grid (stride 2) in blocks of 5.
# image_loop: one image at a time (3 images), its queries in blocks of 3 or all at once.
@pytest.mark.parametrize("shape,strides,relative,chunk,remat,image_loop", [
    ((2, 5, 7, 3), 1, True, 1, True, False),
    ((2, 5, 7, 3), 1, True, 3, True, False),
    ((2, 5, 7, 3), 1, True, 8, False, False),
    ((2, 5, 7, 3), 1, False, 8, True, False),
    ((2, 5, 7, 3), 1, True, 35, True, False),
    ((2, 7, 5, 3), 2, True, 5, True, False),
    ((2, 7, 6, 3), 2, False, 5, True, False),
    ((1, 1, 6, 2), 1, True, 4, True, False),
    ((3, 5, 7, 3), 1, True, 3, True, True),
    ((3, 7, 5, 3), 2, True, 35, False, True),
])
def test_query_blocks_equal_per_pixel_reference(shape, strides, relative, chunk, remat, image_loop):
    layer = AugmentedConv2D(12, strides=strides, dk=6, dv=4, heads=2, relative=relative, query_chunk=chunk,
                            rematerialize=remat, image_loop=image_loop)
    x = rng.normal(size=shape).astype("float32")
    _randomised(layer, x)
    assert layer.block_size == min(chunk, layer.grid[0] * layer.grid[1])
    np.testing.assert_allclose(_np(layer(x)), reference_layer(layer, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk,remat,image_loop", [(3, True, False), (8, False, False), (None, False, False),
                                                   (5, True, True)])
def test_query_block_gradients_equal_central_differences(chunk, remat, image_loop):
    # d loss / d input and d loss / d r^W through the blocked (and rematerialised) path, against float64
    # central differences of the per-pixel reference: catches a remat gradient that drops or misroutes a term.
    layer = AugmentedConv2D(6, kernel_size=1, dk=4, dv=2, heads=2, query_chunk=chunk, rematerialize=remat,
                            image_loop=image_loop)
    x = rng.normal(size=(1, 3, 4, 2)).astype("float32")
    _randomised(layer, x)
    probe = rng.normal(size=(1, 3, 4, 6))
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(layer(xt) * probe)
    grad_x, grad_rw = tape.gradient(loss, [xt, layer.rel_width.value])
    eps = 1e-3
    for index in [(0, 0, 0, 0), (0, 2, 3, 1), (0, 1, 2, 0)]:
        up, down = x.astype(np.float64).copy(), x.astype(np.float64).copy()
        up[index] += eps
        down[index] -= eps
        numeric = ((reference_layer(layer, up) - reference_layer(layer, down)) * probe).sum() / (2 * eps)
        assert float(grad_x[index]) == pytest.approx(numeric, rel=2e-3, abs=2e-3)
    table = layer.rel_width.numpy().copy()
    for row in (0, 3, 6):
        values = []
        for sign in (1, -1):
            shifted = table.copy()
            shifted[row, 0] += sign * eps
            layer.rel_width.assign(shifted)
            values.append((reference_layer(layer, x) * probe).sum())
        layer.rel_width.assign(table)
        assert float(grad_rw[row, 0]) == pytest.approx((values[0] - values[1]) / (2 * eps), rel=2e-3, abs=2e-3)


def test_auto_query_chunk_follows_the_memory_budget(monkeypatch):
    # One block's logits per image: heads x C x HW x 4 bytes <= budget.
    assert auto_query_chunk(32, 32, 4, budget_bytes=2**20) == 64
    assert auto_query_chunk(16, 16, 4, budget_bytes=2**20) is None  # 4 x 256 x 256 x 4 = 1 MiB fits whole
    assert auto_query_chunk(32, 32, 8, budget_bytes=1) == 1
    assert AugmentedConv2D(16, heads=4, dk=4, dv=4).query_chunk == "auto"
    layer = AugmentedConv2D(16, heads=4, dk=4, dv=4)
    layer.build((None, 32, 32, 3))
    assert layer.block_size == 64  # default budget: 1 MiB per image
    monkeypatch.setattr(augmented_conv, "QUERY_CHUNK_BUDGET_BYTES", 2 * 35 * 4 * 6)  # 6 queries per block
    layer = AugmentedConv2D(12, dk=6, dv=4, heads=2)
    x = rng.normal(size=(2, 5, 7, 3)).astype("float32")
    _randomised(layer, x)
    assert layer.block_size == 6
    np.testing.assert_allclose(_np(layer(x)), reference_layer(layer, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,strides,relative", [
    ((2, 5, 7, 3), 1, True),   # 3x4 attention grid resized to 5x7
    ((2, 8, 8, 2), 1, False),
    ((1, 9, 6, 3), 2, True),   # 5x3 conv grid, 3x2 attention grid
])
def test_attention_downsample_equals_pooled_reference(shape, strides, relative):
    layer = AugmentedConv2D(12, strides=strides, dk=6, dv=4, heads=2, relative=relative, attention_downsample=2,
                            query_chunk=4)
    x = rng.normal(size=shape).astype("float32")
    _randomised(layer, x)
    out_grid = (-(-shape[1] // strides), -(-shape[2] // strides))
    assert layer.grid == tuple(-(-s // 2) for s in out_grid)
    assert not relative or layer.rel_width.shape == (2 * layer.grid[1] - 1, 3)
    expected = reference_layer(layer, x)
    assert expected.shape == (shape[0], *out_grid, 12)
    np.testing.assert_allclose(_np(layer(x)), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(query_chunk=0), "query_chunk"),
    (dict(query_chunk="big"), "query_chunk"),
    (dict(query_chunk=True), "query_chunk"),
    (dict(attention_downsample=4), "attention_downsample"),
])
def test_bad_memory_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AugmentedConv2D(16, dk=4, dv=4, heads=2, **kwargs)


def test_memory_knobs_round_trip_and_reach_the_layers(tmp_path):
    knobs = dict(query_chunk=5, rematerialize=False, attention_downsample=2)
    layer = AugmentedConv2D(8, dk=4, dv=2, heads=2, **knobs)
    config = layer.get_config()
    assert {k: config[k] for k in knobs} == knobs
    assert AugmentedConv2D.from_config(config).get_config() == config
    model = build_model("aa_resnet8", input_shape=(9, 7, 2), **knobs)
    assert model.count_params() != build_model("aa_resnet8", input_shape=(9, 7, 2)).count_params()  # smaller tables
    assert build_model("aa_resnet8", input_shape=(9, 7, 2), query_chunk=None).count_params() == build_model(
        "aa_resnet8", input_shape=(9, 7, 2)).count_params()
    conv = model.get_layer("stage1_block1").conv1
    assert (conv.query_chunk, conv.rematerialize, conv.attention_downsample, conv.grid) == (5, False, 2, (5, 4))
    x = rng.normal(size=(2, 9, 7, 2)).astype("float32")
    model.save(tmp_path / "aa.keras")
    reloaded = keras.saving.load_model(tmp_path / "aa.keras")
    np.testing.assert_array_equal(_np(reloaded(x)), _np(model(x)))
    conv = reloaded.get_layer("stage1_block1").conv1
    assert (conv.query_chunk, conv.rematerialize, conv.attention_downsample) == (5, False, 2)


def test_blocked_layer_trains_in_fit():
    model = build_model("aa_resnet8", input_shape=(8, 8, 1), query_chunk=7)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = rng.normal(size=(4, 8, 8, 1)).astype("float32")
    history = model.fit(x, np.arange(4) % 10, epochs=2, batch_size=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def test_training_memory_estimate_counts_the_unblocked_logits():
    from lacnn_zoo.models.resnet import training_memory_estimate

    blocked = training_memory_estimate("aa_resnet8", input_shape=(12, 12, 1), batch_size=4, query_chunk=8)
    full = training_memory_estimate("aa_resnet8", input_shape=(12, 12, 1), batch_size=4, query_chunk=None)
    assert blocked["params"] == full["params"] == build_model("aa_resnet8", input_shape=(12, 12, 1)).count_params()
    assert full["weights_bytes"] == 16 * full["params"]
    # Stage 1 (12x12, 2 heads, batch 4, float32): unblocked, its (2, 144, 144) softmax is kept for the backward
    # pass and at least one more logits-sized tensor is in flight; blocked, neither is.
    logits = 2 * 144**2 * 4 * 4
    assert full["activation_bytes"] - blocked["activation_bytes"] >= 2 * logits
    double = training_memory_estimate("aa_resnet8", input_shape=(12, 12, 1), batch_size=8, query_chunk=None)
    assert double["activation_bytes"] == 2 * full["activation_bytes"]
    with pytest.raises(ValueError, match="families"):
        training_memory_estimate("plain_cnn")


def test_content_attention_in_one_block_uses_the_backends_attention_kernel(monkeypatch):
    calls = []
    original = keras.ops.dot_product_attention

    def counting(*args, **kwargs):
        calls.append(kwargs.get("scale"))
        return original(*args, **kwargs)

    monkeypatch.setattr(keras.ops, "dot_product_attention", counting)
    x = np.random.default_rng(0).normal(size=(2, 5, 4, 3)).astype("float32")
    for relative, chunk, dv, expected in ((False, None, 6, [1.0]), (True, None, 6, []), (False, 7, 6, []),
                                          (False, None, 4, [])):  # kernels need equal key and value depths
        calls.clear()
        layer = AugmentedConv2D(12, dk=6, dv=dv, heads=2, relative=relative, query_chunk=chunk)
        out = layer(x)
        assert calls == expected, (relative, chunk, dv)
        if expected:  # the kernel's result is the blocked (plain ops) result
            blocked = AugmentedConv2D(12, dk=6, dv=dv, heads=2, relative=False, query_chunk=7)
            blocked(x)
            blocked.set_weights(layer.get_weights())
            np.testing.assert_allclose(np.asarray(out), np.asarray(blocked(x)), atol=1e-5)


@pytest.mark.parametrize("strides,relative", [(1, True), (2, False)])
def test_attention_map_is_the_softmax_of_eq_1_per_query_and_head(strides, relative):
    """The report's attention maps: each query's weights over the keys, from eqs. 1 and 3 one pixel at a time."""
    layer = AugmentedConv2D(12, strides=strides, dk=6, dv=4, heads=2, relative=relative)
    x = np.random.default_rng(3).normal(size=(2, 6, 5, 3)).astype("float32")
    _randomised(layer, x)
    queries = [(0, 0), (1, 2), (layer.grid[0] - 1, layer.grid[1] - 1)]
    got = _np(layer.attention_map(x, queries))
    a = avg_pool_same(x.astype(np.float64)) if strides == 2 else x.astype(np.float64)
    qkv = a @ _np(layer.qkv.kernel)[0, 0] + _np(layer.qkv.bias)
    dk, nh = layer.key_depth, layer.heads
    dkh = dk // nh
    height, width = a.shape[1:3]
    assert got.shape == (2, nh, len(queries), height, width)
    for b in range(2):
        for h in range(nh):
            q, k = qkv[b, ..., h * dkh:(h + 1) * dkh], qkv[b, ..., dk + h * dkh:dk + (h + 1) * dkh]
            for n, (yi, xi) in enumerate(queries):
                logits = np.zeros((height, width))
                for yj in range(height):
                    for xj in range(width):
                        key = k[yj, xj].copy()
                        if relative:  # r^W_{x_j - x_i} + r^H_{y_j - y_i}
                            key += _np(layer.rel_width)[xj - xi + width - 1]
                            key += _np(layer.rel_height)[yj - yi + height - 1]
                        logits[yj, xj] = q[yi, xi] @ key / np.sqrt(dkh)
                np.testing.assert_allclose(got[b, h, n], softmax(logits.reshape(-1)).reshape(height, width),
                                           rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="`queries` must be"):
        layer.attention_map(x, [(height, 0)])


@pytest.mark.parametrize("image_loop", [True, False])
def test_the_attention_loop_is_rematerialised_when_asked(monkeypatch, image_loop):
    wrapped = []
    real = keras.remat

    def counting_remat(fn):
        wrapped.append(fn.__name__)
        return real(fn)

    monkeypatch.setattr(keras, "remat", counting_remat)
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 4)).astype("float32")
    for remat in (True, False):
        wrapped.clear()
        layer = AugmentedConv2D(8, kernel_size=3, dk=4, dv=4, heads=2, relative=True, query_chunk=12,
                                rematerialize=remat, image_loop=image_loop)
        layer(x)
        if not remat:
            assert wrapped == []
        elif image_loop:
            assert wrapped == ["one_image"]  # each image's attention, under remat
        else:
            assert wrapped and set(wrapped) == {"attend"}  # each query block
