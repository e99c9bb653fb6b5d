"""Layer attention over keras.applications backbones and the zoo's own models: taps, features, save/load.

The expected taps are derived from the published architectures, not from the tap finder:
ResNet50V2 has 3 + 4 + 6 + 3 bottleneck blocks, DenseNet121 6 + 12 + 24 + 16 dense layers,
ConvNeXt-T 3 + 3 + 9 + 3 blocks; MobileNetV3Small has 11 inverted-residual blocks of which 6
keep their shape and so have a skip connection; EfficientNetB0 has 16 MBConv blocks in 7 stages
(1, 2, 2, 3, 3, 4, 1) where every block but a stage's first has one (16 - 7 = 9).
taps="blocks" adds the backbone's own output as the last tap.
"""

import json
import os
import re
import string
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import random_batch

import lacnn_zoo
from lacnn_zoo import build_model, layer_attended
from lacnn_zoo.layers import layer_attention
from lacnn_zoo.models.backbones import feature_extractor
from lacnn_zoo.models.layer_attended import tap_names
from lacnn_zoo.models.taps import feature_info, feature_model, select_taps
from lacnn_zoo.training.monitor import layer_weights

SHAPE = (64, 64, 3)
MECHANISMS = sorted(layer_attention.MECHANISMS)  # every mechanism the zoo has


def _stages(counts, name):
    return [name(stage, block) for stage, n in enumerate(counts) for block in range(1, n + 1)]


BLOCKS = {
    "ResNet50V2": _stages([3, 4, 6, 3], lambda s, b: f"conv{s + 2}_block{b}_out"),
    "DenseNet121": _stages([6, 12, 24, 16], lambda s, b: f"conv{s + 2}_block{b}_concat"),
    "MobileNetV3Small": [f"expanded_conv_{i}_add" for i in (2, 4, 5, 7, 9, 10)],
    "EfficientNetB0": _stages([0, 1, 1, 2, 2, 3, 0], lambda s, b: f"block{s + 1}{string.ascii_lowercase[b]}_add"),
    "ConvNeXtTiny": None,  # its joins are unnamed `inputs + x` operations: checked by count and width
}
# Blocks, then the backbone's own output (after its final norm / head convolution) as the last tap.
BLOCK_COUNTS = {"ResNet50V2": 16 + 1, "DenseNet121": 58 + 1, "MobileNetV3Small": 6 + 1, "EfficientNetB0": 9 + 1,
                "ConvNeXtTiny": 18 + 1}
# (reduction, channels) of the last map at each resolution of a 64x64 input; for the inverted-residual
# networks the block outputs, as timm's features_only gives them (EfficientNet-B0's stage widths 16, 24, 40,
# 112, 320 from Tan & Le 2019, Table 1; MobileNetV3-Small's 16, 16, 24, 48, 96 from Howard et al. 2019,
# Table 2, where timm's last feature is the 576-wide 1x1 convolution after it), not the expanded maps
# (96, 144, 240, 672, 1280) that precede the next stride.
STAGES = {
    "ResNet50V2": [(2, 64), (4, 256), (8, 512), (16, 1024), (32, 2048)],
    "DenseNet121": [(2, 64), (4, 128), (8, 256), (16, 512), (32, 1024)],
    "MobileNetV3Small": [(2, 16), (4, 16), (8, 24), (16, 48), (32, 96)],
    "EfficientNetB0": [(2, 16), (4, 24), (8, 40), (16, 112), (32, 320)],
    "ConvNeXtTiny": [(4, 96), (8, 192), (16, 384), (32, 768)],
}
# One mechanism per backbone keeps the suite affordable; MobileNetV3Small runs all four below.
MECHANISM_OF = {"ResNet50V2": "innate_static", "DenseNet121": "static_vector", "MobileNetV3Small": "self_attention",
                "EfficientNetB0": "dynamic_recurrent", "ConvNeXtTiny": "self_attention"}
_BUILT = {}


def _backbone(name):
    """Each application is built once per module (weights=None, nothing downloads)."""
    if name not in _BUILT:
        _BUILT[name] = getattr(keras.applications, name)(include_top=False, weights=None, input_shape=SHAPE)
    return _BUILT[name]


def _images(n=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(n, *SHAPE)).astype("float32")


def _one_step(model, x, num_classes=10):
    # Eager: tracing and optimising the graph of a 400-layer backbone costs far more than one step.
    model.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    y = np.arange(len(x)) % num_classes
    return float(model.train_on_batch(x, y))


