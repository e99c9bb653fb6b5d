"""Attention-augmented convolution (Bello, Zoph, Vaswani, Shlens & Le, ICCV 2019).

    AAConv(X) = Concat[Conv(X), MHA(X)]                                        (eq. 5)
    O_h       = softmax((Q_h K_h^T + S_h^H + S_h^W) / sqrt(dkh)) V_h            (eq. 1, 3)
    MHA(X)    = Concat[O_1, ..., O_Nh] W^O                                       (eq. 2)
    l_ij      = q_i^T (k_j + r^W_{x_j - x_i} + r^H_{y_j - y_i}) / sqrt(dkh)    (eq. 3)

Q, K, V come from one 1x1 convolution with 2 dk + dv outputs; q is scaled by
dkh^-0.5 once, before the content and the relative products.  r^W (2W-1, dkh)
and r^H (2H-1, dkh) are learned and shared across heads.  The relative logits
are computed with the paper's memory-efficient skew (pad, reshape, slice) and
added to the content logits by broadcasting; no [B, Nh, H, H, W, W] tiled copy
and no [HW, HW, dkh] gathered table is ever built.
"""

import numbers

import keras
from keras import layers, ops

from lacnn_zoo.validation import check_choice, check_positive_int


def rel_to_abs(x):
    """Skew relative logits to absolute ones: (N, L, 2L-1) -> (N, L, L) with out[n, i, j] = x[n, i, j - i + L - 1].

    Pad one column, flatten, pad L-1, reshape to (L+1, 2L-1) and slice (Music
    Transformer / Bello et al. appendix A.3).
    """
    length = x.shape[1]
    x = ops.pad(x, ((0, 0), (0, 0), (0, 1)))  # (N, L, 2L)
    x = ops.reshape(x, (-1, length * 2 * length))
    x = ops.pad(x, ((0, 0), (0, length - 1)))  # (N, (L + 1)(2L - 1))
    x = ops.reshape(x, (-1, length + 1, 2 * length - 1))
    return x[:, :length, length - 1:]


def relative_logits_1d(q, rel):
    """q: (B, Nh, X, L, d), rel: (2L-1, d) -> (B, Nh, X, L, L): logits[.., i, j] = q_i . rel[j - i + L - 1]."""
    heads, rows, length = q.shape[1], q.shape[2], q.shape[3]
    logits = ops.matmul(q, ops.transpose(rel))  # (B, Nh, X, L, 2L-1)
    logits = rel_to_abs(ops.reshape(logits, (-1, length, 2 * length - 1)))
    return ops.reshape(logits, (-1, heads, rows, length, length))


