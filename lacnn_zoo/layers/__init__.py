"""Reusable Keras layers of the zoo (one concept per class, `keras.ops` only)."""

from lacnn_zoo.layers.conv import ConvBNAct
from lacnn_zoo.layers.residual import ResidualBlock

__all__ = ["ConvBNAct", "ResidualBlock"]
