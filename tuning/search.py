"""Run a Keras Tuner search over the attention mechanisms and report it per mechanism.

    python -m tuning                  # digits, random search, 20 trials x 15 epochs, all mechanisms

Results live in `<directory>/<project_name>/`: Keras Tuner's own state
(`oracle.json`, `trial_*/`; an interrupted search resumes from it unless
`overwrite=True`: finished trials are neither lost nor rerun), plus
`mechanisms.csv`, `mechanisms.json`, `mechanisms.png` and `best.keras`.

Distributed (Keras Tuner's own mode): run the same command on every machine
with KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT set, KERASTUNER_TUNER_ID=chief
on one (it serves the oracle and writes the report once every worker is done)
and tuner0, tuner1, ... on the others, all with the same --directory on a
shared filesystem.
"""

import contextlib
import dataclasses
import json
import os
import sys
import time
import warnings

import keras
import numpy as np

from lacnn_zoo import input_convention, load_model
from lacnn_zoo.compat import TunerHooks, best_metrics, every_choice_first, first_round_configurations
from lacnn_zoo.data import check_augment, load_dataset
from lacnn_zoo.errors import ZooError, spell
from lacnn_zoo.experiments import mean_std
from lacnn_zoo.io import (
    LOCK_NAME,
    FolderLock,
    atomic_path,
    check_replaceable,
    mark_owned,
    read_json,
    remove_path,
    remove_stale_temporaries,
    write_csv,
    write_json,
)
from lacnn_zoo.options import check_bounded
from lacnn_zoo.plotting import plot_mechanisms
from lacnn_zoo.training import EpochTimer, diagnostics
from lacnn_zoo.training.search_project import ORACLE, SPACE, TABLE, TABLE_CSV, TABLE_PLOT, SearchProject
from lacnn_zoo.validation import check_choice
from tuning.hypermodel import OBJECTIVES, MechanismHyperModel, check_mechanisms
from tuning.options import TUNERS  # noqa: E402  (Keras-free, for the parsers)

# The search space a project was started with; re-running the project with another one is refused.
SPACE_KEYS = ("mechanisms", "dataset", "tuner", "objective", "epochs", "seed", "batch_size", "overrides",
              "image_size", "augment", "executions_per_trial")
# Keys added after the first release: a search.json without them was made with these values.
SPACE_DEFAULTS = {"overrides": {}, "image_size": None, "augment": "none", "executions_per_trial": 1}


def _prepare_project(project_dir, space, overwrite):
    """Under the project's lock: refuse foreign files and changed spaces; record the space of a new project."""
    project = SearchProject(project_dir)
    entries = [e for e in os.listdir(project_dir) if e != LOCK_NAME] if os.path.isdir(project_dir) else []
    if entries:
        check_replaceable(project_dir, "search", project.is_entry, ORACLE)
        remove_stale_temporaries(project_dir, known=project.is_entry)
        stored = read_json(project.file(SPACE)) if os.path.exists(project.file(SPACE)) else None
        if overwrite:
            for entry in entries:
                remove_path(os.path.join(project_dir, entry))
        elif stored is not None:
            stored = {**SPACE_DEFAULTS, **stored}
            differ = {k: (stored.get(k), space[k]) for k in SPACE_KEYS if stored.get(k) != space[k]}
            if differ:
                detail = "; ".join(f"{k}: stored {a!r}, asked {b!r}" for k, (a, b) in differ.items())
                raise ValueError(
                    f"The search in {project_dir!r} was started with another search space ({detail}). Re-run it "
                    "with the same options to resume, pass --overwrite to start afresh, or use another "
                    "--project-name."
                )
    os.makedirs(project_dir, exist_ok=True)
    mark_owned(project_dir, "search")
    write_json(project.file(SPACE), space)


@dataclasses.dataclass
class SearchResult:
    table: list
    best_model: object
    best_hyperparameters: dict
    test_accuracy: float
    project_dir: str
    wall_time_s: float


