import pytest

import lacnn_zoo
from lacnn_zoo import build_model, list_models, model_info


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
    from lacnn_zoo.registry import _REGISTRY

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
