"""Export of trained models to SavedModel and ONNX (see the export issue)."""
