"""Every private name of Keras, keras-tuner and TensorFlow that the zoo relies on, in one place, each with a test
in tests/test_compat.py that fails when a release changes it (then fix it here, not in its callers); setup.cfg
bounds keras and keras-tuner below their next major versions.

* `global_state` "object_name_uids", Keras' counters of automatic layer names (`activation`, `activation_18`):
  `fresh_layer_names` builds a backbone as in a fresh session, so its tap names are the same in every build.
* `global_state` "uninitialized_variables", the variables a `StatelessScope(initialize_variables=False)` defers:
  `deferred_variables_dropped` forgets the ones a parameter count created.
* `Layer._flatten_layers`: `flatten_layers`, every layer of a model, nested models included.
* `KerasTensor._keras_history` and `Operation._inbound_nodes`: `producer`, the operation that made a symbolic
  tensor and the tensors it was called on.
* `BackupAndRestore._save_model`, `_load_model`, `_weights_path`, `_training_metadata_path`, `_current_epoch`,
  `_last_batch_seen`: `BackupAndRestore`, Keras' callback with those hooks under public names.
* `keras.src.backend.tensorflow.trainer.reduce_per_replica` and `Trainer._symbolic_build`/`_maybe_symbolic_build`:
  `per_replica_reduction`, `symbolic_build`.
* keras-tuner's `Tuner._try_build`, `Tuner._build_and_fit_model` and `tuner_utils.convert_to_metrics_dict`:
  `TunerHooks`, `best_metrics`.
* TensorFlow's `convert_variables_to_constants_v2` and profiler: `tf_forward_flops`.
"""

import collections
import contextlib

import keras
from keras.src.backend.common import global_state

__all__ = ["BackupAndRestore", "TunerHooks", "best_metrics", "deferred_variables_dropped", "every_choice_first",
           "first_round_configurations", "flatten_layers", "fresh_layer_names", "per_replica_reduction", "producer",
           "symbolic_build", "tf_forward_flops"]

_NAME_COUNTERS = "object_name_uids"
_DEFERRED = "uninitialized_variables"


@contextlib.contextmanager
def fresh_layer_names():
    """Automatic layer names inside the block start from scratch (`activation`, `activation_1`, ...); after it, the
    process's counters continue above every name used inside or before, so no later layer repeats one."""
    before = global_state.get_global_attribute(_NAME_COUNTERS) or {}
    global_state.set_global_attribute(_NAME_COUNTERS, collections.defaultdict(int))
    try:
        yield
    finally:
        inside = global_state.get_global_attribute(_NAME_COUNTERS) or {}
        merged = collections.defaultdict(int, before)
        for name, count in inside.items():
            merged[name] = max(merged[name], count)
        global_state.set_global_attribute(_NAME_COUNTERS, merged)


@contextlib.contextmanager
def deferred_variables_dropped():
    """Variables deferred inside the block (under `keras.StatelessScope(initialize_variables=False)`) are never
    initialised later: Keras' list of variables to initialise is put back as it was before."""
    pending = list(global_state.get_global_attribute(_DEFERRED) or [])
    try:
        yield
    finally:
        global_state.set_global_attribute(_DEFERRED, pending)


def flatten_layers(model, include_self=False):
    """Every layer of `model`, depth first, nested models and their layers included (`model` itself first when
    `include_self`).

    Args:
        model: a Keras layer or model.
        include_self: whether `model` itself comes first.

    Returns:
        A list of layers.
    """
    return list(model._flatten_layers(include_self=include_self, recursive=True))


def producer(tensor):
    """`(operation, inputs)`: the operation that made the symbolic `tensor` and the symbolic tensors it was
    called on (a functional model's graph, walked backwards).

    Args:
        tensor: a symbolic `KerasTensor` of a functional model.

    Returns:
        `(operation, inputs)`: the layer or operation, and a list of the `KerasTensor`s it was called on.
    """
    operation, node_index, _ = tensor._keras_history
    return operation, list(operation._inbound_nodes[node_index].arguments.keras_tensors)


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' `BackupAndRestore` with its private hooks under public names: `save_backup` (called at the end of
    each epoch) and `load_backup` (called when training begins), to override or call; `weights_path`,
    `metadata_path` and `progress()` say where and what.

    Other Args:
        backup_dir: the folder of the backup, used by nothing else.
        save_freq: "epoch" to back up at the end of each epoch, an int to back up every `save_freq` batches, or
            False (preemption checkpointing only).
        double_checkpoint: keep the previous backup too, restored when the last cannot be read.
        delete_checkpoint: delete the backup once training finishes.
    """

    def _save_model(self):  # Keras calls it when a backup is due
        self.save_backup()

    def _load_model(self):  # Keras calls it when training begins
        self.load_backup()

    def save_backup(self):
        super()._save_model()

    def load_backup(self):
        super()._load_model()

    @property
    def weights_path(self):
        return self._weights_path

    @property
    def metadata_path(self):
        return self._training_metadata_path

    def progress(self):
        """What Keras records in the backup's metadata: the epoch in progress and the last batch seen."""
        return {"epoch": self._current_epoch, "batch": self._last_batch_seen}


@contextlib.contextmanager
def per_replica_reduction(wrap):
    """Inside the block, Keras' TensorFlow trainer reduces per-replica values with `wrap(original)`, where
    `original(values, strategy, reduction)` is its own `reduce_per_replica`; put back afterwards.

    Args:
        wrap: a callable taking `original` and returning the function used in its place inside the block.
    """
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica
    tf_trainer.reduce_per_replica = wrap(original)
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica = original


