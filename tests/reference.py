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
