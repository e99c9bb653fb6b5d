"""`--ema`: the exponential moving average of the weights, validated beside the raw model every epoch, with
batch-norm statistics of its own.

Keras' optimizer keeps the average (`use_ema=True`, `ema_momentum` = our `ema_decay`, default 0.99): after
each optimizer step a = decay * a + (1 - decay) * w for every trainable weight (a = w at the first step). It
lives in the optimizer's variables, so the run's backup saves it and `--resume` continues it. Its window is
about 1 / (1 - decay) optimizer steps (100 at 0.99), that is 1 / ((1 - decay) * steps_per_epoch) epochs.

Keras averages trainable weights only. Batch norm's moving statistics follow the raw weights, and the averaged
weights run with them are a mismatch (plain_cnn_tiny, 12 epochs on the digits: test loss 0.12 raw, 0.42 EMA).
Here the averaged model gets statistics of its own, RE-ESTIMATED for the averaged weights before each of its
validations, on a fixed sample of training images (`calibrate_batchnorm`: each batch-norm layer's per-batch mean
and variance averaged over the sample's batches, the rest of the model in inference mode). Not averaged with
the weights (as timm's ModelEmaV2 averages buffers): averaged statistics belong to the past weights, not to
their average, and would be more state to save. Re-estimated ones are a function of the averaged weights and
the sample alone: nothing more to save, and a resumed run validates exactly what an uninterrupted one does
(the sample is the same at every epoch and in every process: the first `BN_SAMPLE` un-augmented training
images of the run's seeded split, `DataSplits.training_sample`).

The raw model trains on with its own statistics: the averaged weights and their statistics are swapped in for
the EMA's validation (and for the best checkpoint and the layer-attention monitor where they need them), and
the raw weights and statistics are put back bit for bit (assigned from copies; Keras' `SwapEMAWeights` swaps by
sums and differences, which round). Both models are validated each epoch: Keras' `val_loss`/`val_accuracy` are
the raw model's, as without `--ema`, and `val_ema_loss`/`val_ema_accuracy` the averaged model's. best.keras is
the better of the two (`better`: validation accuracy, then loss; across epochs the same, `AtomicBestCheckpoint`),
so an `--ema` run keeps the raw model wherever averaging does not help, and its raw model trains exactly as
without `--ema`.
"""

import contextlib
import math

import keras
import numpy as np

from lacnn_zoo.errors import ZooError, spell
from lacnn_zoo.layers.batchnorm import (
    BatchStatistics,
    batchnorm_layers,
    calibrate_batchnorm,
    moving_statistics,
    set_moving_statistics,
)

# Training images whose batch-norm statistics the averaged model gets (fewer when the training split is smaller),
# in batches of the run's batch size.
BN_SAMPLE = 1024
PREFIX = "val_ema_"


def ema_name(monitor):
    """The averaged model's name of a validation metric: "val_accuracy" -> "val_ema_accuracy"."""
    return PREFIX + monitor[len("val_"):] if monitor.startswith("val_") else PREFIX + monitor


def better(logs, monitor="val_accuracy", mode="max"):
    """"ema" when the averaged model did better than the raw one on `monitor` this epoch (then on the loss, at
    equal `monitor`), else "raw" (also when either value is missing or not finite: a diverged raw model is
    the checkpoint's to see)."""
    raw, ema = logs.get(monitor), logs.get(ema_name(monitor))
    if raw is None or ema is None or not (math.isfinite(float(raw)) and math.isfinite(float(ema))):
        return "raw"
    raw, ema = float(raw), float(ema)
    if ema != raw:
        return "ema" if (ema > raw if mode == "max" else ema < raw) else "raw"
    raw_loss, ema_loss = logs.get("val_loss"), logs.get(ema_name("val_loss"))
    return "ema" if raw_loss is not None and ema_loss is not None and float(ema_loss) < float(raw_loss) else "raw"


def window_warning(options, epochs, steps_per_epoch):
    """One line when the average's window, about 1 / (1 - ema_decay) optimizer steps, is longer than the whole
    run (its end would still weigh the starting weights heavily); None otherwise or without EMA."""
    if not options["ema"] or not steps_per_epoch:
        return None
    decay, total = options["ema_decay"], epochs * steps_per_epoch
    window = 1.0 / (1.0 - decay)
    if window <= total:
        return None
    suggested = math.floor((1.0 - 10.0 / total) * 1000) / 1000  # a window of a tenth of the run
    advice = (f"Use {spell('ema_decay=', '--ema-decay ')}{suggested:g} or lower (a window of a tenth of the run), "
              "or more " if suggested > 0 else "Use more ")
    return (f"Warning: {spell('ema_decay', '--ema-decay')} {decay:g} averages over about {window:.0f} optimizer "
            f"steps (1 / (1 - decay)), more than this run's {total} ({epochs} epoch{'s' if epochs != 1 else ''} "
            f"of {steps_per_epoch} steps): the starting weights still make up {decay ** (total - 1):.0%} of the "
            f"average at its end. {advice}{spell('epochs', '--epochs')}.")


