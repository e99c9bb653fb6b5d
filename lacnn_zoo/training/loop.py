"""The main job: train a registered model on a data set, keep the best checkpoint, report test accuracy.

A run lives in one output folder:

    run.json          the run's configuration (written first; `resume` reads it)
    history.csv       per-epoch metrics, with epoch_time_s
    best.keras        the best model by validation accuracy (atomic writes)
    backup/           BackupAndRestore state while the run is unfinished
    tensorboard/      TensorBoard logs (TensorFlow backend)
    metrics.json      test accuracy, parameters, time per epoch (written last)
"""

import dataclasses
import math
import os
import platform
import sys
import time

import keras
import numpy as np

from lacnn_zoo.training.callbacks import (
    AtomicBackupAndRestore,
    AtomicBestCheckpoint,
    BackupReader,
    EMAWeights,
    EpochTimer,
    weights_are_finite,
)
from lacnn_zoo.data import check_augment, is_folder_name, load_dataset, mix_batches, one_hot_labels
from lacnn_zoo.training.distribute import check_distribute, fitting, shard_by_data
from lacnn_zoo.training.distribute import setup as setup_distribution
from lacnn_zoo.errors import ZooError, spell
from lacnn_zoo.io import (
    LOCK_NAME,
    FolderLock,
    check_replaceable,
    is_owned,
    mark_owned,
    read_json,
    remove_path,
    remove_stale_temporaries,
    write_csv,
    write_json,
)
from lacnn_zoo.training.recipes import (
    PRECISIONS,
    RECIPES,
    SparseCategoricalCrossentropyWithSmoothing,
    check_schedule_fits,
    make_optimizer,
    make_schedule,
    resolve_recipe,
)
from lacnn_zoo.models.registry import build_model, model_info
from lacnn_zoo.validation import check_choice, check_positive_int

DEFAULT_MODEL = "lacnn_static_vector_tiny"

NO_DECAY = ["layer_logits", "layer_embedding", "beta_angle", "rel_height", "rel_width", "bias", "gamma", "beta"]

SPLIT_KEYS = ("validation_fraction", "test_fraction", "train_split", "test_split")
RECIPE_KEYS = (
    "recipe", "optimizer", "momentum", "nesterov", "schedule", "milestones", "decay_factor", "warmup_epochs",
    "label_smoothing", "clipnorm", "ema", "precision", "mixup", "cutmix", "random_erasing",
)
RUN_KEYS = (
    "model", "dataset", "epochs", "batch_size", "learning_rate", "weight_decay", "seed", "overrides",
    "image_size", "augment", "freeze_backbone", "init_weights", "scale_lr", *RECIPE_KEYS, *SPLIT_KEYS,
)
# Keys added after the first release: a run.json without them was trained with these values.
RUN_KEY_DEFAULTS = {
    "freeze_backbone": False, "init_weights": None, "recipe": "default", "precision": "float32", "scale_lr": False,
    **dict.fromkeys(SPLIT_KEYS),
    **{k: list(v) if isinstance(v, tuple) else v for k, v in RECIPES["default"].items() if k in RECIPE_KEYS},
}


# The generation of the models' knob defaults a run was started under, recorded in run.json so that a run
# resumes with the model it was started with. Runs without the key are generation 1.
MODEL_DEFAULTS = 2
# Knob defaults that generation 1 had and later ones changed: applied when resuming such a run, unless the
# run set the knob itself (the knob is then in its overrides).
LEGACY_KNOB_DEFAULTS = {1: {"lstm_readout": "final_state"}}  # Dynamic-Recurrent read the LSTM's final state


def _build_overrides(info, overrides, output_dir, resume):
    """The knobs to build with: the run's overrides, plus the defaults of its generation when resuming."""
    if not resume:
        return overrides
    try:
        generation = read_json(os.path.join(output_dir, "run.json")).get("model_defaults", 1)
    except (OSError, ValueError):
        return overrides  # no readable run.json: the resume check refuses it with its own message
    legacy = {k: v for gen, knobs in LEGACY_KNOB_DEFAULTS.items() if generation <= gen for k, v in knobs.items()
              if k in info.knobs and k not in overrides}
    return {**legacy, **overrides}


@dataclasses.dataclass
class TrainResult:
    model: keras.Model
    metrics: dict  # None on a non-chief worker of a distributed run: the chief reports
    output_dir: str
    worker: str = "chief"


