"""Training recipes: option resolution, schedules and the smoothed loss against their definitions, precision."""

import json
import os

import keras
import numpy as np
import pytest

from lacnn_zoo import cli
from lacnn_zoo.training import train
from lacnn_zoo.training.recipes import (
    LinearWarmup,
    SparseCategoricalCrossentropyWithSmoothing,
    check_schedule_fits,
    make_optimizer,
    make_schedule,
    resolve_recipe,
)


def test_recipes_are_the_papers_and_explicit_options_win():
    he = resolve_recipe("he2016")
    assert (he["optimizer"], he["learning_rate"], he["momentum"], he["weight_decay"], he["batch_size"]) == (
        "sgd", 0.1, 0.9, 1e-4, 128)
    assert he["schedule"] == "step" and he["milestones"] == (0.5, 0.75) and he["decay_factor"] == 0.1
    wrn = resolve_recipe("zagoruyko2016", learning_rate=0.05)
    assert wrn["nesterov"] and wrn["weight_decay"] == 5e-4 and wrn["milestones"] == (0.3, 0.6, 0.8)
    assert wrn["decay_factor"] == 0.2 and wrn["learning_rate"] == 0.05 and wrn["dropout"] == 0.3
    assert resolve_recipe("default", milestones=[60, 120.0])["milestones"] == (60, 120)


@pytest.mark.parametrize("options,needle", [
    (dict(recipe="he2017"), "recipe"), (dict(optimizer="rmsprop"), "optimizer"), (dict(momentum=1.0), "momentum"),
    (dict(milestones=(0.75, 0.5)), "milestones"), (dict(milestones=(0.5, 3)), "milestones"),
    (dict(label_smoothing=1.0), "label_smoothing"), (dict(learning_rate=float("nan")), "learning_rate"),
    (dict(clipnorm=0.0), "clipnorm"), (dict(warmup_epochs=-1), "warmup_epochs"), (dict(ema="yes"), "ema"),
])
def test_bad_recipe_options_name_the_argument(options, needle):
    recipe = options.pop("recipe", "default")
    with pytest.raises(ValueError, match=f"`{needle}`"):
        resolve_recipe(recipe, **options)


@pytest.mark.parametrize("options,epochs,fits", [
    (dict(warmup_epochs=1e9), 30, False), (dict(warmup_epochs=30), 30, False), (dict(warmup_epochs=29.5), 30, True),
    (dict(schedule="step", milestones=(10, 30)), 30, False), (dict(schedule="step", milestones=(10, 29)), 30, True),
    (dict(schedule="step", milestones=(0.5, 0.99)), 2, True), (dict(schedule="step", milestones=(2,)), 2, False),
])
def test_a_schedule_that_does_not_fit_the_run_is_refused(options, epochs, fits):
    resolved = resolve_recipe("default", **options)
    if fits:
        assert check_schedule_fits(resolved, epochs) is resolved
    else:
        with pytest.raises(ValueError, match=f"`{next(iter(options.keys() - {'schedule'}))}`.*{epochs} epoch"):
            check_schedule_fits(resolved, epochs)


