"""One module per family; importing them registers their presets."""

from lacnn_zoo.models import layer_attended, plain, resnet  # noqa: F401
from lacnn_zoo.models.registry import (
    ModelInfo,
    build_model,
    list_families,
    list_models,
    model_info,
    register_model,
    resolve_models,
)
from lacnn_zoo.models.saving import load_model

__all__ = ["ModelInfo", "build_model", "list_families", "list_models", "load_model", "model_info", "register_model",
           "resolve_models"]