def _resolve_depth(name, value, filters, heads, minimum=1):
    """An absolute channel count, or a ratio of `filters` rounded to a multiple of `heads` (at least `minimum`/head)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value <= 0:
        raise ValueError(f"`{name}` must be a positive channel count or a ratio in (0, 1); received {name}={value!r}.")
    if isinstance(value, numbers.Integral) or value >= 1:
        if value != int(value):
            raise ValueError(f"`{name}` >= 1 is a channel count and must be whole; received {name}={value!r}.")
        value = int(value)
        if value % heads:
            raise ValueError(f"`{name}` must be divisible by `heads`; received {name}={value}, heads={heads}.")
        if value // heads < minimum:
            raise ValueError(
                f"`{name}` must give at least {minimum} channel(s) per head; received {name}={value}, heads={heads}."
            )
        return value
    per_head = max(minimum, round(value * filters / heads))
    return per_head * heads


@keras.saving.register_keras_serializable(package="lacnn_zoo")
class AugmentedConv2D(layers.Layer):
    """Concat[Conv(X), MHA(X)]: a convolution whose last `dv` output channels come from 2-D relative self-attention.

    The convolution branch has `filters - dv` filters; the attention branch gives
    `dv` channels through the output projection W^O (a 1x1 convolution,
    `attention_output`).  No normalisation is applied: the BatchNormalization
    that the paper places after the concatenation is the one the residual
    block applies after its first convolution.

    Stride 2: the attention branch attends over the input average-pooled by
    2x2 with "same" padding, so its grid is ceil(H/2) x ceil(W/2), the same as
    the strided convolution's (`Conv2D(strides=2, padding="same")`), for odd
    sizes too.  This also cuts the attention memory by 16.

    Args:
        filters: output channels, Fout.
        kernel_size: the convolution branch's kernel.
        strides: 1 or 2.
        dk: total key depth; an int (channels) or a ratio kappa of `filters`,
            rounded to a multiple of `heads`.  Paper: 0.2.
        dv: total value depth (attention output channels); int or ratio
            upsilon, as for dk.  Paper: 0.1.  Must be < filters.
        heads: Nh.  Paper: 8.
        relative: add the 2-D relative position logits; False gives plain
            content attention (for ablations; then permutation-equivariant).
        min_key_dims_per_head: floor for dk / heads when dk is a ratio (the
            paper uses 20 on CIFAR).

    Call arguments:
        inputs: (batch, height, width, channels); height and width must be fixed.

    Returns:
        (batch, ceil(height / strides), ceil(width / strides), filters).

    Example:
        >>> AugmentedConv2D(32, dk=8, dv=4, heads=4)(keras.ops.ones((2, 7, 5, 3))).shape
        (2, 7, 5, 32)
    """

    def __init__(self, filters, kernel_size=3, strides=1, dk=0.2, dv=0.1, heads=8, relative=True,
                 min_key_dims_per_head=1, **kwargs):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.strides = check_choice("strides", strides, (1, 2))
        self.heads = check_positive_int("heads", heads)
        self.min_key_dims_per_head = check_positive_int("min_key_dims_per_head", min_key_dims_per_head)
        self.relative = bool(relative)
        self.dk, self.dv = dk, dv
        self.key_depth = _resolve_depth("dk", dk, filters, heads, self.min_key_dims_per_head)
        self.value_depth = _resolve_depth("dv", dv, filters, heads)
        if self.value_depth >= filters:
            raise ValueError(
                f"`dv` must leave at least one convolution filter: dv ({self.value_depth}) < filters ({filters}). "
                "Use fewer heads or a smaller dv."
            )

    def build(self, input_shape):
        height, width = input_shape[1], input_shape[2]
        if height is None or width is None:
            raise ValueError(
                "AugmentedConv2D needs a fixed input height and width (its relative position tables are sized "
                f"from them); received input shape {tuple(input_shape)}."
            )
        self.conv = layers.Conv2D(self.filters - self.value_depth, self.kernel_size, strides=self.strides,
                                  padding="same", use_bias=False, kernel_initializer="he_normal", name="conv",
                                  dtype=self.dtype_policy)
        self.conv.build(input_shape)
        self.pool = None
        attention_shape = tuple(input_shape)
        if self.strides == 2:
            self.pool = layers.AveragePooling2D(2, strides=2, padding="same", name="attention_pool",
                                                dtype=self.dtype_policy)
            attention_shape = self.pool.compute_output_shape(attention_shape)
        self.grid = tuple(attention_shape[1:3])
        self.qkv = layers.Conv2D(2 * self.key_depth + self.value_depth, 1, name="qkv", dtype=self.dtype_policy)
        self.qkv.build(attention_shape)
        self.attention_output = layers.Conv2D(self.value_depth, 1, name="attention_output", dtype=self.dtype_policy)
        self.attention_output.build((None, *self.grid, self.value_depth))
        dkh = self.key_depth // self.heads
        if self.relative:
            init = keras.initializers.RandomNormal(stddev=dkh**-0.5)
            self.rel_width = self.add_weight(name="rel_width", shape=(2 * self.grid[1] - 1, dkh), initializer=init)
            self.rel_height = self.add_weight(name="rel_height", shape=(2 * self.grid[0] - 1, dkh), initializer=init)

    def _split_heads(self, x):
        """(B, H, W, C) -> (B, Nh, H, W, C / Nh)."""
        height, width, channels = x.shape[1:]
        x = ops.reshape(x, (-1, height, width, self.heads, channels // self.heads))
        return ops.transpose(x, (0, 3, 1, 2, 4))

    def relative_logits(self, q):
        """S^H + S^W for scaled queries q (B, Nh, H, W, dkh), as (B, Nh, H, W, H, W) broadcast terms.

        Returns (width_term (B, Nh, H, W, 1, W), height_term (B, Nh, H, W, H, 1)).
        """
        width_logits = relative_logits_1d(q, self.rel_width)  # [.., y_i, x_i, x_j]
        height_logits = relative_logits_1d(ops.transpose(q, (0, 1, 3, 2, 4)), self.rel_height)  # [.., x_i, y_i, y_j]
        height_logits = ops.transpose(height_logits, (0, 1, 3, 2, 4))  # [.., y_i, x_i, y_j]
        return ops.expand_dims(width_logits, 4), ops.expand_dims(height_logits, 5)

    def attention_logits(self, q, k):
        """(B, Nh, HW, HW) logits from scaled q and k (B, Nh, H, W, dkh)."""
        height, width = self.grid
        pixels = height * width
        dkh = q.shape[-1]
        q_flat = ops.reshape(q, (-1, self.heads, pixels, dkh))
        k_flat = ops.reshape(k, (-1, self.heads, pixels, dkh))
        logits = ops.matmul(q_flat, ops.transpose(k_flat, (0, 1, 3, 2)))
        if self.relative:
            width_term, height_term = self.relative_logits(q)
            logits = ops.reshape(logits, (-1, self.heads, height, width, height, width)) + width_term + height_term
            logits = ops.reshape(logits, (-1, self.heads, pixels, pixels))
        return logits

    def attention_branch(self, inputs):
        """MHA(X) of eq. 2: (B, H', W', dv), H' x W' the attention grid."""
        x = inputs if self.pool is None else self.pool(inputs)
        qkv = self.qkv(x)
        dk, dv = self.key_depth, self.value_depth
        q, k, v = qkv[..., :dk], qkv[..., dk:2 * dk], qkv[..., 2 * dk:]
        q = self._split_heads(q) * ((dk // self.heads) ** -0.5)
        k, v = self._split_heads(k), self._split_heads(v)
        weights = ops.softmax(self.attention_logits(q, k), axis=-1)  # over keys
        height, width = self.grid
        dvh = dv // self.heads
        out = ops.matmul(weights, ops.reshape(v, (-1, self.heads, height * width, dvh)))
        out = ops.reshape(out, (-1, self.heads, height, width, dvh))
        out = ops.reshape(ops.transpose(out, (0, 2, 3, 1, 4)), (-1, height, width, dv))  # merge heads
        return self.attention_output(out)

    def call(self, inputs):
        return ops.concatenate([self.conv(inputs), self.attention_branch(inputs)], axis=-1)

    def compute_output_shape(self, input_shape):
        out = self.conv.compute_output_shape(tuple(input_shape))
        return (*out[:-1], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters, kernel_size=self.kernel_size, strides=self.strides, dk=self.dk, dv=self.dv,
            heads=self.heads, relative=self.relative, min_key_dims_per_head=self.min_key_dims_per_head,
        )
        return config


def attention_memory_bytes(height, width, heads, batch=1, dtype_bytes=4):
    """Size of one (batch, heads, HW, HW) logits tensor: the O(Nh (HW)^2) term that limits where AA fits."""
    return batch * heads * (height * width) ** 2 * dtype_bytes


__all__ = ["AugmentedConv2D", "rel_to_abs", "relative_logits_1d", "attention_memory_bytes"]
