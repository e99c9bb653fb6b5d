"""`lacnn-zoo report RUN`: what a trained network learned, in one self-contained page (report.html) and its
figures as PNG files.

Every run: learning curves, the test confusion matrix with per-class precision and recall, the test images with
the highest loss, a reliability diagram with the expected calibration error. Layer-attended models: the per-layer
weight trajectory and the accuracy with each tap zeroed. Attention-augmented models: attention maps of query
pixels per head. A tuning project: its mechanisms table, the best trial's curve per mechanism and every trial's
hyperparameters. A section whose inputs the folder lacks is left out with one line saying why.
"""

import os
import shutil
import tempfile

import numpy as np

from lacnn_zoo.data import DatasetNotAvailableError
from lacnn_zoo.errors import one_line, spell
from lacnn_zoo.experiments.report import figures, measures
from lacnn_zoo.experiments.report.page import Page
from lacnn_zoo.io import FolderLock, check_replaceable, mark_owned, swap_into_place, write_json
from lacnn_zoo.training.run_folder import RunFolder

REPORT_DIR = "report"
PAGE = "report.html"
NUMBERS = "report.json"  # the numbers behind the figures


def report(run, *, dataset=None, out=None, overwrite=False, examples=16, data_dir=None, download=False, log=print):
    """Write `report.html` and its PNG figures for a run folder of `lacnn-zoo train` or a tuning project;
    returns the path of the page.

    Args:
        run: the run folder (or the tuning project folder).
        dataset: the data set to test on (default: the run's own, with its seed and split).
        out: the report folder (default `RUN/report`); an existing one is replaced only with `overwrite`,
            and only when lacnn-zoo wrote it.
        examples: how many highest-loss test images to show.
    """
    from lacnn_zoo.experiments.report.tuning import is_tuning_project, tuning_page
    from lacnn_zoo.validation import check_positive_int

    path = os.fspath(run)
    check_positive_int("examples", examples)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"`run` {path!r} is not a folder; pass a run folder of `lacnn-zoo train` or a "
                                "tuning project folder.")
    tuning = is_tuning_project(path)
    if not tuning and not RunFolder(path).is_run():
        raise ValueError(f"`run` {path!r} is neither a run folder of `lacnn-zoo train` (no run.json) nor a tuning "
                         "project (no oracle.json).")
    out = os.path.abspath(out or os.path.join(path, REPORT_DIR))
    _check_out(out, overwrite)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    with FolderLock(os.path.join(parent, f".{os.path.basename(out)}.lock"), f"Report folder {out!r}"):
        _check_out(out, overwrite)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.lacnn-report-", dir=parent)
        try:
            page = (tuning_page(path, tmp, log) if tuning else
                    run_page(path, tmp, dataset=dataset, examples=examples, data_dir=data_dir, download=download,
                             log=log))
            with open(os.path.join(tmp, PAGE), "w", encoding="utf-8") as f:
                f.write(page.render())
            write_json(os.path.join(tmp, NUMBERS), page.numbers)
            mark_owned(tmp, "report")
            swap_into_place(tmp, out)
            tmp = None
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
    for section, reason in page.numbers.get("left_out", {}).items():
        log(f"report: {section} left out: {reason}.")
    return os.path.join(out, PAGE)


def _check_out(out, overwrite):
    if os.path.islink(out) or (os.path.exists(out) and not os.path.isdir(out)):
        raise FileExistsError(f"{spell('`out`', '--out')} {out!r} exists and is not a folder; choose another.")
    if os.path.isdir(out) and os.listdir(out):
        if not overwrite:
            raise FileExistsError(f"{out!r} already holds a report; pass {spell('overwrite=True', '--overwrite')} "
                                  "to replace it.")
        check_replaceable(out, "report", lambda name: name in (PAGE, NUMBERS) or name.endswith(".png"), PAGE)


