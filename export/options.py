"""The export command's plain tables, free of Keras, TensorFlow and NumPy (the parsers of `python -m export`
and `lacnn-zoo export` build from them); `export.core` and `export.quantize` re-export them."""

FORMAT_SETS = {
    "onnx": ("onnx",), "saved_model": ("saved_model",), "litert": ("litert",),
    "both": ("onnx", "saved_model"), "all": ("onnx", "saved_model", "litert"),
}
FORMATS = tuple(FORMAT_SETS)
OUTPUTS = ("logits", "probabilities")
QUANTIZATIONS = ("int8",)
DEFAULT_CALIBRATION_IMAGES = 256
DEFAULT_MAX_ACCURACY_DROP = 1.0  # percentage points of top-1
