"""One module per family; importing them registers their presets."""

from lacnn_zoo.models import plain, resnet  # noqa: F401
