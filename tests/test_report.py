"""`lacnn-zoo report`: every number behind a figure against a direct computation, and the page in a browser."""

import json
import os
import shutil
import subprocess

import keras
import numpy as np
import pytest

from lacnn_zoo.experiments.report import measures, report
from lacnn_zoo.training import train

# --------------------------------------------------------------------------- the measures, from their definitions


def test_confusion_precision_recall_against_counting():
    rng = np.random.default_rng(0)
    labels, predicted = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    labels[:3] = 3  # class 3 never predicted below: precision undefined
    predicted[predicted == 3] = 0
    matrix = measures.confusion_matrix(labels, predicted, 4)
    for t in range(4):
        for p in range(4):
            assert matrix[t, p] == sum(1 for a, b in zip(labels, predicted) if a == t and b == p)
    precision, recall = measures.precision_recall(matrix)
    for c in range(3):
        assert precision[c] == pytest.approx(np.sum((predicted == c) & (labels == c)) / np.sum(predicted == c))
        assert recall[c] == pytest.approx(np.sum((predicted == c) & (labels == c)) / np.sum(labels == c))
    assert np.isnan(precision[3]) and recall[3] == 0


def test_calibration_error_by_hand():
    # Confidences 0.95, 0.85, 0.85, 0.65, 0.30 (top class 0 each); correct: yes, yes, no, yes, no.
    # Bins of 0.1: (0.9, 1] {0.95: 1/1}, (0.8, 0.9] {0.85, 0.85: 1/2}, (0.6, 0.7] {0.65: 1/1}, (0.2, 0.3] {0.30: 0/1}.
    # ECE = 1/5 |1 - .95| + 2/5 |.5 - .85| + 1/5 |1 - .65| + 1/5 |0 - .3| = (.05 + .7 + .35 + .3) / 5 = 0.28.
    confidence = np.array([0.95, 0.85, 0.85, 0.65, 0.30])
    probabilities = np.stack([confidence, 1 - confidence], axis=1)
    probabilities[4] = [0.30, 0.25]  # an unnormalised row is fine: only the top-1 confidence counts
    labels = np.array([0, 0, 1, 0, 1])
    bins = measures.reliability(probabilities, labels, bins=10)
    assert bins["ece"] == pytest.approx(0.28)
    assert bins["counts"].tolist() == [0, 0, 1, 0, 0, 0, 1, 0, 2, 1]
    assert bins["accuracy"][8] == 0.5 and bins["confidence"][8] == pytest.approx(0.85)


def test_top_losses_are_the_highest_cross_entropies():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(40, 5))
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    labels = rng.integers(0, 5, 40)
    losses = [-np.log(np.exp(logits[i, labels[i]]) / np.exp(logits[i]).sum()) for i in range(40)]
    assert measures.top_losses(log_p, labels, 7).tolist() == sorted(range(40), key=lambda i: -losses[i])[:7]


# --------------------------------------------------------------------------------------- a layer-attended run


class _LearningRates(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        self.rates = getattr(self, "rates", []) + [float(keras.ops.convert_to_numpy(
            self.model.optimizer.learning_rate))]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report") / "run"
    rates = _LearningRates()
    result = train("lacnn_static_vector_tiny", epochs=3, warmup_epochs=1, output_dir=str(folder), verbose=0,
                   tensorboard=False, callbacks=[rates])
    page = report(str(folder), examples=6, log=lambda *a: None)
    return folder, result, rates.rates, page


def _numbers(page):
    return json.load(open(os.path.join(os.path.dirname(page), "report.json")))


def _test_split(result):
    from lacnn_zoo.data import load_digits

    return load_digits(seed=0).test


def test_the_figures_numbers_are_the_models(run):
    folder, result, rates, page = run
    numbers = _numbers(page)
    x, y = _test_split(result)
    matrix = np.array(numbers["confusion"])
    assert matrix.sum() == len(y) == numbers["test_images"]
    assert np.trace(matrix) / matrix.sum() == pytest.approx(result.metrics["test_accuracy"], abs=1e-6)
    logits = np.asarray(result.model.predict(x, verbose=0), "float64")
    losses = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1) - logits[np.arange(len(y)), y]
    assert [r["index"] for r in numbers["top_losses"]] == np.argsort(-losses, kind="stable")[:6].tolist()
    assert [r["loss"] for r in numbers["top_losses"]] == pytest.approx(np.sort(losses)[::-1][:6], rel=1e-4)
    # The learning rate drawn is the optimizer's at the end of each epoch (warm-up, then cosine).
    assert numbers["learning_rates"] == pytest.approx(rates, rel=1e-5)
    assert numbers["best_epoch"] == int(np.argmax([float(r) for r in _column(folder, "val_accuracy")]))


