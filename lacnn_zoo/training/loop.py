"""The main job: train a registered model on a data set, keep the best checkpoint, report test accuracy.

The run's files are those of `lacnn_zoo.training.run_folder`."""

import dataclasses
import math
import os
import platform
import sys
import time

import keras
import numpy as np

from lacnn_zoo.data import is_folder_name, load_dataset, refuse_on_digits
from lacnn_zoo.errors import spell
from lacnn_zoo.io import (
    FolderLock,
    mark_owned,
    remove_path,
)
from lacnn_zoo.models.registry import build_model, model_info
from lacnn_zoo.options import DEFAULT_RECIPE
from lacnn_zoo.training.callbacks import (
    AtomicBackupAndRestore,
    AtomicBestCheckpoint,
    BackupReader,
    EMAWeights,
    EpochTimer,
    weights_are_finite,
)
from lacnn_zoo.training.compiling import (
    compile_with_recipe,
    fit_arguments,
    fit_data,
    sample_batch,
    size_warning,
    steps_per_epoch,
)
from lacnn_zoo.training.distribute import check_distribute, fitting
from lacnn_zoo.training.distribute import setup as setup_distribution
from lacnn_zoo.training.recipes import (
    PRECISIONS,
    check_schedule_fits,
    resolve_recipe,
)
from lacnn_zoo.training.run_folder import (
    BACKUP,
    HISTORY,
    RECIPE_KEYS,
    RESUMABLE_ENTRIES,
    SPLIT_KEYS,
    TENSORBOARD,
    RunFolder,
    plain,
)
from lacnn_zoo.training.transfer import backbone_layers, load_initial_weights
from lacnn_zoo.validation import check_choice, check_positive_int

DEFAULT_MODEL = "lacnn_static_vector_tiny"

@dataclasses.dataclass
class TrainResult:
    model: keras.Model
    metrics: dict  # None on a non-chief worker of a distributed run: the chief reports
    output_dir: str
    worker: str = "chief"


def _input_convention(overrides, output_dir, resume):
    """The input convention of the run's backbone (a keras.applications backbone's `preprocess_input`), or None
    (the training images' statistics). A run started before conventions were applied keeps its statistics."""
    from lacnn_zoo.models.backbones import input_convention

    convention = input_convention((overrides or {}).get("backbone"))
    if resume and convention is not None and RunFolder(output_dir).recorded_convention(missing=True) is None:
        return None
    return convention




