"""`lacnn-zoo report`: every number behind a figure against a direct computation, and the page in a browser."""

import dataclasses
import json
import os
import re
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


def test_f1_macro_most_confused_and_row_shares_against_counting():
    rng = np.random.default_rng(2)
    labels, predicted = rng.integers(0, 4, 60), rng.integers(0, 4, 60)
    labels[:3] = 3
    predicted[predicted == 3] = 0  # class 3 never predicted: precision undefined, recall 0
    matrix = measures.confusion_matrix(labels, predicted, 4)
    precision, recall = measures.precision_recall(matrix)
    f1 = measures.f1(precision, recall)
    for c in range(3):
        tp = np.sum((predicted == c) & (labels == c))
        fp, fn = np.sum((predicted == c) & (labels != c)), np.sum((predicted != c) & (labels == c))
        assert f1[c] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert np.isnan(f1[3])  # precision undefined
    assert measures.macro(f1) == pytest.approx(np.mean(f1[:3]))
    assert measures.macro(precision) == pytest.approx(np.mean(precision[:3]))
    assert measures.macro(recall) == pytest.approx(np.mean(recall))  # recall defined for all four
    assert measures.f1([0.0], [0.0])[0] == 0.0
    names = ["a", "b", "c", "d"]
    pairs = {(names[t], names[q]): int(np.sum((labels == t) & (predicted == q)))
             for t in range(4) for q in range(4) if t != q}
    confused = measures.most_confused(matrix, names)
    assert {(t, q): n for t, q, n in confused} == {k: n for k, n in pairs.items() if n}
    assert [n for _, _, n in confused] == sorted((n for n in pairs.values() if n), reverse=True)
    shares = measures.row_normalised(matrix)
    for t in range(4):
        assert shares[t].tolist() == pytest.approx([np.mean(predicted[labels == t] == q) for q in range(4)])


def test_nll_and_brier_from_their_definitions():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(30, 4))
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    labels = rng.integers(0, 4, 30)
    nll, brier = measures.nll_brier(log_p, labels)
    p = np.exp(log_p)
    assert nll == pytest.approx(sum(-np.log(p[i, labels[i]]) for i in range(30)) / 30)
    assert brier == pytest.approx(sum(sum((p[i, k] - (k == labels[i])) ** 2 for k in range(4))
                                      for i in range(30)) / 30)


@pytest.mark.parametrize("drops, words", [
    ([0.0067] * 5, "every tap drops it by 0.0067."),
    ([0.01, 0.03, 0.03, -0.002], "the largest drop is 0.0300, for 'b', 'c'; the smallest -0.0020, for 'd'."),
    ([0.02, 0.00001, 0.00004], "the largest drop is 0.0200, for 'a'; the smallest 0.0000, for 'b', 'c'."),
])
def test_the_lesion_sentence_names_the_largest_and_the_smallest_drop_and_their_ties(drops, words):
    from lacnn_zoo.experiments.report.sections import lesion_sentence

    assert lesion_sentence(list("abcde")[:len(drops)], drops) == words


def test_the_lesion_figure_draws_each_drop_on_the_drops_own_scale(monkeypatch):
    from lacnn_zoo.experiments.report import figures

    drawn = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: drawn.append(fig))
    figures.lesions(["a", "b", "c"], 0.9, [0.8944, 0.9, 0.9012], "unused.png", "t")
    (ax,) = drawn[0].axes
    assert [round(b.get_height(), 4) for b in ax.patches] == [0.0056, 0.0, -0.0012]
    low, high = ax.get_ylim()
    assert low < -0.0012 and 0.0056 < high < 0.01  # a 0.0056 drop fills the axis, not 1/180 of a 0-1 one
    assert ax.get_legend() is None and "intact accuracy 0.9000" in ax.get_title()


def test_the_learning_curves_clip_a_first_epoch_outlier_and_say_so(monkeypatch):
    from lacnn_zoo.experiments.report import figures

    drawn = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: drawn.append(fig))
    history = [{"epoch": e, "loss": t, "val_loss": v, "accuracy": 0.5, "val_accuracy": 0.5}
               for e, (t, v) in enumerate([(2.0, 9.0), (1.0, 1.2), (0.8, 1.0), (0.7, 0.9)])]
    notes = figures.learning_curves(history, None, None, "unused.png", "t")
    loss_ax = drawn[0].axes[0]
    assert loss_ax.get_ylim()[1] < 2.5  # the later epochs fill the axis
    assert len(notes) == 1 and "validation loss 9" in notes[0]
    drawn.clear()
    history[0]["val_loss"] = 1.5  # no outlier: the axis holds every value, nothing said
    assert figures.learning_curves(history, None, None, "unused.png", "t") == []
    assert drawn[0].axes[0].get_ylim()[1] >= 2.0


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
    # Each shown probability is the predicted class's (the top one), not the true class's.
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    for r in numbers["top_losses"]:
        i = r["index"]
        assert r["probability"] == pytest.approx(probabilities[i].max(), rel=1e-4)
        assert r["predicted"] == numbers["class_names"][int(np.argmax(logits[i]))]
    # precision: of the images predicted as c, the share of c; recall: of the images of c, the share predicted c
    predicted = logits.argmax(1)
    for c in range(len(numbers["class_names"])):
        hits = np.sum((predicted == c) & (y == c))
        if np.sum(predicted == c):
            assert numbers["precision"][c] == pytest.approx(hits / np.sum(predicted == c))
        assert numbers["recall"][c] == pytest.approx(hits / np.sum(y == c))
    # The learning rate drawn is the optimizer's at the end of each epoch (warm-up, then cosine).
    assert numbers["learning_rates"] == pytest.approx(rates, rel=1e-5)
    with open(folder / "best.keras.json") as f:  # the epoch best.keras comes from (accuracy, then loss)
        assert numbers["best_epoch"] == json.load(f)["epoch"] and numbers["epochs_counted_from"] == 1