def _distribution_strategy():
    """MirroredStrategy across GPUs on the TensorFlow backend when there are several; None otherwise."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else None


class _RecordExecutions(TunerHooks):
    """Mixed into a Keras Tuner class: after each trial, every execution's best-epoch values and its warnings
    (`lacnn_zoo.training.diagnostics`, printed at the end of the trial) go to the trial's `executions.json`
    (Keras Tuner keeps only their average). `data` (the search's `DataSplits`) is set before the search."""

    data = None

    def on_model_built(self, model):
        self._built = model  # the model the next execution trains, for its batch-norm check

    def on_execution_end(self, history, fit_kwargs):
        modes = None
        if self.data is not None and getattr(self, "_built", None) is not None:
            x, y = self.data.sample(diagnostics.MODE_SAMPLE, split="train")
            modes = diagnostics.mode_accuracies(self._built, x, y, batch_size=fit_kwargs.get("batch_size") or 64)
        self._modes.append(modes)

    def run_trial(self, trial, *args, **kwargs):
        self._modes = []
        histories = super().run_trial(trial, *args, **kwargs)
        executions = []
        for history, modes in zip(histories, self._modes):
            best = best_metrics(history, self.oracle.objective)
            executions.append({**{k: float(v) for k, v in best.items()},
                               "epoch_times_s": [float(t) for t in history.history.get("epoch_time_s", [])],
                               "history": {k: [float(v) for v in values] for k, values in history.history.items()},
                               "warnings": self._warnings(history.history, modes)})
        for line in dict.fromkeys(line for e in executions for line in diagnostics.lines(e["warnings"])):
            print(f"trial {trial.trial_id}: {line}", file=sys.stderr, flush=True)
        write_json(SearchProject.executions_file(self.get_trial_dir(trial.trial_id)), executions)
        return histories

    def _warnings(self, history, modes):
        """One execution's warnings: its best validation accuracy against chance and its last training accuracy,
        and the batch-norm check of its trained model."""
        if self.data is None:
            return []
        val, train = history.get("val_accuracy") or [], history.get("accuracy") or []
        return diagnostics.diagnose(self.data.num_classes,
                                    validation=(max(val), self.data.size("validation")) if val else None,
                                    train_accuracy=train[-1] if train else None, modes=modes)


HYPERBAND_FACTOR = 3


def make_tuner(hypermodel, *, tuner, objective, max_trials, epochs, directory, project_name, seed, overwrite,
               executions_per_trial=1):
    """The Keras Tuner search; `executions_per_trial` trains each trial's model that many times (Keras Tuner's
    own option: the trial's score is their average; each execution is recorded in the trial's executions.json)."""
    import keras_tuner

    direction = "min" if objective.endswith("loss") else "max"
    common = dict(
        objective=keras_tuner.Objective(objective, direction),
        directory=directory,
        project_name=project_name,
        seed=seed,
        overwrite=overwrite,
        distribution_strategy=_distribution_strategy(),
        executions_per_trial=executions_per_trial,
    )
    classes = {"random": keras_tuner.RandomSearch, "bayesian": keras_tuner.BayesianOptimization,
               "hyperband": keras_tuner.Hyperband}
    cls = type(classes[tuner].__name__, (_RecordExecutions, classes[tuner]), {})
    if tuner == "hyperband":
        search = cls(hypermodel, max_epochs=epochs, factor=HYPERBAND_FACTOR, hyperband_iterations=1, **common)
    else:
        search = cls(hypermodel, max_trials=max_trials, **common)
    # Every asked mechanism gets a trial before any gets a second; then the tuner's own strategy. In Keras Tuner's
    # distributed mode the chief's oracle, so extended, draws every worker's trials; a worker's is a gRPC client.
    if _is_worker():
        return search
    return every_choice_first(search, "mechanism")


def check_project_name(project_name):
    """A plain folder name: the project lives in `directory/project_name` and nowhere else."""
    name = project_name if isinstance(project_name, str) else None
    if not name or name in (".", "..") or os.sep in name or (os.altsep and os.altsep in name) or "\0" in name:
        raise ValueError(f"{spell('`project_name`', '--project-name')} must be a plain folder name (no '/', not '.' "
                         f"or '..'): the project is written inside {spell('`directory`', '--directory')}; received "
                         f"{project_name!r}.")
    return name


def _is_worker():
    return "KERASTUNER_ORACLE_IP" in os.environ and "chief" not in os.environ.get("KERASTUNER_TUNER_ID", "")


def run_search(
    mechanisms=None,
    *,
    dataset="digits",
    tuner="random",
    max_trials=20,
    epochs=15,
    objective="val_accuracy",
    directory="tuning_runs",
    project_name="mechanisms",
    seed=0,
    overwrite=False,
    batch_size=64,
    verbose=0,
    callbacks=(),
    overrides=None,
    executions_per_trial=1,
    **data_kwargs,
):
    """Search, then write the per-mechanism report and the best model; returns a `SearchResult`.

    `executions_per_trial` (Keras Tuner's option) trains every trial that many times from different
    initialisations; the report gives each mechanism's mean ± std over all its executions.

    `overrides` are fixed knobs for every searched model that has them (e.g. `{"backbone": "EfficientNetB0"}`
    for the layer-attended mechanisms); they are part of the search space recorded in `search.json`.

    Every argument is checked before the first trial starts.

    Args:
        mechanisms: the mechanisms to search, a list or a comma-separated string of `tuning.CANDIDATES`
            names; None for all of them.
        dataset: 'digits', a TFDS name or a folder of class subfolders.
        tuner: 'random', 'hyperband' or 'bayesian'.
        max_trials: trials of the search (Hyperband: its own schedule up to `epochs`).
        epochs: training epochs of each execution.
        objective: what the tuner maximises or minimises, one of `OBJECTIVES` ('val_accuracy' by default).
        directory: the folder of the search projects.
        project_name: the project's folder in `directory`, a plain name; re-running it resumes the search.
        seed: seed of the tuner and of the data split.
        overwrite: start the project afresh (only a folder holding nothing but the search's own files).
        batch_size: training batch size.
        verbose: Keras' verbosity of each fit.
        callbacks: more Keras callbacks for every fit.
        overrides: fixed knobs for every searched model that has them.
        executions_per_trial: trainings per trial, from different initialisations.
        **data_kwargs: the data set's options (`image_size`, `augment`, `data_dir`, ...), as `load_dataset`'s.

    Returns:
        A `SearchResult` (the table per mechanism, the best model and its hyperparameters, its test accuracy,
        the project folder and the wall time); None on a distributed worker, once the chief has no more
        trials for it.
    """
    mechanisms = check_mechanisms(mechanisms)
    check_choice("tuner", tuner, TUNERS)
    check_bounded("trials", max_trials, "max_trials", "--trials")
    check_bounded("epochs", epochs, flag="--epochs")
    check_bounded("batch_size", batch_size, flag="--batch-size")
    check_bounded("executions_per_trial", executions_per_trial, flag="--executions-per-trial")
    check_bounded("seed", seed, flag="--seed")
    check_project_name(project_name)
    if objective not in OBJECTIVES:
        raise ValueError(
            f"The models report {list(OBJECTIVES)}; `objective`={objective!r} is not among them "
            "(the search would fail only after its first trial)."
        )
    check_coverage(mechanisms, tuner, max_trials, epochs)
    if dataset != "digits":
        data_kwargs["augment"] = check_augment(data_kwargs.get("augment"))
        # A keras.applications backbone gets the inputs its weights were trained on, as in `lacnn-zoo train`.
        data_kwargs["normalization"] = input_convention((overrides or {}).get("backbone"))
    keras.utils.set_random_seed(seed)
    data = load_dataset(dataset, seed=seed, batch_size=batch_size, **data_kwargs)
    hypermodel = MechanismHyperModel(data.input_shape, data.num_classes, mechanisms, overrides=overrides)
    project_dir = os.path.join(os.fspath(directory), project_name)
    space = dict(mechanisms=list(mechanisms), dataset=dataset, tuner=tuner, objective=objective, epochs=epochs,
                 seed=seed, batch_size=batch_size, overrides=json.loads(json.dumps(dict(overrides or {}))),
                 image_size=list(data_kwargs["image_size"]) if data_kwargs.get("image_size") else None,
                 augment=data_kwargs.get("augment") or "none", executions_per_trial=executions_per_trial)
    worker = _is_worker()  # workers share the chief's project folder; the chief owns and guards it
    guard = contextlib.nullcontext() if worker else FolderLock(os.path.join(project_dir, LOCK_NAME),
                                                               f"Search project {project_dir!r}")
    with guard:
        if not worker:
            _prepare_project(project_dir, space, overwrite)  # replaces the project itself when asked
        return _search(data, hypermodel, tuner, objective, max_trials, epochs, directory, project_name,
                       seed, overwrite and worker, batch_size, verbose, callbacks, executions_per_trial)


def _search(data, hypermodel, tuner, objective, max_trials, epochs, directory, project_name, seed,
            overwrite, batch_size, verbose, callbacks, executions_per_trial=1):
    search_tuner = make_tuner(
        hypermodel, tuner=tuner, objective=objective, max_trials=max_trials, epochs=epochs,
        directory=directory, project_name=project_name, seed=seed, overwrite=overwrite,
        executions_per_trial=executions_per_trial,
    )
    search_tuner.data = data  # each trial's warnings read the split sizes and a sample of training images
    # Keras Tuner gives a TensorBoard callback a log folder per trial and logs its hyperparameters to the HParams
    # dashboard (TensorFlow backend).
    board = [keras.callbacks.TensorBoard(os.path.join(directory, project_name, "tensorboard"))] \
        if keras.backend.backend() == "tensorflow" else []
    fit = dict(validation_data=data.validation, callbacks=[EpochTimer(), *board, *callbacks], verbose=verbose)
    if data.is_numpy:
        fit.update(x=data.train[0], y=data.train[1], batch_size=batch_size)
    else:  # a tf.data pipeline shuffles itself every epoch; Keras would warn that shuffle=True is ignored
        fit.update(x=data.train, shuffle=False)
    if tuner != "hyperband":
        fit["epochs"] = epochs

    completed = None if _is_worker() else _completed(search_tuner)  # a worker's oracle is the chief's client
    start = time.perf_counter()
    search_tuner.search(**fit)
    wall = time.perf_counter() - start
    if _is_worker():
        return None
    project = SearchProject(search_tuner.project_dir)
    earlier = _earlier_summary(project)
    if earlier is not None and _completed(search_tuner) == completed:
        # A finished search resumed: no trial ran, so its best, files and wall time stand as they were written.
        print(f"The search in {search_tuner.project_dir!r} had finished: no trial ran; its best model and tables "
              "are unchanged.", file=sys.stderr, flush=True)
        return SearchResult(table=earlier["mechanisms"], best_model=load_model(project.best),
                            best_hyperparameters=earlier["best"]["hyperparameters"],
                            test_accuracy=earlier["best"]["test_accuracy"], project_dir=search_tuner.project_dir,
                            wall_time_s=earlier["wall_time_s"])
    # A resumed search's wall time counts the earlier sessions' too.
    return report(search_tuner, data, hypermodel, objective, wall + (earlier or {}).get("wall_time_s", 0.0))


def _completed(search_tuner):
    """The ids of the trials that completed, a set."""
    return {t.trial_id for t in search_tuner.oracle.trials.values() if t.status == "COMPLETED"}


def _earlier_summary(project):
    """The summary (mechanisms.json) a finished session of this search wrote beside its best.keras, or None."""
    if not (os.path.isfile(project.file(TABLE)) and os.path.isfile(project.best)):
        return None
    try:
        summary = read_json(project.file(TABLE))
        best = summary["best"]
        if isinstance(summary["mechanisms"], list) and isinstance(summary["wall_time_s"], (int, float)) \
                and isinstance(best["hyperparameters"], dict) and isinstance(best["test_accuracy"], (int, float)):
            return summary
    except (KeyError, TypeError, ValueError, OSError):
        pass
    return None  # unreadable: the search writes it afresh


def _trial_rows(search_tuner, hypermodel, objective):
    rows = []
    for trial in search_tuner.oracle.trials.values():
        if trial.status != "COMPLETED" or trial.score is None:
            continue
        hp = trial.hyperparameters
        metrics = trial.metrics
        keras.backend.clear_session()
        params = hypermodel.build(hp).count_params()
        executions = _executions(search_tuner, trial, objective)
        rows.append({
            "trial": trial.trial_id,
            "mechanism": hp.get("mechanism"),
            "score": float(trial.score),
            "val_accuracy": float(metrics.get_best_value("val_accuracy")) if metrics.exists("val_accuracy") else None,
            "params": int(params),
            "time_per_epoch_s": time_per_epoch(executions),
            "hyperparameters": dict(hp.values),
            "executions": executions,
        })
    return rows


def time_per_epoch(executions):
    """Median wall time of an epoch after each execution's first (which traces the graph), or None when no
    execution ran a second epoch (or, in a project written before epoch times were kept, none was recorded)."""
    later = [t for e in executions for t in (e.get("epoch_times_s") or [])[1:]]
    return float(np.median(later)) if later else None


def check_coverage(mechanisms, tuner, max_trials, epochs):
    """Refuse a budget that cannot give every mechanism a trial (the search visits each before any twice): fewer
    `max_trials` than mechanisms, or a Hyperband schedule (set by `epochs`) that draws fewer configurations."""
    n = len(mechanisms)
    if tuner != "hyperband":
        if max_trials < n:
            raise ValueError(f"{spell('`max_trials`', '--trials')} must be at least the number of mechanisms ({n}), "
                             f"so that each gets a trial; received {max_trials}.")
        return
    drawn = first_round_configurations(epochs, HYPERBAND_FACTOR)
    if drawn < n:
        enough = next((e for e in range(epochs, 100 * n) if first_round_configurations(e, HYPERBAND_FACTOR) >= n),
                      None)
        hint = f"pass {spell('`epochs`', '--epochs')} {enough} or more, or fewer mechanisms" if enough else \
            "pass fewer mechanisms"
        raise ValueError(f"Hyperband with {spell('`epochs`', '--epochs')} {epochs} draws {drawn} configurations, "
                         f"fewer than the {n} mechanisms: {hint}.")


def _executions(search_tuner, trial, objective):
    """Every execution's {objective, val_accuracy} of a trial; a trial run before executions were recorded counts
    as one execution with the trial's (averaged) values."""
    path = SearchProject.executions_file(search_tuner.get_trial_dir(trial.trial_id))
    if os.path.exists(path):
        return [{k: e.get(k) for k in dict.fromkeys((objective, "val_accuracy", "epoch_times_s"))}
                for e in read_json(path)]
    metrics = trial.metrics
    val = float(metrics.get_best_value("val_accuracy")) if metrics.exists("val_accuracy") else None
    return [{objective: float(trial.score), "val_accuracy": val}]


def _spread(values):
    """(mean, sample std) of the values that are not None; the std is None (shown "n/a") under two values."""
    mean, std = mean_std(values)
    return mean, std if len([v for v in values if v is not None]) > 1 else None


def mechanism_table(rows, objective, mechanisms=()):
    """One row per mechanism: best objective, its val accuracy, params, trials run; the mean ± std (sample std;
    None under two values) of the validation accuracy over every execution of every trial of the mechanism, and
    over the executions of its best trial (the repeat noise of one configuration). Time per epoch: the best
    trial's (`time_per_epoch_of_best_s`, beside its parameters) and the mean over the mechanism's trials of each
    trial's (`time_per_epoch_s`), which mixes models of different sizes."""
    better = min if objective.endswith("loss") else max
    table = []
    for mechanism in sorted({r["mechanism"] for r in rows}):
        runs = [r for r in rows if r["mechanism"] == mechanism]
        best = better(runs, key=lambda r: r["score"])
        times = [r["time_per_epoch_s"] for r in runs if r["time_per_epoch_s"] is not None]
        every = [e["val_accuracy"] for r in runs for e in r.get("executions") or []]
        mean, std = _spread(every)
        best_mean, best_std = _spread([e["val_accuracy"] for e in best.get("executions") or []])
        table.append({
            "mechanism": mechanism,
            f"best_{objective}": best["score"],
            "best_val_accuracy": best["val_accuracy"],
            "params_of_best": best["params"],
            "time_per_epoch_s": float(np.mean(times)) if times else None,
            "time_per_epoch_of_best_s": best["time_per_epoch_s"],
            "trials": len(runs),
            "best_trial": best["trial"],
            "val_accuracy_mean": mean,
            "val_accuracy_std": std,
            "executions": len([v for v in every if v is not None]),
            "best_trial_val_accuracy_mean": best_mean,
            "best_trial_val_accuracy_std": best_std,
        })
    table.sort(key=lambda r: r[f"best_{objective}"], reverse=not objective.endswith("loss"))
    visited = {r["mechanism"] for r in rows}
    return table + [{  # asked for, never drawn: shown, not dropped
        "mechanism": m, f"best_{objective}": None, "best_val_accuracy": None, "params_of_best": None,
        "time_per_epoch_s": None, "time_per_epoch_of_best_s": None, "trials": 0, "best_trial": None,
        "val_accuracy_mean": None, "val_accuracy_std": None, "executions": 0, "best_trial_val_accuracy_mean": None,
        "best_trial_val_accuracy_std": None,
    } for m in mechanisms if m not in visited]


def report(search_tuner, data, hypermodel, objective, wall_time_s):
    project_dir = search_tuner.project_dir
    rows = _trial_rows(search_tuner, hypermodel, objective)
    if not rows:
        raise ZooError(f"No trial completed in {project_dir!r}; see the trial logs there.")
    table = mechanism_table(rows, objective, hypermodel.mechanisms)
    best_hp = search_tuner.get_best_hyperparameters(1)[0]
    with warnings.catch_warnings():
        # keras-tuner restores the best checkpoint into a model built afresh, whose optimizer has no state yet;
        # Keras warns that the checkpoint's optimizer variables are skipped. The model is evaluated and saved,
        # never trained on: the optimizer state is not needed.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        best_model = search_tuner.get_best_models(1)[0]
    if data.is_numpy:
        test = best_model.evaluate(data.test[0], data.test[1], verbose=0, return_dict=True)
    else:
        test = best_model.evaluate(data.test, verbose=0, return_dict=True)
    project = SearchProject(project_dir)
    with atomic_path(project.best, suffix=".keras") as tmp:
        best_model.save(tmp)
    # What `python -m export` and a deployment read beside best.keras, as for a training run.
    write_json(project.metrics, {
        "model": best_model.name, "dataset": data.name, "test_accuracy": float(test["accuracy"]),
        "input_shape": list(data.input_shape), "num_classes": data.num_classes,
        "preprocessing": data.preprocessing, "hyperparameters": dict(best_hp.values),
    })
    summary = {
        "objective": objective,
        "dataset": data.name,
        "preprocessing": data.preprocessing,
        "wall_time_s": wall_time_s,
        "best": {"hyperparameters": dict(best_hp.values), "test_accuracy": float(test["accuracy"])},
        "mechanisms": table,
        "trials": rows,
        "backend": keras.backend.backend(),
    }
    write_json(project.file(TABLE), summary)
    write_csv(table, project.file(TABLE_CSV))
    plot_mechanisms(table, project.file(TABLE_PLOT),
                    f"{data.name}: best validation accuracy per mechanism")
    return SearchResult(table=table, best_model=best_model, best_hyperparameters=dict(best_hp.values),
                        test_accuracy=float(test["accuracy"]), project_dir=project_dir, wall_time_s=wall_time_s)


def print_table(result, objective="val_accuracy"):
    print(f"{'mechanism':<22} {'best ' + objective:>18} {'best trial val acc':>19} {'all runs val acc':>17} "
          f"{'params':>9} {'s/epoch':>8} {'trials':>7} {'runs':>5}")

    def spread(mean, std):
        return "-" if mean is None else f"{mean:.4f} ± " + ("n/a" if std is None else f"{std:.4f}")

    for r in result.table:
        t = f"{r['time_per_epoch_of_best_s']:.2f}" if r.get("time_per_epoch_of_best_s") is not None else "-"
        if not r["trials"]:
            print(f"{r['mechanism']:<22} {'-':>18} {'-':>19} {'-':>17} {'-':>9} {'-':>8} {0:>7} {0:>5}  (0 trials)")
            continue
        print(f"{r['mechanism']:<22} {r[f'best_{objective}']:>18.4f} "
              f"{spread(r.get('best_trial_val_accuracy_mean'), r.get('best_trial_val_accuracy_std')):>19} "
              f"{spread(r.get('val_accuracy_mean'), r.get('val_accuracy_std')):>17} {r['params_of_best']:>9,} {t:>8} "
              f"{r['trials']:>7} {r.get('executions', r['trials']):>5}")
    print("(mean ± sample std of the validation accuracy: over the best trial's executions, and over every "
          "execution of every trial, n/a under two; params and s/epoch: of the best trial, s/epoch the median wall "
          "time of an epoch after each execution's first, which traces the graph)")
    print(f"\nbest: {result.best_hyperparameters}\ntest accuracy of the best model: {result.test_accuracy:.4f}; "
          f"search wall time {result.wall_time_s:.0f} s; files in {result.project_dir}")