def run_page(path, out, *, dataset, examples, data_dir, download, log):
    """The page of a training run, its figures written into `out`."""
    folder = RunFolder(path)
    config, metrics = folder.config(), folder.metrics(missing={})
    name = config.get("model")
    page = Page(f"{name} on {os.path.basename(os.path.normpath(str(config.get('dataset'))))}",
                f"Run folder {path}")
    page.heading("Summary")
    page.table(None, [["model", name], ["dataset", config.get("dataset")],
                          ["test accuracy", metrics.get("test_accuracy")], ["parameters", metrics.get("params")],
                          ["epochs", config.get("epochs")], ["recipe", config.get("recipe")],
                          ["seed", config.get("seed")]])
    history = folder.history()
    best = int(np.argmax([float(r["val_accuracy"]) for r in history])) if history and "val_accuracy" in history[0] \
        else None
    predictions = _test_predictions(path, dataset, data_dir, download, page, log)
    _curves_section(page, out, history, best, config, metrics, predictions, name)
    if predictions is not None:
        _predictions_sections(page, out, predictions, examples, log)
    _layer_attention_section(page, out, folder, predictions, log)
    _augmented_section(page, out, predictions, log)
    return page


def _test_predictions(path, dataset, data_dir, download, page, log):
    from lacnn_zoo.training.inference import predictions

    if not os.path.isfile(RunFolder(path).best):
        page.left_out("Test-split sections", "the run has no best.keras (it did not finish an epoch)")
        return None
    log(f"report: scoring the test split with {RunFolder(path).best} ...")
    try:
        return predictions(path, dataset, data_dir=data_dir, download=download, keep_inputs=True)
    except DatasetNotAvailableError as e:
        if dataset is not None:  # the data set asked for: its absence is the user's to fix
            raise
        page.left_out("Test-split sections", f"the run's data set cannot be loaded here ({one_line(e)})")
        return None


def _curves_section(page, out, history, best, config, metrics, predictions, name):
    page.heading("Learning curves")
    if not history:
        page.left_out("Learning curves", "the run has no history.csv")
        return
    rates = None
    if predictions is not None and predictions.data is not None and predictions.data.size("train"):
        steps = measures.steps_per_epoch(predictions.data.size("train"), config["batch_size"])
        rates = measures.learning_rates(config, steps, len(history), replicas=metrics.get("replicas") or 1)
        page.numbers["learning_rates"] = rates
    page.numbers["best_epoch"] = best
    path = os.path.join(out, "learning_curves.png")
    figures.learning_curves(history, rates, best, path, f"{name}: training and validation")
    page.figure(path, "learning curves")
    if best is not None:
        row = history[best]
        page.text(f"Best epoch {best + 1} of {len(history)}: validation accuracy {float(row['val_accuracy']):.4f} "
                  "(its weights are best.keras, the model every other section uses).")


def _floats(values):
    return [None if v != v else float(v) for v in np.asarray(values, "float64")]


def _class_names(predictions):
    names = predictions.preprocessing.get("class_names")
    k = predictions.log_p.shape[-1]
    return list(names) if names and len(names) == k else [str(i) for i in range(k)]


def _predictions_sections(page, out, p, examples, log):
    from lacnn_zoo.data import unstandardise

    names, k = _class_names(p), p.log_p.shape[-1]
    predicted = p.log_p.argmax(axis=-1)
    matrix = measures.confusion_matrix(p.labels, predicted, k)
    precision, recall = measures.precision_recall(matrix)
    accuracy = float(np.trace(matrix) / matrix.sum())
    page.heading("Test confusion matrix")
    page.text(f"{len(p.labels)} test images of {p.dataset!r} (split seed {p.seed}); top-1 accuracy {accuracy:.4f}.")
    path = os.path.join(out, "confusion.png")
    figures.confusion(matrix, names, path, f"test confusion matrix (accuracy {accuracy:.4f})")
    page.figure(path, "confusion matrix")
    page.numbers.update(test_images=int(len(p.labels)), confusion=matrix.tolist(), class_names=names,
                        precision=_floats(precision), recall=_floats(recall))
    page.table(["class", "images", "precision", "recall"],
               [[n, int(matrix[i].sum()), float(precision[i]), float(recall[i])] for i, n in enumerate(names)])

    page.heading("Highest-loss test images")
    worst = measures.top_losses(p.log_p, p.labels, examples)
    probabilities = np.exp(p.log_p)
    rows = [{"true": names[p.labels[i]], "predicted": names[predicted[i]],
             "probability": float(probabilities[i, predicted[i]]), "loss": float(-p.log_p[i, p.labels[i]])}
            for i in worst]
    page.numbers["top_losses"] = [{"index": int(i), **row} for i, row in zip(worst, rows)]
    images = unstandardise(p.inputs[worst], p.preprocessing)
    path = os.path.join(out, "top_losses.png")
    figures.top_losses(images, rows, path, f"the {len(worst)} test images with the highest loss")
    page.figure(path, "highest-loss test images")

    page.heading("Calibration")
    bins = measures.reliability(probabilities, p.labels)
    page.numbers["calibration"] = {"ece": bins["ece"], "counts": bins["counts"].tolist(),
                                   "confidence": _floats(bins["confidence"]), "accuracy": _floats(bins["accuracy"])}
    path = os.path.join(out, "reliability.png")
    figures.reliability(bins, path, "reliability diagram")
    page.figure(path, "reliability diagram")
    page.text(f"Expected calibration error {bins['ece']:.4f} (10 equal-width confidence bins, Guo et al. 2017): "
              "the image-weighted mean gap between the confidence and the accuracy of each bin.")


