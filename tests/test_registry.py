import math
import os
import time

import pytest

import lacnn_zoo
from lacnn_zoo import build_model, list_models, model_info
from lacnn_zoo.models import registry


def test_list_models_wildcards_and_families():
    everything = list_models()
    assert everything == sorted(everything) and len(everything) == len(set(everything))
    resnets = list_models("resnet*")
    assert resnets and all(n.startswith("resnet") for n in resnets)
    assert set(list_models(["resnet20", "plain_*"])) == {"resnet20", *list_models("plain_*")}
    assert list_models("no_such_model*") == []
    assert set(list_models(family="plain")) == set(list_models("plain_*"))
    for family in lacnn_zoo.list_families():
        assert list_models(family=family)


def test_cifar_resnet_presets_and_parameter_counts():
    # He et al. 2015 Table 6: 0.27M / 0.46M / 0.85M / 1.7M; Zagoruyko & Komodakis: WRN-28-10 36.5M.
    expected = {"resnet20": 0.27e6, "resnet32": 0.46e6, "resnet56": 0.85e6, "resnet110": 1.7e6}
    for name, params in expected.items():
        assert model_info(name).num_params() == pytest.approx(params, rel=0.03), name
    assert model_info("wrn28_10").num_params(num_classes=10) == pytest.approx(36.5e6, rel=0.01)


def test_unknown_name_suggests_close_names():
    with pytest.raises(ValueError, match=r"Unknown model name 'resnt20'.*resnet20"):
        build_model("resnt20")


def test_unknown_override_is_an_error_naming_accepted_knobs():
    with pytest.raises(ValueError, match=r"Unknown override.*'colour'.*Accepted knobs.*mixing"):
        build_model("resnet20", colour="red")


def test_model_info_record():
    info = model_info("resnet20")
    assert info.family == "resnet" and "He" in info.paper
    assert info.knobs["depth"] == 20 and info.knobs["mixing"] == "add"
    assert info.as_dict()["default_input_shape"] == [32, 32, 3]


def test_register_model_decorator_adds_a_buildable_name():
    from lacnn_zoo.models.plain import build_plain_cnn
    from lacnn_zoo.models.registry import _REGISTRY

    @lacnn_zoo.register_model(build_plain_cnn, family="plain", paper="test")
    def test_only_plain():
        """A model registered by a test."""
        return dict(widths=(4,), depth=1, downsample=None)

    try:
        assert "test_only_plain" in list_models()
        model = build_model("test_only_plain", input_shape=(5, 5, 2), num_classes=3)
        assert model.output.shape == (None, 3)
        with pytest.raises(ValueError, match="already registered"):
            lacnn_zoo.register_model(build_plain_cnn, family="plain", name="test_only_plain")(lambda: {})
        with pytest.raises(ValueError, match="does not take"):
            lacnn_zoo.register_model(build_plain_cnn, family="plain", name="x_bad")(lambda: {"nope": 1})
    finally:
        _REGISTRY.pop("test_only_plain", None)


def test_input_shape_none_means_the_registered_default():
    for name in ("lacnn_static_vector_tiny", "plain_cnn"):
        expected = model_info(name).default_input_shape
        assert build_model(name).input_shape == (None, *expected)
    assert model_info("lacnn_static_vector_tiny").default_input_shape != model_info("plain_cnn").default_input_shape
    assert build_model("resnet8", input_shape=(16, 16, 2)).input_shape == (None, 16, 16, 2)


def test_aa_wide_resnet_parameter_count_matches_the_readme():
    # README: AA-WRN-28-10 for 100 classes has 36,335,348 parameters (Bello et al. report 36.2M).
    assert model_info("aa_wrn28_10").num_params(num_classes=100) == 36_335_348


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux VmHWM")
def test_num_params_allocates_no_weights():
    from keras.src.backend.common import global_state

    from lacnn_zoo.experiments.bench import peak_step_memory_mib

    pending = len(global_state.get_global_attribute("uninitialized_variables") or [])
    counts = []
    # WRN-28-20: 146M parameters, 584 MB of float32 weights if they were allocated.
    peak = peak_step_memory_mib(lambda: counts.append(model_info("wrn28_10").num_params(width=20)),
                                lambda: model_info("wrn10_2").num_params())
    assert counts[0] == pytest.approx(146e6, rel=0.01)
    assert peak < 200, f"num_params grew the peak resident set by {peak:.0f} MiB"
    # The deferred variables are dropped, so no later StatelessScope allocates them.
    assert len(global_state.get_global_attribute("uninitialized_variables") or []) == pending


