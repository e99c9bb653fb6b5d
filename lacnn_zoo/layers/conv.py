"""The plain convolutional layer of the layer-attended paper's Fig. 1: Conv -> BN -> activation."""

import keras
from keras import layers

from lacnn_zoo.validation import check_choice, check_positive_int


def bn_arguments(bn_momentum):
    """BatchNormalization's keyword arguments for a composite layer's `bn_momentum` (None: Keras' default)."""
    return {} if bn_momentum is None else {"momentum": bn_momentum}


@keras.saving.register_keras_serializable(package="lacnn_zoo")
class ConvBNAct(layers.Layer):
    """One convolutional layer: `act(BN(conv_kxk(x)))`, "same" padding, no conv bias.

    This is the triangle of Fig. 1 in the layer-attended paper; a plain CNN is a
    stack of them and a layer-attended network taps the output of each one.

    Args:
        filters: number of output channels.
        kernel_size: square kernel size (odd, positive).
        strides: 1, or 2 to halve the spatial size ("same" padding, so
            `ceil(H / 2)`).
        activation: a Keras activation (a name, or a callable such as
            `keras.activations.gelu` or a registered custom function); `None`
            for linear.
        bn_momentum: the BatchNormalization's momentum (None: Keras' 0.99);
            kept in the config, so a saved model keeps it.

    Call arguments:
        inputs: `(batch, height, width, channels)` tensor.
        training: whether BatchNormalization uses batch statistics.

    Returns:
        `(batch, ceil(height / strides), ceil(width / strides), filters)`.

    Examples:
        >>> layer = ConvBNAct(32, strides=2)
        >>> layer(keras.ops.ones((2, 9, 8, 3))).shape
        (2, 5, 4, 32)
    """

    def __init__(self, filters, kernel_size=3, strides=1, activation="relu", bn_momentum=None, **kwargs):
        super().__init__(**kwargs)
        self.bn_momentum = None if bn_momentum is None else float(bn_momentum)
        self.filters = check_positive_int("filters", filters)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.strides = check_choice("strides", strides, (1, 2))
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        self.conv = layers.Conv2D(
            self.filters,
            self.kernel_size,
            strides=self.strides,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            name="conv",
            dtype=self.dtype_policy,
        )
        self.conv.build(input_shape)
        self.bn = layers.BatchNormalization(name="bn", dtype=self.dtype_policy, **bn_arguments(self.bn_momentum))
        self.bn.build(self.conv.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        return self.activation(self.bn(self.conv(inputs), training=training))

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            activation=keras.activations.serialize(self.activation),
        )
        if self.bn_momentum is not None:  # absent otherwise: configs saved before the option are unchanged
            config["bn_momentum"] = self.bn_momentum
        return config
