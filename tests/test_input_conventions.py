"""A keras.applications backbone sees the inputs its weights were trained on: its family's preprocess_input.

The expected inputs come from Keras' own `keras.applications.<family>.preprocess_input` applied to the raw
pixels as written to disk; the zoo's pipeline reaches them through `input_convention`, its loaders and the
recorded preprocessing. Colour images with three different channels make a missing BGR reversal visible.
"""

import json
import os

import keras
import numpy as np
import pytest
from PIL import Image

from lacnn_zoo import input_convention
from lacnn_zoo.data import load_dataset, standardise

FAMILIES = {"ResNet50": "resnet", "ResNet50V2": "resnet_v2", "DenseNet121": "densenet",
            "EfficientNetB0": "efficientnet", "MobileNetV3Small": "mobilenet_v3", "VGG16": "vgg16"}


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory):
    """Two classes of 32x32 RGB images (class 1 redder), and the raw uint8 pixels written."""
    root = tmp_path_factory.mktemp("colour")
    rng = np.random.default_rng(0)
    raw = []
    for i in range(24):
        label = i % 2
        image = rng.integers(0, 256, size=(32, 32, 3)).astype("uint8")
        image[..., 0] = np.maximum(image[..., 0], 128 * label)
        os.makedirs(root / str(label), exist_ok=True)
        Image.fromarray(image).save(root / str(label) / f"{i:02d}.png")
        raw.append(image)
    return str(root), np.stack(raw).astype("float32")


def _nearest(inputs, expected):
    """For each model input, the largest absolute difference to the nearest expected image."""
    return np.array([np.abs(expected - x).reshape(len(expected), -1).max(axis=1).min() for x in inputs])


@pytest.mark.parametrize("backbone", list(FAMILIES))
def test_the_pipeline_gives_a_backbone_its_family_preprocess_input(colour_folder, backbone):
    folder, raw = colour_folder
    family = getattr(keras.applications, FAMILIES[backbone])
    expected = np.asarray(family.preprocess_input(raw.copy()))
    spread = np.abs(expected).max()
    convention = input_convention(backbone)
    assert convention["convention"] == f"keras.applications.{FAMILIES[backbone]}.preprocess_input"
    data = load_dataset(folder, seed=0, batch_size=64, normalization=convention)
    x = np.concatenate([np.asarray(b) for b, _ in data.test])
    assert _nearest(x, expected).max() < 1e-4 * spread
    # The recorded preprocessing, applied to raw pixels as a deployment would, gives the same inputs.
    pre = data.preprocessing
    assert pre["convention"] == convention["convention"]
    assert np.abs(standardise(raw * pre["scale"], pre) - expected).max() < 1e-4 * spread
    # Without the convention the images are standardised with their own statistics: not the family's inputs.
    own = load_dataset(folder, seed=0, batch_size=64)
    assert _nearest(np.concatenate([np.asarray(b) for b, _ in own.test]), expected).min() > 1e-2 * spread


def test_only_applications_have_a_convention():
    assert input_convention("resnet20") is None and input_convention(None) is None
    assert input_convention("ResNet50")["channel_order"] == "BGR"
    assert input_convention("ResNet50V2")["channel_order"] == "RGB"


def test_a_run_on_an_application_backbone_records_and_uses_its_convention(colour_folder, tmp_path):
    from lacnn_zoo.training import train
    from lacnn_zoo.training.inference import evaluate

    folder, _ = colour_folder
    run = str(tmp_path / "run")
    result = train("lacnn_static_vector", dataset=folder, epochs=1, batch_size=8, output_dir=run, verbose=0,
                   overrides={"backbone": "VGG16", "taps": "stages"}, tensorboard=False)
    name = "keras.applications.vgg16.preprocess_input"
    assert json.load(open(os.path.join(run, "run.json")))["input_convention"] == name
    pre = result.metrics["preprocessing"]
    # Caffe convention: BGR, ImageNet means subtracted from 0-255 pixels (Keras' numbers, in 0-1 units).
    assert pre["convention"] == name and pre["channel_order"] == "BGR" and pre["std"] == pytest.approx([1 / 255] * 3)
    assert pre["mean"] == pytest.approx([103.939 / 255, 116.779 / 255, 123.68 / 255])
    # evaluate reads the recorded convention: the same test accuracy as training reported.
    assert evaluate(run)["top1"] == pytest.approx(result.metrics["test_accuracy"], abs=1e-6)


