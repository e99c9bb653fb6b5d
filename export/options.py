"""The export command's plain tables, free of Keras, TensorFlow and NumPy (the parsers of `python -m export`
and `lacnn-zoo export` build from them); `export.core` and `export.quantize` re-export them."""

from export.table import EXPORT_FORMATS

BOTH = ("onnx", "saved_model")  # the default set of formats


def format_sets(names):
    """`--format`'s choices and the formats each writes: every format alone (the default's first, as they have
    always been listed), then "both" (the default) and "all"."""
    ordered = (*(n for n in BOTH if n in names), *(n for n in names if n not in BOTH))
    return {**{name: (name,) for name in ordered}, "both": BOTH, "all": ordered}


FORMAT_SETS = format_sets(tuple(EXPORT_FORMATS))
FORMATS = tuple(FORMAT_SETS)
OUTPUTS = ("logits", "probabilities")
QUANTIZATIONS = ("int8",)
DEFAULT_CALIBRATION_IMAGES = 256
DEFAULT_MAX_ACCURACY_DROP = 1.0  # percentage points of top-1
