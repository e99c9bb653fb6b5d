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
    with pytest.raises(FileNotFoundError, match="init_weights.*does not exist"):
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


def test_ema_validates_both_models_and_keeps_the_better_while_the_raw_model_trains_as_without(tmp_path, digits):
    """With ema=True the raw model trains and is validated exactly as without it (its columns bit for bit: its
    batch-norm statistics are its own), the averaged model is validated beside it (val_ema_*), and best.keras is
    the better of the two at the best epoch, as best.keras.json and metrics.json say; it is what was tested."""
    raw = _RawWeights()
    ema_run, plain_run = str(tmp_path / "ema"), str(tmp_path / "plain")
    tiny = dict(epochs=2, verbose=0, tensorboard=False, overrides={"widths": (8, 8, 16)})
    result = train("plain_cnn_tiny", ema=True, ema_decay=0.9, output_dir=ema_run, callbacks=[raw], **tiny)
    train("plain_cnn_tiny", output_dir=plain_run, **tiny)
    with_ema, without = _history(ema_run), _history(plain_run)
    assert set(with_ema[0]) == {"epoch", "accuracy", "loss", "epoch_time_s", "val_accuracy", "val_loss",
                                "val_ema_accuracy", "val_ema_loss"}
    for a, b in zip(with_ema, without):
        assert [a[k] for k in ("accuracy", "loss", "val_accuracy", "val_loss")] == \
               [b[k] for k in ("accuracy", "loss", "val_accuracy", "val_loss")]
    # The better model of each epoch (accuracy, then loss), and the best of those (the first of exact ties).
    offers = [("ema", float(r["val_ema_accuracy"]), float(r["val_ema_loss"]))
              if (float(r["val_ema_accuracy"]), -float(r["val_ema_loss"])) > (float(r["val_accuracy"]),
                                                                               -float(r["val_loss"]))
              else ("raw", float(r["val_accuracy"]), float(r["val_loss"])) for r in with_ema]
    epoch = min(range(len(offers)), key=lambda e: (-offers[e][1], offers[e][2], e))
    sidecar = json.load(open(os.path.join(ema_run, "best.keras.json")))
    assert (sidecar["epoch"], sidecar["weights"], sidecar["best"], sidecar["tie"]) == (epoch + 1, *offers[epoch])
    best = keras.saving.load_model(os.path.join(ema_run, "best.keras"))
    assert _accuracy(best, *digits.validation) == pytest.approx(offers[epoch][1], abs=1e-6)  # the model that scored
    steps = raw.steps[:20 * (epoch + 1)]  # 1257 training digits in batches of 64: 20 steps an epoch
    kept = _polyak(steps, momentum=0.9) if offers[epoch][0] == "ema" else steps[-1]
    for w, k in zip(best.trainable_weights, kept):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(w), k, rtol=1e-4, atol=1e-6)
    metrics = json.load(open(os.path.join(ema_run, "metrics.json")))
    assert metrics["best_weights"] == sidecar["weights"] and metrics["best_val_accuracy"] == sidecar["best"]
    assert metrics["test_accuracy"] == pytest.approx(_accuracy(best, *digits.test), abs=1e-6)
    for a, b in zip(result.model.weights, best.weights):  # the returned model is best.keras
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def _fitted_with_ema(digits):
    """A small plain CNN fitted 10 steps with an averaging optimizer (decay 0.9) and the zoo's EMA validation
    (its sample: 100 training digits in batches of 32, the last one of 4)."""
    from lacnn_zoo import build_model
    from lacnn_zoo.training.ema import EMAValidation

    model = build_model("plain_cnn_tiny", input_shape=(8, 8, 1), num_classes=10, widths=(8, 8, 16))
    model.compile(optimizer=keras.optimizers.Adam(1e-2, use_ema=True, ema_momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    (x, y), (xv, yv) = digits.train, digits.validation
    ema = EMAValidation({"x": xv, "y": yv, "batch_size": 64}, x[:100], batch_size=32)
    model.fit(x[:320], y[:320], batch_size=32, epochs=1, validation_data=(xv, yv), callbacks=[ema], verbose=0)
    return model, ema


def _numpy(variables):
    return [keras.ops.convert_to_numpy(v).copy() for v in variables]


def _batchnorm_statistics_by_hand(model, x, batch_size):
    """From the definitions, for a plain CNN (a chain of ConvBNAct): each batch norm's input, batch by batch in
    training mode (normalised by that batch's mean and biased variance), and its mean and variance averaged
    over the batches in proportion to their sizes; in the order of the layers, mean then variance."""
    from lacnn_zoo.layers.conv import ConvBNAct

    blocks = [layer for layer in model.layers if isinstance(layer, ConvBNAct)]
    sums = [np.zeros(block.filters) for block in blocks for _ in (0, 1)]
    for start in range(0, len(x), batch_size):
        h = x[start:start + batch_size]
        for i, block in enumerate(blocks):
            z = keras.ops.convert_to_numpy(block.conv(h)).astype("float64")
            mean, var = z.mean(axis=(0, 1, 2)), z.var(axis=(0, 1, 2))
            sums[2 * i] += len(z) * mean
            sums[2 * i + 1] += len(z) * var
            gamma, beta = (keras.ops.convert_to_numpy(v) for v in (block.bn.gamma, block.bn.beta))
            h = block.activation((z - mean) / np.sqrt(var + block.bn.epsilon) * gamma + beta)
            h = keras.ops.convert_to_numpy(h).astype("float32")
    return [s / len(x) for s in sums]


def _statistics(model):
    from lacnn_zoo.layers.batchnorm import batchnorm_layers, moving_statistics

    return moving_statistics(batchnorm_layers(model))


def test_the_averaged_model_gets_the_batch_statistics_of_its_own_weights_and_the_raw_model_keeps_its_own(digits):
    model, ema = _fitted_with_ema(digits)
    optimizer = model.optimizer
    averages = _numpy(optimizer._model_variables_moving_average)
    # Keras' finalize put the averaged weights in the model at the end of fit; the callback gave them theirs.
    for w, a in zip(_numpy(optimizer._trainable_variables), averages):
        np.testing.assert_array_equal(w, a)
    expected = _batchnorm_statistics_by_hand(model, ema.sample, 32)
    for got, want in zip(_statistics(model), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # Raw weights and statistics of their own, then the averaged model, estimated afresh, and back.
    rng = np.random.default_rng(0)
    for w, a in zip(optimizer._trainable_variables, averages):
        w.assign(a + rng.normal(0, 0.05, a.shape).astype("float32"))
    from lacnn_zoo.layers.batchnorm import batchnorm_layers, set_moving_statistics

    set_moving_statistics(batchnorm_layers(model), [rng.uniform(0.5, 2, s.shape).astype("float32")
                                                    for s in expected])
    raw_weights, raw_statistics = _numpy(model.weights), _statistics(model)
    ema._statistics = None  # no cached estimate: this one is made now, from the raw model's state
    with ema.averaged():
        for w, a in zip(_numpy(optimizer._trainable_variables), averages):
            np.testing.assert_array_equal(w, a)
        for got, want in zip(_statistics(model), expected):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    for got, want in zip(_numpy(model.weights), raw_weights):  # bit for bit
        np.testing.assert_array_equal(got, want)
    for got, want in zip(_statistics(model), raw_statistics):
        np.testing.assert_array_equal(got, want)


def test_the_best_checkpoint_keeps_the_better_of_the_raw_and_the_averaged_model_and_says_which(digits, tmp_path):
    from lacnn_zoo.layers.batchnorm import batchnorm_layers, set_moving_statistics
    from lacnn_zoo.training.callbacks import AtomicBestCheckpoint

    model, ema = _fitted_with_ema(digits)
    for w in model.trainable_weights:  # raw weights and statistics other than the averaged model's
        w.assign(w * 1.5)
    set_moving_statistics(batchnorm_layers(model), [s * 2 for s in _statistics(model)])
    raw_weights = _numpy(model.weights)
    averages = _numpy(model.optimizer._model_variables_moving_average)
    path = str(tmp_path / "best.keras")
    checkpoint = AtomicBestCheckpoint(path, ema=ema)
    checkpoint.set_model(model)

    def epoch(number, raw, averaged):
        checkpoint.on_epoch_end(number, {"val_accuracy": raw[0], "val_loss": raw[1],
                                         "val_ema_accuracy": averaged[0], "val_ema_loss": averaged[1]})
        saved = keras.saving.load_model(path)
        return json.load(open(path + ".json")), saved

    sidecar, saved = epoch(0, (0.5, 1.0), (0.6, 1.2))
    assert (sidecar["weights"], sidecar["best"], sidecar["epoch"]) == ("ema", 0.6, 1)
    for w, a in zip(_numpy(saved.trainable_weights), averages):
        np.testing.assert_array_equal(w, a)
    for got, want in zip(_statistics(saved), _batchnorm_statistics_by_hand(saved, ema.sample, 32)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)  # with their own statistics
    for got, want in zip(_numpy(model.weights), raw_weights):  # the model trains on with its own
        np.testing.assert_array_equal(got, want)
    sidecar, _ = epoch(1, (0.7, 1.0), (0.7, 0.9))  # equal accuracy: the lower loss
    assert (sidecar["weights"], sidecar["best"], sidecar["epoch"]) == ("ema", 0.7, 2)
    sidecar, saved = epoch(2, (0.8, 1.0), (0.75, 0.5))
    assert (sidecar["weights"], sidecar["best"], sidecar["epoch"]) == ("raw", 0.8, 3)
    for got, want in zip(_numpy(saved.weights), raw_weights):
        np.testing.assert_array_equal(got, want)
    sidecar, _ = epoch(3, (0.79, 1.0), (0.78, 0.5))  # neither beats 0.8: nothing written
    assert (sidecar["weights"], sidecar["best"], sidecar["epoch"]) == ("raw", 0.8, 3)
    sidecar, _ = epoch(4, (0.8, 1.1), (0.8, 0.95))  # as accurate as the best so far, with a lower loss
    assert (sidecar["weights"], sidecar["best"], sidecar["tie"], sidecar["epoch"]) == ("ema", 0.8, 0.95, 5)
    sidecar, _ = epoch(5, (0.8, 0.95), (0.7, 0.1))  # an exact tie: the first is kept
    assert sidecar["epoch"] == 5
    del sidecar["tie"]  # a checkpoint recorded by an earlier release, without its loss: kept on ties, as then
    with open(path + ".json", "w") as f:
        json.dump(sidecar, f)
    checkpoint = AtomicBestCheckpoint(path, ema=ema)
    checkpoint.set_model(model)
    sidecar, _ = epoch(6, (0.8, 0.1), (0.5, 0.1))
    assert sidecar["epoch"] == 5


@pytest.mark.parametrize("argv,needle", [
    (["--ema-decay", "0.9"], "Add --ema,"),                 # without --ema it cannot take effect
    (["--no-ema", "--ema-decay", "0.9"], "Add --ema,"),
    (["--ema", "--ema-decay", "1"], "(0, 1)"),
    (["--ema", "--ema-decay", "0"], "(0, 1)"),
    (["--ema", "--ema-decay", "nan"], "(0, 1)"),
])
def test_ema_decay_is_refused_without_ema_or_outside_0_1(tmp_path, capsys, argv, needle):
    run = tmp_path / "run"
    try:
        code = cli.main(["train", "--output-dir", str(run), *argv])
    except SystemExit as e:  # the parser's own usage error
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ema-decay" in err[0] and needle in err[0] and not run.exists(), err


def test_ema_decay_is_refused_in_python_too(tmp_path):
    with pytest.raises(ValueError, match=r"`ema_decay` is the decay .* keeps none.* Add ema=True"):
        train("plain_cnn_tiny", ema_decay=0.9, output_dir=str(tmp_path / "a"))
    for value in (1.0, 0.0, 1.5, float("nan"), True):
        with pytest.raises(ValueError, match=r"`ema_decay` must be a number in \(0, 1\)"):
            train("plain_cnn_tiny", ema=True, ema_decay=value, output_dir=str(tmp_path / "b"))
    assert not os.listdir(tmp_path)


class _StopAtStart(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        raise KeyboardInterrupt("stopped before the first step")


def test_an_average_slower_than_the_run_is_warned_before_training(tmp_path, capsys):
    from lacnn_zoo.training.ema import window_warning

    ema = {"ema": True, "ema_decay": 0.999}
    line = window_warning(ema, 3, 20)  # a window of 1000 steps, a run of 60
    assert line.startswith("Warning: ema_decay 0.999 averages over about 1000 optimizer steps")
    assert "this run's 60 (3 epochs of 20 steps)" in line and "ema_decay=0.833 or lower" in line
    assert window_warning(ema, 50, 20) is None and window_warning({"ema": True, "ema_decay": 0.99}, 5, 20) is None
    assert window_warning({"ema": False, "ema_decay": 0.999}, 3, 20) is None
    with pytest.raises(KeyboardInterrupt):  # printed before the first step, on the zoo's warning path
        train("plain_cnn_tiny", epochs=3, ema=True, ema_decay=0.999, output_dir=str(tmp_path / "run"), verbose=2,
              overrides={"widths": (8, 8, 16)}, callbacks=[_StopAtStart()])
    warned = [line for line in capsys.readouterr().err.splitlines() if "ema_decay" in line]
    assert len(warned) == 1 and "averages over about 1000 optimizer steps" in warned[0], warned


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
        np.testing.assert_array_equal(a, b)  # the averaged model swapped in and out: the raw weights bit for bit


def test_a_run_with_relative_init_weights_resumes_from_another_folder(tmp_path, monkeypatch, capsys):
    from lacnn_zoo import build_model

    (tmp_path / "work").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    build_model("plain_cnn_tiny", widths=(8, 8, 16)).save("init.keras")
    with pytest.raises(KeyboardInterrupt):
        train("plain_cnn_tiny", epochs=2, output_dir="run", init_weights="init.keras", verbose=0,
              overrides={"widths": (8, 8, 16)}, callbacks=[_Crash(at_epoch=0)])
    assert json.load(open("run/run.json"))["init_weights"] == str(tmp_path / "work" / "init.keras")
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert cli.main(["train", "--output-dir", str(tmp_path / "work" / "run"), "--resume", "--verbose", "0"]) == 0, \
        capsys.readouterr().err


@pytest.mark.parametrize("argv,flag", [
    (["--train-split", "train"], "--train-split"), (["--test-split", "test"], "--test-split"),
])
def test_tfds_split_names_are_refused_for_an_image_folder(tmp_path, capsys, argv, flag):
    from test_image_folder import few_per_class, write_digits_folder

    write_digits_folder(tmp_path / "folder", *few_per_class(2))
    run = tmp_path / "run"
    assert cli.main(["train", "--dataset", str(tmp_path / "folder"), "--output-dir", str(run), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0] and "TFDS" in err[0] and not run.exists(), err


def test_init_weights_that_are_a_folder_or_unreadable_say_so(tmp_path, capsys, monkeypatch):
    import builtins

    from lacnn_zoo import io

    (tmp_path / "w.keras").mkdir()
    (tmp_path / "u.weights.h5").write_bytes(b"weights")

    def unreadable(name, *args, **kwargs):  # root reads through chmod 000: the refusal is simulated
        if os.fspath(name).endswith("u.weights.h5"):
            raise PermissionError(13, "Permission denied", os.fspath(name))
        return builtins.open(name, *args, **kwargs)

    monkeypatch.setattr(io, "open", unreadable, raising=False)
    for name, needle in [("w.keras", "is a folder"), ("u.weights.h5", "cannot be read (Permission denied)")]:
        run = tmp_path / "r"
        assert cli.main(["train", "--init-weights", str(tmp_path / name), "--output-dir", str(run)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--init-weights" in err[0] and needle in err[0] and not run.exists(), err


class _AttentionAverage(keras.callbacks.Callback):
    """At each epoch's end (before the zoo's EMA swap): softmax of the optimizer's average of `layer_logits`, and of
    the raw `layer_logits`, read from the variables themselves."""

    def __init__(self):
        super().__init__()
        self.average, self.raw = {}, {}

    def on_epoch_end(self, epoch, logs=None):
        optimizer = getattr(self.model.optimizer, "inner_optimizer", self.model.optimizer)
        average = next(v for v in optimizer.variables if v.path.endswith("layer_logits_average"))
        raw = next(w for w in self.model.trainable_weights if w.path.endswith("layer_logits"))
        for store, variable in ((self.average, average), (self.raw, raw)):
            z = keras.ops.convert_to_numpy(variable).astype("float64")
            store[epoch + 1] = np.exp(z - z.max()) / np.exp(z - z.max()).sum()


def test_with_ema_the_attention_monitor_records_the_averaged_weights(tmp_path):
    """Static Trainable-Vector's attention is softmax(layer_logits): the epoch's row is that of the average the
    optimizer keeps (what validation and best.keras use), not of the raw logits."""
    run, seen = str(tmp_path / "run"), _AttentionAverage()
    train("lacnn_static_vector_tiny", epochs=1, ema=True, output_dir=run, verbose=0, tensorboard=False,
          callbacks=[seen])
    with open(os.path.join(run, "layer_attention.csv")) as f:
        rows = {int(r[0]): np.array(r[1:], float) for r in list(csv.reader(f))[1:]}
    assert np.abs(seen.average[1] - seen.raw[1]).max() > 1e-3  # the two differ enough to tell apart
    np.testing.assert_allclose(rows[1], seen.average[1], atol=1e-5)
    np.testing.assert_allclose(rows[0], 1 / len(rows[0]), atol=1e-5)  # before training: zeros, equal attention


# -- warnings of a run that learned nothing (lacnn_zoo.training.diagnostics) -----------------------------------


class _Momenta(keras.callbacks.Callback):
    """The momentum of every BatchNormalization of the model being trained, as the first epoch begins."""

    def on_epoch_begin(self, epoch, logs=None):
        from lacnn_zoo.training.diagnostics import batchnorm_layers

        self.momenta = {layer.momentum for layer in batchnorm_layers(self.model)}


def test_the_warnings_name_chance_overfitting_and_stale_batchnorm_statistics(digits):
    """Each condition built by hand gives its one line (cause and what to try), and nothing else does."""
    from lacnn_zoo.training import diagnostics as d

    # Chance: a model that predicts class 3 for every image scores about 1/10 on the digits.
    constant = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                 keras.layers.Dense(10, kernel_initializer="zeros",
                                                    bias_initializer=keras.initializers.Constant(np.eye(10)[3]))])
    x, y = digits.test
    accuracy = float(np.mean(constant.predict(x, verbose=0).argmax(-1) == y))
    assert accuracy == pytest.approx(np.mean(y == 3)) and accuracy < 0.15
    found = d.run_warnings(constant, digits, train_accuracy=accuracy, val_accuracy=accuracy, test_accuracy=accuracy)
    assert [w["kind"] for w in found] == ["chance"]  # no BatchNormalization: no batch-norm check
    assert "chance" in found[0]["message"] and f"test accuracy {accuracy:.4f} on {len(y)} images" in found[0]["message"]
    assert "bn_momentum=0.9" in found[0]["message"] and "augment='crop-flip'" in found[0]["message"]
    # The binomial margin: 5 classes, 150 test images (the folder): 0.27 is chance, 0.30 is not.
    assert d.chance_threshold(5, 150) == pytest.approx(43 / 150)
    assert d.check_chance(5, test=(0.27, 150)) and d.check_chance(5, test=(0.30, 150)) is None

    # Overfitting: the 0.99 training accuracy against 0.30 validation; a 15-point gap is not.
    (over,) = d.diagnose(5, train_accuracy=0.99, validation=(0.30, None))
    assert over["kind"] == "overfitting" and "0.9900" in over["message"] and "0.3000" in over["message"]
    assert d.diagnose(5, validation=(0.84, 75), train_accuracy=0.99) == []
    # With the batch-norm check's accuracies, training is judged in inference mode (validation's): the issue's
    # run (training mode 0.99, inference 0.20 on its training images) has stale statistics, not memorisation.
    stale = {"inference": 0.20, "training": 0.99, "images": 420}
    assert [w["kind"] for w in d.diagnose(5, validation=(0.2, None), train_accuracy=1.0, modes=stale)] == [
        "chance", "batchnorm"]
    (over,) = d.diagnose(5, validation=(0.5, None), train_accuracy=0.6, modes={**stale, "inference": 0.95,
                                                                               "training": 0.97})
    assert over["kind"] == "overfitting" and "0.9500 (inference mode, 420 training images)" in over["message"]

    # Batch norm: a trained BN model is healthy; with its moving statistics made wrong, inference mode fails
    # while training mode (batch statistics) does not, and the check itself leaves the statistics as they were.
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.BatchNormalization(momentum=0.5), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(*digits.train, epochs=10, batch_size=64, verbose=0)
    xs, ys = digits.sample(d.MODE_SAMPLE, split="train")
    healthy = d.mode_accuracies(model, xs, ys)
    assert healthy["inference"] > 0.75 and d.check_mode_gap(healthy) is None
    bn = model.layers[1]
    bn.moving_variance.assign(bn.moving_variance.numpy() * 1e4)  # every feature squashed to its mean
    before = [v.numpy().copy() for v in model.non_trainable_variables]
    stale = d.mode_accuracies(model, xs, ys)
    assert all(np.array_equal(b, v.numpy()) for b, v in zip(before, model.non_trainable_variables))
    assert stale["training"] == pytest.approx(healthy["training"], abs=0.05) and stale["inference"] < 0.3
    (line,) = d.lines([d.check_mode_gap(stale)])
    assert line.startswith("Warning (batchnorm): on 512 training images") and "bn_momentum=0.9" in line


def test_a_healthy_run_has_no_warning_and_a_failed_one_prints_them(tmp_path, capsys):
    """The tiny CNN with --bn-momentum 0.9 learns the digits in 3 epochs: no warning. With Keras' 0.99 and one
    epoch its moving statistics lag (training mode 0.55, inference 0.20): the command prints the line, with the
    command-line flag to try, and metrics.json keeps it."""
    healthy = train("plain_cnn_tiny", epochs=3, overrides={"widths": (8, 8, 16)}, bn_momentum=0.9,
                    output_dir=str(tmp_path / "healthy"), verbose=0, tensorboard=False)
    assert healthy.metrics["warnings"] == [] and healthy.metrics["test_accuracy"] > 0.6
    assert json.load(open(tmp_path / "healthy" / "metrics.json"))["warnings"] == []

    run = str(tmp_path / "stale")
    assert cli.main(["train", "--model", "plain_cnn_tiny", "--set", "widths=(8,8,16)", "--epochs", "1",
                     "--output-dir", run, "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    recorded = json.load(open(os.path.join(run, "metrics.json")))["warnings"]
    assert [w["kind"] for w in recorded] == ["batchnorm"]
    assert f"Warning (batchnorm): {recorded[0]['message']}" in out and "--bn-momentum 0.9" in out


def test_bn_momentum_is_checked_recorded_and_set_again_on_resume(tmp_path, capsys):
    run = str(tmp_path / "run")
    for bad in (1.0, -0.1, float("nan"), "0.9"):
        with pytest.raises(ValueError, match=r"`bn_momentum` must be a number in \[0, 1\)"):
            train("plain_cnn_tiny", epochs=1, bn_momentum=bad, output_dir=run, verbose=0)
    assert not os.path.exists(run)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--bn-momentum", "1", "--output-dir", run])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert len(err) == 1 and "--bn-momentum" in err[0] and "[0, 1)" in err[0] and not os.path.exists(run)

    with pytest.raises(KeyboardInterrupt):
        train("plain_cnn_tiny", epochs=2, overrides={"widths": (8, 8, 16)}, bn_momentum=0.8, output_dir=run,
              verbose=0, callbacks=[_Crash(at_epoch=0)])
    assert json.load(open(os.path.join(run, "run.json")))["bn_momentum"] == 0.8
    momenta = _Momenta()
    result = resume(run, callbacks=[momenta], verbose=0)
    assert momenta.momenta == {0.8}  # the resumed model trains with it, not with Keras' 0.99
    reloaded = keras.saving.load_model(os.path.join(run, "best.keras"))
    from lacnn_zoo.training.diagnostics import batchnorm_layers

    assert {layer.momentum for layer in batchnorm_layers(reloaded)} == {0.8}  # the zoo's ConvBNAct keeps it
    assert result.metrics["config"]["bn_momentum"] == 0.8


def test_the_report_takes_the_best_epoch_over_both_models_of_an_ema_run():
    """history.csv's readers see both validations: the report's best epoch is best.keras's (the better model
    of each epoch, accuracy then loss, and the best of those the same way) and it says when that is the averaged
    model; a run without EMA as before."""
    from lacnn_zoo.experiments.report import _best_epoch, _best_model

    rows = [{"val_accuracy": "0.5", "val_loss": "1", "val_ema_accuracy": "0.4", "val_ema_loss": "2"},
            {"val_accuracy": "0.6", "val_loss": "1", "val_ema_accuracy": "0.75", "val_ema_loss": "2"},
            {"val_accuracy": "0.7", "val_loss": "1", "val_ema_accuracy": "0.65", "val_ema_loss": "0.5"}]
    assert _best_epoch(rows) == 1 and _best_model(rows[1]).startswith("the averaged (EMA) model")
    assert _best_model(rows[2]) == "" and _best_model({**rows[2], "val_ema_accuracy": "0.7"}) != ""
    rows.append({"val_accuracy": "0.75", "val_loss": "1.5", "val_ema_accuracy": "0.6", "val_ema_loss": "1"})
    assert _best_epoch(rows) == 3  # as accurate as epoch 1's averaged model, with a lower loss
    assert _best_epoch([{k: v for k, v in r.items() if "ema" not in k} for r in rows[:3]]) == 2


def test_better_prefers_the_averaged_model_only_when_it_does_strictly_better():
    from lacnn_zoo.training.ema import better, ema_name

    def logs(raw, ema, raw_loss=0.5, ema_loss=0.5, monitor="val_accuracy"):
        return {monitor: raw, ema_name(monitor): ema, "val_loss": raw_loss, "val_ema_loss": ema_loss}

    assert better(logs(0.8, 0.8)) == "raw"  # a full tie, accuracy and loss: the raw model is kept
    assert better(logs(0.8, 0.8, 0.5, 0.4)) == "ema" and better(logs(0.8, 0.8, 0.4, 0.5)) == "raw"
    assert better(logs(0.8, 0.9)) == "ema" and better(logs(0.9, 0.8)) == "raw"
    # A monitor to minimise: the lower value is the better one, in both directions.
    assert better({"val_loss": 0.2, "val_ema_loss": 0.3}, "val_loss", "min") == "raw"
    assert better({"val_loss": 0.3, "val_ema_loss": 0.2}, "val_loss", "min") == "ema"


def test_an_average_window_longer_than_the_run_is_warned_even_when_short():
    from lacnn_zoo.training.ema import window_warning

    ema = {"ema": True, "ema_decay": 0.99}  # a window of about 100 optimizer steps
    assert window_warning(ema, epochs=1, steps_per_epoch=50) is not None  # a run of 50
    assert "this run's 90 (3 epochs of 30 steps)" in window_warning(ema, 3, 30)
    assert window_warning(ema, epochs=1, steps_per_epoch=101) is None and window_warning(ema, 4, 50) is None


def test_the_averaged_models_batch_statistics_follow_its_weights_after_more_training(digits):
    """Estimated once per optimizer step: after a further step, the averaged model gets the statistics of its
    new weights, not those estimated for the earlier average."""
    from lacnn_zoo import build_model
    from lacnn_zoo.training.ema import EMAValidation

    model = build_model("plain_cnn_tiny", input_shape=(8, 8, 1), num_classes=10, widths=(8, 8, 16))
    model.compile(optimizer=keras.optimizers.Adam(1e-2, use_ema=True, ema_momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), run_eagerly=True)  # no tracing
    (x, y), (xv, yv) = digits.train, digits.validation
    ema = EMAValidation({"x": xv, "y": yv, "batch_size": 64}, x[:100], batch_size=32)
    ema.set_model(model)
    before = None
    for step in range(3):
        model.train_on_batch(x[32 * step:32 * step + 32], y[32 * step:32 * step + 32])
        with ema.averaged():  # after the first step, a cached estimate exists for an earlier average
            optimizer = model.optimizer  # its average is built at the first step
            for w, a in zip(_numpy(optimizer._trainable_variables), _numpy(optimizer._model_variables_moving_average)):
                np.testing.assert_array_equal(w, a)
            expected = _batchnorm_statistics_by_hand(model, ema.sample, 32)
            got = _statistics(model)
        if before is not None:  # the new average needs statistics of its own
            assert any(np.abs(b - e).max() > 1e-3 for b, e in zip(before, expected))
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)
        before = expected
