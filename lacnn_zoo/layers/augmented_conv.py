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

Memory: the logits of all queries at once are a (B, Nh, HW, HW) tensor, which
is what limits attention at full resolution (2 GiB per tensor at 32x32,
batch 128, 4 heads).  Each query's softmax only involves its own row, so the
queries can be processed in blocks of `query_chunk` pixels: the content
logits, the relative logits for those queries (sliced from the small
(B, Nh, HW, W) and (B, Nh, HW, H) skewed tables), the softmax and the
weighted values are computed block by block, and each block is wrapped in
`keras.remat` so the backward pass recomputes its logits instead of storing
them.  The result is the same to float32 rounding for every block size.
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


def attend(q, k_t, v, width_term=None, height_term=None):
    """softmax(q k^T + S^W + S^H) v for one block of C queries over all H x W keys (eq. 1 and 3).

    q: (B, Nh, C, dkh) scaled queries; k_t: (B, Nh, dkh, HW) keys, transposed;
    v: (B, Nh, HW, dvh); width_term: (B, Nh, C, W) with [.., i, x_j] = q_i . r^W_{x_j - x_i};
    height_term: (B, Nh, C, H) with [.., i, y_j] = q_i . r^H_{y_j - y_i}.  Returns (B, Nh, C, dvh).
    """
    logits = ops.matmul(q, k_t)  # (B, Nh, C, HW)
    if width_term is not None:
        heads, block, height, width = q.shape[1], q.shape[2], height_term.shape[-1], width_term.shape[-1]
        logits = ops.reshape(logits, (-1, heads, block, height, width))
        logits = logits + ops.expand_dims(width_term, 3) + ops.expand_dims(height_term, 4)
        logits = ops.reshape(logits, (-1, heads, block, height * width))
    return ops.matmul(ops.softmax(logits, axis=-1), v)  # softmax over keys


def resolve_depth(name, value, filters, heads, minimum=1):
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


# Per-image bytes of one block's logits (Nh x C x HW floats) under query_chunk="auto": blocks of 1 MiB per
# image (128 MiB at batch 128) keep the working set small while each matmul and softmax still sees >= 64 rows
# at 32x32.  A map whose whole (Nh, HW, HW) logits fit within it is attended in one block without remat.
QUERY_CHUNK_BUDGET_BYTES = 2**20
# With `image_loop=True` one image is attended at a time, so a block may hold all of that image's queries up to
# this many bytes of logits (32x32 with 8 heads: 32 MiB, one block), and stays in a large last-level cache.
IMAGE_LOOP_BUDGET_BYTES = 2**26


