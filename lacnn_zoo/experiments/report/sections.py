"""The sections of a run's page that need its scored test split: the confusion matrix and per-class measures, the
most-confused pairs, the highest-loss images, calibration, and for layer-attended and attention-augmented models
their taps' weights and lesions and the attention maps."""

import os

import numpy as np

from lacnn_zoo.data import unstandardise
from lacnn_zoo.errors import spell
from lacnn_zoo.experiments.report import figures, measures
from lacnn_zoo.experiments.report.epochs import why
from lacnn_zoo.io import DamagedFileError, damaged, read_csv_checked
from lacnn_zoo.models.layer_attended import tap_names
from lacnn_zoo.training.monitor import TapReader, is_layer_attended, plot_layer_attention

ATTENTION_IMAGES = 2  # the first test images whose attention maps are drawn


def _floats(values):
    return [None if v != v else float(v) for v in np.asarray(values, "float64")]


def _class_names(predictions):
    names = predictions.preprocessing.get("class_names")
    k = int(predictions.model.output_shape[-1])
    return list(names) if names and len(names) == k else [str(i) for i in range(k)]


def predictions_sections(page, out, p, examples, log):
    names = _class_names(p)
    k, predicted = len(names), p.predicted  # the per-image scores: the split's log-probabilities are not kept
    matrix = measures.confusion_matrix(p.labels, predicted, k)
    precision, recall = measures.precision_recall(matrix)
    accuracy = float(np.trace(matrix) / matrix.sum())
    page.heading("Test confusion matrix")
    page.text(f"{len(p.labels)} test images of {p.dataset!r} (split seed {p.seed}); top-1 accuracy {accuracy:.4f}.")
    path = os.path.join(out, "confusion.png")
    figures.confusion(matrix, names, path, f"test confusion matrix (accuracy {accuracy:.4f})")
    page.figure(path, "confusion matrix")
    f1 = measures.f1(precision, recall)
    averages = {"precision": measures.macro(precision), "recall": measures.macro(recall), "f1": measures.macro(f1)}
    page.numbers.update(test_images=int(len(p.labels)), confusion=matrix.tolist(), class_names=names,
                        precision=_floats(precision), recall=_floats(recall), f1=_floats(f1),
                        macro={k: _floats([v])[0] for k, v in averages.items()})
    page.table(["class", "images", "precision", "recall", "F1"],
               [[n, int(matrix[i].sum()), float(precision[i]), float(recall[i]), float(f1[i])]
                for i, n in enumerate(names)]
               + [["macro average", int(matrix.sum()), averages["precision"], averages["recall"], averages["f1"]]])
    page.text("precision: of the images predicted as the class, the share that belong to it; recall: of the class's "
              "images, the share predicted as it; F1 their harmonic mean; the macro average weighs every class "
              "alike (classes where a measure is undefined, -, are left out of its average).", kind="note")
    counts = matrix.sum(axis=1)
    if len(counts) and counts.min() * 2 < counts.max():  # unbalanced classes: each row as shares of its class
        path = os.path.join(out, "confusion_normalised.png")
        figures.confusion(np.round(measures.row_normalised(matrix), 2), names, path,
                          "test confusion matrix, each row as shares of its class (unbalanced classes)")
        page.figure(path, "row-normalised confusion matrix")
    confused = measures.most_confused(matrix, names)
    page.numbers["most_confused"] = [{"true": t, "predicted": q, "images": c} for t, q, c in confused]
    page.heading("Most confused")
    if confused:
        page.table(["true class", "predicted as", "images"], [list(c) for c in confused[:10]])
        if len(confused) > 10:
            page.text(f"The 10 pairs with the most images of {len(confused)}; all are in report.json.", kind="note")
    else:
        page.text("No test image was predicted as another class.")

    page.heading("Highest-loss test images")
    worst = measures.highest(p.losses, examples)
    page.numbers["examples"] = {"asked": int(examples), "shown": int(len(worst))}
    if len(worst) < examples:  # said, not silently capped
        note = (f"{spell(f'examples={examples}', f'--examples {examples}')} asks for more images than the test "
                f"split holds: all its {len(worst)} test images are shown.")
        page.text(note, kind="note")
        log(f"report: {note}")
    files = ((getattr(p.data, "files", None) or {}).get(p.split) if p.data is not None else None)
    rows = [{"true": names[p.labels[i]], "predicted": names[predicted[i]],
             "probability": float(p.confidence[i]), "loss": float(p.losses[i]),
             "label": f"#{int(i)}" + (f" {files[i]}" if files else "")}
            for i in worst]
    page.numbers["top_losses"] = [{"index": int(i), **({"file": files[i]} if files else {}),
                                   **{k: v for k, v in row.items() if k != "label"}} for i, row in zip(worst, rows)]
    images = unstandardise(p.images(worst), p.preprocessing)
    path = os.path.join(out, "top_losses.png")
    figures.top_losses(images, rows, path, f"the {len(worst)} test images with the highest loss")
    page.figure(path, "highest-loss test images")
    page.table(["test image", *(["file (in the data set folder)"] if files else []), "true", "predicted",
                "probability", "loss"],
               [[int(i), *([files[i]] if files else []), row["true"], row["predicted"], row["probability"],
                 row["loss"]] for i, row in zip(worst, rows)])
    page.text("test image: the image's index in the test split (`lacnn_zoo.predict`'s order"
              + (", the folder's files sorted per class); file: its path in the data set folder." if files else
                 ")."), kind="note")

    page.heading("Calibration")
    bins = measures.reliability_of(p.confidence, p.predicted == p.labels)
    bins["nll"], bins["brier"] = float(np.mean(p.losses)), float(np.mean(p.brier))
    page.numbers["calibration"] = {"ece": bins["ece"], "nll": bins["nll"], "brier": bins["brier"],
                                   "counts": bins["counts"].tolist(),
                                   "confidence": _floats(bins["confidence"]), "accuracy": _floats(bins["accuracy"])}
    path = os.path.join(out, "reliability.png")
    figures.reliability(bins, path, "reliability diagram")
    page.figure(path, "reliability diagram")
    page.text(f"Expected calibration error {bins['ece']:.4f} (10 equal-width confidence bins, Guo et al. 2017): "
              "the image-weighted mean gap between the confidence and the accuracy of each bin; each bar says its "
              f"images, and bins of fewer than {figures.FEW} are faded. Negative log-likelihood {bins['nll']:.4f} "
              f"and Brier score {bins['brier']:.4f} (mean over the test images of the squared distance between the "
              "predicted probabilities and the one-hot label).")


