"""Training recipes: optimiser, learning-rate schedule and regularisation, by name or option by option.

    lacnn-zoo train --model resnet20 --dataset cifar10 --recipe he2016
    lacnn-zoo train --model wrn28_10 --dataset cifar100 --recipe zagoruyko2016 --epochs 200

A recipe is a dict of training options; options given explicitly override it.
Everything goes through Keras' own optimisers (`SGD`, `Adam`, `AdamW`, with
their `weight_decay`, `clipnorm`, `use_ema` and `ema_momentum`, our `ema_decay`) and
schedules (`CosineDecay`, `PiecewiseConstantDecay`); the only additions are a linear warm-up wrapper for
the step and constant schedules and a sparse cross-entropy with label smoothing
(Keras' sparse loss has none). Augmentation (`augment`, `mixup`, `cutmix`,
`random_erasing`) is Keras' preprocessing layers in the tf.data pipeline
(`lacnn_zoo.data`); with MixUp or CutMix the labels are soft, and the loss and
metrics are Keras' categorical ones.
"""

import math
import numbers

import keras

from lacnn_zoo.data import check_augment, check_mixing
from lacnn_zoo.errors import spell

# The tables live in a Keras-free module (the command line builds its choices from them); re-exported here.
from lacnn_zoo.options import (  # noqa: E402, F401
    DEFAULT_RECIPE,
    OPTIMIZERS,
    PRECISIONS,
    RECIPES,
    SCHEDULES,
    check_bounded,
)
from lacnn_zoo.validation import check_choice, check_finite


def resolve_recipe(recipe="default", **explicit):
    """The recipe's options with every explicitly given (not None) option on top, each validated."""
    check_choice("recipe", recipe, tuple(RECIPES))
    unknown = sorted(set(explicit) - set(DEFAULT_RECIPE))
    if unknown:
        raise ValueError(f"Unknown recipe option(s) {unknown}; accepted: {sorted(DEFAULT_RECIPE)}.")
    options = {**RECIPES[recipe], **{k: v for k, v in explicit.items() if v is not None}}
    check_choice("optimizer", options["optimizer"], OPTIMIZERS)
    check_choice("schedule", options["schedule"], SCHEDULES)
    check_finite("learning_rate", options["learning_rate"], minimum=0, inclusive=False)
    check_finite("weight_decay", options["weight_decay"], minimum=0)
    check_finite("momentum", options["momentum"], minimum=0)
    if options["momentum"] >= 1:
        raise ValueError(f"`momentum` must be in [0, 1); received momentum={options['momentum']!r}.")
    check_finite("decay_factor", options["decay_factor"], minimum=0, inclusive=False)
    check_finite("warmup_epochs", options["warmup_epochs"], minimum=0)
    check_finite("label_smoothing", options["label_smoothing"], minimum=0)
    if options["label_smoothing"] >= 1:
        raise ValueError(f"`label_smoothing` must be in [0, 1); received {options['label_smoothing']!r}.")
    if options["clipnorm"] is not None:
        check_finite("clipnorm", options["clipnorm"], minimum=0, inclusive=False)
    options["augment"] = check_augment(options["augment"])
    options["mixup"], options["cutmix"], options["random_erasing"] = check_mixing(
        options["mixup"], options["cutmix"], options["random_erasing"])
    for flag in ("nesterov", "ema"):
        if not isinstance(options[flag], bool):
            raise ValueError(f"`{flag}` must be True or False; received {flag}={options[flag]!r}.")
    options["ema_decay"] = check_bounded("ema_decay", options["ema_decay"], flag="--ema-decay")
    options["milestones"] = check_milestones(options["milestones"])
    return options


def check_milestones(milestones):
    """A non-empty increasing sequence of fractions of training (0 < m < 1) or of epochs (integers >= 1)."""
    if isinstance(milestones, (str, bytes)) or not hasattr(milestones, "__iter__"):
        milestones = [milestones]
    values = list(milestones)
    ok = bool(values) and all(isinstance(m, numbers.Real) and not isinstance(m, bool) and math.isfinite(m)
                              and m > 0 for m in values) and values == sorted(set(values))
    fractions = ok and all(m < 1 for m in values)
    epochs = ok and all(float(m).is_integer() for m in values)
    if not (fractions or epochs):
        raise ValueError(
            "`milestones` must be increasing fractions of training in (0, 1), e.g. (0.5, 0.75), or increasing "
            f"epoch numbers, e.g. (60, 120, 160); received milestones={milestones!r}."
        )
    return tuple(float(m) if fractions else int(m) for m in values)