def auto_query_chunk(height, width, heads, budget_bytes=None, dtype_bytes=4):
    """Queries per block so that one block's logits take at most `budget_bytes` per image; None: no blocking needed.

    `budget_bytes` defaults to `QUERY_CHUNK_BUDGET_BYTES`.
    """
    budget_bytes = QUERY_CHUNK_BUDGET_BYTES if budget_bytes is None else budget_bytes
    pixels = height * width
    if heads * pixels * pixels * dtype_bytes <= budget_bytes:
        return None
    return max(1, budget_bytes // (heads * pixels * dtype_bytes))


def _check_query_chunk(query_chunk):
    if query_chunk is None or query_chunk == "auto":
        return query_chunk
    if isinstance(query_chunk, bool) or not isinstance(query_chunk, numbers.Integral) or query_chunk < 1:
        raise ValueError(
            f"`query_chunk` must be None (all queries at once), 'auto' (from the memory budget) or a positive "
            f"number of query pixels per block; received query_chunk={query_chunk!r}."
        )
    return int(query_chunk)


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

    Memory: with `query_chunk` set (by default from a per-image budget of
    `QUERY_CHUNK_BUDGET_BYTES` for one block's logits) the queries are attended
    in blocks, each under `keras.remat` when `rematerialize`; the values equal
    the all-at-once computation to float32 rounding, and the training step keeps
    O(Nh HW (H + W)) values per layer instead of O(Nh (HW)^2).

    `attention_downsample=2` changes the model (Bello et al., sec. 4.1, for the
    largest maps): the attention branch attends over its input average-pooled
    3x3 with stride 2 ("same" padding), and its output (after W^O) is resized
    back bilinearly to the convolution's grid.  Logits shrink by 16.

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
        query_chunk: query pixels per block; "auto" (default) picks it from the
            memory budget (None for maps whose logits fit it); None attends all
            queries at once.
        rematerialize: recompute each block's logits in the backward pass
            instead of storing them (only when the queries are blocked).
        attention_downsample: 1, or 2 to attend over a 3x3/stride-2 average-pooled
            grid and upsample the result bilinearly.
        image_loop: attend one image at a time (`keras.ops.map` over the batch), each
            image under `keras.remat` when `rematerialize`, its queries blocked only beyond
            `IMAGE_LOOP_BUDGET_BYTES` of logits. Same values; on a CPU the logits of one
            image stay in the cache (measured 1.34x faster than the batch-wide blocks at
            32x32, with a smaller peak); on a GPU a batch-wide block keeps it busier.

    Call arguments:
        inputs: (batch, height, width, channels); height and width must be fixed.

    Returns:
        (batch, ceil(height / strides), ceil(width / strides), filters).

    Examples:
        >>> AugmentedConv2D(32, dk=8, dv=4, heads=4)(keras.ops.ones((2, 7, 5, 3))).shape
        (2, 7, 5, 32)
    """

    def __init__(self, filters, kernel_size=3, strides=1, dk=0.2, dv=0.1, heads=8, relative=True,
                 min_key_dims_per_head=1, query_chunk="auto", rematerialize=True, attention_downsample=1,
                 image_loop=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.strides = check_choice("strides", strides, (1, 2))
        self.heads = check_positive_int("heads", heads)
        self.min_key_dims_per_head = check_positive_int("min_key_dims_per_head", min_key_dims_per_head)
        self.relative = bool(relative)
        self.query_chunk = _check_query_chunk(query_chunk)
        self.rematerialize = bool(rematerialize)
        if not isinstance(image_loop, bool):
            raise ValueError(f"`image_loop` must be True or False; received image_loop={image_loop!r}.")
        self.image_loop = image_loop
        self.attention_downsample = check_choice("attention_downsample", attention_downsample, (1, 2))
        self.dk, self.dv = dk, dv
        self.key_depth = resolve_depth("dk", dk, filters, heads, self.min_key_dims_per_head)
        self.value_depth = resolve_depth("dv", dv, filters, heads)
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
        self.pool = self.downsample = None
        attention_shape = tuple(input_shape)
        if self.strides == 2:
            self.pool = layers.AveragePooling2D(2, strides=2, padding="same", name="attention_pool",
                                                dtype=self.dtype_policy)
            attention_shape = self.pool.compute_output_shape(attention_shape)
        self.output_grid = tuple(attention_shape[1:3])
        if self.attention_downsample == 2:
            self.downsample = layers.AveragePooling2D(3, strides=2, padding="same", name="attention_downsample",
                                                      dtype=self.dtype_policy)
            attention_shape = self.downsample.compute_output_shape(attention_shape)
        self.grid = tuple(attention_shape[1:3])
        self.block_size = self.resolved_query_chunk()
        self.qkv = layers.Conv2D(2 * self.key_depth + self.value_depth, 1, name="qkv", dtype=self.dtype_policy)
        self.qkv.build(attention_shape)
        self.attention_output = layers.Conv2D(self.value_depth, 1, name="attention_output", dtype=self.dtype_policy)
        self.attention_output.build((None, *self.grid, self.value_depth))
        dkh = self.key_depth // self.heads
        if self.relative:
            init = keras.initializers.RandomNormal(stddev=dkh**-0.5)
            self.rel_width = self.add_weight(name="rel_width", shape=(2 * self.grid[1] - 1, dkh), initializer=init)
            self.rel_height = self.add_weight(name="rel_height", shape=(2 * self.grid[0] - 1, dkh), initializer=init)

    def resolved_query_chunk(self):
        """Query pixels per block on the attention grid, or None when all queries are attended at once."""
        pixels = self.grid[0] * self.grid[1]
        if self.query_chunk == "auto":
            budget = IMAGE_LOOP_BUDGET_BYTES if self.image_loop else None
            chunk = auto_query_chunk(*self.grid, self.heads, budget_bytes=budget)
        else:
            chunk = self.query_chunk
        return None if chunk is None else min(chunk, pixels)

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

    def attention_heads(self, q, k, v):
        """O_h of eq. 1 for all heads: (B, Nh, HW, dvh) from scaled q, k (B, Nh, H, W, dkh) and v (B, Nh, H, W, dvh).

        Queries are attended in blocks of `block_size` pixels (the last block may be shorter), each
        under `keras.remat` when `rematerialize`; one block of all pixels when `block_size` is None.
        Content attention alone (`relative=False`) in one block, with equal key and value depths per head (as
        backends' kernels require), goes through `keras.ops.dot_product_attention`,
        the backend's fused kernel where it has one; relative logits are never passed to it as a bias, which
        would build the (B, Nh, HW, HW) tensor the blocks avoid.
        """
        height, width = self.grid
        pixels = height * width
        q_flat = ops.reshape(q, (-1, self.heads, pixels, q.shape[-1]))
        k_t = ops.transpose(ops.reshape(k, (-1, self.heads, pixels, k.shape[-1])), (0, 1, 3, 2))
        v_flat = ops.reshape(v, (-1, self.heads, pixels, v.shape[-1]))
        terms = ()
        if self.relative:
            width_term, height_term = self.relative_logits(q)
            terms = (ops.reshape(width_term, (-1, self.heads, pixels, width)),
                     ops.reshape(height_term, (-1, self.heads, pixels, height)))
        if self.block_size is None and not self.relative and q.shape[-1] == v.shape[-1]:
            # Content attention alone: the backend's own kernel (cuDNN flash attention on a GPU where JAX or
            # PyTorch offers it for these shapes and dtypes; plain ops on a CPU). q is already scaled.
            to_tokens = lambda t: ops.transpose(t, (0, 2, 1, 3))  # noqa: E731  (B, Nh, HW, d) -> (B, HW, Nh, d)
            out = ops.dot_product_attention(to_tokens(q_flat), to_tokens(ops.reshape(k, (-1, self.heads, pixels,
                                            k.shape[-1]))), to_tokens(v_flat), scale=1.0)
            return ops.transpose(out, (0, 2, 1, 3))
        if self.image_loop:
            def one_image(*tensors):
                out = self._attend_blocks(*(ops.expand_dims(t, 0) for t in tensors), remat=False)
                return ops.squeeze(out, 0)

            body = keras.remat(one_image) if self.rematerialize else one_image
            return ops.map(lambda tensors: body(*tensors), (q_flat, k_t, v_flat, *terms))
        return self._attend_blocks(q_flat, k_t, v_flat, *terms, remat=self.rematerialize)

    def _attend_blocks(self, q_flat, k_t, v_flat, *terms, remat):
        """Queries in blocks of `block_size` (all at once when None), each under `keras.remat` when `remat`."""
        if self.block_size is None:
            return attend(q_flat, k_t, v_flat, *terms)
        block = keras.remat(attend) if remat else attend
        outputs = [
            block(q_flat[:, :, start:start + self.block_size], k_t, v_flat,
                  *(t[:, :, start:start + self.block_size] for t in terms))
            for start in range(0, q_flat.shape[2], self.block_size)
        ]
        return outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=2)

    def attention_branch(self, inputs):
        """MHA(X) of eq. 2: (B, H', W', dv), H' x W' the convolution's output grid."""
        x = inputs if self.pool is None else self.pool(inputs)
        if self.downsample is not None:
            x = self.downsample(x)
        qkv = self.qkv(x)
        dk, dv = self.key_depth, self.value_depth
        q, k, v = qkv[..., :dk], qkv[..., dk:2 * dk], qkv[..., 2 * dk:]
        q = self._split_heads(q) * ((dk // self.heads) ** -0.5)
        k, v = self._split_heads(k), self._split_heads(v)
        height, width = self.grid
        out = ops.reshape(self.attention_heads(q, k, v), (-1, self.heads, height, width, dv // self.heads))
        out = ops.reshape(ops.transpose(out, (0, 2, 3, 1, 4)), (-1, height, width, dv))  # merge heads
        out = self.attention_output(out)
        if self.downsample is not None:
            out = ops.image.resize(out, self.output_grid, interpolation="bilinear", data_format="channels_last")
        return out

    def attention_map(self, inputs, queries):
        """The attention weights of query pixels over every key pixel, per head (the softmax of eq. 1 with the
        relative terms of eq. 3): (B, Nh, len(queries), H, W) for `queries` [(y, x), ...] on the attention grid.

        For figures (a few queries of a few images); the layer itself never builds these weights whole.
        """
        x = inputs if self.pool is None else self.pool(inputs)
        if self.downsample is not None:
            x = self.downsample(x)
        qkv = self.qkv(x)
        dk = self.key_depth
        q = self._split_heads(qkv[..., :dk]) * ((dk // self.heads) ** -0.5)
        k = self._split_heads(qkv[..., dk:2 * dk])
        height, width = self.grid
        rows = [y * width + x for y, x in queries]
        if any(not (0 <= y < height and 0 <= x < width) for y, x in queries):
            raise ValueError(f"`queries` must be (y, x) pixels of the {height}x{width} attention grid; "
                             f"received {list(queries)}.")
        q_flat = ops.take(ops.reshape(q, (-1, self.heads, height * width, q.shape[-1])), rows, axis=2)
        logits = ops.matmul(q_flat, ops.transpose(ops.reshape(k, (-1, self.heads, height * width, k.shape[-1])),
                                                  (0, 1, 3, 2)))
        if self.relative:
            width_term, height_term = self.relative_logits(q)  # (B, Nh, H, W, 1, W), (B, Nh, H, W, H, 1)
            terms = ops.reshape(width_term + height_term, (-1, self.heads, height * width, height * width))
            logits = logits + ops.take(terms, rows, axis=2)
        weights = ops.softmax(logits, axis=-1)
        return ops.reshape(weights, (-1, self.heads, len(rows), height, width))

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
            query_chunk=self.query_chunk, rematerialize=self.rematerialize,
            attention_downsample=self.attention_downsample, image_loop=self.image_loop,
        )
        return config


def attention_grid(height, width, strides=1, attention_downsample=1):
    """The (height, width) an `AugmentedConv2D` attends over, for an input map of (height, width)."""
    height, width = -(-height // strides), -(-width // strides)
    if attention_downsample == 2:
        height, width = -(-height // 2), -(-width // 2)
    return height, width


def attention_training_values(height, width, heads, key_depth, value_depth, query_chunk="auto", rematerialize=True):
    """(kept, transient) float values per image of one attention branch in a training step on a (height, width) grid.

    `kept`: what the backward pass keeps (q, k, v and their head-split copies, plus the (Nh, HW, HW) softmax
    unblocked, or the (Nh, HW, H + W) relative tables when blocks are rematerialised).  `transient`: what one
    block needs at once on top, while it is computed or recomputed (logits, softmax and their gradients).
    Calibrated on aa_resnet20 at 32x32, batch 128 (TF 2.21 CPU): the unblocked step's peak is about two
    logits-sized tensors per stage-1 layer plus two more while one layer's backward runs.
    """
    pixels = height * width
    chunk = auto_query_chunk(height, width, heads) if query_chunk == "auto" else query_chunk
    base = 3 * pixels * (2 * key_depth + value_depth)
    if chunk is None or not rematerialize:
        return base + heads * pixels**2, 2 * heads * pixels**2
    return base + 2 * heads * pixels * (height + width), 4 * heads * min(chunk, pixels) * pixels


def attention_memory_bytes(height, width, heads, batch=1, dtype_bytes=4):
    """Size of one (batch, heads, HW, HW) logits tensor: the O(Nh (HW)^2) term that limits where AA fits."""
    return batch * heads * (height * width) ** 2 * dtype_bytes


__all__ = ["AugmentedConv2D", "attend", "auto_query_chunk", "rel_to_abs", "relative_logits_1d", "attention_grid",
           "attention_training_values", "attention_memory_bytes", "QUERY_CHUNK_BUDGET_BYTES", "IMAGE_LOOP_BUDGET_BYTES"]
