"""Export trained zoo models to SavedModel, ONNX and LiteRT, checked against Keras (int8 by accuracy).

    from export import export_model
    manifest = export_model("runs/my-run/best.keras", "exported/my-model", format="all")

or `python -m export runs/my-run/best.keras --out exported/my-model --format all`.

Attributes are imported lazily: `export.runtimes` (onnxruntime/LiteRT sessions, metadata) and the benchmark's
worker processes must not pull in TensorFlow through this package.
"""

__all__ = ["ExportError", "export_model", "load_trained_model"]


def __getattr__(name):
    if name in __all__:
        from export import core  # lazy: --help, export.runtimes and the bench workers stay without TensorFlow

        return getattr(core, name)
    raise AttributeError(f"module 'export' has no attribute {name!r}")
