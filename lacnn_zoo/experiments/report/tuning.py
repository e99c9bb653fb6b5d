"""The report of a tuning project (`python -m tuning`, `lacnn-zoo tune`): the mechanisms table, the best trial's
validation curve per mechanism, and every trial's hyperparameters and score."""

import os

from lacnn_zoo.errors import one_line
from lacnn_zoo.experiments.report import figures
from lacnn_zoo.experiments.report.page import Page
from lacnn_zoo.io import DamagedFileError, damaged, is_json_number, printable, read_json_checked, read_json_record
from lacnn_zoo.plotting import counted, plot_mechanisms
from lacnn_zoo.training.search_project import EXECUTIONS, ORACLE, TABLE, TABLE_PLOT, SearchProject


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
_COUNT = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a count")
TABLE_TYPES = {
    "objective": (lambda v: isinstance(v, str) and v != "", "a metric name"),
    "dataset": (lambda v: isinstance(v, str), "a data set name"),
    "mechanisms": (_objects, "a list of objects"),
    "best": (lambda v: v is None or (isinstance(v, dict) and isinstance(v.get("hyperparameters", {}), dict)
                                     and _number(v.get("test_accuracy"))),
             "an object with a 'hyperparameters' object and a numeric 'test_accuracy'"),
    "trials": (lambda v: _objects(v) or _COUNT[0](v), "a list of objects or a count"),
    "wall_time_s": (lambda v: is_json_number(v) and v >= 0, "a number of seconds"),
}
_SCORE = (_number, "a number or null")
# Each row of its "mechanisms" list.
MECHANISM_TYPES = {
    "mechanism": (lambda v: isinstance(v, str), "a mechanism name"), "trials": _COUNT, "executions": _COUNT,
    "best_val_accuracy": _SCORE, "val_accuracy_mean": _SCORE, "val_accuracy_std": _SCORE,
    "params_of_best": (lambda v: v is None or _COUNT[0](v), "a count or null"),
    "time_per_epoch_of_best_s": _SCORE,
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
    file = SearchProject(path).file(TABLE)
    if not os.path.exists(file):
        page.left_out("The mechanisms table", f"the project has no {TABLE} (the search has not finished)")
        return None
    try:
        table = read_json_record(file, TABLE_TYPES)
        for i, row in enumerate(table.get("mechanisms", [])):
            for key, (check, accepted) in MECHANISM_TYPES.items():
                if key in row and not check(row[key]):
                    raise damaged(file, f"mechanisms[{i}][{key!r}] is {str(repr(row[key]))[:60]}, not {accepted}")
        return table
    except DamagedFileError as e:
        page.left_out("The mechanisms table", one_line(e).rstrip("."))
        return None


def _mechanisms_section(page, out, table, found):
    """The search in one line, its best trial and the table and plot per mechanism."""
    objective = table.get("objective", "val_accuracy")
    rows = table.get("mechanisms", [])
    runs = table.get("trials")
    count = len(runs) if isinstance(runs, list) else runs if isinstance(runs, int) else len(found)
    wall = table.get("wall_time_s")
    page.text(f"Data set {table.get('dataset')!r}; objective {objective}; {counted(count, 'trial')} over "
              f"{counted(len(rows), 'mechanism')}" + (f"; search wall time {wall:.0f} s." if wall is not None else "."))
    best = table.get("best")
    if best:
        page.heading("Best trial")
        hyperparameters = best.get("hyperparameters") or {}
        page.table(["hyperparameter", "value"],
                   [[k, _shown(hyperparameters[k])] for k in sorted(hyperparameters, key=lambda k: k != "mechanism")]
                   + [["test accuracy of best.keras", best.get("test_accuracy")]])
        page.numbers["best"] = best
    page.heading("Per mechanism")
    page.numbers["mechanisms"] = rows
    page.table(["mechanism", "trials", f"best {objective}", "mean", "std", "params of best", "s/epoch of best"],
               [[r.get("mechanism"), r.get("trials"), r.get("best_val_accuracy"), r.get("val_accuracy_mean"),
                 _std(r), r.get("params_of_best"), r.get("time_per_epoch_of_best_s")] for r in rows])
    page.text("mean and std: the validation accuracy over every execution of every trial of the mechanism (the "
              "sample std; n/a under two executions). params and s/epoch: of the mechanism's best trial, "
              "s/epoch the median wall time of an epoch after each execution's first (projects searched before "
              "it was recorded show -).", kind="note")
    if rows:
        path = os.path.join(out, TABLE_PLOT)
        plot_mechanisms(rows, path, f"{table.get('dataset')}: best validation accuracy per mechanism")
        page.figure(path, "best validation accuracy per mechanism")
    unvisited = [str(r.get("mechanism")) for r in rows if not r.get("trials")]
    if unvisited:
        page.text(f"The search drew no trial of {', '.join(unvisited)}: it does not compare "
                  f"{'it' if len(unvisited) == 1 else 'them'} with the others.", kind="warning")


def _shown(value):
    """A hyperparameter's value for the page: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else value


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
        _mechanisms_section(page, out, table, found)
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
    epochs = max(len(values) for values in curves.values())
    lengths = ", ".join(f"{m}: {counted(len(v), 'epoch')}" for m, v in curves.items())
    page.text(f"The best trial of each mechanism, {objective} after each epoch of its first execution ({lengths}).")
    if epochs >= 3:
        path = os.path.join(out, "tuning_curves.png")
        figures.tuning_curves(curves, path, f"best trial per mechanism: {objective} per epoch", objective)
        page.figure(path, "best trial per mechanism")
    else:  # two points a line say little as a plot
        page.table(["mechanism", *(f"epoch {e}" for e in range(1, epochs + 1))],
                   [[m, *v, *[None] * (epochs - len(v))] for m, v in curves.items()])