@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The options of a training run: what run.json records (the recipe's options resolved), and where the data
    comes from. None means "the recipe's value" (`lacnn_zoo.options.RECIPES`)."""

    dataset: str = "digits"
    epochs: int = 30
    recipe: str = "default"
    batch_size: int = None
    learning_rate: float = None
    weight_decay: float = None
    optimizer: str = None
    momentum: float = None
    nesterov: bool = None
    schedule: str = None
    milestones: tuple = None
    decay_factor: float = None
    warmup_epochs: float = None
    label_smoothing: float = None
    clipnorm: float = None
    ema: bool = None
    precision: str = "float32"
    distribute: str = "none"
    scale_lr: bool = False
    validation_fraction: float = None
    test_fraction: float = None
    train_split: str = None
    test_split: str = None
    seed: int = 0
    overrides: dict = None
    data_dir: str = None
    download: bool = False
    image_size: tuple = None
    augment: str = None
    mixup: float = None
    cutmix: float = None
    random_erasing: float = None
    freeze_backbone: bool = False
    init_weights: str = None

    @classmethod
    def of(cls, config=None, options=None):
        """`config` (a TrainConfig, or None for the defaults) with the keyword `options` replacing its fields."""
        if config is not None and not isinstance(config, cls):
            raise ValueError(f"`config` must be a TrainConfig or None; received {type(config).__name__}.")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options or {}) - set(names))
        if unknown:
            raise ValueError(f"`{unknown[0]}` is not a training option; the options are {', '.join(names)}.")
        return dataclasses.replace(config or cls(), **(options or {}))


def train(model=DEFAULT_MODEL, config=None, *, output_dir=None, resume=False, overwrite=False, tensorboard=True,
          callbacks=(), verbose="auto", **options):
    """Train `model` (a registered name) and return a `TrainResult`.

    The training options are a `TrainConfig` (`config`), or its fields given as keywords (`epochs=5`,
    `dataset="cifar10"`, ...), which override the config's.

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
    c = TrainConfig.of(config, options)
    info = model_info(model)
    run_config, recipe_options = _run_config(model, info, c)
    distribute = check_distribute(c.distribute)
    output_dir = os.fspath(output_dir or RunFolder.default(model, run_config["dataset"], c.seed).path)
    if resume and overwrite:
        raise ValueError("`resume` and `overwrite` exclude each other: resume continues a run, overwrite replaces it.")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise FileExistsError(f"Output directory {output_dir!r} exists and is a file; choose another output_dir.")
    if resume and not os.path.isdir(output_dir):
        raise FileNotFoundError(f"Cannot resume: there is no run folder {output_dir!r}.")
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(c.precision)
    try:
        dist = setup_distribution(distribute)  # first: TF's multi-worker strategy precedes every other op
        try:
            return _train(info, run_config, recipe_options, output_dir, dist, resume=resume, overwrite=overwrite,
                          data_dir=c.data_dir, download=c.download, tensorboard=tensorboard, callbacks=callbacks,
                          verbose=verbose)
        finally:
            dist.close()
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _run_config(model, info, c):
    """`(run config, recipe options)`: the arguments checked, the recipe resolved, what run.json records."""
    check_positive_int("epochs", c.epochs)
    check_choice("precision", c.precision, PRECISIONS)
    if not isinstance(c.scale_lr, bool):
        raise ValueError(f"`scale_lr` must be True or False; received scale_lr={c.scale_lr!r}.")
    # Every recipe option a run can set (a recipe's dropout reaches the model as a knob, below).
    options = resolve_recipe(c.recipe, **{k: getattr(c, k) for k in DEFAULT_RECIPE if k != "dropout"})
    check_schedule_fits(options, c.epochs)
    batch_size = check_positive_int("batch_size", options["batch_size"])
    if c.augment is None and c.dataset == "digits":  # a recipe's augmentation applies where the data set has it
        options["augment"] = "none"
    if not isinstance(c.seed, int) or isinstance(c.seed, bool):
        raise ValueError(f"`seed` must be an integer; received seed={c.seed!r}.")
    if not isinstance(c.freeze_backbone, bool):
        raise ValueError(f"`freeze_backbone` must be True or False; received freeze_backbone={c.freeze_backbone!r}.")
    init_weights = None if c.init_weights is None else os.fspath(c.init_weights)
    if init_weights is not None and (not init_weights.endswith((".keras", ".weights.h5"))
                                     or not os.path.isfile(init_weights)):
        raise ValueError("`init_weights` must be an existing .keras or .weights.h5 file; "
                         f"received init_weights={init_weights!r}.")
    splits = {k: getattr(c, k) for k in SPLIT_KEYS if getattr(c, k) is not None}
    dataset = _check_dataset(c, options, splits)
    overrides = dict(c.overrides or {})
    if options["dropout"] is not None and "dropout" in info.knobs and "dropout" not in overrides:
        overrides["dropout"] = options["dropout"]  # the recipe's dropout, for models that have the knob
    config = dict(
        model=model, dataset=dataset, epochs=c.epochs, batch_size=batch_size, learning_rate=options["learning_rate"],
        weight_decay=options["weight_decay"], seed=c.seed, overrides=overrides, image_size=c.image_size,
        augment=options["augment"], freeze_backbone=c.freeze_backbone, init_weights=init_weights, recipe=c.recipe,
        precision=c.precision, scale_lr=c.scale_lr,
        **{**dict.fromkeys(SPLIT_KEYS), **splits},
        **{k: options[k] for k in RECIPE_KEYS if k in options},
    )
    return config, options


def _check_dataset(c, options, splits):
    """The data set as run.json records it (a folder made absolute); options the digits cannot take refused."""
    dataset = c.dataset
    if dataset == "digits":
        refuse_on_digits(image_size=c.image_size, augment=options["augment"], mixup=options["mixup"],
                         cutmix=options["cutmix"], random_erasing=options["random_erasing"], data_dir=c.data_dir,
                         download=c.download, **splits)
    elif isinstance(dataset, (str, os.PathLike)) and is_folder_name(dataset):
        dataset = os.path.abspath(os.path.expanduser(os.fspath(dataset)))  # resumable from any folder
    return dataset


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
        knobs = RunFolder(output_dir).generation_overrides(info.knobs, overrides) if resume else overrides
        net = build_model(model, input_shape=data.input_shape, num_classes=data.num_classes, **knobs)
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
        with FolderLock(RunFolder(output_dir).lock, f"Run folder {output_dir!r}"):
            done = RunFolder(output_dir).prepare(config, resume=resume, overwrite=overwrite, records=records)
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
    fit = fit_arguments(data, config, options, dist)
    with fitting(net, dist, lambda: sample_batch(fit)):
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
            for name in RESUMABLE_ENTRIES:
                source = os.path.join(output_dir, name)
                if os.path.isdir(source):
                    shutil.copytree(source, os.path.join(shadow, name))
                elif os.path.exists(source):
                    shutil.copy2(source, shadow)
            mark_owned(shadow, "run")
        done = RunFolder(shadow).prepare(config, resume=resume, overwrite=False)
        result = _fit_and_report(net, info, data, config, options, shadow, done, False, callbacks, verbose, dist)
        return TrainResult(model=result.model, metrics=None, output_dir=output_dir, worker=dist.worker)
    finally:
        shutil.rmtree(shadow, ignore_errors=True)


def _fit_and_report(net, info, data, config, options, output_dir, epochs_done, tensorboard, callbacks, verbose,
                    dist):
    epochs, batch_size = config["epochs"], config["batch_size"]
    with dist.scope():
        compile_with_recipe(net, options, epochs=epochs, steps_per_epoch=steps_per_epoch(data, batch_size),
                            num_classes=data.num_classes)
    run = RunFolder(output_dir)
    best_path = run.best
    backup = AtomicBackupAndRestore(run.file(BACKUP), delete_checkpoint=False)
    # Order matters: the backup is written last each epoch, so an epoch it records is complete on disk.
    # With EMA, validation, the best checkpoint and the monitor see the averaged weights; the backup the raw
    # weights with the average in the optimizer, so that a resumed run continues both.
    ema = EMAWeights() if options["ema"] else None
    run_callbacks = [
        keras.callbacks.TerminateOnNaN(),
        EpochTimer(),
        keras.callbacks.CSVLogger(run.file(HISTORY), append=True),
        *callbacks,
        *([ema, ema.swap_in()] if ema else []),
        AtomicBestCheckpoint(best_path, monitor="val_accuracy"),
    ]
    if tensorboard and keras.backend.backend() == "tensorflow":
        run_callbacks.append(keras.callbacks.TensorBoard(run.file(TENSORBOARD)))
    run_callbacks.extend(_model_callbacks(net, data, output_dir))
    if ema:
        run_callbacks.append(ema.swap_out())
    run_callbacks.append(backup)

    start = time.perf_counter()
    fit = fit_arguments(data, config, options, dist)
    with fitting(net, dist, lambda: sample_batch(fit)):
        net.fit(**fit, epochs=epochs, callbacks=run_callbacks, verbose=verbose)
    wall = time.perf_counter() - start
    losses = run.column("loss")
    if not weights_are_finite(net) or (losses and not math.isfinite(losses[-1])):
        finished = run.epochs_done()
        raise FloatingPointError(
            f"Training diverged after epoch {finished} (loss {losses[-1] if losses else float('nan')}): the weights "
            f"became non-finite, so nothing after epoch {finished} was saved and no test accuracy is reported. "
            f"Lower the learning rate ({spell('learning_rate', '--lr')}) and train again."
        )

    dist.close()  # the test split is scored whole, on one device
    best = keras.saving.load_model(best_path) if os.path.exists(best_path) else net
    test = best.evaluate(**fit_data(data, "test", batch_size, options), verbose=0, return_dict=True)
    epoch_times = run.column("epoch_time_s")
    metrics = {
        "model": config["model"],
        "family": info.family,
        "dataset": config["dataset"],
        "test_accuracy": float(test["accuracy"]),
        "test_loss": float(test["loss"]),
        "test_top5_accuracy": float(test["top5_accuracy"]) if "top5_accuracy" in test else None,
        "best_val_accuracy": float(max(run.column("val_accuracy") or [float("nan")])),
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
        "config": plain(config),
        "versions": {
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
    }
    run.write_metrics(metrics)
    remove_path(backup.backup_dir)  # only now: a kill before metrics.json leaves the run resumable
    return TrainResult(model=best, metrics=metrics, output_dir=output_dir)


def _model_callbacks(model, data, output_dir):
    """Callbacks a model family asks for: the per-layer attention monitor for layer-attended models."""
    from lacnn_zoo.training.monitor import LayerAttentionMonitor, is_layer_attended

    if not is_layer_attended(model):
        return []
    x, _ = data.sample(256, split="validation")
    tensorboard_dir = os.path.join(RunFolder(output_dir).file(TENSORBOARD), "layer_attention")
    return [LayerAttentionMonitor(x, output_dir, tensorboard_dir=tensorboard_dir)]


def resume(output_dir, **kwargs):
    """Continue the unfinished run in `output_dir` with its stored configuration."""
    stored = RunFolder(output_dir).stored_arguments()
    model = stored.pop("model")
    return train(model, output_dir=output_dir, resume=True, **stored, **kwargs)
