"""`lacnn-zoo report RUN`: what a trained network learned, in one self-contained page (report.html) and its
figures as PNG files. `lacnn-zoo report RUN_A RUN_B ... --out DIR` (or a `lacnn-zoo compare` folder): one page
comparing runs (`comparison`).

Every run: learning curves, the test confusion matrix with per-class precision and recall, the test images with
the highest loss, a reliability diagram with the expected calibration error. Layer-attended models: the per-layer
weight trajectory and the accuracy with each tap zeroed. Attention-augmented models: attention maps of query
pixels per head. A tuning project: its mechanisms table, the best trial's curve per mechanism and every trial's
hyperparameters. A section whose inputs the folder lacks, or whose file is damaged, is left out with one line
saying why (naming the file); the rest of the page is written.

The report folder's `.lacnn-zoo` marker lists the files the report wrote: `overwrite` replaces those, never
anything else.
"""

import errno
import numbers
import os
import re
import secrets

from lacnn_zoo.data import DatasetNotAvailableError, refuse_on_digits
from lacnn_zoo.data.splits import MAX_IMAGE_SIDE, check_image_size
from lacnn_zoo.errors import ZooError, spell
from lacnn_zoo.experiments.report import configuration, figures, measures
from lacnn_zoo.experiments.report.comparison import compare_runs, comparison_page, is_compare_folder
from lacnn_zoo.experiments.report.epochs import _best_epoch, _best_model, _history, _offer
from lacnn_zoo.experiments.report.page import Page
from lacnn_zoo.experiments.report.sections import (
    ATTENTION_IMAGES,
    augmented_section,
    layer_attention_section,
    predictions_sections,
    why,
)
from lacnn_zoo.experiments.report.tuning import is_tuning_project, tuning_page
from lacnn_zoo.io import (
    LOCK_NAME,
    OWNER_MARKER,
    TMP_TAG,
    DamagedFileError,
    FolderLock,
    ForeignFilesError,
    is_owned,
    is_temporary,
    mark_owned,
    printable,
    remove_path,
    remove_stale_temporaries,
    unwritable,
    write_json,
)
from lacnn_zoo.models.layer_attended import tap_names
from lacnn_zoo.training.diagnostics import diagnose, lines
from lacnn_zoo.training.inference import predictions
from lacnn_zoo.training.monitor import is_layer_attended
from lacnn_zoo.training.report_folder import NUMBERS, PAGE, recorded_files
from lacnn_zoo.training.run_folder import REPORT, RunFolder

REPORT_DIR = REPORT  # the run folder names it
EXAMPLES = 16
# Rows of four images 330 pixels high: 256 images keep the figure far below matplotlib's 2**16 pixels a side.
MAX_EXAMPLES = 256


