"""Slow NumPy references written from the equations, independent of the layers under test."""

import numpy as np


def same_padding(size, kernel, stride):
    """TensorFlow's "same" padding: (before, after) for one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv2d(x, kernel, stride=1, bias=None):
    """x: (B, H, W, Cin), kernel: (k, k, Cin, Cout), "same" padding, cross-correlation."""
    k = kernel.shape[0]
    (pt, pb), (pl, pr) = same_padding(x.shape[1], k, stride), same_padding(x.shape[2], k, stride)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    out_h, out_w = -(-x.shape[1] // stride), -(-x.shape[2] // stride)
    out = np.zeros((x.shape[0], out_h, out_w, kernel.shape[-1]), dtype=np.float64)
    for i in range(out_h):
        for j in range(out_w):
            patch = xp[:, i * stride : i * stride + k, j * stride : j * stride + k, :]
            out[:, i, j, :] = np.tensordot(patch, kernel, axes=([1, 2, 3], [0, 1, 2]))
    return out if bias is None else out + bias


def batch_norm(x, gamma, beta, mean, var, eps=1e-3):
    """Inference-mode BatchNormalization."""
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def relu(x):
    return np.maximum(x, 0.0)


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def multi_head_attention(tokens, wq, bq, wk, bk, wv, bv, wo, bo):
    """Transformer attention, Keras' weight layout: w* (d, heads, dh), b* (heads, dh), wo (heads, dh, d).

    Returns (output (B, n, d), probabilities (B, heads, n_queries, n_keys)).
    """
    q = np.einsum("bnd,dhk->bnhk", tokens, wq) + bq
    k = np.einsum("bnd,dhk->bnhk", tokens, wk) + bk
    v = np.einsum("bnd,dhk->bnhk", tokens, wv) + bv
    logits = np.einsum("bqhk,bshk->bhqs", q, k) / np.sqrt(wq.shape[-1])
    probs = softmax(logits, axis=-1)  # over keys
    heads = np.einsum("bhqs,bshk->bqhk", probs, v)
    return np.einsum("bqhk,hkd->bqd", heads, wo) + bo, probs


def lstm_states(sequence, kernel, recurrent_kernel, bias):
    """LSTM over sequence (B, T, d) in order t = 0..T-1; Keras gate order i, f, c, o. Returns h_1..h_T (B, T, k)."""
    units = recurrent_kernel.shape[0]
    h = np.zeros((sequence.shape[0], units))
    c = np.zeros_like(h)
    states = []
    for t in range(sequence.shape[1]):
        z = sequence[:, t] @ kernel + h @ recurrent_kernel + bias
        i, f, g, o = (z[:, j * units:(j + 1) * units] for j in range(4))
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        states.append(h)
    return np.stack(states, axis=1)


def lstm_last_state(sequence, kernel, recurrent_kernel, bias):
    """LSTM over sequence (B, T, d) in order t = 0..T-1; Keras gate order i, f, c, o. Returns h_T."""
    return lstm_states(sequence, kernel, recurrent_kernel, bias)[:, -1]


def bidirectional_lstm_states(sequence, forward, backward):
    """[h_fwd_t; h_bwd_t] for every t (B, T, 2k): the backward LSTM reads t = T-1..0 and its outputs are
    re-aligned with the time steps they were read at.  forward, backward: (kernel, recurrent_kernel, bias)."""
    ahead = lstm_states(sequence, *forward)
    behind = lstm_states(sequence[:, ::-1], *backward)[:, ::-1]
    return np.concatenate([ahead, behind], axis=-1)


def average_pool(x, pool, stride):
    """Average pooling of x (B, H, W, C), "same" padding, padding excluded from the mean (TensorFlow's rule)."""
    (pt, pb), (pl, pr) = same_padding(x.shape[1], pool, stride), same_padding(x.shape[2], pool, stride)
    padded = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=np.nan)
    out_h, out_w = -(-x.shape[1] // stride), -(-x.shape[2] // stride)
    out = np.zeros((x.shape[0], out_h, out_w, x.shape[3]))
    for i in range(out_h):
        for j in range(out_w):
            window = padded[:, i * stride:i * stride + pool, j * stride:j * stride + pool]
            out[:, i, j] = np.nanmean(window, axis=(1, 2))
    return out


def resize_bilinear(x, height, width):
    """Bilinear resize of x (B, h, w, C) to (height, width), half-pixel centres, no antialiasing."""

    def taps(size_in, size_out):
        src = (np.arange(size_out) + 0.5) * size_in / size_out - 0.5
        lower = np.floor(src)
        frac = src - lower
        return np.clip(lower, 0, size_in - 1).astype(int), np.clip(lower + 1, 0, size_in - 1).astype(int), frac

    y0, y1, fy = taps(x.shape[1], height)
    x0, x1, fx = taps(x.shape[2], width)
    rows = x[:, y0] * (1 - fy)[None, :, None, None] + x[:, y1] * fy[None, :, None, None]
    return rows[:, :, x0] * (1 - fx)[None, None, :, None] + rows[:, :, x1] * fx[None, None, :, None]


def preactivation_block(x, bn1, conv1, bn2, conv2, shortcut_conv=None, stride=1, mix=lambda f, s: f + s):
    """Wide-ResNet pre-activation block (Zagoruyko & Komodakis 2016; He et al. 2016, identity mappings), inference.

    a = relu(BN1(x)); f = conv2(relu(BN2(conv1_stride(a)))); the shortcut is x itself when shapes agree
    and conv1x1_stride(a) (from the PRE-ACTIVATED input, no BN) otherwise; out = mix(f, shortcut), with
    no activation after the mixing.  bn1, bn2: (gamma, beta, mean, var, eps); conv kernels (k, k, Cin, Cout).
    """
    a = relu(batch_norm(x, *bn1[:4], eps=bn1[4]))
    f = conv2d(relu(batch_norm(conv2d(a, conv1, stride), *bn2[:4], eps=bn2[4])), conv2)
    shortcut = x if shortcut_conv is None else conv2d(a, shortcut_conv, stride)
    return mix(f, shortcut)
