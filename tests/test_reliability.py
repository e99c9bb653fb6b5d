"""Never lose a user's file: --overwrite, locks, kills at chosen points, divergence, disk full, one-line errors.

Kills are made deterministic by raising from a callback or from a patched writer at a chosen point
(the moment a SIGKILL would land), never by sleeping.
"""

import csv
import errno
import json
import os
import re
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import EpochRecorder

from lacnn_zoo import cli, training
from lacnn_zoo.io import (
    LOCK_NAME,
    FolderLock,
    ForeignFilesError,
    LockedError,
    atomic_path,
    check_replaceable,
    is_owned,
    is_temporary,
    mark_owned,
)
from lacnn_zoo.training import resume, train
from lacnn_zoo.training.callbacks import AtomicBackupAndRestore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(overrides={"widths": (8, 8, 16)}, verbose=0)


def _rows(path, column="epoch"):
    with open(path) as f:
        return [int(float(r[column])) for r in csv.DictReader(f)]


def _tree(folder):
    """Every file under `folder` with its bytes: what must survive a refused command unchanged."""
    out = {}
    for base, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(base, name)
            out[os.path.relpath(path, folder)] = open(path, "rb").read()
    return out


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    train("plain_cnn_tiny", epochs=1, output_dir=str(run), **TINY)
    return run


@pytest.fixture(scope="module")
def exported_run(finished_run, tmp_path_factory):
    from export.__main__ import main

    exported = tmp_path_factory.mktemp("exported") / "dest"
    assert main([str(finished_run / "best.keras"), "--out", str(exported), "--format", "onnx"]) == 0
    return finished_run, exported


