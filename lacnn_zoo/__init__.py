"""lacnn-zoo: layer-attended convolutional networks and their baselines, for Keras 3.

    from lacnn_zoo import build_model, list_models
    model = build_model("resnet20", num_classes=100, mixing="beta")
"""

from lacnn_zoo.registry import ModelInfo, build_model, list_families, list_models, model_info, register_model

__version__ = "0.1.0"

__all__ = [
    "ModelInfo",
    "build_model",
    "list_families",
    "list_models",
    "model_info",
    "register_model",
    "__version__",
]