def _stage_params(model, prefix):
    return sum(layer.count_params() for layer in model.layers if layer.name.startswith(prefix))


@pytest.mark.parametrize("name,overrides,input_shape", [
    ("resnet8", {}, (7, 5, 3)),
    ("resnet8_beta", {}, (8, 8, 1)),
    ("resnet8_projection", dict(widths=(8, 12)), (9, 9, 2)),
    ("wrn10_2", {}, (8, 8, 1)),
    ("aa_resnet8", {}, (9, 7, 2)),
    ("aa_resnet8_late", dict(relative=False), (8, 8, 1)),
    ("aa_resnet20", {}, (16, 16, 3)),
])
def test_residual_size_estimate_is_the_built_parameter_count(name, overrides, input_shape):
    from lacnn_zoo.models.resnet import residual_stages_size

    knobs = {**model_info(name).knobs, **overrides}
    model = build_model(name, input_shape=input_shape, **overrides)
    preactivation = "width" in knobs
    widths = tuple(w * knobs["width"] for w in (16, 32, 64)) if preactivation else knobs["widths"]
    blocks = (knobs["depth"] - (4 if preactivation else 2)) // 6
    attention = {k: knobs[k] for k in ("heads", "dk", "dv", "relative", "min_key_dims_per_head")}
    stem_width = 16 if preactivation else widths[0]
    params, activations = residual_stages_size(
        (*input_shape[:2], stem_width), widths, blocks, mixing=knobs["mixing"], preactivation=preactivation,
        attention=attention, augment_stages=knobs["augment_stages"],
    )
    assert params == _stage_params(model, "stage")
    assert activations > 0


@pytest.mark.parametrize("widths,depth,downsample,input_shape", [
    ((4, 6, 8), 2, "stride", (9, 7, 3)),
    ((5, 3), (1, 3), "pool", (8, 8, 1)),
    ((4,), 1, None, (5, 5, 2)),
])
def test_plain_size_estimate_is_the_built_parameter_count(widths, depth, downsample, input_shape):
    from lacnn_zoo.models.plain import plain_backbone_size, stage_depths

    model = build_model("plain_cnn", input_shape=input_shape, widths=widths, depth=depth, downsample=downsample)
    params, activations = plain_backbone_size(input_shape, widths, stage_depths(depth, widths), downsample)
    assert params == _stage_params(model, "stage")
    # Three values (conv, BN, activation) per output position of every layer.
    sizes = [model.get_layer(f"stage{s}_layer{i}").output.shape[1:] for s, d in
             enumerate(stage_depths(depth, widths), 1) for i in range(1, d + 1)]
    assert activations == 3 * sum(math.prod(size) for size in sizes)


@pytest.mark.parametrize("name,knobs,named", [
    ("resnet20", dict(widths=(100000, 100000, 100000)), r"widths=\(100000, 100000, 100000\)"),
    ("wrn28_10", dict(width=5000), r"width=5000"),
    ("plain_cnn", dict(widths=(200000, 200000)), r"widths=\(200000, 200000\)"),
    ("lacnn_static_vector_tiny", dict(widths=(200000, 200000)), r"widths=\(200000, 200000\)"),
])
def test_absurd_sizes_fail_fast_naming_the_knob(name, knobs, named):
    start = time.perf_counter()
    with pytest.raises(ValueError, match=named + r".*too large.*[\d,]+ parameters.*GiB"):
        build_model(name, **knobs)
    assert time.perf_counter() - start < 5


def test_absurd_depth_fails_fast_with_an_estimate(monkeypatch):
    # 23 GiB, the memory of the machine this was written on: the check must not depend on the test machine.
    monkeypatch.setattr(registry, "memory_budget_bytes", lambda: 23 * 2**30)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"depth=60002.*9\d\d,\d{3},\d{3} parameters.*GiB.*23\.0 GiB"):
        build_model("resnet20", depth=60002)
    assert time.perf_counter() - start < 5
    # The largest presets stay well inside such a machine.
    for name in ("wrn28_10", "aa_wrn28_10"):
        assert model_info(name).num_params() > 36e6