def check_resumed_history(path):
    """Refuse to continue an `--ema` run whose history.csv an earlier version began: without `val_ema_*` columns
    its `val_*` columns are the averaged weights' (with the raw model's batch-norm statistics), and the rows
    of this version would not line up with its header."""
    try:
        with open(path, newline="") as f:
            header = f.readline().strip().split(",")
    except FileNotFoundError:
        return
    if header != [""] and ema_name("val_accuracy") not in header:
        raise ZooError(f"{path!r} was begun by an earlier lacnn-zoo, whose {spell('ema=True', '--ema')} validated "
                       "the averaged weights with the raw model's batch-norm statistics; this run cannot continue "
                       f"with both models validated. Start it again with {spell('overwrite=True', '--overwrite')}.")


def _optimizer(model):
    optimizer = model.optimizer
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
    if not getattr(optimizer, "use_ema", False):
        raise ValueError("EMAValidation needs a model compiled with an optimizer built with use_ema=True.")
    return optimizer


class EMAValidation(keras.callbacks.Callback):
    """Validates the averaged weights, with their own batch-norm statistics, after Keras validated the raw ones.

    Adds `val_ema_<metric>` (`val_ema_loss`, `val_ema_accuracy`, ...) to each epoch's logs: put it before
    CSVLogger (and before EpochTimer, whose epoch time then includes this validation). `averaged()` is the
    averaged model for the callbacks that follow (`AtomicBestCheckpoint(ema=...)`); `swap_in()`/`swap_out()`
    bracket callbacks that must see it (the layer-attention monitor). At the end of `fit`, Keras'
    `finalize_variable_values` leaves the averaged weights in the model for good; they get their statistics
    then, so the model `fit` leaves behind never runs the averaged weights with the raw statistics.

    Args:
        validation: `evaluate` arguments of the validation data (`{"x": x, "y": y, "batch_size": n}` or
            `{"x": dataset}`): those `fit` validates the raw model on.
        sample: the training images the statistics are estimated on (fixed for the run).
        batch_size: the batches of `sample` (the run's).
    """

    def __init__(self, validation, sample, batch_size):
        super().__init__()
        self.validation = dict(validation)
        self.sample = np.asarray(sample)
        self.batch_size = int(batch_size)
        self._statistics = None  # (optimizer step, the averaged model's statistics at that step)
        self._restore = None  # while the averaged model is in: what puts the raw one back
        self._batch_statistics = None  # the compiled forward pass, once the model is known

    def _calibrate(self):
        if self._batch_statistics is None or self._batch_statistics.model is not self.model:
            self._batch_statistics = BatchStatistics(self.model, compile=True)
        calibrate_batchnorm(self.model, self.sample, self.batch_size, statistics=self._batch_statistics)

    @classmethod
    def for_fit(cls, fit, data, batch_size):
        """The callback for `fit`'s arguments (`lacnn_zoo.training.compiling.fit_arguments`) on `data`."""
        validation = fit["validation_data"]
        if isinstance(validation, tuple):
            validation = {"x": validation[0], "y": validation[1], "batch_size": fit.get("batch_size", batch_size)}
        else:
            validation = {"x": validation}
        return cls(validation, data.training_sample(BN_SAMPLE)[0], batch_size)

    # -- the averaged model in, and the raw one back -------------------------------------------------------
    def _swap_in(self):
        if self._restore is not None:
            return
        optimizer = _optimizer(self.model)
        variables, averages = optimizer._trainable_variables, optimizer._model_variables_moving_average
        layers = batchnorm_layers(self.model)
        raw = [keras.ops.convert_to_numpy(v).copy() for v in variables], moving_statistics(layers)

        def restore():
            for variable, value in zip(variables, raw[0]):
                variable.assign(value)
            set_moving_statistics(layers, raw[1])

        self._restore = restore
        try:
            for variable, average in zip(variables, averages):  # a copy: JAX donates the model's buffers
                variable.assign(keras.ops.convert_to_numpy(average))
            step = int(keras.ops.convert_to_numpy(optimizer.iterations))
            if self._statistics is not None and self._statistics[0] == step:
                set_moving_statistics(layers, self._statistics[1])
            else:
                self._calibrate()
                self._statistics = step, moving_statistics(layers)
        except BaseException:
            self._swap_out()
            raise

    def _swap_out(self):
        restore, self._restore = self._restore, None
        if restore is not None:
            restore()

    @contextlib.contextmanager
    def averaged(self):
        """Inside, the model holds the averaged weights and their statistics (re-estimated once per optimizer
        step); on exit, the raw weights and statistics, bit for bit. Nested inside itself, it does nothing."""
        if self._restore is not None:
            yield
            return
        self._swap_in()
        try:
            yield
        finally:
            self._swap_out()

    def swap_in(self):
        """A callback putting the averaged model in at each epoch's end (close it with `swap_out()`)."""
        return _OnEpochEnd(self._swap_in)

    def swap_out(self):
        return _OnEpochEnd(self._swap_out)

    # -- Keras' hooks --------------------------------------------------------------------------------------
    def on_epoch_end(self, epoch, logs=None):
        with self.averaged():
            result = self.model.evaluate(**self.validation, verbose=0, return_dict=True)
        if logs is not None:
            logs.update({ema_name("val_" + name): float(value) for name, value in result.items()})

    def on_train_end(self, logs=None):
        # Keras' finalize_variable_values has just put the averaged weights in the model: their statistics too.
        self._calibrate()


class _OnEpochEnd(keras.callbacks.Callback):
    def __init__(self, action):
        super().__init__()
        self._action = action

    def on_epoch_end(self, epoch, logs=None):
        self._action()