def _column(folder, name):
    import csv

    with open(folder / "history.csv") as f:
        return [row[name] for row in csv.DictReader(f)]


def test_a_tap_lesion_is_the_accuracy_with_that_tap_zeroed(run):
    folder, result, _, page = run
    lesions = _numbers(page)["tap_lesions"]
    x, y = _test_split(result)
    model = result.model
    mechanism = model.get_layer("layer_attention")
    for i in (0, len(lesions["taps"]) - 1):

        def call_function(layer, *args, i=i, **kwargs):  # the mechanism's i-th input replaced by zeros
            if layer is mechanism:
                taps = list(args[0])
                taps[i] = keras.ops.zeros_like(taps[i])
                return layer(taps, *args[1:], **kwargs)
            return layer(*args, **kwargs)

        lesioned = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call_function)
        accuracy = float(np.mean(np.argmax(lesioned.predict(x, verbose=0), -1) == y))
        assert lesions["zeroed"][i] == pytest.approx(accuracy, abs=1e-9)
    assert lesions["intact"] == pytest.approx(result.metrics["test_accuracy"], abs=1e-6)
    assert len(lesions["taps"]) == len(lesions["zeroed"]) == len(mechanism.input)


def test_the_page_renders_in_a_browser(run, tmp_path):
    """Headless Chromium loads the page offline: every image decodes, and the screenshot is not blank."""
    from PIL import Image

    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI installs Debian's chromium in .ci/run; it is missing")
        pytest.skip("Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
    _, _, _, page = run
    html = open(page, encoding="utf-8").read()
    assert "<script" not in html and "http" not in html.replace("http-equiv", "")
    probe = tmp_path / "probe.html"  # the page plus a script that counts the decoded images
    probe.write_text(html.replace("</body>", "<script>window.onload = () => { const i = [...document.images]; "
                                  "document.title = 'IMAGES ' + i.filter(x => x.naturalWidth > 0).length + '/' + "
                                  "i.length; };</script></body>"), encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    count = html.count("<img ")
    assert count >= 6 and f"<title>IMAGES {count}/{count}</title>" in dom, dom[:300]
    shot = tmp_path / "page.png"
    subprocess.run([chromium, *flags, "--window-size=1100,1400", f"--screenshot={shot}", f"file://{page}"],
                   capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("L"), "float32")
    assert pixels.std() > 20 and (pixels < 128).mean() > 0.01  # text and figures, not a blank page


def test_the_command_writes_and_refuses_what_it_must(run, tmp_path, capsys):
    from lacnn_zoo import cli

    folder, _, _, page = run
    assert cli.main(["report", str(folder), "--examples", "2"]) == 2  # a report is there: not replaced
    assert "already holds a report" in capsys.readouterr().err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert cli.main(["report", str(folder), "--out", str(mine), "--overwrite"]) == 2
    assert "Refusing to replace" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"] and (mine / "notes.txt").read_text() == "mine"
    assert cli.main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "neither a run folder" in err[0]


# ------------------------------------------------------------------------------- attention-augmented, tuning


def test_an_augmented_run_gets_attention_maps_and_no_layer_attention(tmp_path):
    folder = tmp_path / "aa"
    train("aa_resnet8", epochs=1, output_dir=str(folder), verbose=0, tensorboard=False)
    lines = []
    page = report(str(folder), examples=2, log=lines.append)
    numbers = _numbers(page)
    assert "Layer attention" in numbers["left_out"] and any("Layer attention left out" in line for line in lines)
    # aa_resnet8 augments every block: one layer per stage is shown, the first block of each.
    assert sorted(numbers["attention"]) == ["stage1_block1", "stage2_block1", "stage3_block1"]
    for entry in numbers["attention"].values():
        maps = np.array(entry["maps"])  # (images, heads, queries, H, W): each query's weights sum to 1
        np.testing.assert_allclose(maps.sum(axis=(-2, -1)), 1.0, rtol=1e-5)
