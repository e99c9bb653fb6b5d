"""`compare` and the gradient-norm measure (checked where the answer is known analytically)."""

import csv
import json

import keras
import numpy as np
import pytest

from lacnn_zoo import cli
from lacnn_zoo.experiments.compare import backbone_profile, compare, epochs_to_reach, gradient_norms


def test_gradient_norms_match_the_analytic_gradient_of_a_linear_net():
    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, use_bias=False, name="a"),
                              keras.layers.Dense(2, use_bias=False, name="b")])
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(3, 2))
    model.get_layer("a").set_weights([a]), model.get_layer("b").set_weights([b])
    x, y = rng.normal(size=(5, 4)).astype("float32"), rng.normal(size=(5, 2)).astype("float32")
    # L = mean((x A B - y)^2) over all 10 entries: dL/dout = 2 (out - y) / 10.
    h = x @ a
    d_out = 2 * (h @ b - y) / y.size
    expected = {"a": np.linalg.norm(x.T @ (d_out @ b.T)), "b": np.linalg.norm(h.T @ d_out)}
    got = dict(gradient_norms(model, x, y, keras.losses.MeanSquaredError()))
    assert got == pytest.approx(expected, rel=1e-4)


def test_gradient_norms_have_no_side_effects_on_batchnorm():
    from lacnn_zoo import build_model

    model = build_model("plain_cnn_tiny", input_shape=(8, 8, 1))
    before = [np.array(v) for v in model.non_trainable_variables]
    x = np.random.default_rng(1).normal(size=(8, 8, 8, 1)).astype("float32")
    norms = gradient_norms(model, x, np.arange(8) % 10, keras.losses.SparseCategoricalCrossentropy(True))
    assert [n for n, _ in norms] == [f"stage{s}_layer{i}" for s in (1, 2, 3) for i in (1, 2)] + ["logits"]
    assert all(v > 0 for _, v in norms)
    for old, new in zip(before, model.non_trainable_variables):
        np.testing.assert_array_equal(old, np.array(new))


def test_epochs_to_reach_and_backbone_profile():
    history = [{"epoch": "0", "val_accuracy": "0.5"}, {"epoch": "1", "val_accuracy": "0.96"}]
    assert epochs_to_reach(history, 0.95) == 2 and epochs_to_reach(history, 0.99) is None
    rows = [{"epoch": "0", "layer": n, "grad_norm": str(v)} for n, v in
            [("stem", 1), ("stage1_block1", 2), ("tap1_transform", 9), ("layer_attention", 7)]]
    assert backbone_profile(rows, 0) == [1.0, 2.0]


