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
    from lacnn_zoo.inference import evaluate
    from lacnn_zoo.training import train

    folder, _ = colour_folder
    run = str(tmp_path / "run")
    result = train("lacnn_static_vector", dataset=folder, epochs=1, batch_size=8, output_dir=run, verbose=0,
                   overrides={"backbone": "MobileNetV3Small", "taps": "stages"}, tensorboard=False)
    name = "keras.applications.mobilenet_v3.preprocess_input"
    assert json.load(open(os.path.join(run, "run.json")))["input_convention"] == name
    pre = result.metrics["preprocessing"]
    assert pre["convention"] == name and pre["std"] == pytest.approx([1 / 255] * 3) and pre["mean"] == [0, 0, 0]
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
