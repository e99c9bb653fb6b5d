"""The report of a tuning project (`python -m tuning`, `lacnn-zoo tune`): the mechanisms table, the best trial's
validation curve per mechanism, and every trial's hyperparameters and score."""

import os

from lacnn_zoo.errors import one_line
from lacnn_zoo.experiments.report import figures
from lacnn_zoo.experiments.report.page import Page
from lacnn_zoo.io import DamagedFileError, damaged, is_json_number, printable, read_json_checked, read_json_record
from lacnn_zoo.training.search_project import EXECUTIONS, ORACLE, TABLE, SearchProject


def _number(value):
    return value is None or is_json_number(value)


def _objects(value):
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)


# What the report reads of each file, key by key (a key that is absent is not checked).
TRIAL_TYPES = {
    "trial_id": (lambda v: isinstance(v, (str, int)) and not isinstance(v, bool), "a trial id"),
    "status": (lambda v: v is None or isinstance(v, str), "a status"),
    "score": (_number, "a number"),
    "hyperparameters": (lambda v: v is None or (isinstance(v, dict) and isinstance(v.get("values", {}), dict)),
                        "an object whose 'values' is an object"),
}
TABLE_TYPES = {
    "objective": (lambda v: isinstance(v, str) and v != "", "a metric name"),
    "mechanisms": (_objects, "a list of objects"),
    "best": (lambda v: v is None or isinstance(v, dict), "an object"),
}


def is_tuning_project(path):
    return SearchProject(path).is_project()


def read_executions(path):
    """A trial's executions.json: a list of objects whose "history" maps metric names to lists of numbers;
    DamagedFileError naming the file and the first value that is not."""
    executions = read_json_checked(path, kind=list)
    for i, execution in enumerate(executions):
        history = execution.get("history") if isinstance(execution, dict) else None
        if not isinstance(execution, dict) or not isinstance(history or {}, dict):
            raise damaged(path, f"execution {i} is not an object with a 'history' object")
        for metric, values in (history or {}).items():
            bad = [v for v in values if v is None or not _number(v)] if isinstance(values, list) else [values]
            if bad:
                raise damaged(path, f"execution {i}: the history of {metric!r} holds {bad[0]!r}, not a number")
    return executions


def trials(path, page=None):
    """Every readable trial of the project: {"id", "status", "score", "hyperparameters", "executions"} by trial
    id. A damaged trial.json leaves its trial out, a damaged executions.json its curve, each with one line on
    `page`."""
    found = []
    for trial_file in SearchProject(path).trial_files():
        folder = os.path.dirname(trial_file)
        try:
            record = read_json_record(trial_file, TRIAL_TYPES)
        except DamagedFileError as e:
            _left_out(page, f"Trial {os.path.basename(folder)}", e)
            continue
        executions_file = SearchProject.executions_file(folder)
        try:
            executions = read_executions(executions_file) if os.path.exists(executions_file) else None
        except DamagedFileError as e:
            executions = None
            _left_out(page, f"The curve of trial {record.get('trial_id')}", e)
        found.append({"id": str(record.get("trial_id")), "status": record.get("status"), "score": record.get("score"),
                      "hyperparameters": (record.get("hyperparameters") or {}).get("values", {}),
                      "executions": executions})
    return found


def _left_out(page, section, error):
    if page is None:
        raise error
    page.left_out(section, one_line(error).rstrip("."))


def _read_table(path, page):
    """mechanisms.json, or None (absent, or damaged: then left out with its line)."""
    if not os.path.exists(SearchProject(path).file(TABLE)):
        page.left_out("The mechanisms table", f"the project has no {TABLE} (the search has not finished)")
        return None
    try:
        return read_json_record(SearchProject(path).file(TABLE), TABLE_TYPES)
    except DamagedFileError as e:
        page.left_out("The mechanisms table", one_line(e).rstrip("."))
        return None


