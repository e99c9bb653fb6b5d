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
import shutil
import time

import keras
import numpy as np

from lacnn_zoo.callbacks import AtomicBackupAndRestore, AtomicBestCheckpoint, EpochTimer
from lacnn_zoo.data import load_dataset
from lacnn_zoo.io import read_json, write_json
from lacnn_zoo.registry import build_model, model_info
from lacnn_zoo.validation import check_positive_int

DEFAULT_MODEL = "lacnn_static_vector_tiny"

NO_DECAY = ["layer_logits", "layer_embedding", "beta_angle", "rel_height", "rel_width", "bias", "gamma", "beta"]

RUN_KEYS = (
    "model", "dataset", "epochs", "batch_size", "learning_rate", "weight_decay", "seed", "overrides",
    "image_size", "augment",
)


@dataclasses.dataclass
class TrainResult:
    model: keras.Model
    metrics: dict
    output_dir: str


def default_output_dir(model, dataset, seed):
    return os.path.join("runs", f"{model}-{dataset}-seed{seed}")


def _prepare_output_dir(output_dir, config, *, resume, overwrite):
    run_file = os.path.join(output_dir, "run.json")
    exists = os.path.isdir(output_dir) and os.listdir(output_dir)
    if exists and resume:
        if not os.path.exists(run_file):
            raise ValueError(f"`resume=True` but {output_dir!r} holds no run.json; it is not a training run.")
        stored = read_json(run_file)
        differ = {k: (stored.get(k), config[k]) for k in RUN_KEYS if stored.get(k) != _plain(config[k])}
        if differ:
            detail = "; ".join(f"{k}: stored {a!r}, asked {b!r}" for k, (a, b) in differ.items())
            raise ValueError(f"Cannot resume {output_dir!r} with a different configuration ({detail}).")
        return
    if exists and not overwrite:
        raise FileExistsError(
            f"Output directory {output_dir!r} already holds a run. Pass resume=True (--resume) to continue it, "
            "overwrite=True (--overwrite) to replace it, or another output_dir."
        )
    if exists and overwrite:
        shutil.rmtree(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    write_json(run_file, {k: _plain(config[k]) for k in RUN_KEYS})


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


def compile_model(model, *, learning_rate, weight_decay, decay_steps, from_logits=True):
    schedule = learning_rate
    if decay_steps:
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=decay_steps, alpha=0.01)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay)
    # Decay only kernels: decaying attention logits or beta would pull them towards uniform / 0,
    # biasing exactly the quantities the layer-attention monitor reports.
    optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=["accuracy"],
    )
    return model


def _fit_data(data, split, batch_size):
    part = getattr(data, split)
    if data.is_numpy:
        return {"x": part[0], "y": part[1], "batch_size": batch_size}
    return {"x": part}


def train(
    model=DEFAULT_MODEL,
    *,
    dataset="digits",
    epochs=30,
    batch_size=64,
    learning_rate=3e-3,
    weight_decay=1e-4,
    seed=0,
    output_dir=None,
    resume=False,
    overwrite=False,
    overrides=None,
    data_dir=None,
    download=False,
    image_size=None,
    augment=False,
    tensorboard=True,
    callbacks=(),
    verbose="auto",
):
    """Train `model` (a registered name) and return a `TrainResult`.

    The run is resumable: with `resume=True` on the same `output_dir` and
    configuration, it restores the weights, optimizer state and epoch counter
    saved at the end of the last finished epoch.  An existing run is never
    replaced unless `overwrite=True`.
    """
    info = model_info(model)
    check_positive_int("epochs", epochs)
    check_positive_int("batch_size", batch_size)
    if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
        raise ValueError(f"`learning_rate` must be a positive number; received learning_rate={learning_rate!r}.")
    overrides = dict(overrides or {})
    output_dir = output_dir or default_output_dir(model, dataset, seed)
    config = dict(
        model=model, dataset=dataset, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        weight_decay=weight_decay, seed=seed, overrides=overrides, image_size=image_size, augment=augment,
    )
    metrics_path = os.path.join(output_dir, "metrics.json")
    if resume and os.path.exists(metrics_path):
        raise ValueError(f"The run in {output_dir!r} already finished (metrics.json exists); nothing to resume.")

    keras.utils.set_random_seed(seed)
    data = load_dataset(
        dataset, seed=seed, batch_size=batch_size, **(
            {} if dataset == "digits" else
            dict(data_dir=data_dir, download=download, image_size=image_size, augment=augment)
        )
    )
    net = build_model(model, input_shape=data.input_shape, num_classes=data.num_classes, **overrides)
    _prepare_output_dir(output_dir, config, resume=resume, overwrite=overwrite)

    steps = steps_per_epoch(data, batch_size)
    compile_model(
        net, learning_rate=learning_rate, weight_decay=weight_decay, decay_steps=steps * epochs if steps else None
    )
    best_path = os.path.join(output_dir, "best.keras")
    run_callbacks = [
        keras.callbacks.TerminateOnNaN(),
        AtomicBackupAndRestore(os.path.join(output_dir, "backup")),
        EpochTimer(),
        keras.callbacks.CSVLogger(os.path.join(output_dir, "history.csv"), append=True),
        AtomicBestCheckpoint(best_path, monitor="val_accuracy"),
    ]
    if tensorboard and keras.backend.backend() == "tensorflow":
        run_callbacks.append(keras.callbacks.TensorBoard(os.path.join(output_dir, "tensorboard")))
    run_callbacks.extend(_model_callbacks(net, data, output_dir))
    run_callbacks.extend(callbacks)

    start = time.perf_counter()
    history = net.fit(
        **_fit_data(data, "train", batch_size),
        validation_data=data.validation,
        epochs=epochs,
        callbacks=run_callbacks,
        verbose=verbose,
    )
    wall = time.perf_counter() - start
    if history.history.get("loss") and not np.isfinite(history.history["loss"][-1]):
        raise FloatingPointError(f"Training diverged (loss {history.history['loss'][-1]}); nothing was reported.")

    best = keras.saving.load_model(best_path) if os.path.exists(best_path) else net
    test = best.evaluate(**_fit_data(data, "test", batch_size), verbose=0, return_dict=True)
    epoch_times = _column(output_dir, "epoch_time_s")
    metrics = {
        "model": model,
        "family": info.family,
        "dataset": dataset,
        "test_accuracy": float(test["accuracy"]),
        "test_loss": float(test["loss"]),
        "best_val_accuracy": float(max(_column(output_dir, "val_accuracy") or [float("nan")])),
        "params": int(net.count_params()),
        "epochs": epochs,
        "time_per_epoch_s": float(np.mean(epoch_times)) if epoch_times else None,
        "train_wall_time_s": wall,
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
    write_json(metrics_path, metrics)
    return TrainResult(model=best, metrics=metrics, output_dir=output_dir)


def _model_callbacks(model, data, output_dir):
    """Callbacks a model family asks for: the per-layer attention monitor for layer-attended models."""
    from lacnn_zoo.monitor import LayerAttentionMonitor, is_layer_attended

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
    stored = read_json(os.path.join(output_dir, "run.json"))
    model = stored.pop("model")
    return train(model, output_dir=output_dir, resume=True, **stored, **kwargs)
