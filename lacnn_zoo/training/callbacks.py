"""Training callbacks whose files survive a crash: atomic best checkpoint, atomic backups, epoch timing."""

import contextlib
import json
import math
import os
import time

import keras
import numpy as np

from lacnn_zoo.compat import BackupAndRestore
from lacnn_zoo.errors import ZooError
from lacnn_zoo.io import atomic_path, damaged, is_json_number, read_json, read_json_record, write_json
from lacnn_zoo.training.ema import better, ema_name


def checkpoint_bytes(model):
    """A generous size estimate of a checkpoint: weights plus two optimizer moments, and 1 MiB of metadata."""
    return 3 * sum(int(np.prod(w.shape)) * 4 for w in model.weights) + (1 << 20)


def weights_are_finite(model):
    """Whether every weight of `model` is finite (a diverged run must never be checkpointed)."""
    return all(np.all(np.isfinite(keras.ops.convert_to_numpy(w))) for w in model.weights)


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_time_s` (wall time of the epoch, validation included) to the epoch logs.

    Put it before CSVLogger so the column lands in the history file.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_time_s"] = time.perf_counter() - self._start


# best.keras.json, as AtomicBestCheckpoint writes it: the best monitored value and the tie-break value.
_SIDECAR_TYPES = {"best": (is_json_number, "a number"),
                  "tie": (lambda v: v is None or is_json_number(v), "a number or null")}


class AtomicBestCheckpoint(keras.callbacks.Callback):
    """Save the whole model as `.keras` whenever `monitor` improves, via a temporary file and a rename.

    Among epochs of equal `monitor` (validation accuracies tie often on a small validation split), the one
    with the lower `tie` (the validation loss) is better, and the first of exact ties is kept.
    The best values so far live in `<filepath>.json`, so a resumed run keeps
    comparing against them instead of overwriting a better checkpoint. With
    `ema` (a `lacnn_zoo.training.ema.EMAValidation` earlier in the callbacks),
    each epoch offers the better of the raw and the averaged model by the same
    rule (`val_accuracy` against `val_ema_accuracy`, then the losses), and the
    sidecar's `"weights"` says which the checkpoint holds: "raw" or "ema".
    """

    def __init__(self, filepath, monitor="val_accuracy", mode="max", ema=None, tie="val_loss"):
        super().__init__()
        if not str(filepath).endswith(".keras"):
            raise ValueError(f"`filepath` must end in .keras; received {filepath!r}.")
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.mode = mode
        self.ema = ema
        self.tie = None if tie == monitor else tie
        self._sidecar = self.filepath + ".json"
        self.best = -math.inf if mode == "max" else math.inf
        self.best_tie = math.inf
        if os.path.exists(self._sidecar) and os.path.exists(self.filepath):
            recorded = read_json_record(self._sidecar, _SIDECAR_TYPES)  # the file named if it is damaged
            if not is_json_number(recorded.get("best")):
                raise damaged(self._sidecar, "it records no number as 'best'")
            self.best = recorded["best"]
            # Recorded by an earlier release, without its tie value: kept on ties, as it then was.
            self.best_tie = -math.inf if "tie" not in recorded else (
                math.inf if recorded["tie"] is None else recorded["tie"])

    def _improved(self, value, tie):
        if value == self.best and tie is not None:
            return tie < self.best_tie
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise KeyError(
                f"AtomicBestCheckpoint monitors {self.monitor!r}, which the model does not report; "
                f"it reports {sorted(logs or {})}."
            )
        if not math.isfinite(float(value)) or not weights_are_finite(self.model):
            self.model.stop_training = True  # diverged: keep the last finite checkpoint
            return
        weights = "raw" if self.ema is None else better(logs, self.monitor, self.mode)
        name = (lambda key: ema_name(key)) if weights == "ema" else (lambda key: key)  # noqa: E731
        value = float(logs[name(self.monitor)])
        tie = logs.get(name(self.tie)) if self.tie else None
        tie = float(tie) if tie is not None and math.isfinite(float(tie)) else None
        if self._improved(value, tie):
            with self.ema.averaged() if weights == "ema" else contextlib.nullcontext():
                if not weights_are_finite(self.model):
                    self.model.stop_training = True
                    return
                with atomic_path(self.filepath, suffix=".keras", need_bytes=checkpoint_bytes(self.model)) as tmp:
                    self.model.save(tmp)
            self.best, self.best_tie = value, math.inf if tie is None else tie
            write_json(self._sidecar, {"best": self.best, "epoch": epoch + 1, "monitor": self.monitor,
                                       "tie": tie, "tie_monitor": self.tie, "weights": weights})


class AtomicBackupAndRestore(BackupAndRestore):
    """`BackupAndRestore` whose weights and metadata are written to temporary files and renamed into place.

    Keras' own writes `latest.weights.h5` in place, so a crash during the write
    leaves a corrupt backup; here the previous backup stays whole until the new
    one is complete.  Non-finite weights are never backed up (training stops,
    and the last finite epoch stays resumable).  Put it LAST among the callbacks:
    once the backup says an epoch is done, every other file of that epoch
    (history row, best checkpoint, attention row) is already written.
    """

    def on_train_begin(self, logs=None):
        try:
            super().on_train_begin(logs)
        except Exception as e:  # h5py and json raise many types for a damaged file
            raise ZooError(
                f"The backup in {self.backup_dir!r} cannot be read ({type(e).__name__}: {e}); this run cannot "
                "resume from it. Start it again with --overwrite (its best.keras is kept until then)."
            ) from e

    def save_backup(self):
        if not weights_are_finite(self.model):
            self.model.stop_training = True
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        metadata = self.progress()
        with atomic_path(self.weights_path, suffix=".weights.h5", need_bytes=checkpoint_bytes(self.model)) as tmp:
            self.model.save_weights(tmp)
            _stamp(tmp, metadata)
        with atomic_path(self.metadata_path) as tmp:
            with open(tmp, "w") as f:
                json.dump(metadata, f)


# The weights file of a backup records the epoch it ends (an HDF5 attribute, which Keras' loader ignores): the
# weights and training_metadata.json are renamed into place one after the other, and a kill between the two
# renames leaves the metadata one epoch behind the weights.
EPOCH_ATTRIBUTE = "lacnn_zoo_training_metadata"


def _stamp(weights_path, metadata):
    import h5py

    with h5py.File(weights_path, "a") as f:
        f.attrs[EPOCH_ATTRIBUTE] = json.dumps(metadata)


def reconcile_backup(backup_dir):
    """Make `backup_dir`'s training_metadata.json agree with its weights file (call it under the run's lock).

    The weights are renamed into place first: when the metadata disagrees with what the weights file records,
    a kill came between the two renames, after every other file of that epoch was written (the backup is the
    last write of an epoch), so the epoch the weights record is done. Returns the metadata now on disk, or None.
    """
    weights = os.path.join(backup_dir, "latest.weights.h5")
    path = os.path.join(backup_dir, "training_metadata.json")
    if not os.path.isfile(weights):
        return None
    try:
        import h5py

        with h5py.File(weights, "r") as f:
            stamped = f.attrs.get(EPOCH_ATTRIBUTE)
        stamped = json.loads(stamped) if stamped is not None else None
    except (OSError, ValueError):
        return None  # a damaged weights file: restoring it says so, with its own message
    try:
        recorded = read_json(path)
    except (OSError, ValueError):
        recorded = None
    if stamped is not None and recorded != stamped:
        write_json(path, stamped)
        return stamped
    return recorded


class BackupReader(AtomicBackupAndRestore):
    """Restores from a run's backup and never writes: a non-chief worker of a distributed run resumes from the
    chief's backup (the run folder is shared) and leaves every file to the chief."""

    def on_train_begin(self, logs=None):
        try:
            self.load_backup()
        except Exception as e:
            raise ZooError(f"The backup in {self.backup_dir!r} cannot be read ({type(e).__name__}: {e}).") from e

    def save_backup(self):
        pass

    def on_train_end(self, logs=None):
        pass
