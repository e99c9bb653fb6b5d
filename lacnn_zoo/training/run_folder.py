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
import re

from lacnn_zoo.data import check_augment, is_folder_name
from lacnn_zoo.errors import ZooError, spell
from lacnn_zoo.io import (
    LOCK_NAME,
    OWNER_MARKER,
    ForeignFilesError,
    check_replaceable,
    damaged,
    is_json_number,
    is_owned,
    is_temporary,
    mark_owned,
    owned_files,
    read_csv_checked,
    read_json,
    read_json_record,
    remove_path,
    remove_stale_temporaries,
    write_csv,
    write_json,
)
from lacnn_zoo.options import RECIPES
from lacnn_zoo.training.callbacks import reconcile_backup
from lacnn_zoo.training.report_folder import foreign_entries

CONFIG, METRICS, HISTORY, BEST, BACKUP = "run.json", "metrics.json", "history.csv", "best.keras", "backup"
TENSORBOARD = "tensorboard"
# TensorFlow's summary writer: events.out.tfevents.<time>.<host>.<pid>.<n>.v2 (Keras' TensorBoard callback).
_TENSORBOARD_EVENTS = re.compile(r"^events\.out\.tfevents\.\d+\..+\.v2$")
REPORT = "report"  # `lacnn-zoo report RUN` writes its page there (its own marker lists its files)
SPLIT_KEYS = ("validation_fraction", "test_fraction", "train_split", "test_split")
RECIPE_KEYS = (
    "recipe", "optimizer", "momentum", "nesterov", "schedule", "milestones", "decay_factor", "warmup_epochs",
    "label_smoothing", "clipnorm", "ema", "ema_decay", "precision", "mixup", "cutmix", "random_erasing",
)
RUN_KEYS = (
    "model", "dataset", "epochs", "batch_size", "learning_rate", "weight_decay", "seed", "overrides",
    "image_size", "augment", "freeze_backbone", "init_weights", "scale_lr", "bn_momentum", *RECIPE_KEYS,
    *SPLIT_KEYS,
)
# Keys added after the first release: a run.json without them was trained with these values.
RUN_KEY_DEFAULTS = {
    "freeze_backbone": False, "init_weights": None, "recipe": "default", "precision": "float32", "scale_lr": False,
    "bn_momentum": None,  # None: each BatchNormalization keeps the momentum its model gives it
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
# What `lacnn-zoo report RUN` may write into a run, finished or not: its folder and the lock beside it.
_REPORT_ENTRIES = frozenset({REPORT, ".report.lock"})
RUN_ENTRIES = frozenset({
    CONFIG, HISTORY, BEST, "best.keras.json", BACKUP, TENSORBOARD, METRICS,
    "layer_attention.csv", "layer_attention.png", "grad_norms.csv", *_REPORT_ENTRIES,
})
# What Keras' BackupAndRestore writes into backup/.
BACKUP_ENTRIES = frozenset({"latest.weights.h5", "training_metadata.json"})


def _whole(value, least=0):
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


_number = is_json_number


def _optional(check):
    return lambda value: value is None or check(value)


_POSITIVE = (lambda v: _whole(v, 1), "a positive integer")
_NUMBER = (_optional(_number), "a number")
_NAME = (lambda v: isinstance(v, str) and v != "", "a non-empty string")
# What readers of run.json rely on, key by key (a key that is absent is not checked; its default applies).
CONFIG_TYPES = {
    "model": _NAME, "dataset": _NAME, "epochs": _POSITIVE, "batch_size": _POSITIVE, "model_defaults": _POSITIVE,
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "learning_rate": (_number, "a number"), "weight_decay": _NUMBER, "decay_factor": _NUMBER,
    "warmup_epochs": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "milestones": (lambda v: isinstance(v, list) and all(map(_number, v)), "a list of numbers"),
    "schedule": _NAME, "optimizer": _NAME, "recipe": _NAME,
    "image_size": (_optional(lambda v: isinstance(v, list) and len(v) == 2 and all(_whole(d, 1) for d in v)),
                   "null or [height, width]"),
    "overrides": (_optional(lambda v: isinstance(v, dict)), "a JSON object"),
    "scale_lr": (lambda v: isinstance(v, bool), "true or false"),
    "bn_momentum": (_optional(lambda v: _number(v) and 0 <= v < 1), "null or a number in [0, 1)"),
    "input_convention": (_optional(lambda v: isinstance(v, str)), "null or a string"),
    "ema_decay": (lambda v: _number(v) and 0 < v < 1, "a number in (0, 1)"),
}
# The same for metrics.json (a training run's or a search's).
METRICS_TYPES = {
    **dict.fromkeys(("test_accuracy", "test_loss", "test_top5_accuracy", "best_val_accuracy", "time_per_epoch_s",
                     "train_wall_time_s"), _NUMBER),
    **dict.fromkeys(("params", "trainable_params", "num_classes"), (_optional(_whole), "an integer >= 0")),
    "replicas": (_optional(lambda v: _whole(v, 1)), "a positive integer"),
    "preprocessing": (_optional(lambda v: isinstance(v, dict)), "a JSON object"),
    "input_shape": (_optional(lambda v: isinstance(v, list)), "a list"),
    "best_weights": (_optional(lambda v: v in ("raw", "ema")), '"raw" or "ema"'),  # what best.keras holds
    "warnings": (_optional(lambda v: isinstance(v, list) and all(isinstance(w, dict) for w in v)),
                 "a list of objects"),
}


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
    """A run folder: `RunFolder(path).config()`, `.metrics()`, `.column("val_accuracy")`, `.file(BEST)`.

    Args:
        path: the run folder's path (a string or path-like; it need not exist yet).
    """

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
        """run.json as written (`missing` when there is none); DamagedFileError (a ValueError naming the file and
        the key) when it is not a JSON object or a key the readers use has the wrong type."""
        return read_json_record(self.file(CONFIG), CONFIG_TYPES) if self.is_run() else missing

    def config(self):
        """run.json with the defaults of the keys older releases did not write."""
        return {**RUN_KEY_DEFAULTS, **read_json_record(self.file(CONFIG), CONFIG_TYPES)}

    def metrics(self, missing=None):
        """metrics.json (`missing` when the run has not finished), checked as `raw_config` checks run.json."""
        return read_json_record(self.file(METRICS), METRICS_TYPES) if self.is_finished() else missing

    def history(self):
        """history.csv as a list of dicts of strings, "" where an epoch has no value (empty when absent, empty or
        only a header); DamagedFileError naming the file, row and column when it is not the zoo's CSV of
        numbers. A last line cut short (a kill while CSVLogger wrote it) is not read."""
        path = self.file(HISTORY)
        if not os.path.exists(path):
            return []
        header, rows = read_csv_checked(path, numeric=True, complete_lines=True)
        if header is None:
            return []
        if "epoch" not in header:
            raise damaged(path, f"its header ({','.join(header)[:80]}) has no 'epoch' column")
        epoch = header.index("epoch")
        for number, row in enumerate(rows, start=2):
            if not row[epoch].isdigit():
                raise damaged(path, f"row {number}, column 'epoch': {row[epoch]!r} is not an epoch number")
        return [dict(zip(header, row)) for row in rows]

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
        if self.interrupted_before_start(entries):  # nothing of the run exists yet: it starts afresh
            for entry in entries:
                remove_path(self.file(entry))
            entries, resume = [], False
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
            check_replaceable(self.path, "run", self._known(), CONFIG)
            foreign = [*self._foreign_inside(), *self._foreign_in_report()]
            if foreign:
                shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
                raise ForeignFilesError(
                    f"Refusing to replace {self.path!r}: it holds files lacnn-zoo did not write ({shown}). "
                    f"{spell('overwrite=True', '--overwrite')} replaces only a run folder written by lacnn-zoo; "
                    "move those files away first."
                )
            for entry in entries:
                remove_path(self.file(entry))
        mark_owned(self.path, "run")
        write_json(self.file(CONFIG), {**{k: plain(config[k]) for k in RUN_KEYS}, "model_defaults": MODEL_DEFAULTS,
                                       **(records or {})})
        return 0

    def _foreign_in_report(self):
        """`report/` goes with the run only when it holds nothing but what `lacnn-zoo report` wrote there."""
        folder = self.file(REPORT)
        if not os.path.isdir(folder) or os.path.islink(folder):
            return []
        return [os.path.join(REPORT, e) for e in foreign_entries(folder)]

    def interrupted_before_start(self, entries=None):
        """Whether a kill came between creating the folder and writing run.json: the folder holds the zoo's
        ownership marker (or the temporary of it that a kill during its write leaves) and nothing else."""
        if entries is None:
            entries = [e for e in os.listdir(self.path) if e != LOCK_NAME] if os.path.isdir(self.path) else []
        marker = lambda e: e == OWNER_MARKER or (e.startswith(f".{OWNER_MARKER}.") and is_temporary(e))  # noqa: E731
        return bool(entries) and not self.is_run() and all(marker(e) for e in entries)

    def _check_resume(self, config):
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

        reconcile_backup(self.file(BACKUP))  # a kill between the backup's two renames: its weights say the epoch
        done = self.epochs_done()
        self.trim_history(done)
        return done

    def trim_history(self, epochs_done):
        """Drop history rows of epochs that a kill interrupted before their backup: they run again.

        CSVLogger opens history.csv when training starts and writes its header with the first row, so a kill can
        leave the file empty, or end it in a line cut short: both are the zoo's own writes, dropped with the
        epochs they belong to. A file that no kill of the zoo's writer could leave is refused.
        """
        path = self.file(HISTORY)
        if not os.path.exists(path):
            return
        try:
            with open(path, newline="") as f:
                text = f.read()
        except UnicodeDecodeError:
            raise ZooError(f"{path!r} is not a CSV file lacnn-zoo wrote (it is not text); cannot resume this "
                           "run.") from None
        if epochs_done == 0 and ("epoch".startswith(text) or text.startswith("epoch,")):
            remove_path(path)  # every row in it (if any) belongs to the interrupted first epoch
            return
        if not text.strip():
            raise ZooError(f"{path!r} is empty, but the run's backup records {epochs_done} finished epoch(s): it was "
                           "damaged after it was written; this run cannot resume. Start it again with --overwrite.")
        complete = text[:text.rfind("\n") + 1]  # a last line without its end was being written by the kill
        reader = csv.DictReader(complete.splitlines())
        fields, rows = reader.fieldnames, list(reader)
        if not fields or "epoch" not in fields:
            raise ZooError(f"{path!r} has no 'epoch' column, so it was not written by lacnn-zoo; cannot resume "
                           "this run.")
        try:
            kept = [r for r in rows if int(r["epoch"]) < epochs_done]
        except (TypeError, ValueError):
            raise ZooError(f"{path!r} has a row whose epoch is not a whole number; it is damaged and this run "
                           "cannot resume. Start it again with --overwrite.") from None
        if sorted({int(r["epoch"]) for r in kept}) != list(range(epochs_done)):
            raise ZooError(f"{path!r} holds epochs {sorted({int(r['epoch']) for r in kept})} but the run's backup "
                           f"records {epochs_done} finished epoch(s): no kill leaves that, the file was damaged "
                           "after it was written; this run cannot resume without losing its history. Start it "
                           "again with --overwrite.")
        if len(kept) != len(rows) or complete != text:
            write_csv(kept, path, fieldnames=fields) if kept else remove_path(path)

    def write_metrics(self, metrics):
        """metrics.json, written last; the marker then lists the entries the finished run wrote, so that
        `--overwrite` never takes a file of the user's that merely has a name a run can write for the run's."""
        write_json(self.file(METRICS), metrics)
        written = [e for e in os.listdir(self.path) if e in RUN_ENTRIES and e not in _REPORT_ENTRIES]
        mark_owned(self.path, "run", files=written)

    def _known(self):
        """Whether a top-level entry is the run's: one the finished run listed (or, for a run the zoo has not
        finished or an earlier version's, a name a run writes), and the report folder, whose own marker decides."""
        listed = owned_files(self.path, "run")
        if listed:
            return lambda name: name in listed or name in _REPORT_ENTRIES
        return RUN_ENTRIES.__contains__

    def _foreign_inside(self):
        """What is in backup/ and tensorboard/ that a run does not write there: Keras' backup files, and
        TensorFlow's event files (whose names carry a time, host and pid, so no list can name them)."""
        foreign = []
        backup = self.file(BACKUP)
        if os.path.isdir(backup) and not os.path.islink(backup):
            foreign += [f"{BACKUP}/{e}" for e in sorted(os.listdir(backup))
                        if e not in BACKUP_ENTRIES and not is_temporary(e, _written_by_the_zoo)]
        board = self.file(TENSORBOARD)
        if os.path.isdir(board) and not os.path.islink(board):
            for folder, subfolders, files in os.walk(board):
                where = os.path.relpath(folder, self.path)
                foreign += [os.path.join(where, e) for e in sorted(files) if not _TENSORBOARD_EVENTS.match(e)]
                foreign += [os.path.join(where, e) for e in sorted(subfolders)
                            if os.path.islink(os.path.join(folder, e))]
        return foreign


def resume_arguments(run, asked):
    """The command line's `--resume`: every option not given is what the run was started with."""
    folder = RunFolder(run)
    if folder.interrupted_before_start():
        raise FileNotFoundError(f"--resume: the run in {folder.path!r} was stopped before its run.json was "
                                "written, so no epoch was trained and its options are unknown; run the same command "
                                "again without --resume (the folder is reused).")
    if not folder.is_run():
        raise FileNotFoundError(f"--resume: {folder.path!r} holds no lacnn-zoo run (no run.json there).")
    stored = folder.config()
    merged = {k: (v if v is not None else stored.get(k)) for k, v in asked.items()}
    for key in ("image_size", "milestones"):
        if isinstance(merged.get(key), list):
            merged[key] = tuple(merged[key])
    return merged