def default_output_dir(model, dataset, seed):
    name = os.path.basename(os.path.normpath(dataset)) if is_folder_name(dataset) else dataset.replace("/", "_")
    return os.path.join("runs", f"{model}-{name}-seed{seed}")


# Everything `train` (and `compare`, through it) writes into a run folder; `--overwrite` replaces a folder
# only when it holds nothing else.
RUN_ENTRIES = frozenset({
    "run.json", "history.csv", "best.keras", "best.keras.json", "backup", "tensorboard", "metrics.json",
    "layer_attention.csv", "layer_attention.png", "grad_norms.csv",
})


def _input_convention(overrides, output_dir, resume):
    """The input convention of the run's backbone (a keras.applications backbone's `preprocess_input`), or None
    (the training images' statistics). A run started before conventions were applied keeps its statistics."""
    from lacnn_zoo.models.backbones import input_convention

    convention = input_convention((overrides or {}).get("backbone"))
    if resume and convention is not None:
        try:
            if read_json(os.path.join(output_dir, "run.json")).get("input_convention") is None:
                return None
        except (OSError, ValueError):
            return convention  # no readable run.json: the resume check refuses it with its own message
    return convention


def _prepare_output_dir(output_dir, config, *, resume, overwrite, records=None):
    """Check the folder against what was asked (under the run's lock); returns the epochs already done."""
    run_file = os.path.join(output_dir, "run.json")
    entries = [e for e in os.listdir(output_dir) if e != LOCK_NAME]
    is_run = is_owned(output_dir, "run")
    if is_run:
        remove_stale_temporaries(output_dir, recursive_into=("backup",))
    if resume:
        if not os.path.exists(run_file):
            raise ValueError(f"`resume=True` but {output_dir!r} holds no run.json; it is not a training run.")
        if os.path.exists(os.path.join(output_dir, "metrics.json")):
            raise ValueError(f"The run in {output_dir!r} already finished (metrics.json exists); nothing to resume.")
        stored = read_json(run_file)
        stored = {**RUN_KEY_DEFAULTS, **stored}
        stored["augment"] = check_augment(stored.get("augment"))  # earlier runs recorded True / False
        differ = {k: (stored.get(k), config[k]) for k in RUN_KEYS if stored.get(k) != _plain(config[k])}
        if differ:
            detail = "; ".join(f"{k}: stored {a!r}, asked {b!r}" for k, (a, b) in differ.items())
            raise ValueError(f"Cannot resume {output_dir!r} with a different configuration ({detail}).")
        done = _epochs_done(output_dir)
        _trim_logs(output_dir, done)
        return done
    if entries and not overwrite:
        if is_run:
            raise FileExistsError(
                f"Output directory {output_dir!r} already holds a run. Pass {spell('resume=True', '--resume')} to "
                f"continue it, {spell('overwrite=True', '--overwrite')} to replace it, or another "
                f"{spell('output_dir', '--output-dir')}."
            )
        raise FileExistsError(
            f"Output directory {output_dir!r} is not empty and is not a lacnn-zoo run "
            f"({', '.join(sorted(entries)[:3])}{', ...' if len(entries) > 3 else ''}); choose a new or empty "
            f"{spell('output_dir', '--output-dir')}."
        )
    if entries:
        check_replaceable(output_dir, "run", RUN_ENTRIES.__contains__)
        for entry in entries:
            remove_path(os.path.join(output_dir, entry))
    mark_owned(output_dir, "run")
    write_json(run_file, {**{k: _plain(config[k]) for k in RUN_KEYS}, "model_defaults": MODEL_DEFAULTS,
                          **(records or {})})
    return 0


def _epochs_done(output_dir):
    """Epochs whose every file is written: the backup is the last thing written each epoch."""
    path = os.path.join(output_dir, "backup", "training_metadata.json")
    if not os.path.exists(path):
        return 0
    try:
        return int(read_json(path)["epoch"])
    except (ValueError, KeyError, TypeError) as e:
        raise ZooError(
            f"{path!r} is damaged ({type(e).__name__}: {e}); this run cannot resume. Start it again with --overwrite."
        ) from e