@pytest.mark.parametrize("name", list(BLOCK_COUNTS))
def test_tap_rules_find_the_published_blocks_and_stages(name):
    backbone = _backbone(name)
    names, maps = select_taps(backbone, "blocks")
    assert len(names) == BLOCK_COUNTS[name]
    assert maps[-1] is backbone.output
    if BLOCKS[name] is not None:
        assert names[:-1] == BLOCKS[name]
    else:  # ConvNeXt-T: widths 96, 192, 384, 768 over 3, 3, 9, 3 blocks
        assert [m.shape[-1] for m in maps[:-1]] == [96] * 3 + [192] * 3 + [384] * 9 + [768] * 3
    info = feature_extractor(backbone, "stages").feature_info
    assert [(i["reduction"], i["channels"]) for i in info] == STAGES[name]


@pytest.mark.parametrize("taps", ["blocks", "stages"])
@pytest.mark.parametrize("name", list(BLOCK_COUNTS))
def test_wrapped_backbone_weights_rows_and_one_training_step(name, taps):
    expected = BLOCK_COUNTS[name] if taps == "blocks" else len(STAGES[name])
    model = layer_attended(_backbone(name), taps=taps, mechanism=MECHANISM_OF[name], num_classes=5)
    assert len(tap_names(model)) == expected
    x = _images()
    weights = layer_weights(model, x)
    assert weights.shape == (2, expected)
    assert np.all(weights >= 0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    assert np.isfinite(_one_step(model, x, num_classes=5))


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_every_mechanism_trains_on_a_wrapped_application(mechanism):
    model = layer_attended(_backbone("MobileNetV3Small"), taps="stages", mechanism=mechanism,
                           contraction_units=16, classifier_activation="softmax", num_classes=3)
    x = _images(4)
    assert model(x).shape == (4, 3)
    first = model.get_layer("conv").kernel  # the stem convolution: the gradient reaches the backbone
    before = keras.ops.convert_to_numpy(first).copy()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy", run_eagerly=True)
    loss = float(model.train_on_batch(x, np.array([0, 1, 2, 0])))
    assert np.isfinite(loss)
    assert not np.allclose(keras.ops.convert_to_numpy(first), before)


def test_keras_round_trip_in_a_fresh_process(tmp_path):
    model = layer_attended(_backbone("MobileNetV3Small"), taps="stages", mechanism="dynamic_recurrent",
                           num_classes=4)
    x = _images(3, seed=1)
    path, data, out = tmp_path / "wrapped.keras", tmp_path / "x.npy", tmp_path / "y.npy"
    model.save(path)
    np.save(data, x)
    code = (
        "import json, sys, numpy as np, keras, lacnn_zoo\n"
        "m = keras.saving.load_model(sys.argv[1])\n"
        "np.save(sys.argv[3], keras.ops.convert_to_numpy(m(np.load(sys.argv[2]), training=False)))\n"
        "from lacnn_zoo.models.layer_attended import tap_names\n"
        "print(json.dumps(tap_names(m)))\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", code, str(path), str(data), str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == tap_names(model)
    np.testing.assert_allclose(np.load(out), keras.ops.convert_to_numpy(model(x, training=False)),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_wrapping_plain_cnn_is_exactly_the_preset(mechanism):
    """One implementation: the head on plain_cnn_tiny's ConvBNAct taps is the lacnn_*_tiny model."""
    preset = build_model(f"lacnn_{mechanism}_tiny")
    plain = build_model("plain_cnn_tiny", include_top=False, pooling=None)
    wrapped = layer_attended(plain, taps="blocks", mechanism=mechanism, name=preset.name)
    assert [layer.name for layer in wrapped.layers] == [layer.name for layer in preset.layers]
    assert wrapped.count_params() == preset.count_params()
    rng = np.random.default_rng(3)
    for layer in preset.layers:  # random weights everywhere, BN statistics included, then copy by name
        values = [rng.uniform(0.5, 1.5, size=w.shape).astype("float32") for w in layer.get_weights()]
        if values:
            layer.set_weights(values)
            wrapped.get_layer(layer.name).set_weights(values)
    x, _ = random_batch((8, 8, 1), n=4)
    expected = keras.ops.convert_to_numpy(preset(x, training=False))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(wrapped(x, training=False)), expected, rtol=1e-6)
    assert tap_names(wrapped) == tap_names(preset) == _stages([2, 2, 2], lambda s, b: f"stage{s + 1}_layer{b}")


def test_registry_entry_point_takes_any_backbone():
    model = build_model("lacnn_static_vector", backbone="MobileNetV3Small", taps="stages", input_shape=(96, 96, 3))
    assert model.input.shape[1:] == (96, 96, 3) and model.output.shape == (None, 10)
    assert len(tap_names(model)) == 5
    own = build_model("lacnn_self_attention", backbone=_backbone("ResNet50V2"), taps=["conv3_block4_out",
                                                                                      "post_relu"])
    assert tap_names(own) == ["conv3_block4_out", "post_relu"]
    features = build_model("lacnn_innate_static", backbone="resnet8", include_top=False, features="blocks",
                           input_shape=(8, 8, 1))
    assert [tuple(o.shape[1:]) for o in features.outputs] == [(8, 8, 16), (4, 4, 32), (2, 2, 64)]


def test_features_of_zoo_models_and_dynamic_sizes(tmp_path):
    stages = feature_extractor("plain_cnn_tiny", "stages")
    assert stages.feature_info == [
        {"name": f"stage{s}_layer2", "channels": c, "reduction": r} for s, c, r in [(1, 16, 1), (2, 32, 2), (3, 64, 4)]
    ]
    assert list(stages.pyramid_outputs) == ["P0", "P1", "P2"]
    every_layer = feature_model(build_model("plain_cnn_tiny", include_top=False, pooling=None), "blocks")
    assert [i["reduction"] for i in every_layer.feature_info] == [1, 1, 2, 2, 4, 4]
    blocks = feature_extractor("resnet8", "blocks")
    assert [i["name"] for i in blocks.feature_info] == ["stage1_block1", "stage2_block1", "stage3_block1"]
    stages.save(tmp_path / "features.keras")
    assert feature_info(lacnn_zoo.load_model(tmp_path / "features.keras")) == stages.feature_info
    dynamic = feature_extractor("MobileNetV3Small", "stages")  # input (None, None, 3): reductions probed
    assert dynamic.input.shape[1:3] == (None, None)
    assert [i["reduction"] for i in dynamic.feature_info] == [2, 4, 8, 16, 32]


@pytest.mark.parametrize("kwargs,match", [
    (dict(taps="layers"), r"`taps` must be 'blocks', 'stages'"),
    (dict(taps=["stage1_layer1", "nope"]), r"`taps`.*\['nope'\]"),
    (dict(taps=[]), "`taps` found no tap"),
    (dict(taps=lambda model: []), "`taps` found no tap"),
    (dict(tap_form="resample", tap_size=2.0), "`tap_size` must be"),
    (dict(tap_size=(2, 0)), "`tap_size` must be"),
    (dict(mechanism="transformer"), "`mechanism`"),
    (dict(tap_units=0), "`tap_units`"),
    (dict(dropout=0.1), "Unknown keyword argument"),
    (dict(input_shape=(16, 16, 1)), "`input_shape` must be None or the backbone's own"),
])
def test_bad_arguments_raise_one_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        layer_attended(build_model("plain_cnn_tiny", include_top=False, pooling=None), **kwargs)


def test_tap_must_be_a_feature_map_and_backbone_must_be_known():
    with pytest.raises(ValueError, match="4-D feature maps"):
        layer_attended(build_model("plain_cnn_tiny", include_top=False, pooling="avg"), taps=["avg_pool"])
    with pytest.raises(ValueError, match="`backbone` must be"):
        layer_attended("ResNet51")
    with pytest.raises(ValueError, match=r"`input_shape`.*EfficientNetB0.*at least 32x32"):
        build_model("lacnn_self_attention", backbone="EfficientNetB0", input_shape=(8, 8, 1))
    with pytest.raises(ValueError, match="`backbone` must be 'plain', 'residual'"):
        build_model("lacnn_static_vector_tiny", backbone="ResNet51")


def test_a_sequential_backbone_is_tapped_layer_by_layer():
    layers = [keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1"),
              keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c2"),
              keras.layers.MaxPooling2D(name="pool"),
              keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="c3")]
    sequential = keras.Sequential(layers)  # no Input: the commonest user backbone
    with pytest.raises(ValueError, match="`input_shape` is needed"):
        layer_attended(sequential, num_classes=3)
    model = layer_attended(sequential, num_classes=3, taps=["c1", "c2", "c3"], input_shape=(16, 16, 3))
    assert tap_names(model) == ["c1", "c2", "c3"] and model.get_layer("c1") is layers[0]  # the same layers
    assert tap_names(layer_attended(sequential, taps="stages", input_shape=(16, 16, 3))) == ["c2", "c3"]
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    features = keras.Model(model.input, [model.get_layer(n).output for n in ("c1", "c2", "c3")])
    c1 = keras.ops.relu(keras.ops.conv(x, layers[0].kernel, padding="same") + layers[0].bias)
    np.testing.assert_allclose(features(x)[0], c1, rtol=1e-5, atol=1e-5)  # the taps are the Sequential's maps
    np.testing.assert_allclose(features(x)[2], sequential(x), rtol=1e-5, atol=1e-5)
    built = keras.Sequential([keras.Input((16, 16, 3)), *[keras.layers.Conv2D(4, 3, name=f"d{i}") for i in (1, 2)]])
    assert tap_names(build_model("lacnn_static_vector", backbone=built, taps=["d1", "d2"], num_classes=3)) == [
        "d1", "d2"]
    with pytest.raises(ValueError, match="own input shape"):
        layer_attended(built, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match=r"own input shape \(16, 16, 3\).*\(16, 16, 1\)"):  # the channels count too
        layer_attended(built, input_shape=(16, 16, 1))


def test_layer_attended_takes_include_top_and_features_as_build_model_does():
    backbone = _backbone("MobileNetV3Small")
    bare = layer_attended(backbone, include_top=False, pooling="avg")
    assert len(bare.outputs) == 1 and tuple(bare.output.shape) == (None, backbone.output.shape[-1])
    x = _images(1)
    np.testing.assert_allclose(bare(x), keras.ops.mean(backbone(x), axis=(1, 2)), rtol=1e-4, atol=1e-5)
    stages = layer_attended(backbone, include_top=False, features="stages")
    assert [i["channels"] for i in stages.feature_info] == [c for _, c in STAGES["MobileNetV3Small"]]
    with pytest.raises(ValueError, match="`features`.*include_top=False"):
        layer_attended(backbone, features="stages")


def test_tap_positions_name_the_same_layers_in_any_build_order():
    # Two builds in one session: Keras numbers the second one's unnamed layers after the first's.
    first = keras.applications.ConvNeXtTiny(include_top=False, weights=None, input_shape=SHAPE)
    again = keras.applications.ConvNeXtTiny(include_top=False, weights=None, input_shape=SHAPE)
    positions = ["stages[1]", "blocks[4]", "blocks[-1]"]
    names_first, names_again = select_taps(first, positions)[0], select_taps(again, positions)[0]
    assert names_first != names_again  # Keras numbered the unnamed joins differently ...
    from lacnn_zoo.models.taps import _Graph

    def where(model, names):  # each tap's place in the graph's topological order, with its type and shape
        graph = _Graph(model)
        return [(i, type(graph.producer[id(t)]).__name__, tuple(t.shape)) for i, t in enumerate(graph.order)
                if graph.name(t) in names]

    assert where(first, names_first) == where(again, names_again)  # ... the positions are the same layers
    assert names_first[0] == select_taps(first, "stages")[0][1]
    assert names_first[2] == select_taps(first, "blocks")[0][-1]
    model = layer_attended(again, taps=positions)
    assert tap_names(model) == names_again
    stages = select_taps(first, "stages")[0]
    for outside in ("stages[9]", "stages[4]", "stages[-5]"):  # one past each end is outside too
        with pytest.raises(ValueError, match=rf"'{re.escape(outside)}' is outside the 4 stages"):
            select_taps(first, [outside])
    assert select_taps(first, ["stages[3]", "stages[-4]"])[0] == [stages[3], stages[0]]  # the ends themselves


def test_stages_walk_back_only_over_a_widening_pointwise_convolution():
    from lacnn_zoo.models.taps import select_taps

    def net(last_width):
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.Conv2D(8, 3, padding="same", name="block")(inputs)
        x = keras.layers.Conv2D(last_width, 1, name="pointwise")(x)  # widening (an expansion) or not
        x = keras.layers.BatchNormalization(name="bn")(x)
        x = keras.layers.ReLU(name="act")(x)
        x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="down")(x)
        return keras.Model(inputs, x)

    assert select_taps(net(32), "stages")[0] == ["block", "down"]  # 8 -> 32: the block output is the stage
    assert select_taps(net(8), "stages")[0] == ["act", "down"]  # 8 -> 8: a layer of the stage, kept
    assert select_taps(net(4), "stages")[0] == ["act", "down"]  # narrowing: kept