def report(run, *, dataset=None, out=None, overwrite=False, examples=None, image_size=None, data_dir=None,
           download=False, log=print, limit=None):
    """Write `report.html` and its PNG figures for a run folder of `lacnn-zoo train` or a tuning project, or one
    page comparing runs (a list of run folders, or a `lacnn-zoo compare` folder); returns the path of the page.

    Args:
        run: the run folder, the tuning project folder, a `lacnn-zoo compare` folder (its runs compared), or a
            list of two or more run folders (compared; `out` is then needed). A comparison reads the runs' files:
            no data option applies.
        dataset: the data set to test on (default: the run's own, with its seed and split).
        out: the report folder (default `RUN/report`): a new folder, an empty one (kept, and written into), or
            a report lacnn-zoo wrote (its files are replaced only with `overwrite`; nothing else there is).
        examples: how many highest-loss test images to show (16; at most the test split).
        image_size: `(height, width)` to resize the test images of `dataset` to (a folder or TFDS data set).
        data_dir: where TFDS keeps its data sets.
        download: whether TFDS may download the data set.
        log: where progress lines go (`print`).
        limit: score only the first `limit` test images (default: all); the page says so. The split streams by a
            batch at a time either way: only the highest-loss images' inputs and the per-image scores are kept.

    Returns:
        The path of report.html.
    """
    runs = [os.fspath(r) for r in run] if isinstance(run, (list, tuple)) else [os.fspath(run)]
    if not runs:
        raise ValueError("`run` is an empty list; pass a run folder, or two or more to compare.")
    _check_examples(examples)
    _check_limit(limit)
    data_options = dict(dataset=dataset, examples=examples, image_size=image_size, data_dir=data_dir,
                        download=download, limit=limit)
    if len(runs) > 1 or (os.path.isdir(runs[0]) and is_compare_folder(runs[0])):
        return _write(*_comparison(runs, out, data_options, log), overwrite, log)
    path = runs[0]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"`run` {path!r} is not a folder; pass a run folder of `lacnn-zoo train` or a "
                                "tuning project folder.")
    tuning = is_tuning_project(path)
    if not tuning and not RunFolder(path).is_run():
        raise ValueError(f"`run` {path!r} is neither a run folder of `lacnn-zoo train` (no run.json) nor a tuning "
                         "project (no oracle.json).")
    _check_data_options(path, tuning, dataset, examples, image_size, data_dir, download, limit)
    out = os.path.abspath(out or os.path.join(path, REPORT_DIR))
    if tuning:
        return _write(out, lambda tmp: tuning_page(path, tmp, log), overwrite, log)
    return _write(out, lambda tmp: run_page(path, tmp, dataset=dataset, examples=examples or EXAMPLES,
                                            image_size=image_size, data_dir=data_dir, download=download, log=log,
                                            limit=limit), overwrite, log)


def _comparison(runs, out, data_options, log):
    """`(out, page builder)` of a comparison of run folders (or of a `lacnn-zoo compare` folder's runs); refuses,
    before any work, what cannot be compared."""
    given = [spell(f"`{name}`", "--" + name.replace("_", "-")) for name, value in data_options.items()
             if value not in (None, False)]
    if given:
        raise ValueError(f"{given[0]} cannot take effect: a comparison reads the runs' files (no test split is "
                         "scored); drop it.")
    title = None
    if len(runs) == 1:  # a `lacnn-zoo compare` folder: its runs, its report folder
        folder = runs[0]
        runs = compare_runs(folder)
        if len(runs) < 2:
            raise ValueError(f"`run` {folder!r} is a `lacnn-zoo compare` folder holding {len(runs)} run folder(s); "
                             "a comparison needs two or more.")
        out = out or os.path.join(folder, REPORT_DIR)
        title = f"lacnn-zoo compare: {os.path.basename(os.path.abspath(folder))}"
    for run in runs:
        if not os.path.isdir(run) or not RunFolder(run).is_run():
            raise ValueError(f"`run` {run!r} is not a run folder of `lacnn-zoo train` (no run.json); a comparison "
                             "takes run folders only.")
        RunFolder(run).config()  # a damaged run.json: refused here, naming it
    if len({os.path.realpath(r) for r in runs}) < len(runs):
        raise ValueError("`run`: the same run folder is given twice; each run is compared once.")
    if out is None:
        raise ValueError(f"{spell('`out`', '--out')} is needed to compare several runs: the comparison page gets its "
                         "own folder (e.g. --out reports/ema-vs-raw).")
    return os.path.abspath(out), lambda tmp: comparison_page(runs, tmp, title=title, log=log)


def _write(out, build, overwrite, log):
    """Build a page into a new folder beside `out` and install it there atomically, under a lock; returns the
    page's path."""
    _check_out(out, overwrite)
    parent, base = os.path.split(out)
    _make_parent(out, parent)
    with FolderLock(os.path.join(parent, f".{base}.lock"), f"Report folder {out!r}"):
        _remove_leftovers(out)
        replaced = _check_out(out, overwrite)
        tmp = _new_folder(parent, base)
        try:
            page = build(tmp)
            with open(os.path.join(tmp, PAGE), "w", encoding="utf-8") as f:
                f.write(page.render())
            write_json(os.path.join(tmp, NUMBERS), page.numbers)
            _install(tmp, out, replaced)
            tmp = None
        finally:
            if tmp is not None:
                remove_path(tmp)
    for section, reason in page.numbers.get("left_out", {}).items():
        log(printable(f"report: {section} left out: {reason}."))
    return os.path.join(out, PAGE)