def _trim_logs(output_dir, epochs_done):
    """Drop history rows of epochs that a kill interrupted before their backup: they run again."""
    import csv

    path = os.path.join(output_dir, "history.csv")
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    if not fields or "epoch" not in fields:
        raise ZooError(f"{path!r} has no 'epoch' column, so it was not written by lacnn-zoo; cannot resume this run.")
    kept = [r for r in rows if int(r["epoch"]) < epochs_done]
    if len(kept) != len(rows) and fields:
        write_csv(kept, path, fieldnames=fields) if kept else remove_path(path)


def _plain(value):
    """JSON-comparable form (tuples become lists)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def steps_per_epoch(data, batch_size):
    if data.is_numpy:
        return math.ceil(len(data.train[0]) / batch_size)
    cardinality = int(data.train.cardinality())
    return cardinality if cardinality > 0 else None


# Below these, a run is warned before training: too few optimizer steps per epoch for the schedule, or a
# validation split so small that one image moves the validation accuracy (and the best checkpoint) by > 2 points.
FEW_STEPS, FEW_VALIDATION = 10, 50


def size_warning(data, batch_size):
    """A line saying what to change when the training or validation split is too small to train or judge, or None."""
    n_train, n_val = data.size("train"), data.size("validation")
    if n_train is None:
        return None
    steps = math.ceil(n_train / batch_size)
    problems = []
    if steps < FEW_STEPS:
        problems.append(f"{n_train} training images in batches of {batch_size} give {steps} optimizer step"
                        f"{'s' if steps != 1 else ''} per epoch")
    if n_val is not None and n_val < FEW_VALIDATION:
        problems.append(f"the validation split has {n_val} images (one image moves validation accuracy by "
                        f"{100 / max(n_val, 1):.1f} points)")
    if not problems:
        return None
    smaller = max(1, 2 ** int(math.log2(max(1, n_train // FEW_STEPS))))
    return (f"Warning: {'; '.join(problems)}. Use a smaller --batch-size (e.g. {smaller}) and more --epochs, "
            "and more images per class (or a larger --validation-fraction) for a validation accuracy to trust.")


def compile_model(model, *, learning_rate, weight_decay, decay_steps, from_logits=True):
    """The default recipe (AdamW, cosine decay over `decay_steps`, constant when None) at this rate and decay."""
    options = resolve_recipe("default", learning_rate=learning_rate, weight_decay=weight_decay,
                             schedule="cosine" if decay_steps else "constant")
    return compile_with_recipe(model, options, epochs=1, steps_per_epoch=decay_steps, from_logits=from_logits)


def compile_with_recipe(model, options, *, epochs, steps_per_epoch, num_classes=None, from_logits=True):
    """Compile with resolved recipe `options` (see `lacnn_zoo.training.recipes`); top-5 accuracy from 20 classes up."""
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


def _fit_data(data, split, batch_size, options=None, seed=0):
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


def train(
    model=DEFAULT_MODEL,
    *,
    dataset="digits",
    epochs=30,
    recipe="default",
    batch_size=None,
    learning_rate=None,
    weight_decay=None,
    optimizer=None,
    momentum=None,
    nesterov=None,
    schedule=None,
    milestones=None,
    decay_factor=None,
    warmup_epochs=None,
    label_smoothing=None,
    clipnorm=None,
    ema=None,
    precision="float32",
    distribute="none",
    scale_lr=False,
    validation_fraction=None,
    test_fraction=None,
    train_split=None,
    test_split=None,
    seed=0,
    output_dir=None,
    resume=False,
    overwrite=False,
    overrides=None,
    data_dir=None,
    download=False,
    image_size=None,
    augment=None,
    mixup=None,
    cutmix=None,
    random_erasing=None,
    freeze_backbone=False,
    init_weights=None,
    tensorboard=True,
    callbacks=(),
    verbose="auto",
):
    """Train `model` (a registered name) and return a `TrainResult`.

    The run is resumable: with `resume=True` on the same `output_dir` and
    configuration, it restores the weights, optimizer state and epoch counter
    saved at the end of the last finished epoch.  An existing run is never
    replaced unless `overwrite=True`.

    `recipe` names a set of training options (`lacnn_zoo.training.recipes.RECIPES`:
    "default", "he2016", "zagoruyko2016", "bello2019"); every option given here
    (not None) overrides it, and the resolved values go to run.json. `precision`
    is a Keras dtype policy ("float32", "mixed_bfloat16", "mixed_float16"): the
    layers compute in it, weights and logits stay float32.

    `init_weights` (a `.keras` file, e.g. another run's `best.keras`, or a
    `.weights.h5` file of the same architecture) initialises the model before
    training: from a `.keras` file every layer with the same name and weight
    shapes is copied, so a trained backbone can be fine-tuned under a new head.
    `freeze_backbone=True` trains only the head (every layer that computes the
    taps of a layer-attended model, or the last feature map of another, is
    frozen; frozen BatchNorm layers run in inference mode, as Keras' transfer
    learning guide does).
    """
    info = model_info(model)
    check_positive_int("epochs", epochs)
    check_choice("precision", precision, PRECISIONS)
    distribute = check_distribute(distribute)
    if not isinstance(scale_lr, bool):
        raise ValueError(f"`scale_lr` must be True or False; received scale_lr={scale_lr!r}.")
    options = resolve_recipe(
        recipe, batch_size=batch_size, learning_rate=learning_rate, weight_decay=weight_decay, optimizer=optimizer,
        momentum=momentum, nesterov=nesterov, schedule=schedule, milestones=milestones, decay_factor=decay_factor,
        warmup_epochs=warmup_epochs, label_smoothing=label_smoothing, clipnorm=clipnorm, ema=ema,
        augment=augment, mixup=mixup, cutmix=cutmix, random_erasing=random_erasing,
    )
    check_schedule_fits(options, epochs)
    batch_size = check_positive_int("batch_size", options["batch_size"])
    if augment is None and dataset == "digits":  # a recipe's augmentation applies where the data set has it
        options["augment"] = "none"
    augment = options["augment"]
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"`seed` must be an integer; received seed={seed!r}.")
    if not isinstance(freeze_backbone, bool):
        raise ValueError(f"`freeze_backbone` must be True or False; received freeze_backbone={freeze_backbone!r}.")
    if init_weights is not None:
        init_weights = os.fspath(init_weights)
        if not init_weights.endswith((".keras", ".weights.h5")) or not os.path.isfile(init_weights):
            raise ValueError(
                "`init_weights` must be an existing .keras or .weights.h5 file; "
                f"received init_weights={init_weights!r}."
            )
    if resume and overwrite:
        raise ValueError("`resume` and `overwrite` exclude each other: resume continues a run, overwrite replaces it.")
    splits = {k: v for k, v in zip(SPLIT_KEYS, (validation_fraction, test_fraction, train_split, test_split))
              if v is not None}
    if dataset == "digits":
        for arg, value in (("image_size", image_size), ("augment", augment != "none" and augment),
                           ("mixup", options["mixup"]), ("cutmix", options["cutmix"]),
                           ("random_erasing", options["random_erasing"]), ("data_dir", data_dir),
                           ("download", download), *splits.items()):
            if value:
                raise ValueError(
                    f"`{arg}` applies to TFDS data sets and image folders; the embedded digits are used as scanned "
                    f"(8x8, no download, a fixed 70/10/20 split). Received {arg}={value!r} with dataset='digits'."
                )
    elif isinstance(dataset, (str, os.PathLike)) and is_folder_name(dataset):
        dataset = os.path.abspath(os.path.expanduser(os.fspath(dataset)))  # resumable from any folder
    overrides = dict(overrides or {})
    if options["dropout"] is not None and "dropout" in info.knobs and "dropout" not in overrides:
        overrides["dropout"] = options["dropout"]  # the recipe's dropout, for models that have the knob
    output_dir = os.fspath(output_dir or default_output_dir(model, dataset, seed))
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise FileExistsError(f"Output directory {output_dir!r} exists and is a file; choose another output_dir.")
    if resume and not os.path.isdir(output_dir):
        raise FileNotFoundError(f"Cannot resume: there is no run folder {output_dir!r}.")
    config = dict(
        model=model, dataset=dataset, epochs=epochs, batch_size=batch_size, learning_rate=options["learning_rate"],
        weight_decay=options["weight_decay"], seed=seed, overrides=overrides, image_size=image_size, augment=augment,
        freeze_backbone=freeze_backbone, init_weights=init_weights, recipe=recipe, precision=precision,
        scale_lr=scale_lr,
        **{**dict.fromkeys(SPLIT_KEYS), **splits},
        **{k: options[k] for k in RECIPE_KEYS if k in options},
    )
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        dist = setup_distribution(distribute)  # first: TF's multi-worker strategy precedes every other op
        try:
            return _train(info, config, options, output_dir, dist, resume=resume, overwrite=overwrite,
                          data_dir=data_dir, download=download, tensorboard=tensorboard, callbacks=callbacks,
                          verbose=verbose)
        finally:
            dist.close()
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _train(info, config, options, output_dir, dist, *, resume, overwrite, data_dir, download, tensorboard, callbacks,
           verbose):
    model, dataset, seed, batch_size = config["model"], config["dataset"], config["seed"], config["batch_size"]
    image_size, augment, overrides = config["image_size"], config["augment"], config["overrides"]
    init_weights, freeze_backbone = config["init_weights"], config["freeze_backbone"]

    keras.utils.set_random_seed(seed)
    convention = None if dataset == "digits" else _input_convention(overrides, output_dir, resume)
    data = load_dataset(
        dataset, seed=seed, batch_size=batch_size, **(
            {} if dataset == "digits" else
            dict(data_dir=data_dir, download=download, image_size=image_size, augment=augment,
                 random_erasing=config["random_erasing"], normalization=convention,
                 **{k: config[k] for k in SPLIT_KEYS if config[k] is not None})
        )
    )
    records = {"input_convention": convention and convention["convention"]}
    warning = size_warning(data, batch_size) if dist.is_chief and verbose != 0 else None
    if warning:
        print(warning, file=sys.stderr, flush=True)
    if config["scale_lr"]:  # Goyal et al.'s linear scaling, asked for; never silently
        options = {**options, "learning_rate": options["learning_rate"] * dist.replicas}
    with dist.scope():
        net = build_model(model, input_shape=data.input_shape, num_classes=data.num_classes,
                          **_build_overrides(info, overrides, output_dir, resume))
        if init_weights and not resume:  # a resumed run restores its own weights from the backup
            loaded = load_initial_weights(net, init_weights)
            if verbose != 0 and dist.is_chief:
                with_weights = [layer for layer in net.layers if layer.weights]
                print(f"init_weights: copied {len(loaded)} of the {len(with_weights)} layers with weights from "
                      f"{init_weights!r} (matched by name and weight shapes); the rest start as initialised.")
    if freeze_backbone:
        for layer in backbone_layers(net):
            layer.trainable = False
    if not dist.is_chief and dist.distribution is not None:
        return _train_in_shadow(net, info, data, config, options, output_dir, dist, resume, callbacks, verbose)
    if not dist.is_chief:
        return _fit_on_worker(net, data, config, options, output_dir, dist, resume, callbacks, verbose)
    created = not os.path.exists(output_dir)
    try:
        with FolderLock(os.path.join(output_dir, LOCK_NAME), f"Run folder {output_dir!r}"):
            done = _prepare_output_dir(output_dir, config, resume=resume, overwrite=overwrite, records=records)
            return _fit_and_report(net, info, data, config, options, output_dir, done, tensorboard, callbacks,
                                   verbose, dist)
    finally:
        if created and os.path.isdir(output_dir) and not os.listdir(output_dir):
            os.rmdir(output_dir)  # refused before anything was written: leave no empty folder behind


def _fit_on_worker(net, data, config, options, output_dir, dist, resume, callbacks, verbose):
    """A non-chief worker: the same fit, no file written (it resumes from the chief's backup, read-only)."""
    with dist.scope():
        compile_with_recipe(net, options, epochs=config["epochs"],
                            steps_per_epoch=steps_per_epoch(data, config["batch_size"]),
                            num_classes=data.num_classes)
    run_callbacks = [keras.callbacks.TerminateOnNaN(), *callbacks]
    if options["ema"]:  # every worker validates the averaged weights, as the chief does
        run_callbacks.append(EMAWeights())
    if resume:
        run_callbacks.append(BackupReader(os.path.join(output_dir, "backup")))
    fit = _fit_arguments(data, config, options, dist)
    with fitting(net, dist, lambda: _sample_batch(fit)):
        net.fit(**fit, epochs=config["epochs"], callbacks=run_callbacks, verbose=verbose)
    return TrainResult(model=net, metrics=None, output_dir=output_dir, worker=dist.worker)


def _train_in_shadow(net, info, data, config, options, output_dir, dist, resume, callbacks, verbose):
    """A non-chief JAX process: saving a model gathers its arrays from every process, so each process runs the
    chief's code, files included, into a private temporary folder (seeded with the chief's backup to resume)
    that is removed at the end; the run folder is written by the chief alone."""
    import shutil
    import tempfile

    shadow = tempfile.mkdtemp(prefix="lacnn-zoo-worker-")
    try:
        if resume:
            for name in ("run.json", "history.csv", "best.keras", "best.keras.json", "backup"):
                source = os.path.join(output_dir, name)
                if os.path.isdir(source):
                    shutil.copytree(source, os.path.join(shadow, name))
                elif os.path.exists(source):
                    shutil.copy2(source, shadow)
            mark_owned(shadow, "run")
        done = _prepare_output_dir(shadow, config, resume=resume, overwrite=False)
        result = _fit_and_report(net, info, data, config, options, shadow, done, False, callbacks, verbose, dist)
        return TrainResult(model=result.model, metrics=None, output_dir=output_dir, worker=dist.worker)
    finally:
        shutil.rmtree(shadow, ignore_errors=True)


def _fit_arguments(data, config, options, dist):
    batch_size = config["batch_size"]
    fit = _fit_data(data, "train", batch_size, options, config["seed"])
    if not data.is_numpy:  # a tf.data pipeline reshuffles itself every epoch; Keras warns about shuffle=True
        fit["shuffle"] = False
    validation = data.validation if data.is_numpy else _fit_data(data, "validation", batch_size, options)["x"]
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


def _sample_batch(fit):
    """A small local (x, y) batch of what `fit` will see."""
    if "y" in fit:
        return fit["x"][:2], fit["y"][:2]
    return next(iter(fit["x"].take(1)))


def _fit_and_report(net, info, data, config, options, output_dir, epochs_done, tensorboard, callbacks, verbose,
                    dist):
    epochs, batch_size = config["epochs"], config["batch_size"]
    with dist.scope():
        compile_with_recipe(net, options, epochs=epochs, steps_per_epoch=steps_per_epoch(data, batch_size),
                            num_classes=data.num_classes)
    best_path = os.path.join(output_dir, "best.keras")
    backup = AtomicBackupAndRestore(os.path.join(output_dir, "backup"), delete_checkpoint=False)
    # Order matters: the backup is written last each epoch, so an epoch it records is complete on disk.
    # With EMA, validation, the best checkpoint and the monitor see the averaged weights; the backup the raw
    # weights with the average in the optimizer, so that a resumed run continues both.
    ema = EMAWeights() if options["ema"] else None
    run_callbacks = [
        keras.callbacks.TerminateOnNaN(),
        EpochTimer(),
        keras.callbacks.CSVLogger(os.path.join(output_dir, "history.csv"), append=True),
        *callbacks,
        *([ema, ema.swap_in()] if ema else []),
        AtomicBestCheckpoint(best_path, monitor="val_accuracy"),
    ]
    if tensorboard and keras.backend.backend() == "tensorflow":
        run_callbacks.append(keras.callbacks.TensorBoard(os.path.join(output_dir, "tensorboard")))
    run_callbacks.extend(_model_callbacks(net, data, output_dir))
    if ema:
        run_callbacks.append(ema.swap_out())
    run_callbacks.append(backup)

    start = time.perf_counter()
    fit = _fit_arguments(data, config, options, dist)
    with fitting(net, dist, lambda: _sample_batch(fit)):
        net.fit(**fit, epochs=epochs, callbacks=run_callbacks, verbose=verbose)
    wall = time.perf_counter() - start
    losses = _column(output_dir, "loss")
    if not weights_are_finite(net) or (losses and not math.isfinite(losses[-1])):
        finished = _epochs_done(output_dir)
        raise FloatingPointError(
            f"Training diverged after epoch {finished} (loss {losses[-1] if losses else float('nan')}): the weights "
            f"became non-finite, so nothing after epoch {finished} was saved and no test accuracy is reported. "
            f"Lower the learning rate ({spell('learning_rate', '--lr')}) and train again."
        )

    dist.close()  # the test split is scored whole, on one device
    best = keras.saving.load_model(best_path) if os.path.exists(best_path) else net
    test = best.evaluate(**_fit_data(data, "test", batch_size, options), verbose=0, return_dict=True)
    epoch_times = _column(output_dir, "epoch_time_s")
    metrics = {
        "model": config["model"],
        "family": info.family,
        "dataset": config["dataset"],
        "test_accuracy": float(test["accuracy"]),
        "test_loss": float(test["loss"]),
        "test_top5_accuracy": float(test["top5_accuracy"]) if "top5_accuracy" in test else None,
        "best_val_accuracy": float(max(_column(output_dir, "val_accuracy") or [float("nan")])),
        "params": int(net.count_params()),
        "epochs": epochs,
        "time_per_epoch_s": float(np.mean(epoch_times)) if epoch_times else None,
        "train_wall_time_s": wall,
        "resumed_after_epoch": epochs_done or None,
        "trainable_params": int(sum(int(np.prod(w.shape)) for w in net.trainable_weights)),
        "distribute": dist.kind,
        "replicas": dist.replicas,
        "input_shape": list(data.input_shape),
        "num_classes": data.num_classes,
        "preprocessing": data.preprocessing,
        "config": _plain(config),
        "versions": {
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
    }
    write_json(os.path.join(output_dir, "metrics.json"), metrics)
    remove_path(backup.backup_dir)  # only now: a kill before metrics.json leaves the run resumable
    return TrainResult(model=best, metrics=metrics, output_dir=output_dir)


def backbone_layers(model):
    """The layers that compute the taps of a layer-attended model, or the last feature map of another classifier.

    Everything else (tap forms and transforms, the mechanism, pooling and the classifier) is the head.
    """
    from lacnn_zoo.models.layer_attended import tap_names
    from lacnn_zoo.training.monitor import is_layer_attended

    if is_layer_attended(model):
        outputs = [model.get_layer(name).output for name in tap_names(model)]
    else:
        try:
            outputs = [model.get_layer("logits").input]
        except ValueError:
            raise ValueError(
                f"`freeze_backbone` needs a classifier with a 'logits' layer; {model.name!r} has none."
            ) from None
    trunk = keras.Model(model.inputs, outputs)
    return [layer for layer in trunk.layers if not isinstance(layer, keras.layers.InputLayer)]


def load_initial_weights(model, path):
    """Initialise `model` from a `.keras` file (by layer name and weight shapes) or a same-architecture `.weights.h5`.

    Returns the names of the layers loaded; raises ValueError when nothing matches.
    """
    if path.endswith(".weights.h5"):
        try:
            model.load_weights(path)
        except Exception as e:  # Keras raises several types for an architecture mismatch
            raise ValueError(
                f"`init_weights` {path!r} does not fit {model.name!r} ({type(e).__name__}: {e}); a .weights.h5 "
                "file needs the same architecture. Use a .keras file to copy the layers that match by name."
            ) from e
        return [layer.name for layer in model.layers if layer.weights]
    from lacnn_zoo.models.saving import load_model

    source = {layer.name: layer for layer in load_model(path, compile=False).layers}
    loaded = []
    for layer in model.layers:
        other = source.get(layer.name)
        if not layer.weights or other is None:
            continue
        if [tuple(w.shape) for w in layer.weights] == [tuple(w.shape) for w in other.weights]:
            layer.set_weights(other.get_weights())
            loaded.append(layer.name)
    if not loaded:
        raise ValueError(
            f"`init_weights` {path!r} shares no layer (same name and weight shapes) with {model.name!r}."
        )
    return loaded


def _model_callbacks(model, data, output_dir):
    """Callbacks a model family asks for: the per-layer attention monitor for layer-attended models."""
    from lacnn_zoo.training.monitor import LayerAttentionMonitor, is_layer_attended

    if not is_layer_attended(model):
        return []
    x, _ = data.sample(256, split="validation")
    tensorboard_dir = os.path.join(output_dir, "tensorboard", "layer_attention")
    return [LayerAttentionMonitor(x, output_dir, tensorboard_dir=tensorboard_dir)]


def _column(output_dir, name):
    import csv

    path = os.path.join(output_dir, "history.csv")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [float(row[name]) for row in csv.DictReader(f) if row.get(name) not in (None, "")]


def resume(output_dir, **kwargs):
    """Continue the unfinished run in `output_dir` with its stored configuration."""
    run_file = os.path.join(output_dir, "run.json")
    if not os.path.exists(run_file):
        raise FileNotFoundError(f"Cannot resume: {output_dir!r} holds no run.json (no lacnn-zoo run there).")
    stored = {k: v for k, v in read_json(run_file).items() if k in RUN_KEYS}  # not `model_defaults`, a record
    model = stored.pop("model")
    return train(model, output_dir=output_dir, resume=True, **stored, **kwargs)
