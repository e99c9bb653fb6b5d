"""From a recipe to a compiled model and the arguments of `fit`: optimizer, schedule, loss, metrics, the
training pipelines (soft labels for MixUp and CutMix) and the steps of an epoch."""

import math

import keras

from lacnn_zoo.data import mix_batches, one_hot_labels
from lacnn_zoo.training.distribute import shard_by_data
from lacnn_zoo.training.recipes import (
    SparseCategoricalCrossentropyWithSmoothing,
    make_optimizer,
    make_schedule,
    resolve_recipe,
)

NO_DECAY = ["layer_logits", "layer_embedding", "beta_angle", "rel_height", "rel_width", "bias", "gamma", "beta"]


# Below these, a run is warned before training: too few optimizer steps per epoch for the schedule, or a
# validation split so small that one image moves the validation accuracy (and the best checkpoint) by > 2 points.
FEW_STEPS, FEW_VALIDATION = 10, 50


def steps_per_epoch(data, batch_size):
    if data.is_numpy:
        return math.ceil(len(data.train[0]) / batch_size)
    cardinality = int(data.train.cardinality())
    return cardinality if cardinality > 0 else None


def size_warning(data, batch_size):
    """A line saying what to change when the training or validation split is too small to train or judge, or None."""
    n_train, n_val = data.size("train"), data.size("validation")
    if n_train is None:
        return None
    steps = math.ceil(n_train / batch_size)
    problems = []
    if steps < FEW_STEPS:
        capped = f" (a batch holds at most the {n_train})" if batch_size > n_train else ""
        problems.append(f"{n_train} training images in batches of {batch_size}{capped} give {steps} optimizer step"
                        f"{'s' if steps != 1 else ''} per epoch")
    if n_val is not None and n_val < FEW_VALIDATION:
        problems.append(f"the validation split has {n_val} images (one image moves validation accuracy by "
                        f"{100 / max(n_val, 1):.1f} points)")
    if not problems:
        return None
    # The largest power of two giving FEW_STEPS full batches; no batch-size advice when the steps are enough.
    smaller = max(1, 2 ** int(math.log2(max(1, n_train // FEW_STEPS))))
    advice = f"a smaller --batch-size (e.g. {smaller}) and more --epochs, and " if steps < FEW_STEPS else ""
    return (f"Warning: {'; '.join(problems)}. Use {advice}more images per class (or a larger --validation-fraction) "
            "for a validation accuracy to trust.")


def compile_model(model, *, learning_rate, weight_decay, decay_steps, from_logits=True):
    """The default recipe (AdamW, cosine decay over `decay_steps`, constant when None) at this rate and decay.

    Args:
        model: the Keras model to compile (in place).
        learning_rate: the (peak) learning rate.
        weight_decay: AdamW's decoupled weight decay (0 for none); kernels only, as `compile_with_recipe` does.
        decay_steps: optimizer steps of the cosine decay (to 1% of the rate); None or 0 for a constant rate.
        from_logits: whether the model outputs logits (True) or probabilities (False), for the loss.

    Returns:
        The same `model`, compiled with the sparse cross-entropy loss and the accuracy metric.
    """
    options = resolve_recipe("default", learning_rate=learning_rate, weight_decay=weight_decay,
                             schedule="cosine" if decay_steps else "constant")
    return compile_with_recipe(model, options, epochs=1, steps_per_epoch=decay_steps, from_logits=from_logits)


def compile_with_recipe(model, options, *, epochs, steps_per_epoch, num_classes=None, from_logits=True):
    """Compile with resolved recipe `options` (see `lacnn_zoo.training.recipes`); top-5 accuracy from 20 classes up.

    Args:
        model: the Keras model to compile (in place).
        options: the resolved recipe, a dict as `resolve_recipe` returns: optimizer, schedule, label smoothing,
            MixUp/CutMix (which switch the loss and metrics to one-hot labels), EMA.
        epochs: the run's epochs, the length of the learning-rate schedule.
        steps_per_epoch: optimizer steps per epoch; None when unknown (then no warmup and a constant rate).
        num_classes: the number of classes; from 20 up a `top5_accuracy` metric is added (None: none).
        from_logits: whether the model outputs logits (True) or probabilities (False), for the loss.

    Returns:
        The same `model`, compiled; weight decay applies to kernels only (not `NO_DECAY`'s variables).
    """
    optimizer = make_optimizer(options, make_schedule(options, epochs=epochs, steps_per_epoch=steps_per_epoch))
    # Decay only kernels: decaying attention logits or beta would pull them towards uniform / 0,
    # biasing exactly the quantities the layer-attention monitor reports.
    optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
    top5 = num_classes is not None and num_classes >= 20
    if soft_labels(options):  # MixUp / CutMix: one-hot (mixed) labels in every split
        loss = keras.losses.CategoricalCrossentropy(from_logits=from_logits,
                                                    label_smoothing=options["label_smoothing"])
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
        if top5:
            metrics.append(keras.metrics.TopKCategoricalAccuracy(k=5, name="top5_accuracy"))
    else:
        if options["label_smoothing"]:
            loss = SparseCategoricalCrossentropyWithSmoothing(options["label_smoothing"], from_logits=from_logits)
        else:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
        metrics = ["accuracy"]
        if top5:
            metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5_accuracy"))
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    return model


def soft_labels(options):
    """True when the recipe mixes labels (MixUp or CutMix), so training needs one-hot labels."""
    return bool(options.get("mixup") or options.get("cutmix"))


def fit_data(data, split, batch_size, options=None, seed=0):
    """`fit`/`evaluate` arguments for a split; one-hot labels (mixed for training) when the recipe mixes."""
    part = getattr(data, split)
    if data.is_numpy:
        return {"x": part[0], "y": part[1], "batch_size": batch_size}
    if options is not None and soft_labels(options):
        if split == "train":
            part = mix_batches(part, data.num_classes, mixup=options["mixup"], cutmix=options["cutmix"], seed=seed)
        else:
            part = one_hot_labels(part, data.num_classes)
    return {"x": part}


def fit_arguments(data, config, options, dist):
    batch_size = config["batch_size"]
    fit = fit_data(data, "train", batch_size, options, config["seed"])
    if not data.is_numpy:  # a tf.data pipeline reshuffles itself every epoch; Keras warns about shuffle=True
        fit["shuffle"] = False
    validation = data.validation if data.is_numpy else fit_data(data, "validation", batch_size, options)["x"]
    if dist.kind == "multi-worker" and not data.is_numpy and dist.strategy is not None:
        fit["x"], validation = shard_by_data(fit["x"]), shard_by_data(validation)
    if dist.distribution is not None:  # JAX shards every batch evenly over the devices
        if batch_size % dist.replicas:
            raise ValueError(f"`batch_size`={batch_size} must be a multiple of the {dist.replicas} devices of "
                             "`distribute` on JAX.")
        if data.is_numpy and dist.processes > 1:
            # Keras shards only tf.data pipelines over processes: each process feeds its own share of the
            # arrays (every process the same count) and of every batch.
            dist.distribution.auto_shard_dataset = False
            local = dist.replicas // dist.processes

            def share(arrays):
                n = len(arrays[0]) // dist.processes
                n -= n % local
                return tuple(a[dist.process::dist.processes][:n] for a in arrays)

            (fit["x"], fit["y"]), validation = share((fit["x"], fit["y"])), share(validation)
            fit["batch_size"] = batch_size // dist.processes
        elif data.is_numpy:  # at most replicas - 1 examples dropped, so that every batch divides evenly
            keep = lambda n: n - n % dist.replicas  # noqa: E731
            fit["x"], fit["y"] = fit["x"][:keep(len(fit["x"]))], fit["y"][:keep(len(fit["y"]))]
            validation = tuple(v[:keep(len(v))] for v in validation)
        else:
            fit["x"], validation = (ds.unbatch().batch(batch_size, drop_remainder=True)
                                    for ds in (fit["x"], validation))
    return {**fit, "validation_data": validation}


def sample_batch(fit):
    """A small local (x, y) batch of what `fit` will see."""
    if "y" in fit:
        return fit["x"][:2], fit["y"][:2]
    return next(iter(fit["x"].take(1)))