def test_the_configuration_says_what_the_run_was(run):
    from lacnn_zoo import model_info, tap_names

    folder, result, _, page = run
    shown = _numbers(page)["configuration"]
    knobs = model_info("lacnn_static_vector_tiny").knobs
    assert shown["backbone"] == knobs["backbone"] and shown["mechanism"] == "static_vector"
    taps = tap_names(result.model)
    assert shown["taps"] == f"{len(taps)}: {', '.join(taps)}"
    train, validation, test = map(int, shown["split sizes (train / validation / test)"].split(" / "))
    assert train + validation + test == 1797 and test == _numbers(page)["test_images"]  # the UCI digits
    assert shown["test loss"] == result.metrics["test_loss"] and shown["parameters"] == result.model.count_params()
    history = [float(v) for v in _column(folder, "val_accuracy")]
    best = int(np.argmax(history))  # no --ema, no tie in three epochs of this run
    assert shown["best validation accuracy (epoch, from 1)"] == f"{history[best]:.4f} (epoch {best + 1})"
    assert shown["epochs"] == 3 and shown["EMA of the weights"] == "off"
    assert shown["learning rate"] == "0.003 (cosine; 1 warm-up epoch)"
    assert "lacnn_static_vector_tiny (plain backbone) on digits" in open(page, encoding="utf-8").read()


def test_interpretation_gives_the_pages_numbers_and_figures(run):
    import matplotlib.figure

    import lacnn_zoo
    from lacnn_zoo import Interpretation

    folder, result, _, page = run
    numbers = _numbers(page)
    interp = Interpretation.from_run(str(folder))
    assert lacnn_zoo.report.Interpretation is Interpretation
    assert interp.confusion_matrix().tolist() == numbers["confusion"]
    shares = interp.confusion_matrix(normalise=True)
    assert np.allclose(shares.sum(axis=1), 1.0)
    per_class = interp.per_class()
    assert [None if v != v else v for v in per_class["precision"].tolist()] == pytest.approx(numbers["precision"])
    assert per_class["macro"]["f1"] == pytest.approx(numbers["macro"]["f1"])
    assert [list(c) for c in interp.most_confused()] == [[m["true"], m["predicted"], m["images"]]
                                                         for m in numbers["most_confused"]]
    assert interp.top_losses(6) == numbers["top_losses"]
    calibration = interp.calibration()
    assert (calibration["ece"], calibration["nll"], calibration["brier"]) == pytest.approx(
        (numbers["calibration"]["ece"], numbers["calibration"]["nll"], numbers["calibration"]["brier"]))
    lesions = interp.lesions()
    assert lesions["taps"] == numbers["tap_lesions"]["taps"]
    assert lesions["zeroed"] == pytest.approx(numbers["tap_lesions"]["zeroed"])
    for plot in (interp.plot_confusion_matrix, interp.plot_top_losses, interp.plot_calibration,
                 interp.plot_lesions):
        fig = plot()
        assert isinstance(fig, matplotlib.figure.Figure) and fig.axes
    with pytest.raises(ValueError, match="keep its inputs"):
        Interpretation(dataclasses.replace(interp.scored, inputs=None))


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
    renders_in_a_browser(run[3], tmp_path, images=6)