def _make_parent(out, parent):
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise ZooError(f"{spell('`out`', '--out')} {out!r} cannot be created: {unwritable(parent, e)}") from None


def _check_examples(examples):
    if examples is not None and (isinstance(examples, bool) or not isinstance(examples, numbers.Integral)
                                 or not 1 <= examples <= MAX_EXAMPLES):
        raise ValueError(f"{spell('`examples`', '--examples')} must be an integer from 1 to {MAX_EXAMPLES} (the "
                         f"highest-loss test images drawn in one figure); received {examples!r}.")


def _check_limit(limit):
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 1):
        raise ValueError(f"{spell('`limit`', '--limit')} must be a positive integer (the first test images to "
                         f"score); received {limit!r}.")


def _check_data_options(path, tuning, dataset, examples, image_size, data_dir, download, limit=None):
    """Refuse, before any work, an option that cannot take effect for this run (or tuning project)."""
    if tuning:
        given = [spell(python, cli) for python, cli, value in (
            ("`dataset`", "--dataset", dataset), ("`examples`", "--examples", examples),
            ("`image_size`", "--image-size", image_size), ("`data_dir`", "--data-dir", data_dir),
            ("`download`", "--download", download), ("`limit`", "--limit", limit)) if value not in (None, False)]
        if given:
            raise ValueError(f"{given[0]} cannot take effect: {path!r} is a tuning project, whose report reads only "
                             "the project's files (no test split is scored); drop it.")
        return
    try:
        check_image_size(image_size)
    except ValueError:
        raise ValueError(f"{spell('`image_size`', '--image-size')} must be two integers (height, width) from 1 "
                         f"to {MAX_IMAGE_SIDE}; received {image_size!r}.") from None
    name = dataset if dataset is not None else RunFolder(path).config()["dataset"]  # a damaged run.json: refused
    if name == "digits":
        refuse_on_digits(image_size=image_size, data_dir=data_dir, download=download)


def _check_out(out, overwrite):
    """The entries of an earlier report in `out` that this one replaces ([] for a new or empty folder).

    Refuses a path that is not a folder, a folder holding anything lacnn-zoo did not write as a report (named),
    and a report without `overwrite`.
    """
    flag = spell("overwrite=True", "--overwrite")
    if os.path.islink(out) or (os.path.lexists(out) and not os.path.isdir(out)):
        what = "is a symbolic link (a report is written only into a real folder)" if os.path.islink(out) else \
            "exists and is not a folder"
        raise FileExistsError(f"{spell('`out`', '--out')} {out!r} {what}; choose another.")
    if not os.path.isdir(out):
        return []
    recorded = recorded_files(out)
    entries = sorted(e for e in os.listdir(out) if e not in (OWNER_MARKER, LOCK_NAME)
                     and not (recorded is not None and is_temporary(e)))
    foreign = [e for e in entries if e not in (recorded or ())]
    other = recorded is None and next((k for k in ("run", "export", "search", "study") if is_owned(out, k)), None)
    if other:
        raise ForeignFilesError(f"{spell('`out`', '--out')} {out!r} is a lacnn-zoo {other} folder, not a report "
                                "folder; choose another.")
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise ForeignFilesError(
            f"The report folder {out!r} holds files lacnn-zoo did not write ({shown}); a report goes only "
            f"into a new or empty folder or over a report lacnn-zoo wrote ({flag}), and never replaces anything "
            "else: choose another folder or move those files away.")
    if entries and not overwrite:
        raise FileExistsError(f"{out!r} already holds a report; pass {flag} to replace it.")
    return entries


def _leftover(base):
    """The names of what a killed report leaves beside its folder `base`: the folder it was building, and (the
    earlier version) the folder it built or the previous one it moved aside."""
    tag = re.escape(TMP_TAG)
    return re.compile(rf"^\.{re.escape(base)}\.(?:[0-9a-f]{{8}}{tag}|lacnn-(?:report|old)-[0-9a-z_]{{8}})$")