def test_bn_momentum_sets_every_batchnorm_of_an_application_backbone_and_its_saved_model(tmp_path):
    """`bn_momentum` reaches the backbone's layers too (keras.applications gives MobileNetV3Small 0.999), the
    trained model has it, best.keras reloaded has it, and run.json records it."""
    import json

    from test_image_folder import few_per_class, write_digits_folder

    from lacnn_zoo.training import train
    from lacnn_zoo.training.diagnostics import batchnorm_layers

    images, labels = few_per_class(3)
    write_digits_folder(tmp_path / "folder", images, labels, size=32)
    bare = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(32, 32, 1))
    assert {layer.momentum for layer in batchnorm_layers(bare)} == {0.999}
    result = train("lacnn_static_vector_tiny", dataset=str(tmp_path / "folder"), epochs=1, batch_size=16,
                   overrides={"backbone": "MobileNetV3Small", "taps": "stages"}, bn_momentum=0.9,
                   output_dir=str(tmp_path / "run"), verbose=0, tensorboard=False)
    trained = batchnorm_layers(result.model)
    backbone_bn = {layer.name for layer in batchnorm_layers(bare)}
    assert len(trained) >= 30 and {layer.name for layer in trained} <= backbone_bn  # every one up to the last tap
    assert {layer.momentum for layer in trained} == {0.9}
    reloaded = keras.saving.load_model(str(tmp_path / "run" / "best.keras"))
    assert {layer.momentum for layer in batchnorm_layers(reloaded)} == {0.9}
    assert json.load(open(tmp_path / "run" / "run.json"))["bn_momentum"] == 0.9


