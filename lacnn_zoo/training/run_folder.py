"""The run folder of `lacnn-zoo train`: the one owner of its layout, its run.json and the files beside a checkpoint.

    run.json          the run's configuration (written first; `resume` reads it)
    history.csv       per-epoch metrics, with epoch_time_s
    best.keras        the best model by validation accuracy (atomic writes)
    backup/           BackupAndRestore state while the run is unfinished
    tensorboard/      TensorBoard logs (TensorFlow backend)
    metrics.json      test accuracy, parameters, time per epoch (written last)

Train, resume, evaluate, predict, compare, the study, export and the search read and write runs through
`RunFolder`; no other module spells these file names.
"""

import csv
import os

from lacnn_zoo.errors import ZooError, spell
from lacnn_zoo.io import (
    LOCK_NAME,
    check_replaceable,
    is_owned,
    mark_owned,
    read_json,
    remove_path,
    remove_stale_temporaries,
    write_csv,
    write_json,
)
from lacnn_zoo.options import RECIPES

CONFIG, METRICS, HISTORY, BEST, BACKUP = "run.json", "metrics.json", "history.csv", "best.keras", "backup"
TENSORBOARD = "tensorboard"
SPLIT_KEYS = ("validation_fraction", "test_fraction", "train_split", "test_split")
RECIPE_KEYS = (
    "recipe", "optimizer", "momentum", "nesterov", "schedule", "milestones", "decay_factor", "warmup_epochs",
    "label_smoothing", "clipnorm", "ema", "precision", "mixup", "cutmix", "random_erasing",
)
RUN_KEYS = (
    "model", "dataset", "epochs", "batch_size", "learning_rate", "weight_decay", "seed", "overrides",
    "image_size", "augment", "freeze_backbone", "init_weights", "scale_lr", *RECIPE_KEYS, *SPLIT_KEYS,
)
# Keys added after the first release: a run.json without them was trained with these values.
RUN_KEY_DEFAULTS = {
    "freeze_backbone": False, "init_weights": None, "recipe": "default", "precision": "float32", "scale_lr": False,
    **dict.fromkeys(SPLIT_KEYS),
    **{k: list(v) if isinstance(v, tuple) else v for k, v in RECIPES["default"].items() if k in RECIPE_KEYS},
}
# The generation of the models' knob defaults a run was started under, recorded in run.json so that a run
# resumes with the model it was started with. Runs without the key are generation 1.
MODEL_DEFAULTS = 2
# Knob defaults that generation 1 had and later ones changed: applied when resuming such a run, unless the
# run set the knob itself (the knob is then in its overrides).
LEGACY_KNOB_DEFAULTS = {1: {"lstm_readout": "final_state"}}  # Dynamic-Recurrent read the LSTM's final state
# Everything `train` (and `compare`, through it) writes into a run folder; `--overwrite` replaces a folder
# only when it holds nothing else.
RUN_ENTRIES = frozenset({
    CONFIG, HISTORY, BEST, "best.keras.json", BACKUP, TENSORBOARD, METRICS,
    "layer_attention.csv", "layer_attention.png", "grad_norms.csv", "report",
})
# What Keras' BackupAndRestore writes into backup/.
BACKUP_ENTRIES = frozenset({"latest.weights.h5", "training_metadata.json"})


def _written_by_the_zoo(name):
    return name in RUN_ENTRIES or name in BACKUP_ENTRIES


# What a copy of an unfinished run needs to continue it (a JAX worker's private shadow of the chief's run).
RESUMABLE_ENTRIES = (CONFIG, HISTORY, BEST, "best.keras.json", BACKUP)


def plain(value):
    """JSON-comparable form (tuples become lists)."""
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


