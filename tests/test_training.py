import csv
import json
import os

import keras
import numpy as np
import pytest
from conftest import EpochRecorder

from lacnn_zoo import cli
from lacnn_zoo.training import resume, train


def _history(run):
    with open(os.path.join(run, "history.csv")) as f:
        return list(csv.DictReader(f))


class _Crash(keras.callbacks.Callback):
    """Interrupts the run once epoch `at_epoch` (0-based) is completely saved: as the next one begins."""

    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at_epoch + 1:
            raise KeyboardInterrupt("simulated interruption")


def test_train_writes_the_run_folder(tmp_path):
    run = str(tmp_path / "run")
    result = train("plain_cnn_tiny", epochs=2, output_dir=run, verbose=0)
    for name in ("run.json", "history.csv", "best.keras", "metrics.json"):
        assert os.path.exists(os.path.join(run, name)), name
    assert not os.path.exists(os.path.join(run, "backup"))  # removed once the run finished
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["params"] == result.model.count_params()
    assert metrics["time_per_epoch_s"] > 0 and metrics["epochs"] == 2
    assert [int(r["epoch"]) for r in _history(run)] == [0, 1]
    # The reported accuracy is the best checkpoint's, recomputed here from the saved file.
    from lacnn_zoo.data import load_digits

    data = load_digits(seed=0)
    best = keras.saving.load_model(os.path.join(run, "best.keras"))
    acc = np.mean(np.argmax(best.predict(data.test[0], verbose=0), -1) == data.test[1])
    assert acc == pytest.approx(metrics["test_accuracy"], abs=1e-6)


def test_existing_run_is_never_overwritten_unless_asked(tmp_path, capsys):
    run = str(tmp_path / "run")
    train("plain_cnn_tiny", epochs=1, output_dir=run, verbose=0)
    before = open(os.path.join(run, "metrics.json")).read()
    with pytest.raises(FileExistsError, match=r"Pass resume=True to continue it, overwrite=True to replace it, or "
                                              r"another output_dir\.$"):  # a Python caller gets the API's words
        train("plain_cnn_tiny", epochs=1, output_dir=run, verbose=0)
    assert cli.main(["train", "--model", "plain_cnn_tiny", "--epochs", "1", "--output-dir", run]) == 2
    assert capsys.readouterr().err.endswith(  # a command-line user gets the flags
        "Pass --resume to continue it, --overwrite to replace it, or another --output-dir.\n")
    assert open(os.path.join(run, "metrics.json")).read() == before
    with pytest.raises(ValueError, match="already finished"):
        train("plain_cnn_tiny", epochs=1, output_dir=run, resume=True, verbose=0)
    train("plain_cnn_tiny", epochs=1, output_dir=run, overwrite=True, seed=1, verbose=0)
    assert json.load(open(os.path.join(run, "run.json")))["seed"] == 1


