"""Reusable Keras layers of the zoo (one concept per class, `keras.ops` only)."""

from lacnn_zoo.layers.augmented_conv import AugmentedConv2D
from lacnn_zoo.layers.batchnorm import calibrate_batchnorm
from lacnn_zoo.layers.conv import ConvBNAct
from lacnn_zoo.layers.residual import ResidualBlock

__all__ = ["AugmentedConv2D", "ConvBNAct", "ResidualBlock", "calibrate_batchnorm"]
