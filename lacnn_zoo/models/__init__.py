"""One module per family; importing them registers their presets."""

from lacnn_zoo.models import layer_attended, plain, resnet  # noqa: F401
