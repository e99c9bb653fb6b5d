"""The report of a tuning project (`python -m tuning`, `lacnn-zoo tune`): the mechanisms table, the best trial's
validation curve per mechanism, and every trial's hyperparameters and score."""

import glob
import os

from lacnn_zoo.experiments.report import figures
from lacnn_zoo.experiments.report.page import Page
from lacnn_zoo.io import read_json

TABLE = "mechanisms.json"
EXECUTIONS = "executions.json"


def is_tuning_project(path):
    return os.path.isfile(os.path.join(path, "oracle.json"))


def trials(path):
    """Every trial of the project: {"id", "status", "score", "hyperparameters", "executions"} by trial id."""
    found = []
    for trial_file in sorted(glob.glob(os.path.join(path, "trial_*", "trial.json"))):
        record = read_json(trial_file)
        executions_file = os.path.join(os.path.dirname(trial_file), EXECUTIONS)
        found.append({"id": str(record.get("trial_id")), "status": record.get("status"), "score": record.get("score"),
                      "hyperparameters": (record.get("hyperparameters") or {}).get("values", {}),
                      "executions": read_json(executions_file) if os.path.exists(executions_file) else None})
    return found


def tuning_page(path, out, log):
    log(f"report: reading the tuning project {path} ...")
    page = Page(f"Search: {os.path.basename(os.path.normpath(path))}", f"Tuning project {path}")
    table = read_json(os.path.join(path, TABLE)) if os.path.exists(os.path.join(path, TABLE)) else None
    found = trials(path)
    objective = (table or {}).get("objective", "val_accuracy")
    page.heading("Mechanisms")
    if table is None:
        page.left_out("The mechanisms table", f"the project has no {TABLE} (the search has not finished)")
    else:
        page.text(f"Data set {table.get('dataset')!r}; objective {objective}; {table.get('trials')} trials. Best: "
                  f"{(table.get('best') or {}).get('hyperparameters')} (test accuracy "
                  f"{(table.get('best') or {}).get('test_accuracy')}).")
        page.numbers["mechanisms"] = table.get("mechanisms", [])
        page.table(["mechanism", "trials", f"best {objective}", "mean", "std", "params of best", "s/epoch"],
                   [[r.get("mechanism"), r.get("trials"), r.get("best_val_accuracy"), r.get("val_accuracy_mean"),
                     r.get("val_accuracy_std"), r.get("params_of_best"), r.get("time_per_epoch_s")]
                    for r in table.get("mechanisms", [])])
    _curves(page, out, found, objective)
    page.numbers["trials"] = [{k: t[k] for k in ("id", "status", "score", "hyperparameters")} for t in found]
    page.heading("Trials")
    names = sorted({k for t in found for k in t["hyperparameters"]})
    page.table(["trial", "status", "score", *names],
               [[t["id"], t["status"], t["score"], *(t["hyperparameters"].get(k) for k in names)] for t in found])
    page.text("Keras Tuner's hyperparameters per trial are also in TensorBoard's HParams dashboard: "
              f"tensorboard --logdir {os.path.join(path, 'tensorboard')}", kind="note")
    return page


def best_curves(found, objective):
    """Per mechanism, the per-epoch `objective` of its best-scoring trial's first execution."""
    maximise = not objective.endswith("loss")
    curves, best = {}, {}
    for t in found:
        mechanism, score = t["hyperparameters"].get("mechanism"), t["score"]
        history = ((t["executions"] or [{}])[0] or {}).get("history") or {}
        if mechanism is None or score is None or objective not in history:
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
