"""The private Keras names of lacnn_zoo.compat still mean what the zoo relies on: each test fails when a Keras
release renames or changes one (then fix compat.py, not its callers)."""

import json
import os

import keras
import numpy as np
import pytest
from keras.src.backend.common import global_state

import lacnn_zoo
from lacnn_zoo import compat


def test_keras_counts_automatic_names_where_compat_resets_them():
    keras.layers.Activation("relu")
    counters = global_state.get_global_attribute(compat._NAME_COUNTERS)
    assert counters and counters["activation"] >= 1  # the attribute Keras names layers from
    with compat.fresh_layer_names():
        inside = [keras.layers.Activation("relu").name for _ in range(2)]
    after = keras.layers.Activation("relu").name
    assert inside == ["activation", "activation_1"]  # as in a fresh session
    assert after not in inside and after.startswith("activation_")  # the counters continue above both


def test_an_application_backbone_taps_the_same_names_in_every_build():
    """The issue's case: MobileNetV3Small's stage taps were `activation` then `activation_18` in one process."""
    names = []
    for _ in range(2):
        model = lacnn_zoo.layer_attended("MobileNetV3Small", taps="stages", input_shape=(32, 32, 3))
        names.append(lacnn_zoo.tap_names(model))
    keras.layers.Activation("relu")  # layers built in between must not shift the next build's names
    model = lacnn_zoo.layer_attended("MobileNetV3Small", taps="stages", input_shape=(32, 32, 3))
    names.append(lacnn_zoo.tap_names(model))
    assert names[0] == names[1] == names[2] and len(names[0]) >= 4
    assert any(n.startswith("activation") for n in names[0])  # an automatic name among them: the case at stake
    assert len({layer.name for layer in model.layers}) == len(model.layers)  # head and backbone names unique


def test_keras_defers_variables_in_the_list_compat_restores():
    before = list(global_state.get_global_attribute(compat._DEFERRED) or [])
    with keras.StatelessScope(initialize_variables=False):
        keras.layers.Dense(2).build((None, 3))  # kernel and bias, deferred
    grown = list(global_state.get_global_attribute(compat._DEFERRED) or [])
    assert len(grown) == len(before) + 2  # Keras keeps the deferred variables there
    global_state.set_global_attribute(compat._DEFERRED, list(before))
    with compat.deferred_variables_dropped(), keras.StatelessScope(initialize_variables=False):
        keras.layers.Dense(2).build((None, 3))
    assert list(global_state.get_global_attribute(compat._DEFERRED) or []) == before


def tiny_model(units=2):
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(units, use_bias=False, name="out")(
        keras.layers.Dense(4, name="hidden")(inputs)))


def tiny_data(n=8):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3)).astype("float32"), rng.integers(0, 2, n)


def test_flatten_layers_reaches_into_nested_models():
    inner = tiny_model()
    inputs = keras.Input((3,))
    outer = keras.Model(inputs, keras.layers.Dense(1, name="top")(inner(inputs)), name="outer")
    names = [layer.name for layer in compat.flatten_layers(outer)]
    assert {"hidden", "out", inner.name, "top"} <= set(names) and "outer" not in names
    assert compat.flatten_layers(outer, include_self=True)[0] is outer


def test_producer_walks_a_functional_graph_backwards():
    model = tiny_model()
    operation, inputs = compat.producer(model.outputs[0])
    assert operation is model.get_layer("out")
    assert len(inputs) == 1 and inputs[0] is model.get_layer("hidden").output
    assert compat.producer(inputs[0])[0] is model.get_layer("hidden")


def test_backup_hooks_are_called_where_keras_saves_and_loads(tmp_path):
    calls = []

    class Recording(compat.BackupAndRestore):
        def save_backup(self):
            calls.append(("save", self.progress()["epoch"]))
            super().save_backup()

        def load_backup(self):
            calls.append(("load", None))
            super().load_backup()

    x, y = tiny_data()
    model = tiny_model()
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    backup = Recording(str(tmp_path / "backup"), delete_checkpoint=False)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[backup])
    assert [c for c in calls if c[0] == "save"] == [("save", 1), ("save", 2)]  # the epochs done
    assert backup.weights_path.endswith(".weights.h5") and os.path.isfile(backup.weights_path)
    assert json.load(open(backup.metadata_path))["epoch"] == 2
    calls.clear()
    again = Recording(str(tmp_path / "backup"), delete_checkpoint=False)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[again])  # resumes: loads, then trains the third epoch
    assert calls == [("load", None), ("save", 3)]