def test_backbone_weights_from_a_local_file_load_into_the_backbone(tmp_path):
    """`backbone_weights=PATH` (ImageNet weights downloaded once elsewhere, here a file saved from a backbone
    whose weights differ from a fresh build's) loads into every backbone layer, offline."""
    from lacnn_zoo import build_model

    source = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(32, 32, 3))
    rng = np.random.default_rng(0)
    source.set_weights([rng.normal(size=w.shape).astype("float32") for w in source.get_weights()])
    path = str(tmp_path / "mobilenet_v3_small_notop.weights.h5")
    source.save_weights(path)
    model = build_model("lacnn_static_vector_tiny", backbone="MobileNetV3Small", taps="stages",
                        backbone_weights=path, input_shape=(32, 32, 3))
    compared, kept = 0, {layer.name for layer in model.layers}  # the layers after the last tap are left out
    for layer in source.layers:
        if layer.weights and layer.name in kept:
            for a, b in zip(layer.get_weights(), model.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)
            compared += 1
    assert compared > 50


def test_reductions_of_a_non_square_input_are_per_side():
    features = build_model("resnet8", input_shape=(16, 48, 3), include_top=False, features="stages")
    assert [i["reduction"] for i in features.feature_info] == [1, 2, 4]
    assert [tuple(o.shape[1:3]) for o in features.outputs] == [(16, 48), (8, 24), (4, 12)]