def renders_in_a_browser(page, tmp_path, images):
    """Load `page` in headless Chromium, offline: its `images` or more images all decode, and its screenshot is
    not blank (skipped where Chromium is missing, except in CI)."""
    from PIL import Image

    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI installs Debian's chromium in .ci/run; it is missing")
        pytest.skip("Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
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
    assert count >= images and f"<title>IMAGES {count}/{count}</title>" in dom, dom[:300]
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
    err = capsys.readouterr().err
    assert "did not write (notes.txt)" in err and "pass --overwrite" not in err
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


# ------------------------------------------------------------- ownership, leftovers of a kill, damaged inputs


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A finished one-epoch run of a small plain CNN; tests copy it before writing anything."""
    folder = tmp_path_factory.mktemp("tiny") / "run"
    train("plain_cnn_tiny", epochs=1, overrides={"widths": (8, 8, 16)}, output_dir=str(folder), verbose=0,
          tensorboard=False)
    return folder


def _copy(source, tmp_path, name="run"):
    destination = os.path.join(str(tmp_path), name)
    shutil.copytree(source, destination)
    return destination


def _cli(capsys, *args):
    """`lacnn-zoo report ARGS` in-process: (exit code, stdout, stderr lines)."""
    from lacnn_zoo import cli

    code = cli.main(["report", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


def test_the_time_said_is_the_commands_loading_included(tiny, tmp_path, capsys, monkeypatch):
    """The report said "(2 s)" for a command that took 7.5 s: it timed the page alone, not the start."""
    import time

    from lacnn_zoo import launch

    monkeypatch.setattr(launch, "start_quietly", lambda: time.sleep(1.5))  # a slow TensorFlow start
    code, out, _ = _cli(capsys, _copy(tiny, tmp_path), "--examples", "2")
    seconds = float(re.search(r" in ([\d.]+) s \(since the command started", out).group(1))
    assert code == 0 and seconds >= 1.5, out


def _files(folder):
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


def test_a_folder_of_the_user_is_never_taken_for_a_report(tiny, tmp_path, capsys):
    run = _copy(tiny, tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    mine = {"report.html": b"mine\n", "report.json": b"{}\n", "logo.png": b"\x89PNG\r\n\x1a\n a logo"}
    for name, data in mine.items():
        (site / name).write_bytes(data)
    code, _, err = _cli(capsys, run, "--out", site, "--overwrite")
    assert code == 2 and len(err) == 1 and "did not write" in err[0] and "logo.png" in err[0], err
    assert _files(site) == mine
    # Without --overwrite the reason is the same, not advice to pass a flag that would then be refused.
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.txt").write_text("chapter 1")
    code, _, err = _cli(capsys, run, "--out", thesis)
    assert code == 2 and len(err) == 1 and "thesis.txt" in err[0] and "did not write" in err[0], err
    assert "pass --overwrite" not in err[0] and _files(thesis) == {"thesis.txt": b"chapter 1"}


def test_overwrite_replaces_only_the_files_the_report_wrote(tiny, tmp_path, capsys):
    run = _copy(tiny, tmp_path)
    assert _cli(capsys, run)[0] == 0
    folder = os.path.join(run, "report")
    marker = json.load(open(os.path.join(folder, ".lacnn-zoo")))
    assert marker["kind"] == "report" and sorted(marker["files"]) == sorted(set(os.listdir(folder)) - {".lacnn-zoo"})
    with open(os.path.join(folder, "my.png"), "wb") as f:
        f.write(b"my picture")
    for extra in ((), ("--overwrite",)):
        code, _, err = _cli(capsys, run, *extra)
        assert code == 2 and len(err) == 1 and "my.png" in err[0] and "did not write" in err[0], err
        assert open(os.path.join(folder, "my.png"), "rb").read() == b"my picture"
    os.remove(os.path.join(folder, "my.png"))
    code, _, err = _cli(capsys, run)
    assert code == 2 and "already holds a report" in err[0] and "--overwrite" in err[0]
    assert _cli(capsys, run, "--overwrite")[0] == 0


def test_a_report_folder_keeps_the_users_folder_and_the_umask(tiny, tmp_path, capsys):
    import stat

    run = _copy(tiny, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o2775)
    before = os.stat(out)
    assert _cli(capsys, run, "--out", out)[0] == 0
    after = os.stat(out)
    assert (after.st_ino, stat.S_IMODE(after.st_mode)) == (before.st_ino, 0o2775)
    assert "report.html" in os.listdir(out)
    (out / "confusion.png").unlink()  # and a figure the next report does not draw is removed, nothing else
    os.rename(out / "top_losses.png", out / "old_figure.png")
    marker = json.load(open(out / ".lacnn-zoo"))
    marker["files"].append("old_figure.png")
    (out / ".lacnn-zoo").write_text(json.dumps(marker))
    assert _cli(capsys, run, "--out", out, "--overwrite")[0] == 0
    after = os.stat(out)
    assert (after.st_ino, stat.S_IMODE(after.st_mode)) == (before.st_ino, 0o2775)
    assert {"confusion.png", "top_losses.png"} <= set(os.listdir(out)) and "old_figure.png" not in os.listdir(out)
    assert _cli(capsys, run)[0] == 0  # a new folder: the mode os.makedirs gives it
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(os.path.join(run, "report")).st_mode) == 0o777 & ~umask


def test_the_leftovers_of_a_killed_report_are_recognised_and_removed(tiny, tmp_path, capsys):
    import signal
    import sys

    from lacnn_zoo import cli

    run = _copy(tiny, tmp_path)
    script = ("import os, signal\n"
              "from lacnn_zoo.experiments.report import figures, report\n"
              "figures.confusion = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
              f"report({run!r}, log=lambda *a: None)\n")
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert [n for n in os.listdir(run) if n.startswith(".report.")], os.listdir(run)  # what the kill left
    # And what the earlier version's report left when killed (its tempfile names).
    os.mkdir(os.path.join(run, ".report.lacnn-report-k1ll3d_0"))
    open(os.path.join(run, ".report.lacnn-report-k1ll3d_0", "confusion.png"), "wb").close()
    os.mkdir(os.path.join(run, ".report.lacnn-old-0k1ll3d0"))
    copy = _copy(run, tmp_path, "copy")
    assert _cli(capsys, run)[0] == 0
    assert sorted(n for n in os.listdir(run) if n.startswith(".")) == [".lacnn-zoo"]
    assert cli.main(["train", "--model", "plain_cnn_tiny", "--set", "widths=(8, 8, 16)", "--epochs", "1",
                     "--output-dir", copy, "--overwrite"]) == 0, capsys.readouterr().err
    assert sorted(n for n in os.listdir(copy) if n.startswith(".")) == [".lacnn-zoo"]


def _replace(name, data):
    def damage(run):
        path = os.path.join(run, name)
        with open(path, "rb") as f:
            text = f.read()
        with open(path, "wb") as f:
            f.write(data(text) if callable(data) else data)

    return damage


def _second_field(text):
    lines = text.split(b"\n")
    fields = lines[1].split(b",")
    fields[1] = b"abc"
    return b"\n".join([lines[0], b",".join(fields), *lines[2:]])


# name: (damage, the file named, words of the line, a section still on the page)
DAMAGED = {
    "empty metrics.json": (_replace("metrics.json", b""), "metrics.json", "is empty", "Learning curves"),
    "metrics.json a list": (_replace("metrics.json", b"[1, 2]\n"), "metrics.json", "JSON list", "Learning curves"),
    "metrics.json wrong types": (_replace("metrics.json", b'{"test_accuracy": "x"}'), "metrics.json",
                                 "'test_accuracy'", "Learning curves"),
    "empty history.csv": (_replace("history.csv", b""), "history.csv", "is empty", "Test confusion matrix"),
    "header-only history.csv": (_replace("history.csv", lambda t: t.split(b"\n")[0] + b"\n"), "history.csv",
                                "no epoch", "Test confusion matrix"),
    "binary history.csv": (_replace("history.csv", bytes(range(256))), "history.csv", "UTF-8",
                           "Test confusion matrix"),
    "non-numeric history.csv": (_replace("history.csv", _second_field), "history.csv", "'abc'",
                                "Test confusion matrix"),
    "short row in history.csv": (_replace("history.csv", lambda t: t + b"1,2\n"), "history.csv", "2 fields",
                                 "Test confusion matrix"),
    "history.csv without epochs": (_replace("history.csv", lambda t: t.replace(b"epoch,", b"epoque,", 1)),
                                   "history.csv", "'epoch'", "Test confusion matrix"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_a_damaged_file_is_named_and_only_its_sections_left_out(tiny, tmp_path, capsys, case):
    damage, name, words, kept = DAMAGED[case]
    run = _copy(tiny, tmp_path)
    damage(run)
    code, out, err = _cli(capsys, run)
    assert code == 0, err
    left_out = json.load(open(os.path.join(run, "report", "report.json")))["left_out"]
    reasons = [r for r in left_out.values() if os.path.join(run, name) in r]
    assert reasons and all(words in r for r in reasons), left_out
    assert "has no history.csv" not in str(left_out)
    page = open(os.path.join(run, "report", "report.html"), encoding="utf-8").read()
    assert f"<h2>{kept}</h2>" in page and words.replace("'", "&#x27;") in page
    assert any(name in line and words in line for line in out.splitlines()), out


@pytest.mark.parametrize("content, words", [
    (b"", "is empty"),
    (b"[1]\n", "JSON list"),
    (b"{\"model\": \"plain_cnn_tiny\", \"dataset\": \"digits\", \"batch_size\": \"x\"}", "'batch_size'"),
    (b"{\"model\": \"plain_cnn_tiny\", \"dataset\": \"digits\", \"epochs\": 1.5}", "'epochs'"),
    (b"\xff\xfe{}", "UTF-8"),
])
def test_a_damaged_run_json_refuses_the_report_in_one_line(tiny, tmp_path, capsys, content, words):
    run = _copy(tiny, tmp_path)
    with open(os.path.join(run, "run.json"), "wb") as f:
        f.write(content)
    code, out, err = _cli(capsys, run)
    assert code == 2 and len(err) == 1 and os.path.join(run, "run.json") in err[0] and words in err[0], err
    assert "report" not in os.listdir(run) and "scoring" not in out  # refused before any work


def test_the_history_reader_names_each_damage(tmp_path):
    from lacnn_zoo.errors import ZooError
    from lacnn_zoo.training.run_folder import RunFolder

    folder = RunFolder(tmp_path)
    path = tmp_path / "history.csv"
    assert folder.history() == [] and folder.column("loss") == []  # no file yet
    path.write_text("epoch,loss,val_accuracy\n0,1.5,NA\n\n1,1.25,0.5\n")
    assert folder.column("loss") == [1.5, 1.25] and folder.column("val_accuracy") == [0.5]
    for text, words in (("epoch,loss\n0,1\x00\n", "NUL"), ("epoch,loss\nx,1\n", "'x'"),
                        ("epoch,loss\n0,1,2\n", "3 fields"), ("epoch,loss\n-1,1\n", "'-1'")):
        path.write_text(text)
        with pytest.raises(ZooError, match="history.csv") as caught:
            folder.history()
        assert isinstance(caught.value, ValueError) and words in str(caught.value), str(caught.value)


def test_a_damaged_layer_attention_csv_is_named_and_the_rest_of_the_page_written(run, tmp_path, capsys):
    from lacnn_zoo.errors import ZooError
    from lacnn_zoo.experiments.report.sections import layer_attention_rows

    folder = _copy(run[0], tmp_path)
    path = os.path.join(folder, "layer_attention.csv")
    header = open(path).readline()
    taps = len(header.split(",")) - 1
    assert len(layer_attention_rows(path, taps)) == 4  # epoch 0 and three epochs
    for text, words in (("", "is empty"), (header, "no epoch"), ("\n\n\n", "is empty"),
                        (header + "0" + ",0.5" * (taps + 1) + "\n", f"{taps + 2} fields"),
                        (header + "0" + ",abc" * taps + "\n", "'abc'")):
        with open(path, "w") as f:
            f.write(text)
        with pytest.raises(ZooError, match="layer_attention.csv") as caught:
            layer_attention_rows(path, taps)
        assert words in str(caught.value), str(caught.value)
    with open(path, "w") as f:  # well formed, but for another model
        f.write(header.replace("\n", ",x\n") + "0" + ",0.5" * (taps + 1) + "\n")
    with pytest.raises(ZooError, match=f"{taps + 1} layer columns"):
        layer_attention_rows(path, taps)
    with open(path, "w") as f:
        f.write(header)
    assert _cli(capsys, folder, "--examples", "2", "--overwrite")[0] == 0
    numbers = json.load(open(os.path.join(folder, "report", "report.json")))
    assert "layer_attention.csv" in numbers["left_out"]["The weight trajectory"]
    assert "tap_lesions" in numbers  # the lesion profile is still computed


def _tuning_project(root):
    """A search project as `lacnn-zoo tune` leaves it, written by hand (no search run)."""
    project = root / "project"
    for trial, mechanism, score in (("0", "plain", 0.5), ("1", "static_vector", 0.75)):
        (project / f"trial_{trial}").mkdir(parents=True)
        (project / f"trial_{trial}" / "trial.json").write_text(json.dumps(
            {"trial_id": trial, "status": "COMPLETED", "score": score,
             "hyperparameters": {"values": {"mechanism": mechanism, "learning_rate": 0.01}}}))
        (project / f"trial_{trial}" / "executions.json").write_text(json.dumps(
            [{"val_accuracy": score, "history": {"val_accuracy": [score / 2, score]}}]))
    (project / "oracle.json").write_text(json.dumps({"ongoing_trials": {}, "tried_so_far": []}))
    (project / "mechanisms.json").write_text(json.dumps(
        {"objective": "val_accuracy", "dataset": "digits", "trials": 2,
         "best": {"hyperparameters": {"mechanism": "static_vector"}, "test_accuracy": 0.7},
         "mechanisms": [{"mechanism": "plain", "trials": 1, "best_val_accuracy": 0.5},
                        {"mechanism": "static_vector", "trials": 1, "best_val_accuracy": 0.75}]}))
    return project


@pytest.mark.parametrize("name, content, words, section", [
    ("trial_1/trial.json", "[]", "JSON list", "Trial"),
    ("trial_1/trial.json", '{"trial_id": "1", "score": "high"}', "'score'", "Trial"),
    ("trial_1/executions.json", '[{"history": {"val_accuracy": ["abc", 0.5]}}]', "'abc'", "curve"),
    ("trial_1/executions.json", "{}", "JSON object", "curve"),
    ("mechanisms.json", "", "is empty", "mechanisms table"),
    ("mechanisms.json", '{"mechanisms": 3}', "'mechanisms'", "mechanisms table"),
    ("mechanisms.json", '{"mechanisms": [{"mechanism": "plain", "best_val_accuracy": "x"}]}', "'best_val_accuracy'",
     "mechanisms table"),
    ("mechanisms.json", '{"best": {"test_accuracy": "0.7"}, "mechanisms": []}', "'best'", "mechanisms table"),
    ("mechanisms.json", '{"trials": "2", "mechanisms": []}', "'trials'", "mechanisms table"),
    ("oracle.json", "[]", "JSON list", "search"),
])
def test_a_damaged_search_file_is_named_and_the_rest_of_the_page_written(tmp_path, capsys, name, content, words,
                                                                          section):
    project = _tuning_project(tmp_path)
    assert _cli(capsys, project, "--out", tmp_path / "intact")[0] == 0
    intact = json.load(open(tmp_path / "intact" / "report.json"))
    assert sorted(intact["best_curves"]) == ["plain", "static_vector"] and "left_out" not in intact
    (project / name).write_text(content)
    code, out, err = _cli(capsys, project)
    assert code == 0, err
    numbers = json.load(open(project / "report" / "report.json"))
    lines = [f"{k}: {r}" for k, r in numbers["left_out"].items() if str(project / name) in r]
    assert lines and all(words in line and section in line for line in lines), numbers["left_out"]
    if name.startswith("trial_1"):  # the other trial is still reported
        assert "plain" in numbers["best_curves"] and any(t["id"] == "0" for t in numbers["trials"])


def _text(page):
    """The visible text of a report page: tags dropped, entities decoded."""
    import html

    body = re.sub(r"<style.*?</style>|<title>.*?</title>", "", open(page, encoding="utf-8").read(), flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


def test_the_search_page_counts_trials_tabulates_the_best_and_draws_the_mechanisms(tmp_path, capsys):
    project = _tuning_project(tmp_path)
    table = json.loads((project / "mechanisms.json").read_text())
    table["best"]["test_accuracy"] = 0.20000000298023224
    table["best"]["hyperparameters"]["learning_rate"] = 0.002951517028994056
    (project / "mechanisms.json").write_text(json.dumps(table))
    assert _cli(capsys, project)[0] == 0
    text = _text(project / "report" / "report.html")
    assert "2 trials over 2 mechanisms" in text
    assert "test accuracy of best.keras 0.2000 " in text and "0.20000000298" not in text
    assert "learning_rate 0.002952 " in text and "{" not in text and "&#x27;" not in text
    assert 'src="data:image/png' in open(project / "report" / "report.html").read().split("Per mechanism")[1]
    assert os.path.isfile(project / "report" / "mechanisms.png")
    # two epochs a curve: the values as a table, no plot; three: the plot, its lines' lengths said
    assert "plain: 2 epochs, static_vector: 2 epochs" in text and "epoch 2" in text
    assert not os.path.exists(project / "report" / "tuning_curves.png")
    table["trials"], table["mechanisms"] = 1, table["mechanisms"][1:]
    (project / "mechanisms.json").write_text(json.dumps(table))
    (project / "trial_1" / "executions.json").write_text(json.dumps(
        [{"val_accuracy": 0.75, "history": {"val_accuracy": [0.25, 0.5, 0.75]}}]))
    assert _cli(capsys, project, "--overwrite")[0] == 0
    text = _text(project / "report" / "report.html")
    assert "1 trial over 1 mechanism." in text and "static_vector: 3 epochs" in text
    assert os.path.isfile(project / "report" / "tuning_curves.png")


def test_the_mechanisms_plot_starts_its_bars_at_zero_and_says_an_unvisited_mechanism(monkeypatch, tmp_path):
    from lacnn_zoo import plotting

    drawn = []
    monkeypatch.setattr(plotting, "save_figure", lambda fig, path: drawn.append(fig))
    rows = [{"mechanism": "plain", "trials": 1, "best_val_accuracy": 0.21, "params_of_best": 10},
            {"mechanism": "static_vector", "trials": 3, "best_val_accuracy": 0.24, "val_accuracy_mean": 0.22,
             "val_accuracy_std": 0.01, "params_of_best": 1234},
            {"mechanism": "self_attention", "trials": 0, "best_val_accuracy": None}]
    plotting.plot_mechanisms(rows, str(tmp_path / "m.png"), "t")
    (ax,) = drawn[0].axes
    assert ax.get_xlim()[0] == 0.0
    assert [round(p.get_width(), 6) for p in ax.patches] == [0.21, 0.24, 0.0]
    labels = [t.get_text() for t in ax.texts]
    assert labels[0].endswith("(10 params, 1 trial)") and labels[1].endswith("(1,234 params, 3 trials)")
    assert "no trial" in labels[2]
    assert plotting.counted(1, "trial") == "1 trial" and plotting.counted(0, "trial") == "0 trials"


def test_a_tuning_project_refuses_the_options_of_a_run(tmp_path, capsys):
    project = _tuning_project(tmp_path)
    for args, flag in ((["--dataset", "digits"], "--dataset"), (["--examples", "4"], "--examples"),
                       (["--limit", "4"], "--limit")):
        code, _, err = _cli(capsys, project, *args)
        assert code == 2 and len(err) == 1 and flag in err[0] and "tuning project" in err[0], err
    assert "report" not in os.listdir(project)


def test_the_image_size_the_advice_names_is_an_option_of_report(tiny, tmp_path, capsys):
    from test_image_folder import few_per_class, write_digits_folder

    run = _copy(tiny, tmp_path)
    images = tmp_path / "images16"
    write_digits_folder(str(images), *few_per_class(3), size=16)
    code, _, err = _cli(capsys, run, "--dataset", images, "--out", tmp_path / "a")
    assert code == 2 and len(err) == 1 and "--image-size" in err[0], err
    code, out, err = _cli(capsys, run, "--dataset", images, "--image-size", "8", "8", "--examples", "16",
                          "--out", tmp_path / "b")
    assert code == 0, err
    numbers = json.load(open(tmp_path / "b" / "report.json"))
    shown = numbers["test_images"]
    assert shown < 16 and len(numbers["top_losses"]) == shown
    assert numbers["examples"] == {"asked": 16, "shown": shown}
    assert any("--examples 16" in line and f"{shown} test images" in line for line in out.splitlines()), out
    assert f"{shown} test images" in open(tmp_path / "b" / "report.html", encoding="utf-8").read()
    # Each highest-loss image names its file in the data set folder: under its true class's subfolder.
    for entry in numbers["top_losses"]:
        assert entry["file"].split(os.sep)[0] == entry["true"] and os.path.isfile(images / entry["file"]), entry
    assert numbers["top_losses"][0]["file"] in _text(tmp_path / "b" / "report.html")


@pytest.mark.parametrize("args, words", [
    (["--examples", str(10 ** 9)], "--examples"),
    (["--examples", "0"], "--examples"),
    (["--image-size", "8", "8"], "--image-size"),
    (["--data-dir", "/tmp"], "--data-dir"),
    (["--download"], "--download"),
    (["--image-size", "0", "8"], "--image-size"),
    (["--limit", "0"], "--limit"),
])
def test_options_that_cannot_take_effect_are_refused_before_any_work(tiny, tmp_path, capsys, args, words):
    run = _copy(tiny, tmp_path)
    code, out, err = _cli(capsys, run, *args)
    assert code == 2 and len(err) == 1 and words in err[0], err
    assert "report" not in os.listdir(run) and "scoring" not in out
    with pytest.raises(ValueError, match="`examples`"):
        report(run, examples=10 ** 9)


def test_a_limited_report_scores_the_first_images_and_says_so(tiny, tmp_path, capsys, monkeypatch):
    import lacnn_zoo.experiments.report as report_module
    from lacnn_zoo.training.inference import predictions

    scored = []
    monkeypatch.setattr(report_module, "predictions", lambda *a, **k: scored.append(predictions(*a, **k)) or scored[-1])
    run = _copy(tiny, tmp_path)
    code, out, err = _cli(capsys, run, "--limit", "50", "--examples", "4")
    assert code == 0, err
    # What the report held of the split: 5 numbers an image and 4 + 2 inputs, no log-probabilities.
    assert scored[0].log_p is None and scored[0].inputs is None and len(scored[0].kept) <= 6
    numbers = json.load(open(os.path.join(run, "report", "report.json")))
    full = predictions(run)  # every test image, scored apart from the report
    assert numbers["limit"] == 50 and numbers["test_images"] == 50
    expected = np.bincount(full.labels[:50] * 10 + full.log_p[:50].argmax(1), minlength=100).reshape(10, 10)
    assert numbers["confusion"] == expected.tolist()
    losses = -full.log_p[np.arange(50), full.labels[:50]]
    assert [r["index"] for r in numbers["top_losses"]] == np.argsort(-losses, kind="stable")[:4].tolist()
    said = f"first 50 test images of the {len(full.labels)} it holds (--limit 50)"
    assert said in _text(os.path.join(run, "report", "report.html")) and said in out
    page = report(run, limit=10 ** 6, out=os.path.join(run, "all"), log=lambda *a: None)  # the split is smaller
    assert f"Scored only the first {len(full.labels)} test images" in _text(page)
    with pytest.raises(ValueError, match="`limit`"):
        report(run, limit=0)


def test_the_scores_stream_keeping_only_the_inputs_asked_for(tiny):
    """The report keeps the inputs of the highest-loss images and the first ones, chosen as the batches stream
    by: the same images, and the same inputs, as scoring the whole split in memory and sorting its losses."""
    from lacnn_zoo.training.inference import _Worst, predictions

    full = predictions(tiny, keep_inputs=True, keep_worst=2, batch_size=16)
    kept = predictions(tiny, keep_worst=5, keep_first=2, batch_size=16)
    assert kept.inputs is None and np.array_equal(kept.log_p, full.log_p)
    assert full.kept is None  # every input kept: nothing kept twice
    # The per-image scores, from their definitions on the kept log-probabilities.
    probabilities = np.exp(full.log_p)
    onehot = np.eye(full.log_p.shape[1])[full.labels]
    scores = predictions(tiny, keep_log_p=False, batch_size=16)
    assert scores.log_p is None and np.array_equal(scores.predicted, full.log_p.argmax(1))
    assert np.allclose(scores.losses, -np.log(probabilities[np.arange(len(full.labels)), full.labels]))
    assert np.allclose(scores.confidence, probabilities.max(1))
    assert np.allclose(scores.brier, ((probabilities - onehot) ** 2).sum(1))
    again = dataclasses.replace(full, reread=None)  # a Predictions of arrays: its batches are its inputs
    assert np.array_equal(np.concatenate([x for x, _ in again.batches()]), full.inputs)
    losses = -full.log_p[np.arange(len(full.labels)), full.labels]
    worst = np.argsort(-losses, kind="stable")[:5]  # highest loss first
    assert set(kept.kept) == {*worst.tolist(), 0, 1}
    assert np.array_equal(kept.images(worst), full.inputs[worst])
    assert np.array_equal(kept.images([0, 1]), full.inputs[:2])
    with pytest.raises(ValueError, match="not kept"):
        kept.images([next(i for i in range(len(full.labels)) if i not in kept.kept)])
    limited = predictions(tiny, limit=37, batch_size=16)
    # a 5-image last batch may round differently from the 16-image batches (oneDNN picks kernels by batch size)
    assert np.allclose(limited.log_p, full.log_p[:37], rtol=0, atol=1e-5)
    assert limited.images_in_split == len(full.labels)
    assert sum(len(y) for _, y in limited.batches()) == 37  # the second pass sees the same images
    # Ties go to the earlier image, as a stable sort of the whole split does, whatever the batches.
    losses = np.random.default_rng(0).integers(0, 4, 50).astype("float64")
    selection = _Worst(7)
    for start in range(0, 50, 6):
        selection.add(losses[start:start + 6], start, np.arange(start, min(start + 6, 50))[:, None])
    chosen = selection.inputs()
    assert list(chosen) == np.argsort(-losses, kind="stable")[:7].tolist()
    assert all(int(x[0]) == i for i, x in chosen.items())


def test_an_out_under_a_file_names_the_file(tiny, tmp_path, capsys):
    run = _copy(tiny, tmp_path)
    code, _, err = _cli(capsys, run, "--out", os.path.join(run, "history.csv", "page"))
    assert code == 2 and len(err) == 1 and "history.csv' is a file, not a folder" in err[0], err


def test_a_run_folder_name_that_is_not_utf8_is_reported(tiny, tmp_path, capsys):
    run = _copy(tiny, tmp_path, os.fsdecode(b"run\xff"))
    code, out, err = _cli(capsys, run)
    assert code == 0, err
    page = open(os.path.join(run, "report", "report.html"), encoding="utf-8").read()
    assert "run\\xff" in page


def test_train_overwrite_never_removes_a_users_file_inside_the_runs_report(tiny, tmp_path, capsys):
    run = _copy(tiny, tmp_path)
    assert _cli(capsys, run)[0] == 0
    mine = os.path.join(run, "report", "my.png")
    with open(mine, "wb") as f:
        f.write(b"my picture")
    with pytest.raises(FileExistsError, match=r"did not write \(report/my\.png\)"):
        train("plain_cnn_tiny", epochs=1, overrides={"widths": (8, 8, 16)}, output_dir=run, overwrite=True,
              verbose=0, tensorboard=False)
    assert open(mine, "rb").read() == b"my picture" and os.path.exists(os.path.join(run, "run.json"))
    os.remove(mine)  # the report's own files alone: the run and its report are replaced
    train("plain_cnn_tiny", epochs=1, overrides={"widths": (8, 8, 16)}, output_dir=run, overwrite=True, verbose=0,
          tensorboard=False)
    assert not os.path.exists(os.path.join(run, "report"))


def test_the_runs_warnings_head_the_page_and_an_older_run_gets_those_its_files_give(tiny, tmp_path):
    """metrics.json's warnings are the page's first section; a run trained before they were recorded (no
    "warnings" key) gets the chance check from its test accuracy, on its test split's size, said so."""
    import re

    from lacnn_zoo import report

    run = _copy(tiny, tmp_path)
    metrics_path = os.path.join(run, "metrics.json")
    metrics = json.load(open(metrics_path))
    metrics["warnings"] = [{"kind": "overfitting", "message": "training accuracy 0.9900 is far above."}]
    json.dump(metrics, open(metrics_path, "w"))
    page = report(run, log=lambda *a: None)
    html = open(page, encoding="utf-8").read()
    assert re.findall(r"<h2>([^<]*)</h2>", html)[:2] == ["Warnings", "Configuration"]
    assert "Warning (overfitting): training accuracy 0.9900 is far above." in html
    assert _numbers(page)["warnings"] == metrics["warnings"]

    del metrics["warnings"]
    metrics["test_accuracy"] = 0.1  # as a model that learned nothing would score
    json.dump(metrics, open(metrics_path, "w"))
    page = report(run, out=os.path.join(str(tmp_path), "older"), log=lambda *a: None)
    html = open(page, encoding="utf-8").read()
    assert re.findall(r"<h2>([^<]*)</h2>", html)[0] == "Warnings"
    assert "Warning (chance): test accuracy 0.1000 on 360 images" in html and "trained before" in html
    assert [w["kind"] for w in _numbers(page)["warnings"]] == ["chance"]


def test_a_symlinked_out_is_refused_as_a_symlink(tiny, tmp_path, capsys):
    run = _copy(tiny, tmp_path)
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    for extra in ([], ["--overwrite"]):  # --overwrite replaces the zoo's own report, never follows a link
        code, _, err = _cli(capsys, run, "--out", tmp_path / "link", *extra)
        assert code == 2 and len(err) == 1 and "is a symbolic link" in err[0] and os.listdir(tmp_path / "real") == []
    from lacnn_zoo.io import check_output_file

    (tmp_path / "real" / "scores.csv").write_text("mine")
    os.symlink(tmp_path / "real" / "scores.csv", tmp_path / "scores.csv")
    for overwrite in (False, True):  # a file path the user names (predict --csv, evaluate --out)
        with pytest.raises(FileExistsError, match="is a symbolic link"):
            check_output_file(tmp_path / "scores.csv", option="--csv", overwrite=overwrite)
    assert (tmp_path / "real" / "scores.csv").read_text() == "mine"


@pytest.mark.parametrize("row", ["1.5,0.5,0.5", "x,0.5,0.5", "1,,0.5", "NA,0.5,0.5"])
def test_a_layer_attention_row_without_a_whole_epoch_or_a_weight_is_a_damaged_file(tmp_path, row):
    from lacnn_zoo.experiments.report.sections import layer_attention_rows
    from lacnn_zoo.io import DamagedFileError

    path = tmp_path / "layer_attention.csv"
    path.write_text(f"epoch,layer_1,layer_2\n0,0.5,0.5\n{row}\n")
    with pytest.raises(DamagedFileError, match="layer_attention.csv.*row 3"):
        layer_attention_rows(str(path), 2)


@pytest.mark.parametrize("counts,normalised", [((10, 12), False), ((10, 20), False), ((10, 21), True),
                                               ((10, 25), True)])
def test_the_row_normalised_confusion_is_drawn_only_for_unbalanced_classes(tmp_path, monkeypatch, counts,
                                                                            normalised):
    """Unbalanced: the largest class has more than twice the images of the smallest."""
    import types

    from lacnn_zoo.experiments.report import sections
    from lacnn_zoo.experiments.report.page import Page

    drawn = []

    def draw(*args, **kwargs):  # every figure function takes (..., path, title)
        drawn.append(os.path.basename(args[-2]))
        open(args[-2], "wb").close()

    for name in ("confusion", "top_losses", "reliability"):
        monkeypatch.setattr(sections.figures, name, draw)
    monkeypatch.setattr(sections, "unstandardise", lambda x, preprocessing: x)
    labels = np.repeat([0, 1], counts)
    n = len(labels)
    p = types.SimpleNamespace(
        preprocessing={"class_names": ["a", "b"]}, model=types.SimpleNamespace(output_shape=(None, 2)),
        labels=labels, predicted=labels.copy(), dataset="digits", seed=0, split="test", data=None,
        losses=np.linspace(0.1, 1, n), confidence=np.full(n, 0.9), brier=np.full(n, 0.02),
        images=lambda indices: np.zeros((len(indices), 2, 2, 1), "float32"))
    sections.predictions_sections(Page("t"), str(tmp_path), p, 2, lambda message: None)
    assert "confusion.png" in drawn and ("confusion_normalised.png" in drawn) == normalised, drawn