def tuning_page(path, out, log):
    log(printable(f"report: reading the tuning project {path} ..."))
    page = Page(f"Search: {os.path.basename(os.path.normpath(path))}", f"Tuning project {path}")
    try:
        read_json_checked(SearchProject(path).file(ORACLE))
    except DamagedFileError as e:  # the report does not need it; the search's resume does
        page.left_out("The search's state (oracle.json)", f"{one_line(e).rstrip('.')}: Keras Tuner cannot resume "
                                                          "this search")
    page.heading("Mechanisms")
    table = _read_table(path, page)
    found = trials(path, page)
    objective = (table or {}).get("objective", "val_accuracy")
    if table is not None:
        page.text(f"Data set {table.get('dataset')!r}; objective {objective}; {table.get('trials')} trials. Best: "
                  f"{(table.get('best') or {}).get('hyperparameters')} (test accuracy "
                  f"{(table.get('best') or {}).get('test_accuracy')}).")
        page.numbers["mechanisms"] = table.get("mechanisms", [])
        page.table(["mechanism", "trials", f"best {objective}", "mean", "std", "params of best",
                    "s/epoch of best"],
                   [[r.get("mechanism"), r.get("trials"), r.get("best_val_accuracy"), r.get("val_accuracy_mean"),
                     _std(r), r.get("params_of_best"), r.get("time_per_epoch_of_best_s")]
                    for r in table.get("mechanisms", [])])
        page.text("mean and std: the validation accuracy over every execution of every trial of the mechanism (the "
                  "sample std; n/a under two executions). params and s/epoch: of the mechanism's best trial, "
                  "s/epoch the median wall time of an epoch after each execution's first (projects searched before "
                  "it was recorded show -).", kind="note")
    _curves(page, out, found, objective)
    page.numbers["trials"] = [{k: t[k] for k in ("id", "status", "score", "hyperparameters")} for t in found]
    page.heading("Trials")
    names = sorted({k for t in found for k in t["hyperparameters"]})
    page.table(["trial", "status", "score", *names, "warnings"],
               [[t["id"], t["status"], t["score"], *(t["hyperparameters"].get(k) for k in names), _kinds(t)]
                for t in found])
    if any(_kinds(t) not in (None, "none") for t in found):
        page.text("warnings: what each trial's end printed (chance: validation accuracy near 1/classes; "
                  "overfitting: training accuracy far above validation; batchnorm: training mode far above "
                  "inference mode on training images); the lines are in the trial's executions.json.", kind="note")
    page.text("Keras Tuner's hyperparameters per trial are also in TensorBoard's HParams dashboard: "
              f"tensorboard --logdir {os.path.join(path, 'tensorboard')}", kind="note")
    return page


def _kinds(trial):
    """The kinds of warning a trial's executions recorded ("none"), None for a trial searched before they were."""
    executions = [e for e in trial["executions"] or () if isinstance(e, dict)]
    if not executions or not any("warnings" in e for e in executions):
        return None
    lists = [e["warnings"] for e in executions if isinstance(e.get("warnings"), list)]
    kinds = dict.fromkeys(str(w.get("kind")) for warnings in lists for w in warnings if isinstance(w, dict))
    return ", ".join(kinds) or "none"


def _std(row):
    """The row's sample std of the validation accuracy; "n/a" under two executions (a project written before
    the search stored null there holds 0.0)."""
    if row.get("val_accuracy_mean") is None:
        return None
    executions = row.get("executions")
    if row.get("val_accuracy_std") is None or (isinstance(executions, int) and executions < 2):
        return "n/a"
    return row.get("val_accuracy_std")


def best_curves(found, objective):
    """Per mechanism, the per-epoch `objective` of its best-scoring trial's first execution."""
    maximise = not objective.endswith("loss")
    curves, best = {}, {}
    for t in found:
        mechanism, score = t["hyperparameters"].get("mechanism"), t["score"]
        history = ((t["executions"] or [{}])[0] or {}).get("history") or {}
        if not isinstance(mechanism, str) or score is None or not isinstance(history.get(objective), list):
            continue
        if mechanism not in best or (score > best[mechanism] if maximise else score < best[mechanism]):
            best[mechanism], curves[mechanism] = score, history[objective]
    return curves


def _curves(page, out, found, objective):
    page.heading("Learning curves")
    curves = best_curves(found, objective)
    page.numbers["best_curves"] = curves
    if not curves:
        page.left_out("The best trials' curves", f"no trial recorded its per-epoch history in {EXECUTIONS} "
                                                 "(projects searched before the zoo recorded it)")
        return
    path = os.path.join(out, "tuning_curves.png")
    figures.tuning_curves(curves, path, f"best trial per mechanism: {objective} per epoch", objective)
    page.figure(path, "best trial per mechanism")
