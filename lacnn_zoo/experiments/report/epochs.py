"""A run's epochs as the report reads them: history.csv's rows (or why they are unusable), and the epoch whose
weights best.keras holds, raw or averaged (`AtomicBestCheckpoint`'s rule)."""

import os

import numpy as np

from lacnn_zoo.errors import one_line
from lacnn_zoo.io import DamagedFileError
from lacnn_zoo.training.run_folder import HISTORY


def why(error):
    """The one-line message of an expected error, without its final period (for "left out: ..." lines)."""
    return one_line(error).rstrip(".")


def _history(folder):
    """`(rows, None)`, or `([], why the learning curves are left out)`."""
    path = folder.file(HISTORY)
    if not os.path.exists(path):
        return [], f"the run has no {HISTORY}"
    try:
        rows = folder.history()
    except DamagedFileError as e:
        return [], why(e)
    if rows:
        return rows, None
    with open(path, "rb") as f:
        empty = not f.read().strip()
    return [], (f"{path!r} is empty (the run was stopped before it finished an epoch)" if empty else
                f"{path!r} holds no epoch, only its header (the run was stopped before it finished an epoch)")


def _column(history, key):
    return np.array([float(r.get(key) or "nan") for r in history], "float64")


def _offer(row):
    """(validation accuracy, loss, "ema" or "raw") of the model an epoch's row offers best.keras: the raw one,
    or with `--ema` the better of it and the averaged one (accuracy, then lower loss), as the checkpoint does."""
    raw, ema, loss, ema_loss = (_column([row], k)[0] for k in ("val_accuracy", "val_ema_accuracy", "val_loss",
                                                                "val_ema_loss"))
    return (ema, ema_loss, "ema") if ema > raw or (ema == raw and ema_loss < loss) else (raw, loss, "raw")


def _best_epoch(history):
    """The epoch (0-based) of best.keras, None without a finite validation accuracy: the highest accuracy, then
    the lowest loss, the first of exact ties (`AtomicBestCheckpoint`'s rule)."""
    offers = [(i, *_offer(r)) for i, r in enumerate(history)]
    offers = [(i, a, loss if np.isfinite(loss) else np.inf) for i, a, loss, _ in offers if np.isfinite(a)]
    return min(offers, key=lambda o: (-o[1], o[2], o[0]))[0] if offers else None


def _best_model(row):
    """"the averaged (EMA) model, " when that is what an epoch's row gave best.keras, else "" (the raw one)."""
    return "the averaged (EMA) model, " if _offer(row)[2] == "ema" else ""
