"""`lacnn-zoo evaluate` and `lacnn-zoo predict` on a run trained from a folder of digit images."""

import csv
import json
import os
import re
import shutil

import keras
import numpy as np
import pytest
from PIL import Image
from test_image_folder import few_per_class, write_digits_folder

from lacnn_zoo import cli
from lacnn_zoo.data import load_dataset


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-epoch plain_cnn_tiny run on 100 digits at 16x16 (PNG and JPEG, some RGB: read as RGB)."""
    root = tmp_path_factory.mktemp("inference")
    images, labels = few_per_class(10)
    folder = str(root / "digits16")
    write_digits_folder(folder, images, labels, size=16, formats=("png", "jpg"), rgb_every=4)
    out = str(root / "run")
    code = cli.main(["train", "--model", "plain_cnn_tiny", "--dataset", folder, "--epochs", "2", "--batch-size",
                     "32", "--output-dir", out, "--verbose", "0"])
    assert code == 0
    return {"root": root, "folder": folder, "run": out}


def test_evaluate_run_folder_matches_numpy_recomputation(run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert cli.main(["evaluate", run["run"], "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert "top5" not in result and result["split"] == "test" and result["num_examples"] == 20
    assert f"top-1 {result['top1']:.4f}" in printed

    # The run's own test split (same folder, same seed), and the model's raw outputs.
    data = load_dataset(run["folder"], seed=0, batch_size=32)
    x = np.concatenate([np.asarray(b) for b, _ in data.test])
    y = np.concatenate([np.asarray(b) for _, b in data.test])
    logits = keras.saving.load_model(os.path.join(run["run"], "best.keras")).predict(x, verbose=0)
    assert result["top1"] == pytest.approx(float(np.mean(logits.argmax(-1) == y)), abs=1e-9)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits)
    assert result["loss"] == pytest.approx(float(loss), rel=1e-4)
    # metrics.json recorded the same test accuracy at the end of training.
    metrics = json.loads(open(os.path.join(run["run"], "metrics.json")).read())
    assert result["top1"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)


def test_evaluate_bare_model_with_top5(tmp_path):
    from lacnn_zoo import build_model
    from lacnn_zoo.training.inference import evaluate

    images, labels = few_per_class(5)
    # 20 classes: the digits, and the same digits mirrored.
    write_digits_folder(tmp_path / "twenty", np.concatenate([images, images[:, :, ::-1]]),
                        np.concatenate([labels, labels + 10]))
    model = build_model("plain_cnn_tiny", input_shape=(8, 8, 1), num_classes=20)
    model.save(tmp_path / "m.keras")
    with pytest.warns(UserWarning, match="stratified"):
        result = evaluate(str(tmp_path / "m.keras"), str(tmp_path / "twenty"), seed=3)
    data = load_dataset(str(tmp_path / "twenty"), seed=3)
    x = np.concatenate([np.asarray(b) for b, _ in data.test])
    y = np.concatenate([np.asarray(b) for _, b in data.test])
    logits = model.predict(x, verbose=0)
    top5 = np.argsort(-logits, axis=-1)[:, :5]
    assert result["num_classes"] == 20 and result["num_examples"] == len(y) == 20
    assert result["top5"] == pytest.approx(float(np.mean((top5 == y[:, None]).any(-1))))
    assert result["top1"] == pytest.approx(float(np.mean(logits.argmax(-1) == y)))


def _reference_preprocess(path, preprocessing):
    """PIL + NumPy, independent of the zoo: RGB, scaled, standardised with the recorded statistics."""
    raw = np.asarray(Image.open(path).convert("RGB"), dtype="float32")
    return (raw * preprocessing["scale"] - np.asarray(preprocessing["mean"])) / np.asarray(preprocessing["std"])


def test_predict_reports_the_models_classes_for_image_files(run, tmp_path, capsys):
    images, labels = few_per_class(1, seed=7)  # one digit per class
    files = write_digits_folder(tmp_path / "new", images, labels, size=16, rgb_every=2)
    paths = sorted(files)
    out_csv = tmp_path / "pred.csv"
    assert cli.main(["predict", run["run"], *paths[:4], str(tmp_path / "new" / "9"), "--top-k", "3",
                     "--csv", str(out_csv)]) == 0
    printed = capsys.readouterr().out
    with open(out_csv) as f:
        rows = list(csv.DictReader(f))
    asked = paths[:4] + [p for p in paths if os.sep + "9" + os.sep in p]
    assert [r["file"] for r in rows] == [p for p in asked for _ in range(3)]

    metrics = json.loads(open(os.path.join(run["run"], "metrics.json")).read())
    preprocessing = metrics["preprocessing"]
    x = np.stack([_reference_preprocess(p, preprocessing) for p in asked])
    logits = keras.saving.load_model(os.path.join(run["run"], "best.keras")).predict(x, verbose=0)
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    for i in range(len(asked)):
        top = np.argsort(-probabilities[i])[:3]
        mine = rows[3 * i:3 * i + 3]
        assert [r["class"] for r in mine] == [preprocessing["class_names"][k] for k in top]
        assert [float(r["probability"]) for r in mine] == pytest.approx(probabilities[i][top], abs=1e-5)
        assert f"  {mine[0]['class']:<16} {float(mine[0]['probability']):.4f}" in printed


@pytest.fixture
def foreign(run, tmp_path):
    """A bare copy of the run's model (no metrics.json), a fake digits run, and bad image files."""
    shutil.copy(os.path.join(run["run"], "best.keras"), tmp_path / "bare.keras")
    (tmp_path / "digits_run").mkdir()
    shutil.copy(os.path.join(run["run"], "best.keras"), tmp_path / "digits_run" / "best.keras")
    metrics = json.loads(open(os.path.join(run["run"], "metrics.json")).read())
    (tmp_path / "digits_run" / "metrics.json").write_text(json.dumps({**metrics, "dataset": "digits"}))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "empty").mkdir()
    (tmp_path / "not_a_run").mkdir()
    write_digits_folder(tmp_path / "small8", *few_per_class(3))
    return tmp_path