def test_per_replica_reduction_is_what_keras_fit_reduces_with():
    x, y = tiny_data()
    model = tiny_model()
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    seen = []

    def wrap(original):
        def reduce(values, strategy, reduction="auto"):
            seen.append(reduction)
            return original(values, strategy, reduction)
        return reduce

    from keras.src.backend.tensorflow import trainer

    before = trainer.reduce_per_replica
    with compat.per_replica_reduction(wrap):
        model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert seen and trainer.reduce_per_replica is before


def test_symbolic_build_builds_now_and_fit_does_not_again():
    x, y = tiny_data()
    model = tiny_model()
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert not model.optimizer.built
    with compat.symbolic_build(model, (x[:2], y[:2])):
        assert model.optimizer.built and len(model.optimizer.variables) > 0
        variables = list(model.optimizer.variables)
        model.fit(x, y, epochs=1, verbose=0)
        assert list(model.optimizer.variables) == variables
    assert "_maybe_symbolic_build" not in vars(model)  # Keras' own method is back


def test_tuner_hooks_see_each_execution(tmp_path):
    import keras_tuner

    x, y = tiny_data(16)
    built, ended = [], []

    class Tuner(compat.TunerHooks, keras_tuner.RandomSearch):
        def on_model_built(self, model):
            built.append(model)

        def on_execution_end(self, history, fit_kwargs):
            ended.append((history, fit_kwargs))

    def build(hp):
        model = tiny_model(hp.Choice("units", [2]))
        model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    tuner = Tuner(build, objective="val_accuracy", max_trials=1, executions_per_trial=2, directory=str(tmp_path),
                  project_name="p", seed=0)
    tuner.search(x, y, validation_data=(x, y), epochs=2, batch_size=8, verbose=0)
    assert len(built) >= 2 and all(isinstance(m, keras.Model) for m in built)
    assert len(ended) == 2 and all(len(h.history["val_accuracy"]) == 2 for h, _ in ended)
    assert ended[0][1]["batch_size"] == 8


@pytest.mark.parametrize("kind", ["random", "bayesian", "hyperband"])
def test_every_choice_first_visits_each_value_before_any_twice(tmp_path, kind):
    """The oracles driven by hand (no training): with the mix-in, the first four trials take the four mechanisms
    whatever the seed; without it, a seed draws some twice (random: 4!/4**4 = 9% of draws visit all four)."""
    import keras_tuner

    mechanisms = ["plain", "static_vector", "self_attention", "dynamic_recurrent"]

    def build(hp):
        hp.Choice("mechanism", mechanisms)
        hp.Int("width", 1, 64)
        return tiny_model(1)

    def first_four(seed, extended):
        common = dict(objective=keras_tuner.Objective("score", "max"), directory=str(tmp_path),
                      project_name=f"{kind}{seed}{extended}", seed=seed, overwrite=True)
        tuner = {"random": lambda: keras_tuner.RandomSearch(build, max_trials=8, **common),
                 "bayesian": lambda: keras_tuner.BayesianOptimization(build, max_trials=8, num_initial_points=1,
                                                                      **common),
                 "hyperband": lambda: keras_tuner.Hyperband(build, max_epochs=9, factor=3, **common)}[kind]()
        if extended:
            compat.every_choice_first(tuner, "mechanism")
        drawn = []
        for i in range(6):
            trial = tuner.oracle.create_trial("tuner0")
            drawn.append(trial.hyperparameters.values["mechanism"])
            assert 1 <= trial.hyperparameters.values["width"] <= 64  # the other knobs still drawn
            tuner.oracle.update_trial(trial.trial_id, {"score": float(i % 3)})
            trial.status = "COMPLETED"
            tuner.oracle.end_trial(trial)
        return drawn[:4]

    for seed in range(3):
        assert sorted(first_four(seed, True)) == sorted(mechanisms)
    assert any(sorted(first_four(seed, False)) != sorted(mechanisms) for seed in range(3))


def test_best_metrics_reads_the_objective_s_best_epoch():
    import keras_tuner

    history = keras.callbacks.History()
    history.history = {"val_accuracy": [0.2, 0.9, 0.5], "val_loss": [3.0, 1.0, 0.5]}
    best = compat.best_metrics(history, keras_tuner.Objective("val_accuracy", "max"))
    assert best == {"val_accuracy": 0.9, "val_loss": 1.0}


def test_tf_forward_flops_counts_a_matmul():
    import tensorflow as tf

    layer = keras.layers.Dense(5, use_bias=False)
    layer.build((None, 3))
    concrete = tf.function(lambda x: layer(x)).get_concrete_function(tf.TensorSpec([1, 3], tf.float32))
    assert compat.tf_forward_flops(concrete) == 2 * 1 * 3 * 5  # a multiply and an add per weight
