"""Export trained zoo models to SavedModel and ONNX, checked numerically against Keras.

    from export import export_model
    manifest = export_model("runs/my-run/best.keras", "exported/my-model", format="both")

or `python -m export runs/my-run/best.keras --out exported/my-model`.
"""

from export.core import ExportError, export_model, load_trained_model

__all__ = ["ExportError", "export_model", "load_trained_model"]