def test_cli_refuses_a_warmup_longer_than_the_run_before_training(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--model", "plain_cnn_tiny", "--epochs", "3", "--warmup-epochs", "1e9",
                     "--output-dir", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--warmup-epochs" in err[0] and not run.exists()


@pytest.mark.parametrize("argv,flag", [
    (["--optimizer", "adamw", "--momentum", "0.8"], "--momentum"),
    (["--nesterov"], "--nesterov"),                                  # the default recipe's AdamW
    (["--recipe", "he2016", "--optimizer", "adam", "--no-nesterov"], "--nesterov"),
    (["--recipe", "he2016", "--momentum", "0", "--nesterov"], "--nesterov"),
    (["--schedule", "cosine", "--milestones", "0.5"], "--milestones"),
    (["--decay-factor", "0.5"], "--decay-factor"),                   # the default recipe's cosine
    (["--recipe", "he2016", "--schedule", "constant", "--decay-factor", "0.5"], "--decay-factor"),
    (["--scale-lr"], "--scale-lr"),
    (["--validation-fraction", "0"], "--validation-fraction"),
    (["--test-fraction", "0"], "--test-fraction"),
    (["--test-fraction", "0.3"], "--test-fraction"),
])
def test_cli_refuses_a_training_option_that_cannot_take_effect(tmp_path, capsys, argv, flag):
    run = tmp_path / "run"
    assert cli.main(["train", "--model", "plain_cnn_tiny", "--epochs", "3", "--output-dir", str(run), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0] and "Traceback" not in err[0] and not run.exists(), err


def test_a_recipes_own_values_and_options_that_apply_are_accepted(tmp_path):
    from lacnn_zoo.models.registry import model_info
    from lacnn_zoo.training.loop import TrainConfig, _run_config

    info = model_info("plain_cnn_tiny")
    for options in (dict(recipe="he2016", momentum=0.5, nesterov=True, milestones=(0.3,), decay_factor=0.5),
                    dict(schedule="step", decay_factor=0.5), dict(optimizer="sgd", momentum=0.8)):
        config, _ = _run_config("plain_cnn_tiny", info, TrainConfig.of(None, dict(epochs=3, **options)))
        assert all(config[k] == (tuple(v) if isinstance(v, tuple) else v) for k, v in options.items())
    # What a run recorded (the default recipe's momentum beside AdamW) resumes as recorded.
    config, _ = _run_config("plain_cnn_tiny", info, TrainConfig.of(None, dict(epochs=3, momentum=0.9,
                                                                               milestones=(0.5, 0.75))),
                            resume=True)
    assert config["optimizer"] == "adamw" and config["momentum"] == 0.9


def _lr(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step))) if callable(schedule) else float(schedule)


@pytest.mark.parametrize("milestones", [(0.5, 0.75), (2, 3)])
def test_step_schedule_decays_at_the_milestones(milestones):
    options = resolve_recipe("he2016", milestones=milestones)
    schedule = make_schedule(options, epochs=4, steps_per_epoch=10)  # boundaries at steps 20 and 30 either way
    for step in (0, 5, 19, 20, 21, 29, 30, 31, 39):
        decays = sum(step > b for b in (20, 30))  # the definition: one decay per boundary passed
        assert _lr(schedule, step) == pytest.approx(0.1 * 0.1 ** decays), step


def test_warmup_rises_linearly_then_follows_the_schedule():
    options = resolve_recipe("he2016", warmup_epochs=0.5)
    schedule = make_schedule(options, epochs=4, steps_per_epoch=10)
    assert isinstance(schedule, LinearWarmup)
    assert [_lr(schedule, s) for s in range(5)] == pytest.approx([0.1 * (s + 1) / 5 for s in range(5)])
    assert _lr(schedule, 25) == pytest.approx(0.01)
    cosine = make_schedule(resolve_recipe("default", warmup_epochs=1), epochs=4, steps_per_epoch=10)
    assert _lr(cosine, 0) == pytest.approx(0.0) and _lr(cosine, 10) == pytest.approx(3e-3)
    assert _lr(cosine, 39) < 3e-4
    restored = LinearWarmup.from_config(schedule.get_config())  # optimizer state in .keras needs it
    assert _lr(restored, 2) == pytest.approx(_lr(schedule, 2)) and _lr(restored, 31) == pytest.approx(1e-3)


def test_optimizers_are_keras_own():
    sgd = make_optimizer(resolve_recipe("zagoruyko2016"), 0.1)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.nesterov and sgd.momentum == 0.9
    assert sgd.weight_decay == pytest.approx(5e-4)
    adam = make_optimizer(resolve_recipe("default", optimizer="adam", clipnorm=1.0, ema=True), 1e-3)
    assert type(adam) is keras.optimizers.Adam and adam.clipnorm == 1.0 and adam.use_ema