def test_interrupted_run_resumes_from_the_saved_epoch(tmp_path):
    run = str(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        train("plain_cnn_tiny", epochs=4, output_dir=run, verbose=0, callbacks=[_Crash(at_epoch=1)])
    assert os.path.exists(os.path.join(run, "backup", "latest.weights.h5"))
    assert not os.path.exists(os.path.join(run, "metrics.json"))
    saved = keras.saving.load_model(os.path.join(run, "best.keras"))

    with pytest.raises(ValueError, match="different configuration.*epochs"):
        train("plain_cnn_tiny", epochs=5, output_dir=run, resume=True, verbose=0)

    epochs = EpochRecorder()
    result = resume(run, callbacks=[epochs], verbose=0)
    assert epochs.seen == [2, 3]  # continues after the two finished epochs, no rerun
    assert [int(r["epoch"]) for r in _history(run)] == [0, 1, 2, 3]
    assert result.metrics["epochs"] == 4
    assert saved.count_params() == result.model.count_params()


def test_resume_restores_weights_not_a_fresh_model(tmp_path):
    run = str(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        train("plain_cnn_tiny", epochs=3, output_dir=run, verbose=0, callbacks=[_Crash(at_epoch=1)])
    first_losses = [float(r["loss"]) for r in _history(run)]
    resume(run, verbose=0)
    resumed_loss = float(_history(run)[2]["loss"])
    # A fresh model would start near the first epoch's loss; a restored one continues to fall.
    assert resumed_loss < first_losses[0] and resumed_loss < 1.5 * first_losses[1]


def test_cli_list_and_bad_arguments(capsys):
    assert cli.main(["list", "resnet1*"]) == 0
    out = capsys.readouterr().out
    assert "resnet110" in out and "plain_cnn" not in out
    assert cli.main(["train", "--model", "resnt8"]) == 2
    assert "Did you mean" in capsys.readouterr().err
    assert cli.main(["train", "--model", "resnet8", "--set", "mixing=sum"]) == 2
    assert "mixing" in capsys.readouterr().err


def test_cli_train_and_resume(tmp_path, capsys):
    run = str(tmp_path / "cli")
    rc = cli.main(["train", "--model", "plain_cnn_tiny", "--epochs", "1", "--output-dir", run,
                   "--set", "widths=(8, 16, 16)", "--verbose", "0"])
    assert rc == 0 and "test accuracy" in capsys.readouterr().out
    stored = json.load(open(os.path.join(run, "run.json")))
    assert stored["overrides"] == {"widths": [8, 16, 16]}
    assert cli.main(["train", "--output-dir", run, "--resume"]) == 2  # finished runs are not resumed


def test_fine_tune_a_trained_backbone_under_a_new_head(tmp_path, capsys):
    import re

    plain = str(tmp_path / "plain")
    train("plain_cnn_tiny", epochs=1, output_dir=plain, verbose=0)
    source = keras.saving.load_model(os.path.join(plain, "best.keras"))
    run = str(tmp_path / "lacnn")
    capsys.readouterr()
    result = train("lacnn_static_vector_tiny", epochs=1, output_dir=run, verbose=2,
                   init_weights=os.path.join(plain, "best.keras"), freeze_backbone=True)
    tuned = result.model
    shapes = {layer.name: [w.shape for w in layer.weights] for layer in source.layers}
    matching = [layer for layer in tuned.layers if layer.weights and shapes.get(layer.name) == [
        w.shape for w in layer.weights]]
    copied = re.search(r"init_weights: copied (\d+) of the (\d+) layers", capsys.readouterr().out)
    assert copied and [int(n) for n in copied.groups()] == [len(matching), len([x for x in tuned.layers if x.weights])]
    backbone = [layer.name for layer in source.layers if layer.name.startswith("stage")]
    assert len(backbone) == 6
    for name in backbone:  # copied in, then frozen: identical after an epoch of training (BN statistics too)
        for got, want in zip(tuned.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)
    fresh = keras.saving.load_model(os.path.join(run, "best.keras"))
    head = fresh.get_layer("layer_attention").get_weights()
    assert result.metrics["trainable_params"] == sum(w.size for w in head)
    assert json.load(open(os.path.join(run, "run.json")))["freeze_backbone"] is True
    with pytest.raises(ValueError, match="shares no layer"):
        train("resnet8", epochs=1, output_dir=str(tmp_path / "r8"), verbose=0, overrides={"widths": (8, 8, 8)},
              init_weights=os.path.join(plain, "best.keras"))
    with pytest.raises(ValueError, match="init_weights"):
        train("resnet8", epochs=1, output_dir=str(tmp_path / "r9"), verbose=0, init_weights="missing.keras")


def test_a_run_started_before_a_default_changed_resumes_with_its_own_model(tmp_path):
    """Dynamic-Recurrent's readout default changed (final state -> attention): an earlier run resumes as it began."""
    run = str(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        train("lacnn_dynamic_recurrent_tiny", epochs=2, output_dir=run, verbose=0, tensorboard=False,
              overrides={"lstm_readout": "final_state"}, callbacks=[_Crash(at_epoch=0)])
    stored = json.load(open(os.path.join(run, "run.json")))
    assert stored.pop("model_defaults") == 2
    stored["overrides"] = {}  # what the earlier release wrote: no knob, no generation
    with open(os.path.join(run, "run.json"), "w") as f:
        json.dump(stored, f)
    result = resume(run, verbose=0, tensorboard=False)
    heads = [layer for layer in result.model.layers if hasattr(layer, "readout")]
    assert [h.readout for h in heads] == ["final_state"]
    assert result.metrics["resumed_after_epoch"] == 1


class _RawWeights(keras.callbacks.Callback):
    """The raw trainable weights after every optimizer step."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append([keras.ops.convert_to_numpy(w).copy() for w in self.model.trainable_weights])


def _polyak(steps, momentum=0.99):
    """Polyak averaging as Keras defines it: a_1 = w_1, a_k = m a_(k-1) + (1 - m) w_k."""
    average = steps[0]
    for weights in steps[1:]:
        average = [momentum * a + (1 - momentum) * w for a, w in zip(average, weights)]
    return average


def _accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))


def test_ema_validates_checkpoints_and_tests_the_average_of_the_raw_weights(tmp_path, digits):
    raw = _RawWeights()
    ema_run, plain_run = str(tmp_path / "ema"), str(tmp_path / "plain")
    result = train("plain_cnn_tiny", epochs=1, ema=True, output_dir=ema_run, verbose=0, callbacks=[raw])
    average = _polyak(raw.steps)
    best = keras.saving.load_model(os.path.join(ema_run, "best.keras"))
    for a, w in zip(average, best.trainable_weights):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(w), a, rtol=1e-4, atol=1e-6)
    for a, w in zip(average, result.model.trainable_weights):  # the returned model holds the average too
        np.testing.assert_allclose(keras.ops.convert_to_numpy(w), a, rtol=1e-4, atol=1e-6)
    assert max(np.abs(a - w).max() for a, w in zip(average, raw.steps[-1])) > 1e-2  # not the raw weights
    # Validation and the test metrics were measured on the averaged weights.
    assert float(_history(ema_run)[0]["val_accuracy"]) == pytest.approx(_accuracy(best, *digits.validation), abs=1e-6)
    metrics = json.load(open(os.path.join(ema_run, "metrics.json")))
    assert metrics["test_accuracy"] == pytest.approx(_accuracy(best, *digits.test), abs=1e-6)
    plain = train("plain_cnn_tiny", epochs=1, output_dir=plain_run, verbose=0).metrics
    assert _history(plain_run)[0]["loss"] == _history(ema_run)[0]["loss"]  # the same training ...
    assert plain["test_loss"] != pytest.approx(metrics["test_loss"], rel=1e-3)  # ... another model tested


class _StateAtStart(keras.callbacks.Callback):
    """The optimizer's averages and the model's weights as the first epoch of a (resumed) run begins."""

    def on_epoch_begin(self, epoch, logs=None):
        if not hasattr(self, "averages"):
            self.averages = [keras.ops.convert_to_numpy(v) for v in self.model.optimizer.variables
                             if v.path.endswith("_average")]
            self.weights = [keras.ops.convert_to_numpy(w) for w in self.model.trainable_weights]


def test_resumed_ema_run_continues_the_raw_weights_and_their_average(tmp_path):
    run, raw = str(tmp_path / "run"), _RawWeights()
    with pytest.raises(KeyboardInterrupt):
        train("plain_cnn_tiny", epochs=2, ema=True, output_dir=run, verbose=0, callbacks=[raw, _Crash(at_epoch=0)])
    start = _StateAtStart()
    resume(run, callbacks=[start], verbose=0)
    assert len(start.averages) == len(raw.steps[-1])
    for a, b in zip(start.averages, _polyak(raw.steps)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for a, b in zip(start.weights, raw.steps[-1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # Keras swaps by sums: float32 round-off