def _copy(run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


# --- --overwrite replaces only what the zoo wrote -----------------------------------------------------------


def test_overwrite_refuses_a_folder_the_zoo_did_not_write(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "thesis.txt").write_text("years of work")
    with pytest.raises(FileExistsError, match=r"not a lacnn-zoo run.*thesis.txt"):
        train("plain_cnn_tiny", epochs=1, output_dir=str(folder), **TINY)
    with pytest.raises(FileExistsError, match=r"Refusing to replace.*thesis.txt"):
        train("plain_cnn_tiny", epochs=1, output_dir=str(folder), overwrite=True, **TINY)
    assert sorted(os.listdir(folder)) == ["thesis.txt"] and (folder / "thesis.txt").read_text() == "years of work"


@pytest.mark.parametrize("foreign", ["notes.md", "poetry.lock", ".notes.20240101.tmp", "draft.abcdefgh.tmp.keras",
                                     ".best.keras.abcdefgh.tmp.txt"])
def test_overwrite_refuses_a_run_with_a_foreign_file_added(finished_run, tmp_path, foreign):
    run = _copy(finished_run, tmp_path)
    (run / foreign).write_text("my notes")
    before = _tree(run)
    with pytest.raises(FileExistsError, match=re.escape(foreign)):
        train("plain_cnn_tiny", epochs=1, output_dir=str(run), overwrite=True, **TINY)
    assert _tree(run) == before


def test_overwrite_replaces_a_run_of_the_zoo(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    os.remove(run / ".lacnn-zoo")  # a run written before the owner marker existed is recognised by run.json
    train("plain_cnn_tiny", epochs=1, output_dir=str(run), overwrite=True, seed=3, **TINY)
    assert json.load(open(run / "run.json"))["seed"] == 3 and (run / ".lacnn-zoo").exists()


# --- one writer at a time ----------------------------------------------------------------------------------


def test_a_locked_run_is_refused_and_left_alone(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    os.remove(run / "metrics.json")  # make it resumable
    before = _tree(run)
    with FolderLock(run / ".lock", "test holder"):
        with pytest.raises(LockedError, match="in use by another lacnn-zoo process"):
            resume(str(run), verbose=0)
        with pytest.raises(LockedError):
            train("plain_cnn_tiny", epochs=1, output_dir=str(run), overwrite=True, **TINY)
    assert {k: v for k, v in _tree(run).items() if k != ".lock"} == before


def test_a_second_process_gets_one_line_while_the_run_is_locked(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    os.remove(run / "metrics.json")
    with FolderLock(run / ".lock", "test holder"):  # flock: another process sees the lock
        out = subprocess.run(
            [sys.executable, "-m", "lacnn_zoo", "train", "--output-dir", str(run), "--resume"],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT},
        )
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("lacnn-zoo")]
    assert len(errors) == 1 and f"pid {os.getpid()}" in errors[0], out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert _rows(run / "history.csv") == [0]


def test_lock_file_is_released_and_reusable(tmp_path):
    lock = tmp_path / "x.lock"
    with FolderLock(lock, "x"):
        assert lock.exists()
    assert not lock.exists()
    with FolderLock(lock, "x"):
        pass


# --- kills at chosen points, and resume -------------------------------------------------------------------


def _kill_around_backup(monkeypatch, at_epoch, after):
    """Patch the backup writer so the run dies just before (after=False) or just after it saves `at_epoch`."""
    original = AtomicBackupAndRestore._save_model

    def save(self):
        if self._current_epoch == at_epoch + 1 and not after:
            raise KeyboardInterrupt("killed before the backup")
        original(self)
        if self._current_epoch == at_epoch + 1 and after:
            raise KeyboardInterrupt("killed after the backup")

    monkeypatch.setattr(AtomicBackupAndRestore, "_save_model", save)


def test_every_file_of_a_backed_up_epoch_is_on_disk_and_resume_repeats_nothing(tmp_path, monkeypatch):
    run = tmp_path / "run"
    kwargs = dict(epochs=4, output_dir=str(run), **TINY)
    # Killed right after epoch 1's backup: its history row, best checkpoint and attention row must exist.
    _kill_around_backup(monkeypatch, at_epoch=1, after=True)
    with pytest.raises(KeyboardInterrupt):
        train("lacnn_static_vector_tiny", **kwargs)
    assert _rows(run / "history.csv") == [0, 1]
    assert _rows(run / "layer_attention.csv") == [0, 1, 2]
    best_epoch = json.load(open(run / "best.keras.json"))["epoch"]
    val = _rows_float(run / "history.csv", "val_accuracy")
    loss = _rows_float(run / "history.csv", "val_loss")  # ties of accuracy go to the lower loss
    assert best_epoch == min(range(len(val)), key=lambda e: (-val[e], loss[e], e)) + 1
    # Killed just before epoch 2's backup: epoch 2 is rerun, and its first attempt leaves no duplicate row.
    monkeypatch.undo()
    _kill_around_backup(monkeypatch, at_epoch=2, after=False)
    with pytest.raises(KeyboardInterrupt):
        resume(str(run), verbose=0)
    assert _rows(run / "history.csv") == [0, 1, 2]
    monkeypatch.undo()
    result = resume(str(run), verbose=0)
    assert _rows(run / "history.csv") == [0, 1, 2, 3]
    assert _rows(run / "layer_attention.csv") == [0, 1, 2, 3, 4]
    assert result.metrics["resumed_after_epoch"] == 2 and not (run / "backup").exists()


def _rows_float(path, column):
    with open(path) as f:
        return [float(r[column]) for r in csv.DictReader(f)]


class _KillAtTrainEnd(keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        raise KeyboardInterrupt("killed after the last epoch, before metrics.json")


def test_a_run_killed_after_its_last_epoch_is_finished_not_retrained(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train("plain_cnn_tiny", epochs=2, output_dir=str(run), callbacks=[_KillAtTrainEnd()], **TINY)
    assert not (run / "metrics.json").exists()
    epochs = EpochRecorder()
    result = resume(str(run), callbacks=[epochs], verbose=0)
    assert epochs.seen == []  # nothing retrained
    assert _rows(run / "history.csv") == [0, 1]
    assert (run / "metrics.json").exists() and result.metrics["epochs"] == 2


def test_stale_temporaries_of_a_killed_run_are_cleaned_at_the_next_start(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    os.remove(run / "metrics.json")
    (run / "backup").mkdir(exist_ok=True)
    stale = [run / ".best.keras.0a1b2c3d.lacnn-tmp.keras", run / ".best.keras.k2j4h5g6.tmp.keras",
             run / "backup" / ".latest.weights.h5.abcd1234.tmp.weights.h5"]
    for path in stale:
        path.write_bytes(b"half")
    lookalikes = [run / "mine.tmp", run / ".notes.abcdefgh.tmp", run / "backup" / "draft.20240101.tmp"]
    for path in lookalikes:
        path.write_text("a user's file that looks temporary")
    seen = {}

    class _Look(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):  # the run is under way: its own temporaries must be gone by now
            seen["stale"] = [p.name for p in stale if p.exists()]

    with pytest.raises(FileExistsError):  # the lookalike in backup/ is not the zoo's, so overwrite refuses...
        train("plain_cnn_tiny", epochs=1, output_dir=str(run), overwrite=True, **TINY)
    os.remove(run / "backup" / "draft.20240101.tmp")
    resume(str(run), verbose=0, callbacks=[_Look()])  # ...while resume keeps it and removes only the zoo's
    assert seen["stale"] == []
    assert all(p.exists() for p in lookalikes[:2])


class _KillAtStart(keras.callbacks.Callback):
    """Dies as the first epoch begins: CSVLogger has opened history.csv and written nothing (the 0-byte file a
    kill -9 during the first epoch leaves)."""

    def on_epoch_begin(self, epoch, logs=None):
        raise KeyboardInterrupt("killed during the first epoch")


@pytest.mark.parametrize("ema", [False, True])
def test_a_run_killed_in_its_first_epoch_resumes(tmp_path, ema, capsys):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train("plain_cnn_tiny", epochs=2, output_dir=str(run), ema=ema, callbacks=[_KillAtStart()], **TINY)
    assert (run / "history.csv").read_bytes() == b""
    assert cli.main(["train", "--output-dir", str(run), "--resume", "--verbose", "0"]) == 0, capsys.readouterr().err
    assert _rows(run / "history.csv") == [0, 1]


class _KillAfterFirstEpoch(keras.callbacks.Callback):
    """Dies as the second epoch begins: the first one is completely saved (its backup included)."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt("killed after the first epoch")


def test_a_resumed_ema_run_has_the_history_and_checkpoint_of_an_uninterrupted_one(tmp_path, capsys):
    """The averaged model's batch-norm statistics are re-estimated from its weights on the same sample every
    epoch, and its average is in the backup: after a kill and --resume, every column of history.csv (but the
    epoch times) and the best checkpoint's record are those of the run that was never interrupted."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    argv = ["train", "--model", "plain_cnn_tiny", "--set", "widths=(8, 8, 16)", "--epochs", "3", "--ema",
            "--ema-decay", "0.9", "--verbose", "0"]
    assert cli.main([*argv, "--output-dir", str(whole)]) == 0
    kept = json.load(open(whole / "metrics.json"))["best_weights"]
    out = capsys.readouterr().out  # the summary says which model best.keras holds
    assert f"best.keras holds the {'averaged (EMA)' if kept == 'ema' else 'raw'} weights" in out, out
    with pytest.raises(KeyboardInterrupt):
        train("plain_cnn_tiny", epochs=3, ema=True, ema_decay=0.9, output_dir=str(killed),
              callbacks=[_KillAfterFirstEpoch()], tensorboard=False, **TINY)
    earlier = tmp_path / "earlier"  # the same run as an earlier version left it: no val_ema_* columns
    shutil.copytree(killed, earlier)
    with open(killed / "history.csv") as f:
        rows = [{k: v for k, v in r.items() if not k.startswith("val_ema_")} for r in csv.DictReader(f)]
    with open(earlier / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    before = _tree(earlier)
    assert cli.main(["train", "--output-dir", str(earlier), "--resume", "--verbose", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "earlier lacnn-zoo" in err[0] and "--overwrite" in err[0], err
    assert _tree(earlier) == before  # refused before anything was written
    assert cli.main(["train", "--output-dir", str(killed), "--resume", "--verbose", "0"]) == 0

    def history(run):
        with open(run / "history.csv") as f:
            return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in csv.DictReader(f)]

    assert len(history(whole)) == 3 and "val_ema_accuracy" in history(whole)[0]
    assert history(killed) == history(whole)
    assert json.load(open(killed / "best.keras.json")) == json.load(open(whole / "best.keras.json"))


def _owned_run(tmp_path, history, done):
    """A run folder as the zoo leaves it, with `history` (bytes) and a backup recording `done` epochs."""
    from lacnn_zoo.io import mark_owned, write_json
    from lacnn_zoo.training.run_folder import RunFolder

    run = tmp_path / "run"
    run.mkdir()
    mark_owned(str(run), "run")
    write_json(str(run / "run.json"), {"model": "plain_cnn_tiny"})
    (run / "history.csv").write_bytes(history)
    if done:
        (run / "backup").mkdir()
        write_json(str(run / "backup" / "training_metadata.json"), {"epoch": done, "batch": 0})
    return RunFolder(str(run))


@pytest.mark.parametrize("history,done,kept", [
    (b"", 0, None),                                          # opened, nothing written yet
    (b"epo", 0, None),                                       # the header cut short
    (b"epoch,accuracy,loss\r\n0,0.5,1.2\r\n", 0, None),        # epoch 0 written, killed before its backup
    (b"epoch,loss\r\n0,1.2\r\n1,0.9\r\n1", 2, [0, 1]),       # row "10" cut to "1" by the kill
    (b"epoch,loss\r\n0,1.2\r\n1,0.9\r\n2,0.", 2, [0, 1]),
])
def test_a_history_cut_by_a_kill_is_trimmed_to_the_backed_up_epochs(tmp_path, history, done, kept):
    folder = _owned_run(tmp_path, history, done)
    folder.trim_history(folder.epochs_done())
    path = tmp_path / "run" / "history.csv"
    assert (_rows(path) if path.exists() else None) == kept


def test_a_foreign_history_is_still_refused(tmp_path):
    from lacnn_zoo.errors import ZooError

    folder = _owned_run(tmp_path, b"step,value\n3,4\n", 1)
    with pytest.raises(ZooError, match="no 'epoch' column"):
        folder.trim_history(1)
    assert (tmp_path / "run" / "history.csv").read_bytes() == b"step,value\n3,4\n"


def test_a_run_killed_before_its_run_json_starts_again(tmp_path, capsys):
    from lacnn_zoo.io import OWNER_MARKER, mark_owned

    run = tmp_path / "run"
    run.mkdir()
    mark_owned(str(run), "run")  # killed here, before run.json: nothing of the run exists
    assert cli.main(["train", "--output-dir", str(run), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "without --resume" in err[0]
    train("plain_cnn_tiny", epochs=1, output_dir=str(run), **TINY)
    assert (run / "metrics.json").exists()
    # Killed while writing the marker itself: its temporary alone is in the folder.
    other = tmp_path / "other"
    other.mkdir()
    (other / f".{OWNER_MARKER}.0a1b2c3d.lacnn-tmp").write_text("{")
    train("plain_cnn_tiny", epochs=1, output_dir=str(other), resume=True, **TINY)
    assert (other / "metrics.json").exists()


def test_a_kill_between_the_backup_weights_and_its_metadata_resumes_after_the_saved_epoch(tmp_path, monkeypatch):
    from lacnn_zoo.training import callbacks

    run = tmp_path / "run"
    real_dump = json.dump

    def dump(data, f, *args, **kwargs):
        if isinstance(data, dict) and data.get("epoch") == 2 and "batch" in data:
            raise KeyboardInterrupt("killed after the weights of epoch 2 were renamed into place")
        return real_dump(data, f, *args, **kwargs)

    monkeypatch.setattr(callbacks.json, "dump", dump)
    with pytest.raises(KeyboardInterrupt):
        train("plain_cnn_tiny", epochs=3, output_dir=str(run), **TINY)
    monkeypatch.undo()
    assert json.load(open(run / "backup" / "training_metadata.json"))["epoch"] == 1
    epochs = EpochRecorder()
    resume(str(run), verbose=0, callbacks=[epochs])
    assert epochs.seen == [2] and _rows(run / "history.csv") == [0, 1, 2]


def test_gradient_norms_of_a_resumed_run_keep_the_earlier_epochs(tmp_path):
    from lacnn_zoo import build_model
    from lacnn_zoo.experiments.compare import GradientNormMonitor, read_csv

    path = tmp_path / "grad_norms.csv"
    x, y = np.zeros((4, 8, 8, 1), "float32"), np.zeros(4, "int32")
    model = build_model("plain_cnn_tiny", widths=(8, 8, 16))
    first = GradientNormMonitor(x, y, str(path), epochs=(1, 2))
    first.set_model(model)
    first.on_train_begin()
    first.on_epoch_end(0)
    first.on_epoch_end(1)  # epoch 2's rows, then killed before epoch 2's backup: epoch 2 runs again
    again = GradientNormMonitor(x, y, str(path), epochs=(1, 2))
    again.set_model(model)
    again.on_train_begin()
    again.on_epoch_end(1)
    epochs = [int(r["epoch"]) for r in read_csv(path)]
    assert sorted(set(epochs)) == [0, 1, 2] and epochs.count(2) == epochs.count(0)


# --- divergence ---------------------------------------------------------------------------------------------


class _PoisonWeights(keras.callbacks.Callback):
    """Makes the weights non-finite at the end of epoch `at_epoch`, as a diverging optimiser would."""

    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at_epoch:
            kernel = self.model.trainable_weights[0]
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(FloatingPointError, match="diverged"):
        train("plain_cnn_tiny", epochs=3, output_dir=str(run), callbacks=[_PoisonWeights(0)], **TINY)
    assert not (run / "best.keras").exists() and not (run / "metrics.json").exists()
    assert not (run / "backup" / "latest.weights.h5").exists()


def test_a_diverged_run_keeps_its_last_finite_epoch_resumable(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(FloatingPointError, match=r"after epoch 1 .*\(learning_rate\)"):
        train("plain_cnn_tiny", epochs=3, output_dir=str(run), callbacks=[_PoisonWeights(1)], **TINY)
    assert json.load(open(run / "backup" / "training_metadata.json"))["epoch"] == 1
    assert all(np.all(np.isfinite(w)) for w in keras.saving.load_model(run / "best.keras").get_weights())
    epochs = EpochRecorder()
    resume(str(run), verbose=0, callbacks=[epochs])
    assert epochs.seen == [1, 2] and _rows(run / "history.csv") == [0, 1, 2]


def test_a_damaged_backup_is_one_clear_error(finished_run, tmp_path, capsys):
    run = _copy(finished_run, tmp_path)
    os.remove(run / "metrics.json")
    (run / "backup").mkdir()
    (run / "backup" / "latest.weights.h5").write_bytes(b"not hdf5")
    (run / "backup" / "training_metadata.json").write_text('{"epoch": 1}')
    assert cli.main(["train", "--output-dir", str(run), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be read" in err[0] and "--overwrite" in err[0]


@pytest.mark.parametrize("argument,value", [("learning_rate", float("inf")), ("learning_rate", float("nan")),
                                            ("learning_rate", 0.0), ("weight_decay", float("nan")),
                                            ("weight_decay", -1e-4)])
def test_non_finite_hyperparameters_are_rejected(tmp_path, argument, value):
    with pytest.raises(ValueError, match=f"`{argument}` must be a finite number"):
        train("plain_cnn_tiny", epochs=1, output_dir=str(tmp_path / "r"), **{argument: value})
    assert not (tmp_path / "r").exists()


# --- disk full ----------------------------------------------------------------------------------------------


def test_disk_full_keeps_the_last_backup_and_prints_one_line(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    original = keras.Model.save_weights
    calls = []

    def save_weights(self, filepath, *args, **kwargs):
        calls.append(filepath)
        if len(calls) == 2:  # the second epoch's backup: half a file, then the disk is full
            open(filepath, "wb").write(b"\x89HDF")
            raise OSError(errno.ENOSPC, "No space left on device", filepath)
        return original(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", save_weights)
    rc = cli.main(["train", "--model", "plain_cnn_tiny", "--epochs", "3", "--output-dir", str(run), "--verbose", "0",
                   "--set", "widths=(8, 8, 16)"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "no space left" in err[0].lower() and "intact" in err[0]
    monkeypatch.undo()
    assert json.load(open(run / "backup" / "training_metadata.json"))["epoch"] == 1
    model = keras.saving.load_model(run / "best.keras")
    model.load_weights(run / "backup" / "latest.weights.h5")  # the earlier backup is whole
    assert not [n for n in os.listdir(run / "backup") if n.startswith(".")]


# --- one line for every expected failure --------------------------------------------------------------------


@pytest.mark.parametrize("argv,needle", [
    (["train", "--output-dir", "{tmp}/nope", "--resume"], "holds no lacnn-zoo run"),
    (["train", "--dataset", "cifar10", "--data-dir", "{tmp}/tfds", "--output-dir", "{tmp}/c"], "not prepared"),
    (["train", "--augment", "crop-flip", "--output-dir", "{tmp}/a"], "--augment applies to TFDS"),
    (["train", "--image-size", "8", "8", "--output-dir", "{tmp}/i"], "--image-size applies to TFDS"),
    (["train", "--output-dir", "{tmp}/file"], "is a file"),
    (["train", "--output-dir", "{tmp}/file/run"], "file' is a file, not a folder"),
    (["train", "--output-dir", "{tmp}/x", "--resume", "--overwrite"], "exclude each other"),
    (["train", "--output-dir", "/proc/lacnn-zoo-run"], "Run folder '/proc/lacnn-zoo-run' cannot be created or written: "
                                                        "'/proc' does not accept new files"),
])
def test_expected_failures_print_one_line(tmp_path, capsys, argv, needle):
    (tmp_path / "file").write_text("a file, not a folder")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "run.json").write_text(json.dumps({"model": "plain_cnn_tiny"}))
    rc = cli.main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("lacnn-zoo: error:") and needle in err[0], err
    assert not (tmp_path / "c").exists() and not (tmp_path / "a").exists()


def test_bad_verbose_is_an_argument_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--verbose", "foo"])
    assert exit_info.value.code == 2 and "--verbose takes auto, 0, 1 or 2" in capsys.readouterr().err


def test_an_unexpected_error_is_one_line_and_a_traceback_with_debug(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise TypeError("a bug")

    monkeypatch.setattr(training, "train", broken)
    assert cli.main(["train"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error: TypeError: a bug" in err[0] and "--debug" in err[0]
    with pytest.raises(TypeError):
        cli.main(["train", "--debug"])


# --- hostile or damaged files: one line from every command that loads them, nothing executed -----------------


def _rewrite_keras(path, edit):
    """Rewrite the config.json inside a .keras archive with `edit(config) -> config`."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    members["config.json"] = json.dumps(edit(json.loads(members["config.json"]))).encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def _hostile_models(folder):
    """.keras files a user might be handed: a Lambda, an os.system activation, damaged weights, a truncated zip."""
    inputs = keras.Input((8, 8, 1), name="images")
    x = keras.layers.Lambda(lambda t: t * 2)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(10, name="logits")(x)).save(folder / "lambda.keras")
    plain = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10, name="logits")])
    plain.save(folder / "system.keras")
    marker = folder / "pwned"

    def system_activation(config):
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "Dense":
                layer["config"]["activation"] = {"module": "os", "class_name": "function",
                                                 "config": "system", "registered_name": "function"}
        return config

    _rewrite_keras(folder / "system.keras", system_activation)
    plain.save(folder / "weights.keras")
    import zipfile

    with zipfile.ZipFile(folder / "weights.keras") as z:
        members = {name: z.read(name) for name in z.namelist()}
    members["model.weights.h5"] = b"not an h5 file"
    with zipfile.ZipFile(folder / "weights.keras", "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    data = (folder / "lambda.keras").read_bytes()
    (folder / "truncated.keras").write_bytes(data[: len(data) // 2])
    return ["lambda", "system", "weights", "truncated"], marker


@pytest.mark.parametrize("command", ["evaluate", "predict", "export"])
def test_a_hostile_or_damaged_model_is_one_line_for_every_command(finished_run, tmp_path, capsys, command):
    from export.__main__ import main as export_main

    names, marker = _hostile_models(tmp_path)
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), "uint8")).save(tmp_path / "digit.png")
    for name in names:
        run = tmp_path / f"run_{name}"
        shutil.copytree(finished_run, run)
        shutil.copy(tmp_path / f"{name}.keras", run / "best.keras")
        if command == "export":
            rc, prefix = export_main([str(run / "best.keras"), "--out", str(tmp_path / f"out_{name}")]), "export"
        else:
            argv = (["evaluate", str(run)] if command == "evaluate"
                    else ["predict", str(run), str(tmp_path / "digit.png")])
            rc, prefix = cli.main(argv), "lacnn-zoo"
        err = capsys.readouterr().err.strip().splitlines()
        assert rc in (1, 2) and len(err) == 1 and err[0].startswith(f"{prefix}: error:"), (name, err)
        assert "internal error" not in err[0] and not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a protobuf at all \x00\x01", "truncated"])
def test_validate_answers_a_damaged_artifact_in_one_line(finished_run, tmp_path, capsys, content):
    from export.validate import main

    if content == "truncated":
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        data = helper.make_model(graph).SerializeToString()
        content = data[: len(data) // 2]
        assert onnx  # the real library wrote the prefix
    (tmp_path / "model.onnx").write_bytes(content)
    assert main([str(tmp_path / "model.onnx"), "--dataset", "digits"]) in (1, 2)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("export.validate: error:") and "internal error" not in err[0], err


# --- export ---------------------------------------------------------------------------------------------------


def test_export_never_deletes_the_source_or_foreign_files(finished_run, tmp_path):
    from export import export_model

    folder = tmp_path / "q"
    folder.mkdir()
    shutil.copy(finished_run / "best.keras", folder / "m.keras")
    before = _tree(folder)
    with pytest.raises(FileExistsError, match="inside the destination"):
        export_model(folder / "m.keras", folder, overwrite=True, format="onnx")
    other = tmp_path / "other"
    other.mkdir()
    (other / "report.pdf").write_bytes(b"%PDF")
    with pytest.raises(FileExistsError, match="report.pdf"):
        export_model(finished_run / "best.keras", other, overwrite=True, format="onnx")
    assert _tree(folder) == before and (other / "report.pdf").read_bytes() == b"%PDF"


def test_export_lock_and_interrupted_replace(finished_run, tmp_path):
    from export import export_model

    dest = tmp_path / "dest"
    with FolderLock(tmp_path / ".dest.lock", "test"):
        with pytest.raises(LockedError):
            export_model(finished_run / "best.keras", dest, format="onnx")
    assert not dest.exists()
    export_model(finished_run / "best.keras", dest, format="onnx")
    first = _tree(dest)
    # A kill between moving the old export aside and renaming the new one in, plus a half-written export.
    os.rename(dest, tmp_path / ".dest.lacnn-old-k1ll3d")
    (tmp_path / ".dest.lacnn-export-half").mkdir()
    with pytest.raises(FileExistsError, match="already holds an export"):  # the previous export is put back first
        export_model(finished_run / "best.keras", dest, format="onnx")
    assert _tree(dest) == first
    assert sorted(os.listdir(tmp_path)) == ["dest"]


def test_export_touches_no_lookalike_and_no_symlink(finished_run, tmp_path):
    from export import export_model

    lookalikes = [tmp_path / ".dest.export-notes", tmp_path / ".dest.old-keep"]
    for folder in lookalikes:
        folder.mkdir()
        (folder / "mine.txt").write_text("mine")
    export_model(finished_run / "best.keras", tmp_path / "dest", format="onnx", batch_sizes=(1,))
    assert all((folder / "mine.txt").read_text() == "mine" for folder in lookalikes)
    assert oct(os.stat(tmp_path / "dest").st_mode & 0o777) != oct(0o700)  # readable by a serving user
    (tmp_path / "link").symlink_to(tmp_path / "dest")
    with pytest.raises(FileExistsError, match="symbolic link"):
        export_model(finished_run / "best.keras", tmp_path / "link", format="onnx", overwrite=True)


def test_a_file_dropped_into_the_destination_during_an_export_is_kept(finished_run, tmp_path, monkeypatch):
    import export.core as core

    dest = tmp_path / "dest"
    core.export_model(finished_run / "best.keras", dest, format="onnx", batch_sizes=(1,))
    original = core._parity

    def parity_then_drop(*args, **kwargs):
        (dest / "report.pdf").write_bytes(b"%PDF")  # a user saves a file into the old export meanwhile
        return original(*args, **kwargs)

    monkeypatch.setattr(core, "_parity", parity_then_drop)
    with pytest.raises(FileExistsError, match="report.pdf"):
        core.export_model(finished_run / "best.keras", dest, format="onnx", overwrite=True, batch_sizes=(1,))
    assert (dest / "report.pdf").read_bytes() == b"%PDF" and (dest / "model.onnx").exists()
    assert sorted(os.listdir(tmp_path)) == ["dest"]


def test_export_cli_one_line(tmp_path, capsys):
    from export.__main__ import main

    assert main([str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("export: error:") and "folder" in err[0]


def test_a_write_that_cannot_fit_is_refused_before_it_starts(tmp_path, monkeypatch):
    from lacnn_zoo import io

    previous = b"the previous checkpoint"
    (tmp_path / "best.keras").write_bytes(previous)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(io.shutil, "disk_usage", lambda _: usage._replace(free=1000))
    with pytest.raises(OSError) as raised:
        with io.atomic_path(tmp_path / "best.keras", need_bytes=5000) as tmp:
            open(tmp, "wb").write(b"x" * 5000)
    assert raised.value.errno == errno.ENOSPC and "5,000 bytes needed, 1,000 free" in str(raised.value)
    assert os.listdir(tmp_path) == ["best.keras"] and (tmp_path / "best.keras").read_bytes() == previous


@pytest.mark.parametrize("extra,needle", [
    (["--calibration-images", "5"], "--calibration-images only takes effect with --quantize int8"),
    (["--max-accuracy-drop", "2", "--dataset", "digits"], "--max-accuracy-drop, --dataset only take effect with"),
    (["--no-verify", "--rtol", "1e-3"], "--rtol only takes effect with the parity check"),
    (["--format", "saved_model", "--opset", "15"], "--opset only takes effect with an ONNX format"),
])
def test_export_refuses_options_that_cannot_take_effect(finished_run, tmp_path, capsys, extra, needle):
    from export.__main__ import main

    assert main([str(finished_run / "best.keras"), "--out", str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where,error", [
    ("onnx", RuntimeError("tf2onnx: failed to write the graph")),  # what tf2onnx says on a full 1 MiB tmpfs
    ("saved_model", RuntimeError("ResourceExhaustedError: ... [Op:SaveV2]")),  # TensorFlow's words for it
])
@pytest.mark.parametrize("fresh", [False, True], ids=["existing-destination", "new-destination"])
def test_a_full_disk_during_export_is_said_to_be_one(exported_run, tmp_path, monkeypatch, capsys, where, error,
                                                     fresh):
    import export.formats
    from export.__main__ import main
    from lacnn_zoo import io

    finished_run, exported = exported_run
    dest = tmp_path / "dest"
    if not fresh:
        shutil.copytree(exported, dest)  # a previous export of the run, as the zoo wrote it
    before = None if fresh else _tree(dest)
    real_usage = io.shutil.disk_usage

    def fail(*args, **kwargs):  # the write fills the disk, then the writer fails in its own words
        monkeypatch.setattr(io.shutil, "disk_usage", lambda path: real_usage(path)._replace(free=4096))
        raise error

    if where == "onnx":
        monkeypatch.setattr(keras.Model, "export", fail)
    else:
        monkeypatch.setattr(export.formats, "_write_saved_model", fail)
    assert main([str(finished_run / "best.keras"), "--out", str(dest), *([] if fresh else ["--overwrite"]),
                 "--format", "onnx" if where == "onnx" else "both"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    kept = "nothing was written" if fresh else "existing destination is unchanged"
    assert len(err) == 1 and "No space left" in err[0] and kept in err[0], err
    assert "tf2onnx could not convert" not in err[0] and "internal error" not in err[0]
    assert (not dest.exists() if fresh else _tree(dest) == before)
    assert not [p for p in os.listdir(tmp_path) if "lacnn-export" in p]


def test_an_export_made_with_relative_paths_validates_from_anywhere(finished_run, tmp_path, monkeypatch):
    from export.__main__ import main
    from export.validate import validate

    project = tmp_path / "project"
    shutil.copytree(finished_run, project / "e_plain")
    monkeypatch.chdir(project)
    assert main(["e_plain/best.keras", "--out", "exp", "--format", "onnx"]) == 0
    manifest = json.load(open(project / "exp" / "manifest.json"))
    assert os.path.isabs(manifest["source"]) and manifest["source_relative"] == os.path.join("..", "e_plain",
                                                                                              "best.keras")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert validate(str(project / "exp" / "model.onnx"))["keras_top1"] is not None
    moved = tmp_path / "moved"
    os.rename(project, moved)  # the run and its export moved together: the path beside the manifest still holds
    result = validate(os.path.join("..", "moved", "exp", "model.onnx"))
    assert result["keras_model"] == str(moved / "e_plain" / "best.keras") and result["keras_top1"] is not None


@pytest.mark.parametrize("argv,needle", [
    (["{tmp}/folder.onnx"], "is a folder"),
    (["--keras", "{tmp}"], "is a folder"),
    (["--overwrite"], "--overwrite replaces the --out file"),
    (["--dataset", "digits", "--data-dir", "{tmp}"], "--data-dir applies to TFDS data sets"),
    (["--out", "/proc/v.json"], "'/proc' does not accept new files"),
])
def test_validate_refuses_what_cannot_take_effect_or_be_written(exported_run, tmp_path, capsys, argv, needle):
    from export.validate import main

    _, exported = exported_run
    (tmp_path / "folder.onnx").mkdir()
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    artifact = [] if argv[0].endswith(".onnx") else [str(exported / "model.onnx")]
    assert main([*artifact, *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and "No space" not in err[0], err


@pytest.mark.parametrize("argv,needle", [
    (["--out", "{tmp}/afile.txt/x"], "is under '{tmp}/afile.txt', which is a file"),
    (["--out", "/proc/sub/x"], "'/proc' does not accept new files"),
    (["--out", "{tmp}/o", "--quantize", "int8", "--data-dir", "{tmp}"], "--data-dir applies to TFDS data sets"),
])
def test_export_names_the_true_cause(finished_run, tmp_path, capsys, argv, needle):
    from export.__main__ import main

    (tmp_path / "afile.txt").write_text("the user's notes")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main([str(finished_run / "best.keras"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle.replace("{tmp}", str(tmp_path)) in err[0] and "Errno" not in err[0], err
    assert sorted(os.listdir(tmp_path)) == ["afile.txt"]
    assert (tmp_path / "afile.txt").read_text() == "the user's notes"


def test_a_write_that_fails_for_another_cause_is_not_called_a_full_disk(tmp_path):
    from lacnn_zoo.io import is_disk_full

    assert not is_disk_full(FileNotFoundError(errno.ENOENT, "No such file or directory", "/proc/x"), "/proc")
    assert not is_disk_full(OSError("Unable to create file (errno = 13, error message = 'Permission denied')"),
                            "/proc")
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"), str(tmp_path))
    # The errno decides, not the message: a localised full disk or quota is one, an English-sounding other is not.
    assert is_disk_full(OSError(errno.ENOSPC, "Kein Speicherplatz mehr verfügbar"), str(tmp_path))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota dépassé"), str(tmp_path))
    assert not is_disk_full(OSError(errno.EACCES, "No space left on device (but permission denied)"), str(tmp_path))
    # A converter's own error raised from a localised ENOSPC is a full disk too (tf2onnx, Keras wrap it).
    try:
        try:
            raise OSError(errno.ENOSPC, "Plus d'espace disponible sur le périphérique")
        except OSError as cause:
            raise RuntimeError("tf2onnx: failed to write the graph") from cause
    except RuntimeError as wrapped:
        assert is_disk_full(wrapped, str(tmp_path))


def test_one_non_finite_value_in_one_weight_makes_the_model_non_finite():
    """Every value of every weight must be finite (all, not any): one NaN in one kernel is enough to refuse."""
    from lacnn_zoo import build_model
    from lacnn_zoo.training.callbacks import weights_are_finite

    model = build_model("plain_cnn_tiny", input_shape=(8, 8, 1), widths=(8, 8, 16))
    assert weights_are_finite(model)
    kernel = model.trainable_weights[0]
    values = keras.ops.convert_to_numpy(kernel).copy()
    values.flat[0] = np.inf
    kernel.assign(values)
    assert not weights_are_finite(model)


def test_export_keeps_the_users_empty_folder_and_names_what_is_not_an_export(exported_run, tmp_path):
    import stat

    from export import export_model

    finished_run, exported = exported_run
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o2775)
    before = os.stat(out)
    export_model(finished_run / "best.keras", out, format="onnx")
    after = os.stat(out)
    assert (after.st_ino, stat.S_IMODE(after.st_mode)) == (before.st_ino, 0o2775)
    assert {"model.onnx", "manifest.json"} <= set(os.listdir(out))
    export_model(finished_run / "best.keras", out, format="onnx", overwrite=True)  # the zoo's own: replaced
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o2775  # with the mode the folder had
    # A file, or a folder of the user's: refused for that reason, never with advice to pass overwrite.
    afile = tmp_path / "afile.txt"
    afile.write_text("mine")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("chapter 1")
    for target, needle in ((afile, "is not a folder"), (mine, r"did not write \(thesis.txt\)")):
        with pytest.raises(FileExistsError, match=needle) as raised:
            export_model(finished_run / "best.keras", target, format="onnx")
        assert "pass overwrite" not in str(raised.value)
    assert afile.read_text() == "mine" and os.listdir(mine) == ["thesis.txt"]


@pytest.mark.parametrize("user_file", ["backup/mine.txt", "tensorboard/mine.txt", "tensorboard/train/notes.txt",
                                       "layer_attention.png", "grad_norms.csv"])
def test_overwrite_never_takes_a_users_file_inside_a_runs_folders_or_under_a_name_the_run_did_not_write(
        finished_run, tmp_path, user_file):
    """The finished run's marker lists what it wrote (a plain CNN writes no layer_attention.png, train no
    grad_norms.csv); backup/ and tensorboard/ hold only Keras' backup files and TensorFlow's event files."""
    run = _copy(finished_run, tmp_path)
    os.makedirs(os.path.dirname(run / user_file), exist_ok=True)
    (run / user_file).write_text("mine")
    before = _tree(run)
    with pytest.raises(FileExistsError, match=re.escape(os.path.basename(user_file))):
        train("plain_cnn_tiny", epochs=1, output_dir=str(run), overwrite=True, **TINY)
    assert _tree(run) == before


def test_overwrite_replaces_a_finished_run_that_holds_only_its_own_files(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    marker = json.load(open(run / ".lacnn-zoo"))
    assert {"run.json", "history.csv", "best.keras", "metrics.json"} <= set(marker["files"])
    assert "layer_attention.png" not in marker["files"]
    train("plain_cnn_tiny", epochs=1, output_dir=str(run), overwrite=True, **TINY)
    assert (run / "metrics.json").exists()


def test_export_over_another_commands_folder_names_what_it_is(finished_run, tmp_path):
    from export import export_model

    run = _copy(finished_run, tmp_path)
    with pytest.raises(FileExistsError, match=r"it is a lacnn-zoo run folder, not an export folder"):
        export_model(finished_run / "best.keras", run, format="onnx", overwrite=True)
    assert _tree(run) == _tree(finished_run)


@pytest.fixture(scope="module")
def killed_after_one_epoch(tmp_path_factory):
    """A run of 2 epochs killed as its second began: epoch 0 is in history.csv, best.keras and the backup."""
    run = tmp_path_factory.mktemp("killed") / "run"
    with pytest.raises(KeyboardInterrupt):
        train("plain_cnn_tiny", epochs=2, output_dir=str(run), callbacks=[_KillAfterFirstEpoch()], tensorboard=False,
              **TINY)
    return run


@pytest.mark.parametrize("damage,needle", [
    (b"", "is damaged: it is empty"), (b"\x9f\x00\xff", "not UTF-8"), (b"[1, 2, 3]", "holds a JSON list"),
    (b'{"best": "abc", "tie": null}', "'best' is 'abc', not a number"), (b'{"tie": 0.5}', "no number as 'best'"),
])
def test_a_damaged_best_checkpoint_record_names_its_file_on_resume(killed_after_one_epoch, tmp_path, capsys, damage,
                                                                   needle):
    run = _copy(killed_after_one_epoch, tmp_path)
    (run / "best.keras.json").write_bytes(damage)
    code = cli.main(["train", "--output-dir", str(run), "--resume", "--verbose", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "best.keras.json" in err[0] and needle in err[0], err


def test_a_history_shorter_than_its_backup_is_refused_not_silently_cut(killed_after_one_epoch, tmp_path, capsys):
    """No kill leaves fewer history rows than finished epochs: resuming would lose epoch 0's row for good."""
    run = _copy(killed_after_one_epoch, tmp_path)
    header = (run / "history.csv").read_text().splitlines()[0]
    (run / "history.csv").write_text(header + "\n")
    before = _tree(run)
    code = cli.main(["train", "--output-dir", str(run), "--resume", "--verbose", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "records 1 finished epoch" in err[0], err
    assert _tree(run) == before


def test_ownership_needs_the_marker_or_the_signature_not_zoo_named_files(tmp_path):
    folder = tmp_path / "looks_like_a_run"
    folder.mkdir()
    for name in ("best.keras", "history.csv", "metrics.json"):  # zoo-like names, written by someone else
        (folder / name).write_text("not the zoo's")
    assert not is_owned(str(folder), "run", "run.json")
    with pytest.raises(ForeignFilesError, match="not a lacnn-zoo run"):
        check_replaceable(str(folder), "run", lambda name: True, "run.json")
    mark_owned(str(folder), "export")  # the marker of another kind does not make it a run
    assert not is_owned(str(folder), "run", "run.json") and is_owned(str(folder), "export", "manifest.json")
    mark_owned(str(folder), "run")
    assert is_owned(str(folder), "run", "run.json")
    assert sorted(check_replaceable(str(folder), "run", lambda name: True, "run.json")) == sorted(os.listdir(folder))


def test_the_lock_is_taken_on_the_file_that_is_there_after_a_replace(tmp_path, monkeypatch):
    import fcntl

    path = tmp_path / LOCK_NAME
    real_flock, calls = fcntl.flock, []

    def flock_after_a_replace(fd, operation):
        if not calls:  # another process removes and recreates the lock file between our open and our flock
            os.remove(path)
            path.write_text("")
        calls.append(fd)
        return real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_a_replace)
    with FolderLock(str(path), "test") as lock:
        assert len(calls) == 2  # retried on the new file
        assert os.path.samestat(os.fstat(lock._fd), os.stat(path))
        assert path.read_text() == str(os.getpid())


@pytest.mark.parametrize("suffix", ["", ".keras", ".weights.h5"])
def test_the_zoos_own_temporaries_are_recognised_as_its_own(tmp_path, suffix):
    with atomic_path(tmp_path / f"best{suffix or '.json'}", suffix=suffix) as tmp:
        assert is_temporary(os.path.basename(tmp))
        open(tmp, "w").close()
    for name in ("best.keras", ".best.keras.tmp", "notes.abcdef12.lacnn-tmp", ".x.abcdef1.lacnn-tmp"):
        assert not is_temporary(name), name
    # The earlier version's tempfile names count only for a file the folder's owner writes.
    known = {"run.json", "best.keras"}.__contains__
    assert is_temporary(".run.json.k2j4h5g6.tmp", known) and is_temporary(".best.keras.k2j4h5g6.tmp.keras", known)
    assert not is_temporary(".notes.k2j4h5g6.tmp", known) and not is_temporary(".run.json.k2j4h5g6.tmp")


def test_overwrite_takes_a_stale_temporary_of_the_zoo_in_its_own_run_folder(tmp_path):
    """A kill mid-write leaves atomic_path's temporary in a run folder: still the zoo's own, so replaceable."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.json").write_text("{}")
    mark_owned(str(folder), "run")
    known = {"run.json", "best.keras"}.__contains__
    with atomic_path(folder / "best.keras", suffix=".keras") as tmp:  # the writer is "killed" while tmp is there
        open(tmp, "wb").close()
        name = os.path.basename(tmp)
        assert is_temporary(name) and not known(name)
        entries = check_replaceable(str(folder), "run", known, "run.json")
        assert sorted(entries) == sorted([".lacnn-zoo", "run.json", name])


@pytest.mark.parametrize("overwrite", [False, True])
def test_an_output_file_that_is_a_symbolic_link_is_refused_and_left_alone(tmp_path, overwrite):
    from lacnn_zoo.io import check_output_file

    target = tmp_path / "target.txt"
    target.write_text("mine")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    with pytest.raises(FileExistsError, match="symbolic link"):
        check_output_file(link, option="--out", overwrite=overwrite)
    assert os.path.islink(link) and os.readlink(link) == str(target) and target.read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["link.txt", "target.txt"]


def test_a_write_needs_exactly_its_bytes_free(tmp_path, monkeypatch):
    """ENOSPC when the disk has less than `need_bytes` free; exactly `need_bytes` free is enough."""
    from lacnn_zoo import io

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(io.shutil, "disk_usage", lambda _: usage._replace(free=4999))
    with pytest.raises(OSError) as raised:
        with io.atomic_path(tmp_path / "best.keras", need_bytes=5000) as tmp:
            open(tmp, "wb").write(b"x" * 5000)
    assert raised.value.errno == errno.ENOSPC and not os.listdir(tmp_path)
    monkeypatch.setattr(io.shutil, "disk_usage", lambda _: usage._replace(free=5000))
    with io.atomic_path(tmp_path / "best.keras", need_bytes=5000) as tmp:
        open(tmp, "wb").write(b"x" * 5000)
    assert os.listdir(tmp_path) == ["best.keras"] and (tmp_path / "best.keras").read_bytes() == b"x" * 5000


def test_an_export_into_an_empty_folder_puts_the_marker_first_and_the_manifest_last(tmp_path, monkeypatch):
    """A kill while the export moves in leaves a folder the zoo may replace (its marker is there before any
    artifact) and never one with a manifest but not every artifact (the manifest comes last)."""
    import export.core as core

    tmp, out = tmp_path / ".out.lacnn-export-x", tmp_path / "out"
    tmp.mkdir()
    out.mkdir()
    names = ["a.onnx", "manifest.json", "model.onnx", "model.tflite", "z_saved_model"]
    for name in names:
        (tmp / name).write_text(name)
    real_rename, moved = os.rename, []

    def recording_rename(src, dst, *args, **kwargs):
        if os.path.dirname(os.fspath(dst)) == str(out):
            moved.append((os.path.basename(dst), os.path.exists(out / ".lacnn-zoo")))
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(core.os, "rename", recording_rename)
    core._fill_in_place(str(tmp), str(out))
    assert sorted(n for n, _ in moved) == names and moved[-1][0] == "manifest.json"
    assert all(marked for _, marked in moved)
    assert is_owned(str(out), "export") and not tmp.exists()
    assert all((out / name).read_text() == name for name in names)


def test_a_path_under_a_file_is_one_line_naming_the_file_and_the_file_is_kept(tmp_path, capsys):
    from lacnn_zoo.cli import main

    (tmp_path / "notes").write_text("mine")
    with pytest.raises(OSError, match=r"cannot be written: '.*notes' is a file, not a folder"):
        with atomic_path(tmp_path / "notes" / "runs" / "best.keras"):
            raise AssertionError("the write must not start")
    assert main(["digits-folder", str(tmp_path / "notes" / "photos"), "--per-class", "1", "--size", "8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "notes' is a file, not a folder" in err[0] and "Errno" not in err[0], err
    assert (tmp_path / "notes").read_text() == "mine" and os.listdir(tmp_path) == ["notes"]

