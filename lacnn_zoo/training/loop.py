"""The main job: train a registered model on a data set, keep the best checkpoint, report test accuracy.

The run's files are those of `lacnn_zoo.training.run_folder`."""

import dataclasses
import math
import os
import platform
import sys
import time
import warnings

import keras
import numpy as np

from lacnn_zoo.data import is_folder_name, load_dataset, refuse_on_digits
from lacnn_zoo.errors import spell
from lacnn_zoo.io import (
    FolderLock,
    check_readable_file,
    mark_owned,
    read_json,
    remove_path,
)
from lacnn_zoo.layers.batchnorm import set_batchnorm_momentum
from lacnn_zoo.models.backbones import input_convention
from lacnn_zoo.models.registry import build_model, model_info
from lacnn_zoo.options import DEFAULT_RECIPE, check_bounded
from lacnn_zoo.training.callbacks import (
    AtomicBackupAndRestore,
    AtomicBestCheckpoint,
    BackupReader,
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
from lacnn_zoo.training.diagnostics import lines, run_warnings
from lacnn_zoo.training.distribute import check_distribute, fitting
from lacnn_zoo.training.distribute import setup as setup_distribution
from lacnn_zoo.training.ema import EMAValidation, check_resumed_history, window_warning
from lacnn_zoo.training.monitor import LayerAttentionMonitor, is_layer_attended
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
from lacnn_zoo.validation import check_choice

DEFAULT_MODEL = "lacnn_static_vector_tiny"

@dataclasses.dataclass
class TrainResult:
    """What `train` (and `resume`) returns.

    Args:
        model: the trained model: the best checkpoint (best.keras) loaded back, else the model as trained (a
            non-chief TensorFlow worker's, or a run whose best.keras was never written).
        metrics: what metrics.json records (test accuracy, parameters, time per epoch, warnings, ...); None on a
            non-chief worker of a distributed run, whose chief reports.
        output_dir: the run folder.
        worker: the process that trained: "chief", or a worker's name (e.g. "worker 1", "process 1").
    """

    model: keras.Model
    metrics: dict  # None on a non-chief worker of a distributed run: the chief reports
    output_dir: str
    worker: str = "chief"


def _input_convention(overrides, run, resume):
    """The input convention of the run's backbone (a keras.applications backbone's `preprocess_input`), or None
    (the training images' statistics). A run started before conventions were applied keeps its statistics."""
    convention = input_convention((overrides or {}).get("backbone"))
    if resume and convention is not None and run.recorded_convention(missing=True) is None:
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
    ema_decay: float = None
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
    bn_momentum: float = None

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

    `bn_momentum` (in [0, 1), Keras' convention) sets the momentum of every
    BatchNormalization of the model, backbone included (None: the model's own).

    `ema=True` keeps an exponential moving average of the weights (Keras' `use_ema`; `ema_decay`, default
    0.99, is its `ema_momentum`: a window of about 1 / (1 - ema_decay) optimizer steps). The averaged model
    gets batch-norm statistics re-estimated for it on a fixed sample of training images, both models are
    validated every epoch (`val_ema_*` columns beside Keras' `val_*`), and best.keras is the better of the two
    (`metrics["best_weights"]`: "ema" or "raw"); see `lacnn_zoo.training.ema`.

    At the end, `metrics["warnings"]` (also in metrics.json, and printed unless
    `verbose=0`) says when the run learned nothing useful: accuracy near chance,
    overfitting, or batch-norm statistics (`lacnn_zoo.training.diagnostics`).

    Args:
        model: the registered name of the model to build (`lacnn_zoo.list_models()`); default `DEFAULT_MODEL`.
        config: a `TrainConfig` with the training options, or None for its defaults.
        output_dir: the run folder; default `runs/<model>-<dataset>-seed<seed>` (a folder data set by its base
            name). Created if needed; must be a new or empty folder unless `resume` or `overwrite`.
        resume: continue the unfinished run in `output_dir` from its backup; the options must be the ones
            run.json recorded (`resume()` reads them for you).
        overwrite: replace the run in `output_dir` (only a folder of the zoo's own files); excludes `resume`.
        tensorboard: also write Keras' TensorBoard logs to `output_dir/tensorboard` (TensorFlow backend only).
        callbacks: more Keras callbacks for `fit`, called after the history logger and before the best
            checkpoint (on every worker of a distributed run).
        verbose: Keras' `fit` verbosity: "auto", 0, 1 or 2; 0 also prints none of the run's own messages and
            warnings (the end-of-run warnings are still in `metrics["warnings"]`).
        **options: fields of `TrainConfig`, each replacing `config`'s (None in a recipe option: the recipe's
            value). The data: `dataset` ('digits' (default), a folder of class subfolders, or a TFDS name),
            `data_dir`, `download`, `image_size`, `validation_fraction`, `test_fraction`, `train_split`,
            `test_split`, `seed`. The recipe: `epochs`, `recipe`, `batch_size`, `learning_rate`, `weight_decay`,
            `optimizer`, `momentum`, `nesterov`, `schedule`, `milestones`, `decay_factor`, `warmup_epochs`,
            `label_smoothing`, `clipnorm`, `ema`, `ema_decay`, `augment`, `mixup`, `cutmix`, `random_erasing`.
            The model: `overrides` (a dict of the model's knobs, e.g. `{"mixing": "beta"}`), `init_weights`,
            `freeze_backbone`, `bn_momentum`. The execution: `precision`, `distribute` ('none', 'mirrored' or
            'multi-worker', see `lacnn_zoo.training.distribute`), `scale_lr`.

    Returns:
        A `TrainResult`: the best model, the run's metrics (None on a non-chief worker), the run folder and the
            worker's name.

    Raises:
        ValueError: an unknown or invalid option, an option that cannot take effect (e.g. `momentum` with
            AdamW, `scale_lr` without `distribute`), `resume` with `overwrite`, or a `resume` whose options
            differ from run.json's or whose run already finished.
        FileExistsError: `output_dir` is a file, or already holds a run (or other files) and neither `resume`
            nor `overwrite` is given.
        FileNotFoundError: `resume` and there is no run folder `output_dir`.
        FloatingPointError: training diverged (non-finite weights or loss); no test accuracy is reported.
    """
    c = TrainConfig.of(config, options)
    info = model_info(model)
    run_config, recipe_options = _run_config(model, info, c, resume=resume)
    distribute = check_distribute(c.distribute)
    if run_config["scale_lr"] and distribute == "none":  # on resume too: the rate would not be the run's
        raise ValueError(f"{spell('`scale_lr`', '--scale-lr')} multiplies the learning rate by the number of "
                         f"replicas, and without {spell('`distribute`', '--distribute')} there is one: it cannot "
                         f"take effect. Add {spell('distribute=', '--distribute ')}'mirrored' or 'multi-worker', or "
                         "leave it out.")
    run = RunFolder(os.fspath(output_dir)) if output_dir else RunFolder.default(model, run_config["dataset"], c.seed)
    output_dir = run.path  # the run's one RunFolder: passed down to every step below
    if resume and overwrite:
        raise ValueError(f"{spell('`resume`', '--resume')} and {spell('`overwrite`', '--overwrite')} exclude each "
                         "other: resume continues a run, overwrite replaces it.")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise FileExistsError(f"Output directory {output_dir!r} exists and is a file; choose another output_dir.")
    if resume and not os.path.isdir(output_dir):
        raise FileNotFoundError(f"Cannot resume: there is no run folder {output_dir!r}.")
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(c.precision)
    try:
        dist = setup_distribution(distribute)  # first: TF's multi-worker strategy precedes every other op
        try:
            return _train(info, run_config, recipe_options, run, dist, resume=resume, overwrite=overwrite,
                          data_dir=c.data_dir, download=c.download, tensorboard=tensorboard, callbacks=callbacks,
                          verbose=verbose)
        finally:
            dist.close()
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _run_config(model, info, c, resume=False):
    """`(run config, recipe options)`: the arguments checked, the recipe resolved, what run.json records."""
    check_bounded("epochs", c.epochs, flag="--epochs")  # TensorFlow counts epochs in int32
    check_choice("precision", c.precision, PRECISIONS)
    if not isinstance(c.scale_lr, bool):
        raise ValueError(f"`scale_lr` must be True or False; received scale_lr={c.scale_lr!r}.")
    # Every recipe option a run can set (a recipe's dropout reaches the model as a knob, below).
    options = resolve_recipe(c.recipe, **{k: getattr(c, k) for k in DEFAULT_RECIPE if k != "dropout"})
    if not resume:  # a resumed run gives back what run.json recorded, the recipe's own values included
        _refuse_inert_options(c, options)
    check_schedule_fits(options, c.epochs)
    batch_size = check_bounded("batch_size", options["batch_size"], flag="--batch-size")
    if c.augment is None and c.dataset == "digits":  # a recipe's augmentation applies where the data set has it
        options["augment"] = "none"
    check_bounded("seed", c.seed, flag="--seed")  # what NumPy and scikit-learn accept, said in the zoo's words
    if not isinstance(c.freeze_backbone, bool):
        raise ValueError(f"`freeze_backbone` must be True or False; received freeze_backbone={c.freeze_backbone!r}.")
    init_weights = None if c.init_weights is None else os.fspath(c.init_weights)
    if init_weights is not None and not resume:  # a resumed run restores its own weights, from its backup
        init_weights = _check_init_weights(init_weights)
    splits = {k: getattr(c, k) for k in SPLIT_KEYS if getattr(c, k) is not None}
    dataset = _check_dataset(c, options, splits)
    overrides = dict(c.overrides or {})
    with_dropout = {**overrides, "dropout": options["dropout"]}
    if options["dropout"] is not None and "dropout" not in overrides and "dropout" in info.applicable(with_dropout):
        overrides["dropout"] = options["dropout"]  # the recipe's dropout, for models that have and use the knob
    config = dict(
        model=model, dataset=dataset, epochs=c.epochs, batch_size=batch_size, learning_rate=options["learning_rate"],
        weight_decay=options["weight_decay"], seed=c.seed, overrides=overrides, image_size=c.image_size,
        augment=options["augment"], freeze_backbone=c.freeze_backbone, init_weights=init_weights, recipe=c.recipe,
        precision=c.precision, scale_lr=c.scale_lr, bn_momentum=_check_bn_momentum(c.bn_momentum),
        **{**dict.fromkeys(SPLIT_KEYS), **splits},
        **{k: options[k] for k in RECIPE_KEYS if k in options},
    )
    return config, options


def _check_bn_momentum(momentum):
    return None if momentum is None else check_bounded("momentum", momentum, "bn_momentum", "--bn-momentum")


def _set_bn_momentum(net, momentum):
    """Every BatchNormalization of `net`, backbone included, gets `momentum`; a model without one is refused."""
    if not set_batchnorm_momentum(net, momentum):
        raise ValueError(f"{spell('`bn_momentum`', '--bn-momentum')} sets the momentum of BatchNormalization "
                         f"layers, and {net.name!r} has none: it cannot take effect. Leave it out.")


def _check_init_weights(path):
    """`path` made absolute (run.json records it, and the run resumes from any folder), once it is known to be an
    existing .keras or .weights.h5 file."""
    flag = spell("`init_weights`", "--init-weights")
    if not path.endswith((".keras", ".weights.h5")):
        raise ValueError(f"{flag} must be a .keras or .weights.h5 file; received {path!r}.")
    check_readable_file(path, flag, "a .keras or .weights.h5 file")  # Keras blames a file it cannot read
    return os.path.abspath(path)


def _refuse_inert_options(c, options):
    """Refuse a recipe option the caller set (not None) that the resolved optimizer or schedule never reads."""
    name = lambda option: spell(f"`{option}`", "--" + option.replace("_", "-"))  # noqa: E731
    optimizer, schedule = options["optimizer"], options["schedule"]
    for option in ("momentum", "nesterov"):
        if getattr(c, option) is not None and optimizer != "sgd":
            raise ValueError(f"{name(option)} applies to the 'sgd' optimizer, and this run's optimizer is "
                             f"{optimizer!r}: it cannot take effect. Add {name('optimizer')} sgd, or leave it out.")
    if c.nesterov and options["momentum"] == 0:
        raise ValueError(f"{name('nesterov')} looks ahead along the momentum, and this run's momentum is 0: it "
                         f"cannot take effect. Set {name('momentum')} above 0, or leave it out.")
    for option in ("milestones", "decay_factor"):
        if getattr(c, option) is not None and schedule != "step":
            raise ValueError(f"{name(option)} applies to the 'step' schedule, and this run's schedule is "
                             f"{schedule!r}: it cannot take effect. Add {name('schedule')} step, or leave it out.")
    if c.ema_decay is not None and not options["ema"]:
        raise ValueError(f"{name('ema_decay')} is the decay of the weights' moving average, and this run keeps none: "
                         f"it cannot take effect. Add {spell('ema=True', '--ema')}, or leave it out.")


def _check_dataset(c, options, splits):
    """The data set as run.json records it (a folder made absolute); options the digits cannot take refused."""
    dataset = c.dataset
    if dataset == "digits":
        if splits:  # 0 too: the digits' split is fixed, whatever the value
            key, value = next(iter(splits.items()))
            flag = spell(f"`{key}`", "--" + key.replace("_", "-"))
            raise ValueError(f"{flag} applies to TFDS data sets and image folders; the embedded digits have a fixed "
                             f"70/10/20 split. Received {flag} {value!r} with dataset 'digits'.")
        refuse_on_digits(image_size=c.image_size, augment=options["augment"], mixup=options["mixup"],
                         cutmix=options["cutmix"], random_erasing=options["random_erasing"], data_dir=c.data_dir,
                         download=c.download)
    elif isinstance(dataset, (str, os.PathLike)) and is_folder_name(dataset):
        dataset = os.path.abspath(os.path.expanduser(os.fspath(dataset)))  # resumable from any folder
        for key in ("train_split", "test_split"):  # the folder loader has no TFDS split names
            if key in splits:
                flag = spell(f"`{key}`", "--" + key.replace("_", "-"))
                raise ValueError(f"{flag} names a TFDS split; {dataset!r} is a folder of images, split by its "
                                 f"train/val/test subfolders or by the fractions. Received {flag} {splits[key]!r}.")
    return dataset


def _train(info, config, options, run, dist, *, resume, overwrite, data_dir, download, tensorboard, callbacks,
           verbose):
    model, dataset, seed, batch_size = config["model"], config["dataset"], config["seed"], config["batch_size"]
    image_size, augment, overrides = config["image_size"], config["augment"], config["overrides"]
    init_weights, freeze_backbone = config["init_weights"], config["freeze_backbone"]

    keras.utils.set_random_seed(seed)
    output_dir = run.path
    convention = None if dataset == "digits" else _input_convention(overrides, run, resume)
    data = load_dataset(
        dataset, seed=seed, batch_size=batch_size, **(
            {} if dataset == "digits" else
            dict(data_dir=data_dir, download=download, image_size=image_size, augment=augment,
                 random_erasing=config["random_erasing"], normalization=convention,
                 **{k: config[k] for k in SPLIT_KEYS if config[k] is not None})
        )
    )
    records = {"input_convention": convention and convention["convention"]}
    warnings = [size_warning(data, batch_size),
                window_warning(options, config["epochs"], steps_per_epoch(data, batch_size))]
    for warning in warnings if dist.is_chief and verbose != 0 else ():
        if warning:
            print(warning, file=sys.stderr, flush=True)
    if config["scale_lr"]:  # Goyal et al.'s linear scaling, asked for; never silently
        options = {**options, "learning_rate": options["learning_rate"] * dist.replicas}
    with dist.scope():
        # An older generation's default applies to the knobs this model uses.
        used = {k: v for k, v in info.knobs.items() if k not in info.inert_knobs(overrides)}
        knobs = run.generation_overrides(used, overrides) if resume else overrides
        net = build_model(model, input_shape=data.input_shape, num_classes=data.num_classes, **knobs)
        if config["bn_momentum"] is not None:  # before the weights are restored: a resumed run sets it again
            _set_bn_momentum(net, config["bn_momentum"])
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
        return _train_in_shadow(net, info, data, config, options, run, dist, resume, callbacks, verbose)
    if not dist.is_chief:
        return _fit_on_worker(net, data, config, options, run, dist, resume, callbacks, verbose)
    created = not os.path.exists(output_dir)
    try:
        with FolderLock(run.lock, f"Run folder {output_dir!r}"):
            done = run.prepare(config, resume=resume, overwrite=overwrite, records=records)
            return _fit_and_report(net, info, data, config, options, run, done, tensorboard, callbacks,
                                   verbose, dist)
    finally:
        if created and os.path.isdir(output_dir) and not os.listdir(output_dir):
            os.rmdir(output_dir)  # refused before anything was written: leave no empty folder behind


def _fit_on_worker(net, data, config, options, run, dist, resume, callbacks, verbose):
    """A non-chief worker: the same fit, no file written (it resumes from the chief's backup, read-only)."""
    with dist.scope():
        compile_with_recipe(net, options, epochs=config["epochs"],
                            steps_per_epoch=steps_per_epoch(data, config["batch_size"]),
                            num_classes=data.num_classes)
    fit = fit_arguments(data, config, options, dist)
    run_callbacks = [keras.callbacks.TerminateOnNaN(), *callbacks]
    if options["ema"]:  # every worker validates the averaged model, as the chief does
        run_callbacks.append(EMAValidation.for_fit(fit, data, config["batch_size"]))
    if resume:
        run_callbacks.append(BackupReader(run.file(BACKUP)))
    with fitting(net, dist, lambda: sample_batch(fit)):
        net.fit(**fit, epochs=config["epochs"], callbacks=run_callbacks, verbose=verbose)
    return TrainResult(model=net, metrics=None, output_dir=run.path, worker=dist.worker)


def _train_in_shadow(net, info, data, config, options, run, dist, resume, callbacks, verbose):
    """A non-chief JAX process: saving a model gathers its arrays from every process, so each process runs the
    chief's code, files included, into a private temporary folder (seeded with the chief's backup to resume)
    that is removed at the end; the run folder is written by the chief alone."""
    import shutil
    import tempfile

    shadow = tempfile.mkdtemp(prefix="lacnn-zoo-worker-")
    try:
        if resume:
            for name in RESUMABLE_ENTRIES:
                source = run.file(name)
                if os.path.isdir(source):
                    shutil.copytree(source, os.path.join(shadow, name))
                elif os.path.exists(source):
                    shutil.copy2(source, shadow)
            mark_owned(shadow, "run")
        shadow_run = RunFolder(shadow)
        done = shadow_run.prepare(config, resume=resume, overwrite=False)
        result = _fit_and_report(net, info, data, config, options, shadow_run, done, False, callbacks, verbose, dist)
        return TrainResult(model=result.model, metrics=None, output_dir=run.path, worker=dist.worker)
    finally:
        shutil.rmtree(shadow, ignore_errors=True)


def _fit_and_report(net, info, data, config, options, run, epochs_done, tensorboard, callbacks, verbose, dist):
    epochs, batch_size = config["epochs"], config["batch_size"]
    with dist.scope():
        compile_with_recipe(net, options, epochs=epochs, steps_per_epoch=steps_per_epoch(data, batch_size),
                            num_classes=data.num_classes)
    best_path = run.best
    backup = AtomicBackupAndRestore(run.file(BACKUP), delete_checkpoint=False)
    fit = fit_arguments(data, config, options, dist)
    # Order matters: the backup is written last each epoch, so an epoch it records is complete on disk.
    # With EMA, the averaged model is validated too (val_ema_* in the epoch's row, its time in epoch_time_s),
    # best.keras is the better of the two, the monitor sees the averaged model; the backup saves the raw
    # weights and statistics with the average in the optimizer, so that a resumed run continues both.
    if options["ema"] and epochs_done:
        check_resumed_history(run.file(HISTORY))
    ema = EMAValidation.for_fit(fit, data, batch_size) if options["ema"] else None
    run_callbacks = [
        keras.callbacks.TerminateOnNaN(),
        *([ema] if ema else []),
        EpochTimer(),
        keras.callbacks.CSVLogger(run.file(HISTORY), append=True),
        *callbacks,
        AtomicBestCheckpoint(best_path, monitor="val_accuracy", ema=ema),
    ]
    if tensorboard and keras.backend.backend() == "tensorflow":
        run_callbacks.append(keras.callbacks.TensorBoard(run.file(TENSORBOARD)))
    monitors = _model_callbacks(net, data, run)
    run_callbacks.extend([ema.swap_in(), *monitors, ema.swap_out()] if ema and monitors else monitors)
    run_callbacks.append(backup)

    start = time.perf_counter()
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
    with warnings.catch_warnings():  # a frozen backbone's checkpoint keeps fewer optimizer variables: no news
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
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
        "best_val_accuracy": float(max(run.column("val_accuracy") + run.column("val_ema_accuracy")
                                       or [float("nan")])),
        "best_weights": _best_weights(run),
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
    metrics["warnings"] = _diagnose(best, data, run, metrics, batch_size, verbose=verbose != 0 and dist.is_chief)
    run.write_metrics(metrics)
    remove_path(backup.backup_dir)  # only now: a kill before metrics.json leaves the run resumable
    return TrainResult(model=best, metrics=metrics, output_dir=run.path)


def _best_weights(run):
    """What best.keras holds: "ema" (the averaged weights, `--ema`) or "raw"."""
    try:
        return read_json(run.best + ".json").get("weights", "raw")
    except (OSError, ValueError):
        return "raw"


def _diagnose(model, data, run, metrics, batch_size, verbose):
    """The run's warnings (`lacnn_zoo.training.diagnostics`): accuracy near chance, overfitting, batch-norm
    statistics; printed to stderr when `verbose`."""
    train_accuracy = run.column("accuracy")
    val_accuracy = metrics["best_val_accuracy"]
    warnings = run_warnings(model, data, train_accuracy=train_accuracy[-1] if train_accuracy else None,
                            val_accuracy=val_accuracy if math.isfinite(val_accuracy) else None,
                            test_accuracy=metrics["test_accuracy"], batch_size=batch_size)
    if verbose:
        for line in lines(warnings):
            print(line, file=sys.stderr, flush=True)
    return warnings


def _model_callbacks(model, data, run):
    """Callbacks a model family asks for: the per-layer attention monitor for layer-attended models."""
    if not is_layer_attended(model):
        return []
    x, _ = data.sample(256, split="validation")
    tensorboard_dir = os.path.join(run.file(TENSORBOARD), "layer_attention")
    return [LayerAttentionMonitor(x, run.path, tensorboard_dir=tensorboard_dir)]


def resume(output_dir, **kwargs):
    """Continue the unfinished run in `output_dir` with its stored configuration.

    The model and every option run.json recorded are the run's own: it continues from the backup of its last
    finished epoch, as `train(..., resume=True)` does.

    Args:
        output_dir: the run folder of the unfinished run (a `train` run, with its run.json).
        **kwargs: the `train` arguments run.json does not record: `data_dir`, `download`, `distribute` (to give
            again for a run started with `scale_lr`), `tensorboard`, `callbacks`, `verbose`.

    Returns:
        A `TrainResult`, as `train` returns it.

    Raises:
        FileNotFoundError: `output_dir` holds no run.json.
        ValueError: the run already finished, or as `train` raises.
    """
    stored = RunFolder(output_dir).stored_arguments()
    model = stored.pop("model")
    return train(model, output_dir=output_dir, resume=True, **stored, **kwargs)