def test_small_compare_writes_its_tables_and_plots(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert cli.main(["compare", "plain_cnn_tiny", "lacnn_innate_static_tiny", "--seeds", "0", "--epochs", "1",
                     "--out", str(out)]) == 0
    assert "epochs_to_val_0.95" in capsys.readouterr().out
    with open(out / "compare.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["plain_cnn_tiny", "lacnn_innate_static_tiny"]
    assert {"params", "test_accuracy_mean", "test_accuracy_std", "epochs_to_val_0.95", "time_per_epoch_s",
            "grad_first_over_last_init", "grad_first_over_last_epoch1"} <= set(rows[0])
    for name in ("learning_curves.png", "layer_attention.png", "gradient_norms.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    summary = json.load(open(out / "compare.json"))
    assert summary["seeds"] == [0] and summary["epochs"] == 1
    grads = list(csv.DictReader(open(out / "plain_cnn_tiny" / "seed0" / "grad_norms.csv")))
    assert {int(r["epoch"]) for r in grads} == {0, 1}
    # Running again reuses the finished runs instead of training them again.
    before = (out / "plain_cnn_tiny" / "seed0" / "metrics.json").stat().st_mtime
    compare(["plain_cnn_tiny"], seeds=[0], epochs=1, out_dir=str(out), log=lambda *_: None)
    assert (out / "plain_cnn_tiny" / "seed0" / "metrics.json").stat().st_mtime == before


def test_compare_overrides_reach_only_the_models_that_have_the_knob(tmp_path):
    out = tmp_path / "cmp"
    compare(["plain_cnn_tiny", "resnet8"], seeds=[0], epochs=1, out_dir=str(out), log=lambda *_: None,
            overrides={"mixing": "beta"})
    assert json.load(open(out / "resnet8" / "seed0" / "run.json"))["overrides"] == {"mixing": "beta"}
    assert json.load(open(out / "plain_cnn_tiny" / "seed0" / "run.json"))["overrides"] == {}
    with pytest.raises(ValueError, match=r"colour.*apply to none"):
        compare(["plain_cnn_tiny"], seeds=[0], epochs=1, out_dir=str(out), overrides={"colour": "red"})


@pytest.mark.parametrize("kwargs,named", [
    (dict(target=float("nan")), "`target` must be a number in \\[0, 1\\]"),
    (dict(target=-1), "`target` must be a number in \\[0, 1\\]"),
    (dict(target=float("inf")), "`target`"),
    (dict(epochs=10**18), "`epochs` must be an integer from 1 to 2147483647"),
    (dict(seeds=[-1]), "`seeds` must be an integer from 0 to 4294967295"),
    (dict(seeds=[0, 0]), "`seeds` must be one or more distinct seeds"),
    (dict(seeds=[]), "`seeds` must be one or more distinct seeds"),
])
def test_values_no_comparison_can_mean_are_refused_before_any_run(tmp_path, monkeypatch, kwargs, named):
    from lacnn_zoo.experiments import compare as module

    def run_one(*args, **kw):
        raise AssertionError("a model was trained")

    monkeypatch.setattr(module, "run_one", run_one)
    with pytest.raises(ValueError, match=named):
        compare(["plain_cnn_tiny"], **{"seeds": [0], "epochs": 1, "out_dir": str(tmp_path / "c"), **kwargs})
    assert not (tmp_path / "c").exists()


def test_cli_refuses_repeated_seeds_in_one_line(tmp_path, capsys):
    assert cli.main(["compare", "plain_cnn_tiny", "--seeds", "0", "0", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["lacnn-zoo: error: --seeds must be one or more distinct seeds; received [0, 0]."]
    assert not (tmp_path / "c").exists()


def test_gradient_norms_are_measured_on_the_inputs_an_application_backbone_trains_on(tmp_path, monkeypatch):
    """With a keras.applications backbone the run trains on its family's inputs (VGG16: BGR, ImageNet means off
    0-255 pixels); the gradient-norm batch is those inputs too: Keras' vgg16.preprocess_input of the raw pixels."""
    from PIL import Image

    from lacnn_zoo.experiments import compare as module

    rng = np.random.default_rng(0)
    raw = []
    for i in range(24):
        image = rng.integers(0, 256, size=(32, 32, 3)).astype("uint8")
        image[..., 0] = np.maximum(image[..., 0], 128 * (i % 2))  # three different channels: BGR shows
        (tmp_path / "folder" / str(i % 2)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(tmp_path / "folder" / str(i % 2) / f"{i:02d}.png")
        raw.append(image)
    expected = keras.applications.vgg16.preprocess_input(np.stack(raw).astype("float32"))
    seen = []

    class Recording(module.GradientNormMonitor):
        def __init__(self, x, y, path, epochs):
            seen.append(np.asarray(x))
            super().__init__(x, y, path, epochs=epochs)

    monkeypatch.setattr(module, "GradientNormMonitor", Recording)
    module.run_one("lacnn_static_vector", 0, str(tmp_path / "out"), 1, str(tmp_path / "folder"), (1,),
                   overrides={"backbone": "VGG16", "taps": "stages"}, tensorboard=False)
    (x,) = seen
    nearest = [np.abs(expected - image).reshape(len(expected), -1).max(axis=1).min() for image in x]
    assert len(x) > 0 and max(nearest) < 1e-4 * np.abs(expected).max()
