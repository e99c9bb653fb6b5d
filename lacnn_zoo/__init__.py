"""lacnn-zoo: layer-attended convolutional networks and their baselines, for Keras 3.

    from lacnn_zoo import build_model, list_models, load_model
    model = build_model("resnet20", num_classes=100, mixing="beta")
    again = load_model("runs/resnet20-digits-seed0/best.keras")

Importing the package registers every model preset and every serializable
layer, so `keras.saving.load_model` reads the zoo's `.keras` files in a fresh
process.
"""

from lacnn_zoo.models.registry import ModelInfo, build_model, list_families, list_models, model_info, register_model

# The model modules import the registry (not the other way round); importing them runs their
# @register_model decorators and, through their layers, every @register_keras_serializable.
from lacnn_zoo import layers, models  # noqa: E402, F401  isort: skip
from lacnn_zoo.layers import layer_attention  # noqa: E402, F401  isort: skip
from lacnn_zoo.models.saving import load_model  # noqa: E402  isort: skip
from lacnn_zoo.models.backbones import input_convention  # noqa: E402  isort: skip
from lacnn_zoo.models.layer_attended import feature_extractor, feature_info, layer_attended, tap_names  # noqa: E402  isort: skip

__version__ = "0.1.0"

__all__ = [
    "ModelInfo",
    "build_model",
    "feature_extractor",
    "feature_info",
    "input_convention",
    "layer_attended",
    "list_families",
    "list_models",
    "load_model",
    "model_info",
    "register_model",
    "tap_names",
    "__version__",
]