def layer_attention_section(page, out, folder, p, log):
    page.heading("Layer attention")
    if p is None:
        page.left_out("Layer attention", "the test split was not scored (see the test-split sections above)")
        return
    if not is_layer_attended(p.model):
        page.left_out("Layer attention", f"{p.model.name!r} is not a layer-attended model")
        return
    taps = tap_names(p.model)
    csv_path = folder.file("layer_attention.csv")
    try:
        rows = layer_attention_rows(csv_path, len(taps)) if os.path.exists(csv_path) else None
    except DamagedFileError as e:
        rows = None
        page.left_out("The weight trajectory", why(e))
    if rows:
        path = os.path.join(out, "layer_attention.png")
        plot_layer_attention(rows, path, title="per-layer attention weight during training",
                             starts_equal=TapReader(p.model).starts_equal, names=taps)
        page.figure(path, "layer attention trajectory")
    elif not os.path.exists(csv_path):
        page.left_out("The weight trajectory", "the run has no layer_attention.csv")
    log(f"report: accuracy with each of the {len(taps)} taps zeroed ...")
    lesion = measures.tap_lesions(p.model, p.batches())  # a second pass, a batch at a time
    page.numbers["tap_lesions"] = {"taps": taps, **lesion}
    path = os.path.join(out, "tap_lesions.png")
    figures.lesions(taps, lesion["intact"], lesion["zeroed"], path, "test accuracy with each tap zeroed")
    page.figure(path, "per-tap lesion profile")
    drops = [lesion["intact"] - z for z in lesion["zeroed"]]
    page.text(f"Intact accuracy {lesion['intact']:.4f}. Zeroing one tap as the head sees it (the backbone runs "
              f"unchanged): {lesion_sentence(taps, drops)}")
    page.table(["tap", "accuracy, tap zeroed", "drop"], [[t, z, d] for t, z, d in zip(taps, lesion["zeroed"], drops)])


def lesion_sentence(taps, drops):
    """The largest and the smallest accuracy drop with the taps that give them, ties named together ("every tap
    drops it by 0.0067" when all are tied); drops equal to 4 decimals count as tied, as the page prints them."""
    shown = [round(float(d), 4) for d in drops]
    high, low = max(shown), min(shown)
    named = [repr(t) for t, d in zip(taps, shown) if d == high]
    if high == low:
        return f"every tap drops it by {high:.4f}." if len(taps) > 1 else f"the drop is {high:.4f}, for {named[0]}."
    least = [repr(t) for t, d in zip(taps, shown) if d == low]
    return (f"the largest drop is {high:.4f}, for {', '.join(named)}; the smallest {low:.4f}, for "
            f"{', '.join(least)}.")


def layer_attention_rows(path, taps):
    """The rows `[epoch, weight of each tap]` of a run's layer_attention.csv, for a model of `taps` taps;
    DamagedFileError naming the file and what is wrong (empty, no epoch, a field that is not a number...)."""
    header, rows = read_csv_checked(path, numeric=True)
    if header is None:
        raise damaged(path, "it is empty")
    if header[0] != "epoch" or len(header) < 2:
        raise damaged(path, f"its header ({','.join(header)[:80]}) is not 'epoch,layer_1,...'")
    if len(header) - 1 != taps:
        raise damaged(path, f"it has {len(header) - 1} layer columns, but the model has {taps} taps (another "
                            "model's file?)")
    if not rows:
        raise damaged(path, "it holds no epoch, only its header")
    for number, row in enumerate(rows, start=2):
        if not row[0].isdigit() or "" in row:
            raise damaged(path, f"row {number} ({','.join(row)[:60]}) lacks an epoch number or a weight")
    return [[int(row[0]), *map(float, row[1:])] for row in rows]


def augmented_section(page, out, p, log, images=None):
    if p is None:
        return
    chosen = measures.augmented_layers(p.model)
    if not chosen:
        return
    page.heading("Attention maps")
    page.text("Per head, the attention weights of three query pixels (crosses) over every position, for the first "
              "attention-augmented layer of each stage and the first test images.")
    first = p.images(range(min(images or ATTENTION_IMAGES, len(p.labels))))
    raw = unstandardise(first, p.preprocessing)
    for name, block in chosen:
        grid = block.conv1.grid
        queries = measures.query_pixels(grid)
        maps = measures.attention_maps(p.model, block, first, queries)
        page.numbers.setdefault("attention", {})[name] = {"queries": queries, "maps": maps.tolist()}
        path = os.path.join(out, f"attention_{name}.png")
        figures.attention(raw, maps, queries, grid, path, f"{name}: attention of query pixels, per head")
        page.figure(path, f"attention maps of {name}")