def test_input_shape_must_match_a_model_backbone_in_every_dimension():
    inputs = keras.Input((16, 16, 3))
    backbone = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="c")(inputs))
    for shape in [(16, 16, 1), (16, 8, 3)]:
        with pytest.raises(ValueError, match="`input_shape`"):
            layer_attended(backbone, taps=["c"], input_shape=shape)
    layer_attended(backbone, taps=["c"], input_shape=(16, 16, 3))


def test_resnet_v1_block_taps_follow_the_join_to_its_activation():
    backbone = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    names, maps = select_taps(backbone, "blocks")
    expected = [f"conv{s + 2}_block{b}_out" for s, n in enumerate([3, 4, 6, 3]) for b in range(1, n + 1)]
    assert names == expected  # the ReLU after each Add (He et al. 2016: the block output is after the addition)
    assert all(type(backbone.get_layer(n)).__name__ == "Activation" for n in names)


def test_a_bgr_family_with_one_channel_has_no_channel_order_to_reverse():
    """ResNet50's "caffe" preprocessing reverses RGB to BGR; a single grey channel has nothing to reverse, so its
    convention is "RGB" (applied as is), with the channels' mean and std averaged."""
    from lacnn_zoo.models.backbones import input_convention

    colour, grey = input_convention("ResNet50"), input_convention("ResNet50", channels=1)
    assert colour["channel_order"] == "BGR" and grey["channel_order"] == "RGB"
    np.testing.assert_allclose(grey["mean"], [np.mean(colour["mean"])])
    np.testing.assert_allclose(grey["std"], [np.mean(colour["std"])])