@contextlib.contextmanager
def symbolic_build(model, data_batch, scope=None):
    """Build `model`'s loss, metrics and optimizer variables now from `data_batch` (inside `scope`, e.g. a
    distribution strategy's), and keep `fit` from building them again inside the block.

    Args:
        model: a compiled Keras model (TensorFlow backend).
        data_batch: one batch of the training data, as `fit` would see it.
        scope: a context manager to build inside (e.g. `strategy.scope()`); None for none.
    """
    with scope or contextlib.nullcontext():
        model._symbolic_build(data_batch=data_batch)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    try:
        yield
    finally:
        del model._maybe_symbolic_build


class TunerHooks:
    """A mix-in for a keras-tuner `Tuner` class, whose private per-execution steps it exposes as two hooks:
    `on_model_built(model)` after each execution's model is built, `on_execution_end(history, fit_kwargs)` after
    each execution's fit."""

    def _try_build(self, hp):
        model = super()._try_build(hp)
        self.on_model_built(model)
        return model

    def _build_and_fit_model(self, trial, *args, **kwargs):
        history = super()._build_and_fit_model(trial, *args, **kwargs)
        self.on_execution_end(history, kwargs)
        return history

    def on_model_built(self, model):
        pass

    def on_execution_end(self, history, fit_kwargs):
        pass


class _EveryChoiceFirst:
    """Oracle mix-in (see `every_choice_first`): while a value of the choice `_every_choice` has no trial, a new
    trial's random values take the first such value (the others drawn as the oracle draws them)."""

    _every_choice = None

    def _unvisited_values(self):
        choice = next((hp for hp in self.hyperparameters.space if hp.name == self._every_choice), None)
        if choice is None:
            return []
        visited = {t.hyperparameters.values.get(self._every_choice) for t in self.trials.values()}
        return [v for v in choice.values if v not in visited]

    def _random_values(self):
        unvisited = self._unvisited_values()
        if not unvisited:
            return super()._random_values()
        import keras_tuner

        hps = keras_tuner.HyperParameters()
        for hp in self.hyperparameters.space:  # keras-tuner's own draw, the choice fixed to the unvisited value
            hps.merge([hp])
            if hps.is_active(hp):
                hps.values[hp.name] = unvisited[0] if hp.name == self._every_choice else \
                    hp.random_sample(self._seed_state)
                self._seed_state += 1
        return hps.values


class _EveryChoiceBeforeModel(_EveryChoiceFirst):
    """For an oracle that models the scores after its random start (Bayesian optimisation): random trials until
    every value of the choice has one."""

    def populate_space(self, trial_id):
        if self._unvisited_values():
            return {"status": "RUNNING", "values": self._random_values()}
        return super().populate_space(trial_id)


def every_choice_first(tuner, name):
    """Make `tuner`'s oracle give every value of the choice hyperparameter `name` a trial before any value gets a
    second: while some value has no trial, a new trial takes the first such value (in the choice's order), the
    other hyperparameters drawn at random as the oracle draws them; then the oracle's own strategy goes on
    (random search, Bayesian optimisation, Hyperband's brackets). keras-tuner's way is a custom Oracle; this
    extends the oracle the tuner built, through its private `_random_values`, `_seed_state` and `populate_space`.

    Args:
        tuner: a built keras-tuner `Tuner` (RandomSearch, BayesianOptimization or Hyperband).
        name: the name of a `hp.Choice` of its search space.

    Returns:
        The tuner, its oracle extended in place.
    """
    import keras_tuner

    oracle = tuner.oracle
    mixin = _EveryChoiceBeforeModel if isinstance(oracle, keras_tuner.oracles.BayesianOptimizationOracle) else \
        _EveryChoiceFirst
    oracle.__class__ = type(type(oracle).__name__, (mixin, type(oracle)), {"_every_choice": name})
    return tuner


def first_round_configurations(max_epochs, factor):
    """How many configurations one Hyperband iteration draws at random (the first round of each bracket), as
    keras-tuner's Hyperband oracle sizes them.

    Args:
        max_epochs: Hyperband's `max_epochs`.
        factor: Hyperband's `factor`.

    Returns:
        The number of randomly drawn configurations, an int.
    """
    import keras_tuner

    oracle = keras_tuner.oracles.HyperbandOracle(objective="val_accuracy", max_epochs=max_epochs, factor=factor)
    return sum(oracle._get_size(bracket, round_num=0) for bracket in range(oracle._get_num_brackets()))


def best_metrics(history, objective):
    """keras-tuner's reading of one execution: every metric at the epoch where `objective` was best.

    Args:
        history: the execution's result: a `keras.callbacks.History` (a dict, a number or a list of results are
            read as keras-tuner reads them).
        objective: the `keras_tuner.Objective` that picks the best epoch.

    Returns:
        A dict from each metric's name to its value at that epoch.
    """
    from keras_tuner.src.engine import tuner_utils

    return tuner_utils.convert_to_metrics_dict(history, objective)


def tf_forward_flops(concrete_function):
    """The float operations of a TensorFlow concrete function, its variables frozen to constants (TensorFlow's
    profiler).

    Args:
        concrete_function: a `tf.function`'s concrete function (traced for fixed input shapes).

    Returns:
        The number of float operations of one call, an int.
    """
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    from tensorflow.python.profiler import model_analyzer, option_builder

    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    graph = convert_variables_to_constants_v2(concrete_function).graph
    return int(model_analyzer.profile(graph=graph, options=options).total_float_ops)