def test_label_smoothing_loss_matches_smoothed_one_hot_targets():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 5)).astype("float32") * 3
    labels = rng.integers(0, 5, size=6)
    eps = 0.1
    targets = np.full((6, 5), eps / 5) + (1 - eps) * np.eye(5)[labels]
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = float(np.mean(-(targets * log_p).sum(axis=1)))  # cross-entropy against smoothed targets
    got = SparseCategoricalCrossentropyWithSmoothing(eps)(labels, logits)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    plain = SparseCategoricalCrossentropyWithSmoothing(0.0)(labels, logits)
    assert float(plain) == pytest.approx(float(keras.losses.SparseCategoricalCrossentropy(True)(labels, logits)))


def test_a_recipe_run_records_and_uses_its_options(tmp_path):
    run = tmp_path / "run"
    result = train("plain_cnn_tiny", recipe="he2016", epochs=2, output_dir=str(run), batch_size=64,
                   label_smoothing=0.1, verbose=0, overrides={"widths": (8, 8, 16)})
    stored = json.load(open(run / "run.json"))
    assert stored["recipe"] == "he2016" and stored["optimizer"] == "sgd" and stored["learning_rate"] == 0.1
    assert stored["batch_size"] == 64 and stored["label_smoothing"] == 0.1 and stored["augment"] == "none"
    optimizer = result.model.optimizer  # the best checkpoint carries its optimizer
    assert isinstance(optimizer, keras.optimizers.SGD) and optimizer.momentum == 0.9
    assert isinstance(result.model.loss, SparseCategoricalCrossentropyWithSmoothing)
    assert result.metrics["test_top5_accuracy"] is None  # 10 classes: top-5 is reported from 20 up
    with pytest.raises(ValueError, match="different configuration.*optimizer"):
        os.remove(run / "metrics.json")
        train("plain_cnn_tiny", recipe="he2016", epochs=2, output_dir=str(run), batch_size=64, optimizer="adam",
              label_smoothing=0.1, resume=True, verbose=0, overrides={"widths": (8, 8, 16)})


def test_mixed_bfloat16_training_keeps_float32_weights_and_logits_and_exports(tmp_path):
    from export import export_model

    run = tmp_path / "run"
    result = train("lacnn_static_vector_tiny", epochs=1, precision="mixed_bfloat16", output_dir=str(run), verbose=0)
    assert keras.config.dtype_policy().name == "float32"  # restored after training
    model = result.model
    assert model.get_layer("layer_attention").compute_dtype == "bfloat16"
    assert model.output.dtype == "float32" and all(w.dtype == "float32" for w in model.weights)
    assert np.isfinite(result.metrics["test_loss"])
    manifest = export_model(run / "best.keras", tmp_path / "exported", format="onnx", batch_sizes=(1, 3))
    assert manifest["parity"]["max_abs_diff"]["onnx"]


@pytest.mark.parametrize("arguments,needle", [
    (dict(epochs=10**18), r"`epochs` must be an integer from 1 to 2147483647"),
    (dict(epochs=1.5), r"`epochs` must be an integer from 1"),
    (dict(batch_size=10**18), r"`batch_size` must be an integer from 1 to 2147483647"),
    (dict(seed=-1), r"`seed` must be an integer from 0 to 4294967295"),
    (dict(seed=2**32), r"`seed` must be an integer from 0 to 4294967295"),
])
def test_train_from_python_refuses_counts_no_run_can_honour_before_any_work(arguments, needle, tmp_path):
    """The bounds of the command line hold from Python too: TensorFlow's int32 counts, NumPy's seeds."""
    run = tmp_path / "run"
    with pytest.raises(ValueError, match=needle):
        train("plain_cnn_tiny", output_dir=str(run), verbose=0, **{"epochs": 1, **arguments})
    assert not run.exists()


def test_epoch_milestones_in_a_one_epoch_run_say_what_is_accepted():
    with pytest.raises(ValueError, match=r"accepted: fractions of training in \(0, 1\)\.$") as raised:
        check_schedule_fits(resolve_recipe("default", schedule="step", milestones=(5,), decay_factor=0.1), 1)
    assert "epochs 1 to 0" not in str(raised.value)


def test_a_data_set_seed_out_of_range_names_the_seed():
    from lacnn_zoo.data import load_dataset

    with pytest.raises(ValueError, match=r"`seed` must be an integer from 0 to 4294967295 .*received -1"):
        load_dataset("digits", seed=-1)
