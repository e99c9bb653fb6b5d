"""lacnn-zoo: layer-attended convolutional networks and their baselines, for Keras 3.

    from lacnn_zoo import build_model, list_models, load_model
    model = build_model("resnet20", num_classes=100, mixing="beta")
    again = load_model("runs/resnet20-digits-seed0/best.keras")

Importing the package registers every model preset and every serializable
layer, so `keras.saving.load_model` reads the zoo's `.keras` files in a fresh
process.
"""

import importlib

from lacnn_zoo import launch as _launch

# name -> module: the public API, imported eagerly (below) or on first use (PEP 562, command lines only).
_PUBLIC = {
    "ModelInfo": "lacnn_zoo.models.registry", "build_model": "lacnn_zoo.models.registry",
    "list_families": "lacnn_zoo.models.registry", "list_models": "lacnn_zoo.models.registry",
    "model_info": "lacnn_zoo.models.registry", "register_model": "lacnn_zoo.models.registry",
    "load_model": "lacnn_zoo.models.saving", "input_convention": "lacnn_zoo.models.backbones",
    "feature_extractor": "lacnn_zoo.models.layer_attended", "feature_info": "lacnn_zoo.models.layer_attended",
    "layer_attended": "lacnn_zoo.models.layer_attended", "tap_names": "lacnn_zoo.models.layer_attended",
    # a trained model: its per-layer attention, its predictions and scores, and training itself
    "layer_weights": "lacnn_zoo.training.monitor", "is_layer_attended": "lacnn_zoo.training.monitor",
    "LayerAttentionMonitor": "lacnn_zoo.training.monitor", "plot_layer_attention": "lacnn_zoo.training.monitor",
    "evaluate": "lacnn_zoo.training.inference", "predict": "lacnn_zoo.training.inference",
    "train": "lacnn_zoo.training.loop", "resume": "lacnn_zoo.training.loop",
    # the report's measures and figures in a notebook (also `lacnn_zoo.report.Interpretation`)
    "Interpretation": "lacnn_zoo.experiments.report.interpretation",
}


def register_all():
    """Import every model module (their @register_model presets and, through their layers, every
    @register_keras_serializable) and bind the public API. Idempotent."""
    # The model modules import the registry (not the other way round).
    importlib.import_module("lacnn_zoo.layers")
    importlib.import_module("lacnn_zoo.models")
    globals()["layer_attention"] = importlib.import_module("lacnn_zoo.layers.layer_attention")
    for name, module in _PUBLIC.items():
        globals()[name] = getattr(importlib.import_module(module), name)
    if "report" in globals():  # defined below: bound there at the first import
        globals()["report"].Interpretation = globals()["Interpretation"]


# The zoo's own command lines (`lacnn-zoo`, `python -m lacnn_zoo`, and the tuning and export commands) skip
# the eager imports so that `--help` and `lacnn-zoo list` answer without loading Keras and TensorFlow; they
# call `register_all()` (through `launch.start_quietly`) before running any other command.  Until then an
# attribute of the public API loads everything on first use.  Every other importer registers eagerly, so
# `keras.saving.load_model` reads the zoo's `.keras` files right after `import lacnn_zoo`.
if _launch.launched_as() is None:
    _launch.quiet_registration(register_all)  # TensorFlow's start-up lines filtered (TF_CPP_MIN_LOG_LEVEL=0 shows them)
else:
    def __getattr__(name):  # whatever the eager import would have bound
        if not name.startswith("__"):
            register_all()
            if name in globals():
                return globals()[name]
        raise AttributeError(f"module 'lacnn_zoo' has no attribute {name!r}")


__version__ = "0.2.0"  # the one place: setup.cfg reads it, `lacnn-zoo --version` prints it


def report(run, **options):
    """Write `report.html` (and its PNG figures) for a run folder of `lacnn-zoo train` or a tuning project;
    returns the page's path. See `lacnn_zoo.experiments.report.report` for the options.

    Args:
        run: the run folder (or the tuning project folder).
        **options: the keyword options of `lacnn_zoo.experiments.report.report`: `dataset`, `out`, `overwrite`,
            `examples`, `image_size`, `data_dir`, `download`, `log`.

    Returns:
        The absolute path of the written `report.html` (a string).
    """
    from lacnn_zoo.experiments.report import report as write_report  # lazy: --help answers without loading Keras

    return write_report(run, **options)


if "Interpretation" in globals():  # registered eagerly above (every importer but the command lines)
    report.Interpretation = Interpretation  # noqa: F821  (bound by register_all)


__all__ = [
    "Interpretation",
    "LayerAttentionMonitor",
    "ModelInfo",
    "build_model",
    "evaluate",
    "feature_extractor",
    "feature_info",
    "input_convention",
    "is_layer_attended",
    "layer_attended",
    "layer_weights",
    "list_families",
    "list_models",
    "load_model",
    "model_info",
    "plot_layer_attention",
    "predict",
    "register_model",
    "report",
    "resume",
    "tap_names",
    "train",
    "__version__",
]