def test_imagenet_weights_without_network_is_one_line(monkeypatch):
    from lacnn_zoo.errors import ZooError
    from lacnn_zoo.models.backbones import resolve_backbone

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example.invalid/weights.h5: None -- no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.applications.mobilenet_v3.file_utils.get_file", offline)
    with pytest.raises(ZooError, match="`backbone_weights`='imagenet'.*no network") as e:
        resolve_backbone("MobileNetV3Small", input_shape=(32, 32, 3), weights="imagenet")
    assert "\n" not in str(e.value)


def test_restandardise_goes_through_the_raw_pixels_at_either_scale():
    from lacnn_zoo.data import restandardise, unstandardise

    raw = np.random.default_rng(1).integers(0, 256, size=(2, 3, 3, 3)).astype("float32")
    source = {"scale": 1 / 255, "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3], "channel_order": "RGB"}
    target = {"scale": 1 / 127.5, **input_convention("ResNet50")}  # another scale, and BGR
    x = standardise(raw * source["scale"], source)
    np.testing.assert_allclose(unstandardise(x, source), raw / 255, rtol=1e-5, atol=1e-6)
    expected = ((raw * target["scale"])[..., ::-1] - np.float32(target["mean"])) / np.float32(target["std"])
    np.testing.assert_allclose(restandardise(x, source, target), expected, rtol=1e-4, atol=1e-3)


def test_grey_images_under_an_rgb_convention_get_one_averaged_channel():
    from lacnn_zoo.data.preprocessing import resolve_normalization

    convention = input_convention("ResNet50")
    mean, std, record = resolve_normalization(convention, 1, estimate=None)
    assert record["channel_order"] == "RGB" and mean.shape == std.shape == (1,)
    np.testing.assert_allclose(mean, [np.mean(convention["mean"])], rtol=1e-6)
    np.testing.assert_allclose(std, [np.mean(convention["std"])], rtol=1e-6)
    with pytest.raises(ValueError, match="`normalization` must give 3 mean"):
        resolve_normalization({"mean": [0.5], "std": [0.5]}, 3, estimate=None)


@pytest.mark.parametrize("damage,needle", [
    ({"std": [0.2, 0.0, 0.3]}, "std > 0"), ({"std": [0.2, -0.1, 0.3]}, "std > 0"), ({"mean": [0.5, 0.5]}, "mean="),
    ({"scale": 0}, "scale="), ({"scale": float("nan")}, "scale="), ({"mean": [0.5, float("inf"), 0.5]}, "mean="),
    ({"resize": [31, 32]}, "resize="), ({"channel_order": "bgr"}, "channel_order="), ("nonsense", "JSON object"),
])
def test_check_preprocessing_refuses_what_cannot_be_applied(damage, needle):
    from lacnn_zoo.data import check_preprocessing

    good = {"scale": 1 / 255, "mean": [0.5] * 3, "std": [0.25] * 3, "resize": [32, 32], "channel_order": "RGB"}
    assert check_preprocessing(good, (32, 32, 3)) is good
    with pytest.raises(ValueError, match=needle):
        check_preprocessing(damage if isinstance(damage, str) else {**good, **damage}, (32, 32, 3))


def test_a_run_started_before_conventions_resumes_with_its_own_statistics(tmp_path):
    from lacnn_zoo.training.loop import _input_convention
    from lacnn_zoo.training.run_folder import RunFolder

    run = RunFolder(tmp_path)  # the run's folder, as train builds it once per run
    knobs = {"backbone": "MobileNetV3Small"}
    name = "keras.applications.mobilenet_v3.preprocess_input"
    assert _input_convention(knobs, run, resume=False)["convention"] == name
    (tmp_path / "run.json").write_text(json.dumps({"model": "lacnn_static_vector"}))  # written before the key
    assert _input_convention(knobs, run, resume=True) is None
    (tmp_path / "run.json").write_text(json.dumps({"model": "lacnn_static_vector", "input_convention": name}))
    assert _input_convention(knobs, run, resume=True)["convention"] == name
    assert _input_convention({"backbone": "plain"}, run, resume=False) is None


def test_int8_calibration_and_test_inputs_use_the_models_own_standardisation(digits):
    from sklearn.datasets import load_digits as sk_digits

    from export.quantize import load_quantization_data

    recorded = {**digits.preprocessing, "mean": [0.3], "std": [0.2]}  # not the data set's own statistics
    calibration, test_x, test_y, _ = load_quantization_data("digits", seed=0, calibration_images=16,
                                                            preprocessing=recorded)
    raw = sk_digits().images.astype("float32")[..., None]  # 0..16, as scanned
    scaled = (raw * recorded["scale"] - 0.3) / 0.2
    for x in (test_x, calibration):  # every input is a scan standardised the model's way
        assert _nearest(x, scaled).max() < 1e-4