def test_features_from_every_family_follow_timm_feature_info():
    model = build_model("resnet20", input_shape=(32, 32, 3), include_top=False, features="stages")
    # He et al.'s CIFAR ResNet: 16/32/64 filters at 32, 16 and 8 pixels.
    assert [(f["channels"], f["reduction"]) for f in model.feature_info] == [(16, 1), (32, 2), (64, 4)]
    assert [tuple(o.shape) for o in model.outputs] == [(None, 32, 32, 16), (None, 16, 16, 32), (None, 8, 8, 64)]
    assert sorted(model.pyramid_outputs) == ["P0", "P1", "P2"]
    blocks = build_model("resnet20", input_shape=(32, 32, 3), include_top=False, features="blocks")
    assert len(blocks.outputs) == 9  # 3 stages x 3 blocks
    named = build_model("plain_cnn", input_shape=(16, 16, 3), include_top=False, features=["stage2_layer1"])
    assert [f["name"] for f in named.feature_info] == ["stage2_layer1"]
    with pytest.raises(ValueError, match="`features`.*include_top=False"):
        build_model("resnet20", features="stages")


def test_weights_load_as_keras_applications_do(tmp_path, monkeypatch):
    import hashlib

    import keras
    import numpy as np

    source = build_model("plain_cnn_tiny", num_classes=4)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype("float32")
    expected = keras.ops.convert_to_numpy(source(x))
    source.save_weights(tmp_path / "w.weights.h5")
    source.save(tmp_path / "m.keras")
    for weights in (tmp_path / "w.weights.h5", tmp_path / "m.keras"):
        model = build_model("plain_cnn_tiny", num_classes=4, weights=weights)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), expected, rtol=1e-6, atol=1e-6)
    # A URL is downloaded once into Keras' cache (here a file:// URL and a cache in tmp_path) and checked.
    (tmp_path / "keras_home").mkdir()
    monkeypatch.setattr("keras.src.backend.config.keras_home", lambda: str(tmp_path / "keras_home"))
    url = (tmp_path / "w.weights.h5").as_uri()
    digest = hashlib.sha256((tmp_path / "w.weights.h5").read_bytes()).hexdigest()
    model = build_model("plain_cnn_tiny", num_classes=4, weights=url, weights_hash=digest)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), expected, rtol=1e-6, atol=1e-6)
    assert (tmp_path / "keras_home" / "lacnn_zoo" / "w.weights.h5").exists()
    other = tmp_path / "other.weights.h5"
    build_model("plain_cnn_tiny", num_classes=4).save_weights(other)
    for kwargs, match in [
        (dict(weights=other.as_uri(), weights_hash="0" * 64), "does not match weights_hash"),
        (dict(weights="http://127.0.0.1:9/nothing.weights.h5", weights_hash="0" * 64), "could not be downloaded"),
        (dict(weights=url), "`weights_hash`"),
        (dict(weights=str(tmp_path / "m.keras"), num_classes=3), "do not fit"),
        (dict(weights=str(tmp_path / "none.keras")), "does not exist"),
        (dict(weights="imagenet"), "`weights` must be"),
    ]:
        with pytest.raises((ValueError, FileNotFoundError), match=match) as e:
            build_model("plain_cnn_tiny", **{"num_classes": 4, **kwargs})
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("name,knobs", [
    ("plain_cnn_tiny", {"depth": 10**12}), ("resnet20", {"depth": 6 * 10**12 + 2}),
    ("lacnn_static_vector_tiny", {"depth": 10**12}), ("lacnn_static_vector_resnet8", {"depth": 10**12}),
    ("plain_cnn", {"widths": (10**9, 10**9, 10**9)}), ("aa_resnet8", {"depth": 6 * 10**12 + 2}),
])
def test_an_absurd_size_is_refused_at_once_not_walked(name, knobs):
    import signal

    def hung(signum, frame):
        raise TimeoutError("the size check walked the layers")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)  # a walk over 10**12 layers never returns: this turns the hang into a failure
    try:
        with pytest.raises(ValueError, match="too large to build") as e:
            build_model(name, **knobs)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert "\n" not in str(e.value) and next(iter(knobs)) in str(e.value)


def test_weights_hash_without_weights_is_refused():
    with pytest.raises(ValueError, match="`weights_hash` checks a downloaded `weights` file"):
        build_model("plain_cnn_tiny", weights_hash="0" * 64)