def _remove_leftovers(out):
    """Remove what killed reports left beside and inside `out` (under its lock: no report is writing them)."""
    parent, base = os.path.split(out)
    leftover = _leftover(base)
    for name in os.listdir(parent):
        if leftover.match(name) and os.path.isdir(os.path.join(parent, name)):
            remove_path(os.path.join(parent, name))
    if os.path.isdir(out) and not os.path.islink(out) and recorded_files(out) is not None:
        remove_stale_temporaries(out)


def _new_folder(parent, base):
    """A new folder beside the report folder, named as the zoo's temporaries are (mode as os.makedirs gives)."""
    while True:
        path = os.path.join(parent, f".{base}.{secrets.token_hex(4)}{TMP_TAG}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue


def _install(tmp, out, replaced):
    """Put the report finished in `tmp` at `out`: a new folder is renamed into place whole; an existing one (an
    empty folder, or a report being replaced) is kept, with its mode, and gets the new files. Its marker lists
    every file of the zoo's that may be in it at each moment, so a kill leaves nothing unaccounted for."""
    files = sorted(os.listdir(tmp))
    if not os.path.lexists(out):
        mark_owned(tmp, "report", files)
        os.rename(tmp, out)
        return
    mark_owned(out, "report", {*files, *replaced})
    for name in replaced:
        if name not in files:
            remove_path(os.path.join(out, name))
    for name in sorted(files, key=lambda n: n == PAGE):  # the page last: it shows the others
        os.replace(os.path.join(tmp, name), os.path.join(out, name))
    mark_owned(out, "report", files)
    remove_path(tmp)


def run_page(path, out, *, dataset, examples, image_size, data_dir, download, log, limit=None):
    """The page of a training run, its figures written into `out`; a section whose file is damaged is left out
    with one line naming the file."""
    folder = RunFolder(path)
    config = folder.config()
    try:
        metrics, unusable = folder.metrics(missing={}), None
    except DamagedFileError as e:
        metrics, unusable = {}, why(e)
    name = config.get("model")
    page = Page(configuration.title(config), f"Run folder {path}")
    top = len(page.parts)  # the warnings and the configuration go first; they need the test split and history
    if unusable:
        page.left_out("The configuration's test metrics", unusable)
    history, unusable = _history(folder)
    predictions = _test_predictions(path, dataset, image_size, data_dir, download, page, log, examples, limit)
    _curves_section(page, out, history, unusable, config, metrics, predictions, name)
    first = Page("")
    _warnings_section(first, metrics, history, predictions)
    _configuration_section(first, config, metrics, history, predictions)
    page.parts[top:top] = first.parts
    page.numbers.update(first.numbers)
    if predictions is not None:
        predictions_sections(page, out, predictions, examples, log)
    layer_attention_section(page, out, folder, predictions, log)
    augmented_section(page, out, predictions, log)
    return page


def _configuration_section(page, config, metrics, history, predictions):
    """What the run was (model, data, recipe, headline results), from run.json, metrics.json, history.csv and,
    when the test split was scored, the model's taps and the split sizes."""
    best = _best_epoch(history)
    data = getattr(predictions, "data", None)
    splits = {s: data.size(s) for s in ("train", "validation", "test")} if data is not None else None
    model = getattr(predictions, "model", None)
    taps = tap_names(model) if model is not None and is_layer_attended(model) else None
    page.heading("Configuration")
    rows = configuration.rows(config, metrics, epochs_run=len(history), best_epoch=None if best is None else best + 1,
                              best_accuracy=None if best is None else _offer(history[best])[0], splits=splits,
                              taps=taps)
    page.table(None, rows)
    page.numbers["configuration"] = dict(rows)
    page.text("Epochs count from 1 on this page and in report.json (`best_epoch`), as best.keras.json counts them; "
              "history.csv's `epoch` column counts from 0.", kind="note")
    page.numbers["epochs_counted_from"] = 1


def _warnings_section(page, metrics, history, predictions):
    """The run's warnings (metrics.json), at the top of the page. A run trained before they were recorded gets
    the two that metrics.json and history.csv give (chance, overfitting), said so; the batch-norm check needs
    the training images and the trained model in training mode, which only `train` runs."""
    recorded, note = metrics.get("warnings"), None
    num_classes = metrics.get("num_classes")
    if recorded is None and isinstance(metrics.get("test_accuracy"), float) and num_classes:
        data = getattr(predictions, "data", None)
        size = (lambda split: data.size(split)) if data is not None else (lambda split: None)
        train = [float(r["accuracy"]) for r in history if r.get("accuracy") not in (None, "")]
        best = metrics.get("best_val_accuracy")
        recorded = diagnose(num_classes, test=(metrics["test_accuracy"], size("test")),
                            validation=(best, size("validation")) if isinstance(best, float) and best == best else None,
                            train_accuracy=train[-1] if train else None)
        note = ("This run was trained before the zoo recorded its warnings: the report checked chance and "
                "overfitting from metrics.json and history.csv; the batch-norm check was not run.")
    page.numbers["warnings"] = recorded or []
    if not recorded:
        return
    page.heading("Warnings")
    for line in lines(recorded):
        page.text(line, kind="warning")
    if note:
        page.text(note, kind="note")




def _test_predictions(path, dataset, image_size, data_dir, download, page, log, examples=EXAMPLES, limit=None):
    if not os.path.isfile(RunFolder(path).best):
        page.left_out("Test-split sections", "the run has no best.keras (it did not finish an epoch)")
        return None
    log(printable(f"report: scoring the test split with {RunFolder(path).best} ..."))
    try:
        # Streamed: per image 4 scores, and the inputs of the highest-loss images and of the attention maps'
        # images; no log-probabilities, no other input.
        p = predictions(path, dataset, image_size=image_size, data_dir=data_dir, download=download, limit=limit,
                        keep_worst=examples, keep_first=ATTENTION_IMAGES, keep_log_p=False)
    except DamagedFileError as e:  # metrics.json: the model's preprocessing is unknown
        page.left_out("Test-split sections", why(e))
        return None
    except DatasetNotAvailableError as e:
        if dataset is not None:  # the data set asked for: its absence is the user's to fix
            raise
        page.left_out("Test-split sections", f"the run's data set cannot be loaded here ({why(e)})")
        return None
    if not len(p.labels):
        page.left_out("Test-split sections", f"the test split of {p.dataset!r} holds no image")
        return None
    page.numbers["limit"] = limit
    if limit is not None:
        total = p.images_in_split
        of = f"of the {total} it holds" if total is not None else "(the split's size is not recorded)"
        option = spell(f"limit={limit}", f"--limit {limit}")
        page.text(f"Scored only the first {len(p.labels)} test images {of} ({option}): every test-split section "
                  "below is on these images.", kind="note")
        log(printable(f"report: scored the first {len(p.labels)} test images {of} ({option})."))
    return p










def _curves_section(page, out, history, unusable, config, metrics, predictions, name):
    page.heading("Learning curves")
    if unusable:
        page.left_out("Learning curves", unusable)
        return
    rates, best = None, _best_epoch(history)
    if predictions is not None and predictions.data is not None and predictions.data.size("train"):
        steps = measures.steps_per_epoch(predictions.data.size("train"), config["batch_size"])
        try:
            rates = measures.learning_rates(config, steps, len(history), replicas=metrics.get("replicas") or 1)
            page.numbers["learning_rates"] = rates
        except ValueError as e:  # a schedule run.json records but this version cannot rebuild
            page.left_out("The learning-rate panel", f"the schedule in run.json cannot be rebuilt ({why(e)})")
    page.numbers["best_epoch"] = None if best is None else best + 1  # from 1, as best.keras.json
    path = os.path.join(out, "learning_curves.png")
    notes = figures.learning_curves(history, rates, best, path, f"{name}: training and validation")
    page.figure(path, "learning curves")
    for note in notes:
        page.text(note, kind="note")
    if best is not None:
        row = history[best]
        page.text(f"Best epoch {best + 1} of {len(history)}: validation accuracy {_offer(row)[0]:.4f} "
                  f"({_best_model(row)}its weights are best.keras, the model every other section uses).")