@pytest.mark.parametrize("argv,pattern", [
    (["evaluate", "{t}/nowhere"], "does not exist"),
    (["evaluate", "{t}/not_a_run"], "without best.keras"),
    (["evaluate", "{t}/bare.keras"], "`dataset` is needed"),
    (["evaluate", "{t}/bare.keras", "--dataset", "{t}/small8"], r"inputs of shape \(16, 16, 3\).*--image-size"),
    (["predict", "{r}", "{t}/missing.png"], "No image file or folder"),
    (["predict", "{r}", "{t}/notes.txt"], "not an image file"),
    (["predict", "{r}", "{t}/broken.png"], "Cannot decode image '.*broken.png'"),
    (["predict", "{r}", "{t}/empty"], "holds no images"),
    (["predict", "{t}/bare.keras", "{t}/small8"], "no metrics.json"),
    # Options that cannot take effect.
    (["evaluate", "{r}", "--overwrite"], r"--overwrite replaces the --out file.*no --out"),
    (["predict", "{r}", "{t}/small8", "--overwrite"], r"--overwrite replaces the --csv file.*no --csv"),
    (["predict", "{r}", "{t}/small8", "--top-k", "11"], r"--top-k 11 .*10 classes"),
    (["evaluate", "{r}", "--dataset", "digits", "--image-size", "8", "8"], r"--image-size .*digits"),
    (["evaluate", "{r}", "--dataset", "digits", "--data-dir", "{t}"], r"--data-dir .*digits"),
    (["evaluate", "{r}", "--dataset", "digits", "--download"], r"--download .*digits"),
    # The true cause of an output that cannot be written, before any work.
    (["evaluate", "{r}", "--out", "/proc/x.json"], r"--out '/proc/x.json' cannot be written: '/proc' does not accept"),
    (["predict", "{r}", "{t}/small8", "--csv", "/proc/out.csv"], r"--csv '/proc/out.csv' cannot be written"),
])
def test_bad_input_gives_one_line_and_exit_2(run, foreign, capsys, argv, pattern):
    import re

    argv = [a.format(t=foreign, r=run["run"]) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lacnn-zoo: error: ")
    assert re.search(pattern, err[0]) and "No space" not in err[0], err


def test_an_unwritable_csv_and_an_unreadable_model_name_the_users_file_and_the_cause(run, foreign, monkeypatch,
                                                                                      capsys):
    import builtins

    from lacnn_zoo import io
    from lacnn_zoo.models import saving

    target = foreign / "out.csv"

    def refused(path, *args, **kwargs):  # root reads and writes through chmod: the refusal is simulated
        if "lacnn-tmp" in os.fspath(path):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(io, "open", refused, raising=False)
    assert cli.main(["predict", run["run"], f"{foreign}/small8", "--csv", str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and repr(str(target)) in err[0] and "Permission denied" in err[0], err
    assert "lacnn-tmp" not in err[0] and not target.exists()
    monkeypatch.undo()

    def unreadable(path, *args, **kwargs):
        if os.fspath(path).endswith("best.keras"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(saving, "open", unreadable, raising=False)
    assert cli.main(["evaluate", run["run"]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "best.keras" in err[0] and "ermission denied" in err[0] and "archive" not in err[0], err
    monkeypatch.undo()

    from lacnn_zoo.training import inference

    image = next(os.path.join(base, f) for base, _, files in os.walk(run["folder"]) for f in files)

    def unreadable_image(path, *args, **kwargs):
        if os.fspath(path) == image:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(inference, "open", unreadable_image, raising=False)
    assert cli.main(["predict", run["run"], image]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and repr(image) in err[0] and "Permission denied" in err[0] and "internal" not in err[0], err


def _bitmap(scan):
    """A 32x32 bitmap whose 4x4 blocks hold as many ink pixels as the 8x8 scan's values (raster order)."""
    blocks = (np.arange(16).reshape(1, 4, 1, 4) < scan.reshape(8, 1, 8, 1)).reshape(8, 4, 8, 4)
    return blocks.reshape(32, 32)


def test_predict_takes_images_of_digits_for_a_digits_run(tmp_path, capsys):
    from lacnn_zoo.data import load_digits
    from lacnn_zoo.training.inference import digit_scans

    run = str(tmp_path / "run")
    assert cli.main(["train", "--model", "plain_cnn_tiny", "--epochs", "2", "--output-dir", run,
                     "--verbose", "0"]) == 0
    from sklearn.datasets import load_digits as sk_digits

    scans = sk_digits().images[:12]
    files = []
    for i, scan in enumerate(scans):  # dark ink on white paper, 4x larger
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(np.where(_bitmap(scan), 0, 255).astype("uint8")).resize((128, 128), Image.NEAREST).save(path)
        files.append(str(path))
    np.testing.assert_array_equal(np.stack(digit_scans(files)), scans)  # the scans are recovered exactly
    csv_path = tmp_path / "p.csv"
    assert cli.main(["predict", run, *files, "--top-k", "1", "--csv", str(csv_path)]) == 0
    rows = list(csv.DictReader(open(csv_path)))
    data = load_digits(seed=0)
    x = (scans[..., None] * data.preprocessing["scale"] - data.preprocessing["mean"][0]) / data.preprocessing["std"][0]
    expected = keras.saving.load_model(os.path.join(run, "best.keras")).predict(x.astype("float32"), verbose=0)
    assert [int(r["class_index"]) for r in rows] == list(expected.argmax(-1))


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_output_files_never_replace_what_the_zoo_did_not_write(run, tmp_path, capsys, command):
    option = {"evaluate": "--out", "predict": "--csv"}[command]
    argv = ["evaluate", run["run"]] if command == "evaluate" else ["predict", run["run"], run["folder"]]
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"the user's picture")
    (tmp_path / "folder").mkdir()
    os.symlink(victim, tmp_path / "link.json")
    (tmp_path / "afile").write_text("x")
    for target, needle in [(victim, "already exists.*--overwrite"), (tmp_path / "folder", "is a folder"),
                           (tmp_path / "link.json", "symbolic link"), (tmp_path / "afile" / "out.json", "is a file")]:
        assert cli.main([*argv, option, str(target)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and option in err[0] and re.search(needle, err[0]), err
    assert victim.read_bytes() == b"the user's picture" and os.listdir(tmp_path / "folder") == []
    assert cli.main([*argv, option, str(victim), "--overwrite"]) == 0  # asked for: replaced, atomically
    assert victim.read_bytes() != b"the user's picture"
    assert [p for p in os.listdir(tmp_path) if "lacnn-tmp" in p] == []


def test_evaluate_on_another_folder_uses_the_models_standardisation(run, tmp_path):
    from lacnn_zoo.training.inference import evaluate

    images, labels = few_per_class(10, seed=3)
    other = str(tmp_path / "darker")  # the same classes and size, other pixel statistics
    write_digits_folder(other, (images * 0.5).astype("uint8"), labels, size=16, rgb_every=4)
    result = evaluate(run["run"], other)
    recorded = json.load(open(os.path.join(run["run"], "metrics.json")))["preprocessing"]
    data = load_dataset(other, seed=0, batch_size=32)
    own = data.preprocessing
    assert not np.allclose(own["mean"], recorded["mean"], rtol=0.05)
    x = np.concatenate([np.asarray(b) for b, _ in data.test])
    y = np.concatenate([np.asarray(b) for _, b in data.test])
    pixels = x * np.float32(own["std"]) + np.float32(own["mean"])  # the [0, 1] pixels read from the folder
    model_inputs = (pixels - np.float32(recorded["mean"])) / np.float32(recorded["std"])
    logits = keras.saving.load_model(os.path.join(run["run"], "best.keras")).predict(model_inputs, verbose=0)
    assert result["top1"] == pytest.approx(float(np.mean(logits.argmax(-1) == y)), abs=1e-9)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits)
    assert result["loss"] == pytest.approx(float(loss), rel=1e-4)