@pytest.mark.parametrize("name,knobs,inert", [
    ("lacnn_static_vector_tiny", dict(tap_units=32), "tap_units"),
    ("lacnn_static_vector_tiny", dict(mixing="beta"), "mixing"),
    ("lacnn_static_vector_tiny", dict(beta_init=0.3), "beta_init"),
    ("lacnn_static_vector_tiny", dict(heads=2), "heads"),
    ("lacnn_static_vector_tiny", dict(key_width=8), "key_width"),
    ("lacnn_static_vector_tiny", dict(lstm_units=8), "lstm_units"),
    ("lacnn_static_vector_tiny", dict(lstm_direction="bidirectional"), "lstm_direction"),
    ("lacnn_static_vector_tiny", dict(lstm_readout="final_state"), "lstm_readout"),
    ("lacnn_static_vector_tiny", dict(tap_size=2), "tap_size"),
    ("lacnn_static_vector_tiny", dict(backbone_weights=None), "backbone_weights"),
    ("lacnn_static_vector_tiny", dict(backbone="MobileNetV3Small", widths=(8, 8, 8)), "widths"),
    ("lacnn_self_attention_tiny", dict(lstm_units=8), "lstm_units"),
    ("lacnn_self_attention_tiny", dict(tap_transform=False, tap_units=8), "tap_units"),
    ("lacnn_static_vector_resnet8", dict(beta_init=0.3), "beta_init"),
    ("resnet8", dict(beta_init=0.3), "beta_init"),
    ("resnet8", dict(heads=2), "heads"),
    ("resnet8_beta", dict(mixing="add", beta_init=0.3), "beta_init"),
    ("wrn10_2", dict(dk=0.5), "dk"),
])
def test_a_knob_the_model_does_not_use_is_refused(name, knobs, inert):
    with pytest.raises(ValueError, match=rf"`{inert}` cannot take effect on {name!r}: .*knobs it uses.*") as e:
        build_model(name, **knobs)
    uses = str(e.value).split("knobs it uses: ")[1].rstrip(".").split(", ")
    assert "\n" not in str(e.value) and inert not in uses
    assert ("mechanism" if name.startswith("lacnn") else "depth") in uses


def test_the_same_knobs_where_they_take_effect_are_accepted_and_change_the_model():
    import json

    def config(name, **knobs):
        return json.dumps(build_model(name, **knobs).get_config(), sort_keys=True, default=str)

    for name, knobs in [
        ("lacnn_static_vector_tiny", dict(tap_transform=True, tap_units=8)),
        ("lacnn_static_vector_tiny", dict(mechanism="self_attention", heads=2, key_width=8)),
        ("lacnn_static_vector_tiny", dict(mechanism="dynamic_recurrent", lstm_units=8)),
        ("lacnn_static_vector_tiny", dict(tap_form="resample", tap_size=1)),
        ("lacnn_static_vector_tiny", dict(backbone="residual", depth=1, mixing="beta", beta_init=0.3)),
        ("resnet8", dict(mixing="beta", beta_init=0.3)),
        ("resnet8", dict(augment_stages=(3,), heads=2, dk=0.5, dv=0.25)),
    ]:
        assert config(name, **knobs) != config(name), (name, knobs)
    # The layer-attended head on a given backbone follows the same rule.
    from lacnn_zoo.models.layer_attended import layer_attended

    with pytest.raises(ValueError, match="`heads` cannot take effect"):
        layer_attended(build_model("plain_cnn_tiny", include_top=False, pooling=None), heads=4)