def _layer_attention_section(page, out, folder, p, log):
    from lacnn_zoo.models.layer_attended import tap_names
    from lacnn_zoo.training.monitor import TapReader, is_layer_attended, plot_layer_attention

    page.heading("Layer attention")
    if p is None:
        page.left_out("Layer attention", "there is no trained model to read")
        return
    if not is_layer_attended(p.model):
        page.left_out("Layer attention", f"{p.model.name!r} is not a layer-attended model")
        return
    csv_path = folder.file("layer_attention.csv")
    if os.path.exists(csv_path):
        import csv

        with open(csv_path, newline="") as f:
            rows = [[int(r[0]), *map(float, r[1:])] for r in list(csv.reader(f))[1:]]
        path = os.path.join(out, "layer_attention.png")
        plot_layer_attention(rows, path, title="per-layer attention weight during training",
                             starts_equal=TapReader(p.model).starts_equal)
        page.figure(path, "layer attention trajectory")
    else:
        page.left_out("The weight trajectory", "the run has no layer_attention.csv")
    taps = tap_names(p.model)
    log(f"report: accuracy with each of the {len(taps)} taps zeroed ...")
    lesion = measures.tap_lesions(p.model, p.inputs, p.labels)
    page.numbers["tap_lesions"] = {"taps": taps, **lesion}
    path = os.path.join(out, "tap_lesions.png")
    figures.lesions(taps, lesion["intact"], lesion["zeroed"], path, "test accuracy with each tap zeroed")
    page.figure(path, "per-tap lesion profile")
    drops = [lesion["intact"] - z for z in lesion["zeroed"]]
    most = int(np.argmax(drops))
    page.text(f"Intact accuracy {lesion['intact']:.4f}. Zeroing one tap as the head sees it (the backbone runs "
              f"unchanged): the largest drop is {drops[most]:.4f}, for {taps[most]!r}; the smallest "
              f"{min(drops):.4f}.")
    page.table(["tap", "accuracy, tap zeroed", "drop"], [[t, z, d] for t, z, d in zip(taps, lesion["zeroed"], drops)])


def _augmented_section(page, out, p, log, images=2):
    from lacnn_zoo.data import unstandardise

    if p is None:
        return
    chosen = measures.augmented_layers(p.model)
    if not chosen:
        return
    page.heading("Attention maps")
    page.text("Per head, the attention weights of three query pixels (crosses) over every position, for the first "
              "attention-augmented layer of each stage and the first test images.")
    raw = unstandardise(p.inputs[:images], p.preprocessing)
    for name, block in chosen:
        grid = block.conv1.grid
        queries = measures.query_pixels(grid)
        maps = measures.attention_maps(p.model, block, p.inputs[:images], queries)
        page.numbers.setdefault("attention", {})[name] = {"queries": queries, "maps": maps.tolist()}
        path = os.path.join(out, f"attention_{name}.png")
        figures.attention(raw, maps, queries, grid, path, f"{name}: attention of query pixels, per head")
        page.figure(path, f"attention maps of {name}")
