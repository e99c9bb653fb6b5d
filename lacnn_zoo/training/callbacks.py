"""Training callbacks whose files survive a crash: atomic best checkpoint, atomic backups, epoch timing."""

import json
import math
import os
import time

import keras
import numpy as np

from lacnn_zoo.errors import ZooError
from lacnn_zoo.io import atomic_path, read_json, write_json


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


class EMAWeights(keras.callbacks.SwapEMAWeights):
    """Keras' `SwapEMAWeights` for validation, plus a bracket for the epoch-end callbacks.

    With an optimizer built with `use_ema=True`, validation runs on the averaged weights (Keras' callback swaps
    them in around `evaluate`). `swap_in()` and `swap_out()` are two callbacks to put around the epoch-end
    callbacks that must see the averaged weights too (the best checkpoint, the layer-attention monitor), and
    before the backup, which must save the raw weights with the average in the optimizer so that a resumed run
    continues both. At the end of `fit`, Keras' `finalize_variable_values` leaves the averaged weights in the
    model.
    """

    def swap_in(self):
        return _OnEpochEnd(self.on_test_begin)  # swaps the average in unless it is there

    def swap_out(self):
        return _OnEpochEnd(self.on_test_end)  # swaps the raw weights back unless they are there


class _OnEpochEnd(keras.callbacks.Callback):
    def __init__(self, action):
        super().__init__()
        self._action = action

    def on_epoch_end(self, epoch, logs=None):
        self._action()


def uses_ema(model):
    """Whether `model`'s optimizer keeps an exponential moving average of the weights."""
    optimizer = getattr(model, "optimizer", None)
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
    return bool(getattr(optimizer, "use_ema", False))


class AtomicBestCheckpoint(keras.callbacks.Callback):
    """Save the whole model as `.keras` whenever `monitor` improves, via a temporary file and a rename.

    The best value so far lives in `<filepath>.json`, so a resumed run keeps
    comparing against it instead of overwriting a better checkpoint.
    """

    def __init__(self, filepath, monitor="val_accuracy", mode="max"):
        super().__init__()
        if not str(filepath).endswith(".keras"):
            raise ValueError(f"`filepath` must end in .keras; received {filepath!r}.")
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.mode = mode
        self._sidecar = self.filepath + ".json"
        self.best = -math.inf if mode == "max" else math.inf
        if os.path.exists(self._sidecar) and os.path.exists(self.filepath):
            self.best = read_json(self._sidecar)["best"]

    def _improved(self, value):
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
        if self._improved(float(value)):
            self.best = float(value)
            with atomic_path(self.filepath, suffix=".keras", need_bytes=checkpoint_bytes(self.model)) as tmp:
                self.model.save(tmp)
            write_json(self._sidecar, {"best": self.best, "epoch": epoch + 1, "monitor": self.monitor})


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
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

    def _save_model(self):
        if not weights_are_finite(self.model):
            self.model.stop_training = True
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        with atomic_path(self._weights_path, suffix=".weights.h5", need_bytes=checkpoint_bytes(self.model)) as tmp:
            self.model.save_weights(tmp)
        with atomic_path(self._training_metadata_path) as tmp:
            with open(tmp, "w") as f:
                json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen}, f)


class BackupReader(AtomicBackupAndRestore):
    """Restores from a run's backup and never writes: a non-chief worker of a distributed run resumes from the
    chief's backup (the run folder is shared) and leaves every file to the chief."""

    def on_train_begin(self, logs=None):
        try:
            self._load_model()
        except Exception as e:
            raise ZooError(f"The backup in {self.backup_dir!r} cannot be read ({type(e).__name__}: {e}).") from e

    def _save_model(self):
        pass

    def on_train_end(self, logs=None):
        pass