def test_cli_refuses_a_knob_the_model_does_not_use(tmp_path, capsys):
    from lacnn_zoo import cli

    run = tmp_path / "run"
    assert cli.main(["train", "--model", "lacnn_static_vector_tiny", "--set", "heads=4", "--output-dir",
                     str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--set heads" in err[0] and "mechanism" in err[0] and not run.exists()


def test_weights_hash_is_checked_for_a_local_file_too(tmp_path):
    import hashlib

    path = tmp_path / "w.weights.h5"
    build_model("plain_cnn_tiny").save_weights(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    build_model("plain_cnn_tiny", weights=str(path), weights_hash=digest)
    with pytest.raises(ValueError, match=r"does not match weights_hash.*nothing was loaded"):
        build_model("plain_cnn_tiny", weights=str(path), weights_hash="0" * 64)


def test_weights_that_are_a_folder_or_unreadable_say_so(tmp_path, monkeypatch):
    import builtins

    (tmp_path / "w.weights.h5").mkdir()
    with pytest.raises(IsADirectoryError, match="is a folder"):
        build_model("plain_cnn_tiny", weights=str(tmp_path / "w.weights.h5"))
    path = tmp_path / "x.weights.h5"
    build_model("plain_cnn_tiny").save_weights(path)

    def unreadable(name, *args, **kwargs):  # root reads through chmod 000: the refusal is simulated
        if os.fspath(name) == str(path):
            raise PermissionError(13, "Permission denied", os.fspath(name))
        return builtins.open(name, *args, **kwargs)

    monkeypatch.setattr(registry, "open", unreadable, raising=False)
    with pytest.raises(PermissionError, match=r"cannot be read \(Permission denied\)"):
        build_model("plain_cnn_tiny", weights=str(path))


def test_a_download_that_never_answers_times_out_in_one_line(tmp_path, monkeypatch):
    import signal
    import socket

    monkeypatch.setattr(registry, "DOWNLOAD_TIMEOUT_S", 1)
    (tmp_path / "keras_home").mkdir()
    monkeypatch.setattr("keras.src.backend.config.keras_home", lambda: str(tmp_path / "keras_home"))
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # the kernel accepts the connection; nobody ever answers
    url = f"http://127.0.0.1:{server.getsockname()[1]}/x.weights.h5"

    def hung(signum, frame):
        raise TimeoutError("the download never timed out")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        start = time.perf_counter()
        with pytest.raises(ValueError, match=r"could not be downloaded.*no answer within 1 s") as e:
            build_model("plain_cnn_tiny", weights=url, weights_hash="0" * 64)
        assert time.perf_counter() - start < 20 and "\n" not in str(e.value)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        server.close()
    assert not os.listdir(tmp_path / "keras_home" / "lacnn_zoo") if (tmp_path / "keras_home" / "lacnn_zoo").exists() \
        else True


def test_head_arguments_without_the_head_are_refused():
    with pytest.raises(ValueError, match="`classifier_activation` applies to the classifier"):
        build_model("plain_cnn_tiny", include_top=False, classifier_activation="softmax")
    with pytest.raises(ValueError, match="`pooling` applies to the one pooled output"):
        build_model("plain_cnn_tiny", include_top=False, features="stages", pooling="max")
    assert len(build_model("plain_cnn_tiny", include_top=False, features="stages").outputs) == 3


def test_weights_of_another_model_are_refused_in_one_quiet_line_naming_the_first_misfit(tmp_path, capsys):
    """EfficientNetB0 given MobileNetV3Small's weights: no Keras warning (there were 118), one whole line naming the
    first layer that differs with both shapes; weights saved for another num_classes say so, from a .weights.h5
    and a .keras file, and as `init_weights` of a training run."""
    import warnings

    from lacnn_zoo.training.transfer import load_initial_weights

    small = dict(taps="stages", input_shape=(32, 32, 3))
    other = str(tmp_path / "mobilenet.weights.h5")
    build_model("lacnn_static_vector_tiny", backbone="MobileNetV3Small", **small).save_weights(other)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError) as e:
            build_model("lacnn_static_vector_tiny", backbone="EfficientNetB0", weights=other, **small)
    message = str(e.value)
    assert [str(w.message) for w in caught] == [] and capsys.readouterr().err == ""
    assert "\n" not in message and message.startswith(f"`weights` {other!r} do not fit 'lacnn_static_vector_tiny': ")
    assert "the first 'stem_conv' (the file's layer in its place is 'conv'): (3, 3, 3, 32) in the model, " \
           "(3, 3, 3, 16) in the file" in message and message.endswith("comes from another architecture.")

    four = build_model("plain_cnn_tiny", num_classes=4, widths=(8, 8, 16))
    four.save_weights(tmp_path / "four.weights.h5")
    four.save(tmp_path / "four.keras")
    for path in (tmp_path / "four.weights.h5", tmp_path / "four.keras"):
        with pytest.raises(ValueError, match=r"the file was saved for 4 classes and the model has num_classes=10 "
                                             r"\(layer 'logits': \(16, 10\), \(10,\) in the model, \(16, 4\), "
                                             r"\(4,\) in the file\); build the model with the file's num_classes"):
            build_model("plain_cnn_tiny", widths=(8, 8, 16), weights=str(path))
    with pytest.raises(ValueError, match=r"`init_weights` .* \(the file was saved for 4 classes"):
        load_initial_weights(build_model("plain_cnn_tiny", widths=(8, 8, 16)), str(tmp_path / "four.weights.h5"))
