"""Residual blocks with three ways of mixing the block's branch f(x) with its input x.

* ``"add"``        h = f(x) + s(x)                      (He et al. 2015)
* ``"beta"``       h = beta f(x) + (1 - beta) s(x)       (layer-attended paper, eq. 1)
* ``"projection"`` h = W1 f(x) + W2 x                    ("useful layers" lecture, improved block)

``s`` is the identity when shapes agree and a strided 1x1 convolution + BN (the
lecture's W2) whenever the channel count or the spatial size changes.
"""

import math

import keras
from keras import layers, ops

from lacnn_zoo.layers.augmented_conv import AugmentedConv2D
from lacnn_zoo.layers.conv import bn_arguments
from lacnn_zoo.validation import check_choice, check_positive_int, check_unit_interval

MIXING_MODES = ("add", "beta", "projection")


@keras.saving.register_keras_serializable(package="lacnn_zoo")
class ResidualBlock(layers.Layer):
    """Basic two-convolution residual block with a choice of mixing.

    The branch is ``f(x) = BN(conv3x3(relu(BN(conv3x3_strided(x)))))`` for the
    post-activation block of He et al. (2015), followed by a ReLU after the
    mixing.  With ``preactivation=True`` it is the Wide-ResNet block
    ``f(x) = conv3x3(dropout(relu(BN(conv3x3_strided(relu(BN(x)))))))`` with no
    activation after the mixing (Zagoruyko & Komodakis 2016).

    Mixing (see the module docstring):

    * ``"beta"``: ``beta`` is one trainable scalar per block, parametrised as
      ``beta = sin(beta_angle)**2`` so it lies in [0, 1] for every value of the
      weight, without clipping.  ``beta_init`` may be 0 or 1; those are fixed
      points of the parametrisation (zero gradient), so start slightly inside
      the interval if beta should move.
    * ``"projection"``: ``W1`` is a 1x1 convolution (``mix_residual``) applied to
      f(x); ``W2`` is the shortcut projection, present whenever shapes differ.

    Args:
        filters: output channels.
        strides: 1 or 2 (first convolution and shortcut).
        mixing: one of ``"add"``, ``"beta"``, ``"projection"``.
        beta_init: initial beta in [0, 1] (``mixing="beta"`` only).
        preactivation: Wide-ResNet pre-activation ordering.
        dropout: dropout rate between the two convolutions, in [0, 1).
        attention: ``None`` for a 3x3 first convolution, or the keyword arguments
            of `AugmentedConv2D` (``dk``, ``dv``, ``heads``, ``relative``,
            ``min_key_dims_per_head``) to augment it with self-attention, as the
            attention-augmented Wide-ResNets do (Bello et al. 2019).  The block's
            BatchNormalization after that convolution is the paper's BN after the
            concatenation.
        bn_momentum: the BatchNormalizations' momentum (None: Keras' 0.99); kept in
            the config, so a saved model keeps it.

    Call arguments:
        inputs: ``(batch, height, width, channels)``.
        training: BatchNormalization / dropout mode.

    Returns:
        ``(batch, ceil(height / strides), ceil(width / strides), filters)``.

    Examples:
        >>> block = ResidualBlock(32, strides=2, mixing="beta", beta_init=0.5)
        >>> block(keras.ops.ones((2, 8, 8, 16))).shape
        (2, 4, 4, 32)
    """

    def __init__(
        self,
        filters,
        strides=1,
        mixing="add",
        beta_init=0.5,
        preactivation=False,
        dropout=0.0,
        attention=None,
        bn_momentum=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.bn_momentum = None if bn_momentum is None else float(bn_momentum)  # None: Keras' 0.99
        self.filters = check_positive_int("filters", filters)
        self.strides = check_choice("strides", strides, (1, 2))
        self.mixing = check_choice("mixing", mixing, MIXING_MODES)
        self.beta_init = check_unit_interval("beta_init", beta_init)
        self.preactivation = bool(preactivation)
        self.dropout = check_unit_interval("dropout", dropout, open_right=True)
        if attention is not None:
            if not isinstance(attention, dict):
                raise ValueError(f"`attention` must be None or a dict of AugmentedConv2D arguments; got {attention!r}.")
            # Validate now (clear errors at construction), build later.
            AugmentedConv2D(self.filters, strides=self.strides, **attention)
        self.attention = None if attention is None else dict(attention)

    def _conv(self, filters, kernel_size, strides, name):
        return layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            name=name,
            dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        in_channels = input_shape[-1]
        if self.attention is None:
            self.conv1 = self._conv(self.filters, 3, self.strides, "conv1")
        else:
            self.conv1 = AugmentedConv2D(self.filters, strides=self.strides, name="conv1", dtype=self.dtype_policy,
                                         **self.attention)
        self.conv2 = self._conv(self.filters, 3, 1, "conv2")
        self.bn1 = layers.BatchNormalization(name="bn1", dtype=self.dtype_policy, **bn_arguments(self.bn_momentum))
        self.bn2 = layers.BatchNormalization(name="bn2", dtype=self.dtype_policy, **bn_arguments(self.bn_momentum))
        self.drop = layers.Dropout(self.dropout, name="dropout", dtype=self.dtype_policy) if self.dropout else None

        shape = tuple(input_shape)
        if self.preactivation:
            self.bn1.build(shape)
        self.conv1.build(shape)
        mid = self.conv1.compute_output_shape(shape)
        if self.preactivation:
            self.bn2.build(mid)
        else:
            self.bn1.build(mid)
        self.conv2.build(mid)
        out = self.conv2.compute_output_shape(mid)
        if not self.preactivation:
            self.bn2.build(out)

        self.has_projection = self.strides != 1 or in_channels != self.filters
        if self.has_projection:
            self.shortcut_conv = self._conv(self.filters, 1, self.strides, "shortcut_conv")
            self.shortcut_conv.build(shape)
            # Wide-ResNet's pre-activation shortcut is a bare 1x1 convolution.
            self.shortcut_bn = None
            if not self.preactivation:
                self.shortcut_bn = layers.BatchNormalization(name="shortcut_bn", dtype=self.dtype_policy,
                                                             **bn_arguments(self.bn_momentum))
                self.shortcut_bn.build(out)
        if self.mixing == "beta":
            self.beta_angle = self.add_weight(
                name="beta_angle",
                shape=(),
                initializer=keras.initializers.Constant(math.asin(math.sqrt(self.beta_init))),
                trainable=True,
            )
        elif self.mixing == "projection":
            self.mix_residual = self._conv(self.filters, 1, 1, "mix_residual")
            self.mix_residual.build(out)

    @property
    def beta(self):
        """The mixing weight `sin(beta_angle)**2` (a tensor), or None unless mixing="beta"."""
        if self.mixing != "beta":
            return None
        return ops.square(ops.sin(self.beta_angle))

    def _shortcut(self, x, training):
        if not self.has_projection:
            return x
        x = self.shortcut_conv(x)
        return x if self.shortcut_bn is None else self.shortcut_bn(x, training=training)

    def call(self, inputs, training=None):
        if self.preactivation:
            pre = ops.relu(self.bn1(inputs, training=training))
            shortcut = self._shortcut(pre, training) if self.has_projection else inputs
            branch = ops.relu(self.bn2(self.conv1(pre, training=training), training=training))
            if self.drop is not None:
                branch = self.drop(branch, training=training)
            branch = self.conv2(branch)
        else:
            shortcut = self._shortcut(inputs, training)
            branch = ops.relu(self.bn1(self.conv1(inputs, training=training), training=training))
            if self.drop is not None:
                branch = self.drop(branch, training=training)
            branch = self.bn2(self.conv2(branch), training=training)

        if self.mixing == "add":
            out = branch + shortcut
        elif self.mixing == "beta":
            beta = self.beta
            out = beta * branch + (1.0 - beta) * shortcut
        else:
            out = self.mix_residual(branch) + shortcut
        return out if self.preactivation else ops.relu(out)

    def compute_output_shape(self, input_shape):
        mid = self.conv1.compute_output_shape(tuple(input_shape))
        return self.conv2.compute_output_shape(mid)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            strides=self.strides,
            mixing=self.mixing,
            beta_init=self.beta_init,
            preactivation=self.preactivation,
            dropout=self.dropout,
            attention=self.attention,
        )
        if self.bn_momentum is not None:  # absent otherwise: configs saved before the option are unchanged
            config["bn_momentum"] = self.bn_momentum
        return config