class RunFolder:
    """A run folder: `RunFolder(path).config()`, `.metrics()`, `.column("val_accuracy")`, `.file(BEST)`."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def __repr__(self):
        return f"RunFolder({self.path!r})"

    def file(self, name):
        return os.path.join(self.path, name)

    @property
    def best(self):
        return self.file(BEST)

    @property
    def lock(self):
        return self.file(LOCK_NAME)

    @classmethod
    def default(cls, model, dataset, seed):
        """`runs/<model>-<dataset>-seed<seed>`, the folder of a run not given an output folder."""
        from lacnn_zoo.data import is_folder_name

        name = os.path.basename(os.path.normpath(dataset)) if is_folder_name(dataset) else dataset.replace("/", "_")
        return cls(os.path.join("runs", f"{model}-{name}-seed{seed}"))

    @classmethod
    def beside(cls, checkpoint):
        """The folder holding `checkpoint` (a .keras file), whose run.json and metrics.json describe it."""
        return cls(os.path.dirname(os.path.abspath(os.fspath(checkpoint))))

    # -- reading ------------------------------------------------------------------------------------------
    def is_run(self):
        return os.path.isfile(self.file(CONFIG))

    def is_finished(self):
        return os.path.exists(self.file(METRICS))

    def raw_config(self, missing=None):
        """run.json as written (`missing` when there is none)."""
        return read_json(self.file(CONFIG)) if self.is_run() else missing

    def config(self):
        """run.json with the defaults of the keys older releases did not write."""
        return {**RUN_KEY_DEFAULTS, **read_json(self.file(CONFIG))}

    def metrics(self, missing=None):
        """metrics.json (`missing` when the run has not finished)."""
        return read_json(self.file(METRICS)) if self.is_finished() else missing

    def history(self):
        """history.csv as a list of dicts of strings (empty when absent)."""
        path = self.file(HISTORY)
        if not os.path.exists(path):
            return []
        with open(path, newline="") as f:
            return list(csv.DictReader(f))

    def column(self, name):
        """One history column as floats, epochs without a value skipped."""
        return [float(row[name]) for row in self.history() if row.get(name) not in (None, "")]

    def epochs_done(self):
        """Epochs whose every file is written: the backup is the last thing written each epoch."""
        path = os.path.join(self.file(BACKUP), "training_metadata.json")
        if not os.path.exists(path):
            return 0
        try:
            return int(read_json(path)["epoch"])
        except (ValueError, KeyError, TypeError) as e:
            raise ZooError(
                f"{path!r} is damaged ({type(e).__name__}: {e}); this run cannot resume. Start it again with "
                "--overwrite."
            ) from e

    def stored_arguments(self):
        """The `train` arguments the run was started with (not the records such as `model_defaults`)."""
        if not self.is_run():
            raise FileNotFoundError(f"Cannot resume: {self.path!r} holds no run.json (no lacnn-zoo run there).")
        return {k: v for k, v in read_json(self.file(CONFIG)).items() if k in RUN_KEYS}

    def generation_overrides(self, knobs, overrides):
        """The knobs to build a resumed run with: its overrides, plus the defaults of its generation."""
        try:
            generation = (self.raw_config() or {}).get("model_defaults", 1)
        except (OSError, ValueError):
            return overrides  # no readable run.json: the resume check refuses it with its own message
        legacy = {k: v for gen, defaults in LEGACY_KNOB_DEFAULTS.items() if generation <= gen
                  for k, v in defaults.items() if k in knobs and k not in overrides}
        return {**legacy, **overrides}

    def recorded_convention(self, missing=None):
        """The input convention run.json records (None for a run started before conventions were applied)."""
        try:
            return (self.raw_config() or {}).get("input_convention")
        except (OSError, ValueError):
            return missing

    # -- writing ------------------------------------------------------------------------------------------
    def prepare(self, config, *, resume, overwrite, records=None):
        """Check the folder against what was asked (under the run's lock); returns the epochs already done."""
        entries = [e for e in os.listdir(self.path) if e != LOCK_NAME]
        owned = is_owned(self.path, "run", CONFIG)
        if owned:
            remove_stale_temporaries(self.path, recursive_into=(BACKUP,), known=_written_by_the_zoo)
        if resume:
            return self._check_resume(config)
        if entries and not overwrite:
            if owned:
                raise FileExistsError(
                    f"Output directory {self.path!r} already holds a run. Pass {spell('resume=True', '--resume')} "
                    f"to continue it, {spell('overwrite=True', '--overwrite')} to replace it, or another "
                    f"{spell('output_dir', '--output-dir')}."
                )
            raise FileExistsError(
                f"Output directory {self.path!r} is not empty and is not a lacnn-zoo run "
                f"({', '.join(sorted(entries)[:3])}{', ...' if len(entries) > 3 else ''}); choose a new or empty "
                f"{spell('output_dir', '--output-dir')}."
            )
        if entries:
            check_replaceable(self.path, "run", RUN_ENTRIES.__contains__, CONFIG)
            for entry in entries:
                remove_path(self.file(entry))
        mark_owned(self.path, "run")
        write_json(self.file(CONFIG), {**{k: plain(config[k]) for k in RUN_KEYS}, "model_defaults": MODEL_DEFAULTS,
                                       **(records or {})})
        return 0

    def _check_resume(self, config):
        from lacnn_zoo.data import check_augment

        if not self.is_run():
            raise ValueError(f"`resume=True` but {self.path!r} holds no run.json; it is not a training run.")
        if self.is_finished():
            raise ValueError(f"The run in {self.path!r} already finished (metrics.json exists); nothing to resume.")
        stored = self.config()
        stored["augment"] = check_augment(stored.get("augment"))  # earlier runs recorded True / False
        differ = {k: (stored.get(k), config[k]) for k in RUN_KEYS if stored.get(k) != plain(config[k])}
        if differ:
            detail = "; ".join(f"{k}: stored {a!r}, asked {b!r}" for k, (a, b) in differ.items())
            raise ValueError(f"Cannot resume {self.path!r} with a different configuration ({detail}).")
        done = self.epochs_done()
        self.trim_history(done)
        return done

    def trim_history(self, epochs_done):
        """Drop history rows of epochs that a kill interrupted before their backup: they run again."""
        path = self.file(HISTORY)
        if not os.path.exists(path):
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames, list(reader)
        if not fields or "epoch" not in fields:
            raise ZooError(f"{path!r} has no 'epoch' column, so it was not written by lacnn-zoo; cannot resume "
                           "this run.")
        kept = [r for r in rows if int(r["epoch"]) < epochs_done]
        if len(kept) != len(rows):
            write_csv(kept, path, fieldnames=fields) if kept else remove_path(path)

    def write_metrics(self, metrics):
        write_json(self.file(METRICS), metrics)


def resume_arguments(run, asked):
    """The command line's `--resume`: every option not given is what the run was started with."""
    folder = RunFolder(run)
    if not folder.is_run():
        raise FileNotFoundError(f"--resume: {folder.path!r} holds no lacnn-zoo run (no run.json there).")
    stored = folder.config()
    merged = {k: (v if v is not None else stored.get(k)) for k, v in asked.items()}
    for key in ("image_size", "milestones"):
        if isinstance(merged.get(key), list):
            merged[key] = tuple(merged[key])
    return merged