def check_schedule_fits(options, epochs):
    """Refuse a warm-up or milestones that the run of `epochs` epochs never reaches or never leaves."""
    if options["warmup_epochs"] >= epochs:
        raise ValueError(
            f"{spell('`warmup_epochs`', '--warmup-epochs')}={options['warmup_epochs']!r} must be shorter than the "
            f"run's {epochs} epoch(s) (the rate would never reach the peak rate); accepted: 0 <= "
            f"{spell('warmup_epochs', '--warmup-epochs')} < {spell('epochs', '--epochs')}."
        )
    milestones = options["milestones"]
    if options["schedule"] == "step" and isinstance(milestones[0], int) and milestones[-1] >= epochs:
        raise ValueError(
            f"{spell('`milestones`', '--milestones')}={list(milestones)!r} are epoch numbers, and {milestones[-1]} "
            "is not within the run's "
            f"{epochs} epoch(s); accepted: " + (f"epochs 1 to {epochs - 1}, or " if epochs > 1 else "")
            + "fractions of training in (0, 1)."
        )
    return options


def milestone_steps(milestones, epochs, steps_per_epoch):
    """Optimizer steps at which the step schedule decays (fractions of training, or epoch numbers)."""
    if all(isinstance(m, float) and m < 1 for m in milestones):
        return [round(m * epochs * steps_per_epoch) for m in milestones]
    return [int(m) * steps_per_epoch for m in milestones]


@keras.saving.register_keras_serializable(package="lacnn_zoo")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate rising linearly from 0 to `schedule(0)` over `warmup_steps`, then `schedule(step)`.

    (`CosineDecay` has a warm-up of its own; this gives one to the step and constant schedules.)
    """

    def __init__(self, schedule, warmup_steps):
        self.schedule = schedule
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        after = self.schedule(step) if callable(self.schedule) else keras.ops.cast(self.schedule, "float32")
        start = self.schedule(0) if callable(self.schedule) else self.schedule
        ramp = keras.ops.cast(start, "float32") * (step + 1.0) / float(max(self.warmup_steps, 1))
        return keras.ops.where(step < self.warmup_steps, ramp, after)

    def get_config(self):
        schedule = self.schedule
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            schedule = keras.saving.serialize_keras_object(schedule)
        return {"schedule": schedule, "warmup_steps": self.warmup_steps}

    @classmethod
    def from_config(cls, config):
        schedule = config["schedule"]
        if isinstance(schedule, dict):
            schedule = keras.saving.deserialize_keras_object(schedule)
        return cls(schedule, config["warmup_steps"])


def make_schedule(options, *, epochs, steps_per_epoch):
    """The learning rate (a float or a Keras schedule) of resolved recipe `options`."""
    lr = options["learning_rate"]
    kind = options["schedule"]
    warmup = round(options["warmup_epochs"] * steps_per_epoch) if steps_per_epoch else 0
    total = epochs * steps_per_epoch if steps_per_epoch else None
    if kind == "cosine" and total:
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else lr, decay_steps=max(total - warmup, 1), alpha=0.01,
            warmup_target=lr if warmup else None, warmup_steps=warmup,
        )
    schedule = lr
    if kind == "step" and total:
        boundaries = milestone_steps(options["milestones"], epochs, steps_per_epoch)
        values = [lr * options["decay_factor"] ** i for i in range(len(boundaries) + 1)]
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    return LinearWarmup(schedule, warmup) if warmup else schedule


def make_optimizer(options, learning_rate):
    """Keras' own optimiser for the resolved options (weight decay is decoupled, as Keras implements it)."""
    common = dict(learning_rate=learning_rate, weight_decay=options["weight_decay"] or None,
                  clipnorm=options["clipnorm"], use_ema=options["ema"], ema_momentum=options["ema_decay"])
    if options["optimizer"] == "sgd":
        return keras.optimizers.SGD(momentum=options["momentum"], nesterov=options["nesterov"], **common)
    if options["optimizer"] == "adam":
        return keras.optimizers.Adam(**common)
    return keras.optimizers.AdamW(**{**common, "weight_decay": options["weight_decay"]})


@keras.saving.register_keras_serializable(package="lacnn_zoo")
class SparseCategoricalCrossentropyWithSmoothing(keras.losses.Loss):
    """Cross-entropy of integer labels against smoothed targets: (1 - e) one_hot(y) + e / K.

    Equal to Keras' `CategoricalCrossentropy(label_smoothing=e)` on one-hot labels
    (which `SparseCategoricalCrossentropy` lacks): (1 - e) (-log p_y) + e mean_k(-log p_k).
    """

    def __init__(self, label_smoothing=0.0, from_logits=True, name="sparse_categorical_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        y_pred = keras.ops.cast(y_pred, "float32")
        log_p = keras.ops.log_softmax(y_pred, axis=-1) if self.from_logits else keras.ops.log(
            keras.ops.clip(y_pred, 1e-7, 1.0))
        labels = keras.ops.cast(keras.ops.reshape(y_true, (-1, 1)), "int32")
        nll = -keras.ops.squeeze(keras.ops.take_along_axis(log_p, labels, axis=-1), axis=-1)
        uniform = -keras.ops.mean(log_p, axis=-1)
        return (1.0 - self.label_smoothing) * nll + self.label_smoothing * uniform

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing, "from_logits": self.from_logits}
