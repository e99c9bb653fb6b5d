"""What a run was, for the top of its page: the model (its backbone, taps and mechanism), the data and its split
sizes, the recipe (learning rate and schedule, epochs, EMA, augmentation, precision, seed) and the headline
results (test accuracy and loss, the best validation accuracy and its epoch). Epochs count from 1, on the page and
in report.json, as best.keras.json counts them (history.csv's `epoch` column counts from 0)."""

from lacnn_zoo.models.registry import model_info
from lacnn_zoo.plotting import counted

# The recipe keys of run.json shown as augmentation when they differ from "off".
_AUGMENTATION = (("augment", "none"), ("mixup", 0.0), ("cutmix", 0.0), ("random_erasing", 0.0),
                 ("label_smoothing", 0.0))


def knobs(config):
    """The model's knobs as trained: its preset's defaults with run.json's overrides; {} for a name the registry
    does not know (a model registered by the user's own code)."""
    try:
        defaults = dict(model_info(config.get("model")).knobs)
    except (KeyError, ValueError, TypeError):
        defaults = {}
    overrides = config.get("overrides") if isinstance(config.get("overrides"), dict) else {}
    return {**defaults, **overrides}


def backbone(config):
    """The backbone a layer-attended (or other backboned) model was built on, or None."""
    value = knobs(config).get("backbone")
    return value if isinstance(value, str) else None


def _schedule(config):
    schedule = config.get("schedule")
    parts = [str(schedule)]
    if schedule == "step" and config.get("milestones"):
        parts.append(f"×{config.get('decay_factor')} at {', '.join(f'{m:g}' for m in config['milestones'])} of "
                     "training")
    if config.get("warmup_epochs"):
        parts.append(counted(config["warmup_epochs"], "warm-up epoch"))
    return "; ".join(parts)


def _augmentation(config):
    used = [f"{key}={config[key]}" if key != "augment" else str(config[key])
            for key, off in _AUGMENTATION if config.get(key) not in (None, off)]
    return ", ".join(used) or "none"


def rows(config, metrics, *, epochs_run, best_epoch, best_accuracy, splits=None, taps=None):
    """The configuration table's rows `[what, value]`.

    Args:
        config: run.json (with the defaults of keys older runs did not write).
        metrics: metrics.json ({} when unusable).
        epochs_run: the epochs history.csv holds.
        best_epoch: the epoch of best.keras, counted from 1, or None.
        best_accuracy: its validation accuracy, or None.
        splits: `{"train": n, "validation": n, "test": n}` images, or None when the data was not loaded.
        taps: the tap names of a layer-attended model, or None.

    Returns:
        A list of `[label, value]` rows.
    """
    model_knobs = knobs(config)
    shape = metrics.get("input_shape")
    table = [["model", config.get("model")], ["family", metrics.get("family")]]
    for key in ("backbone", "mechanism"):
        if isinstance(model_knobs.get(key), str):
            table.append([key, model_knobs[key]])
    if taps:
        table.append(["taps", f"{len(taps)}: {', '.join(taps)}"])
    table += [
        ["parameters", metrics.get("params")],
        ["data set", config.get("dataset")],
        ["image size", "×".join(str(d) for d in shape) if isinstance(shape, list) else None],
        ["split sizes (train / validation / test)",
         " / ".join(str(splits.get(s)) for s in ("train", "validation", "test")) if splits else None],
        ["batch size", config.get("batch_size")],
        ["optimizer", f"{config.get('optimizer')}, weight decay {config.get('weight_decay')}"],
        ["learning rate", f"{config.get('learning_rate')} ({_schedule(config)})"],
        ["epochs", f"{epochs_run} of {config.get('epochs')}" if epochs_run != config.get("epochs") else epochs_run],
        ["EMA of the weights", f"on, decay {config.get('ema_decay')}" if config.get("ema") else "off"],
        ["augmentation", _augmentation(config)],
        ["precision", config.get("precision")],
        ["seed", config.get("seed")],
        ["test accuracy", metrics.get("test_accuracy")],
        ["test loss", metrics.get("test_loss")],
        ["best validation accuracy (epoch, from 1)",
         f"{best_accuracy:.4f} (epoch {best_epoch})" if best_epoch is not None and best_accuracy is not None
         else None],
    ]
    return table


def title(config):
    """The page's title: the model, its backbone when it has one, and the data set."""
    dataset = str(config.get("dataset") or "").rstrip("/\\").rsplit("/", 1)[-1]
    name, base = config.get("model"), backbone(config)
    return f"{name} ({base} backbone) on {dataset}" if base else f"{name} on {dataset}"
