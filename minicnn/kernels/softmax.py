"""softmax, log_softmax and softmax cross-entropy over the rows of an (M, C) array.

    log_softmax(z)[c] = z[c] - max(z) - log(sum_k exp(z[k] - max(z)))   (stable for any z)
    softmax(z) = exp(log_softmax(z))

Cross-entropy of row m with class y = target[m], class weights w (ones when not given) and
label smoothing e over C classes:

    loss[m] = (1 - e) * w[y] * (-logp[m, y]) + (e / C) * sum_c w[c] * (-logp[m, c])
            = -sum_c t[m, c] * logp[m, c]
    with the weighted, smoothed target  t[m, c] = (1 - e) * w[y] * [c == y] + (e / C) * w[c]
    dloss[m] / dz[m, j] = p[m, j] * sum_c t[m, c] - t[m, j]

A row whose target equals ``ignore_index`` has loss 0, weight 0 and gradient ``0 * p[m]``:
0, or NaN where its softmax is NaN (NaN or +inf logits), as torch's log_softmax backward
leaves it.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from minicnn.kernels.runtime.cache import CACHE

# -- the NumPy twins ----------------------------------------------------------------------------


def log_softmax_numpy(z):
    shifted = z - z.max(axis=1, keepdims=True)  # (M, C), the largest entry of each row is 0
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax_numpy(z):
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy_numpy(z, target, weight, ignore_index, smoothing):
    """(loss (M,), w[target] (M,)): per-row losses and the weights a mean divides by."""
    M, C = z.shape
    logp = log_softmax_numpy(z)  # (M, C)
    w = np.ones(C, dtype=z.dtype) if weight is None else weight  # (C,)
    keep = target != ignore_index  # (M,)
    safe_target = np.where(keep, target, 0)  # ignored rows read class 0, then get zeroed
    w_y = np.where(keep, w[safe_target], 0).astype(z.dtype)  # (M,)
    nll = -logp[np.arange(M), safe_target]  # (M,)
    smooth = -(logp * w).sum(axis=1)  # (M,)
    # without smoothing there is no smoothing term (0 * inf would be NaN for a -inf logit), and
    # ignored rows are 0 even where their logits are NaN (a product with w_y = 0 would not be)
    loss = (1 - smoothing) * w_y * nll + (smoothing / C * smooth if smoothing else 0)
    loss = np.where(keep, loss, 0)
    return loss.astype(z.dtype), w_y


def cross_entropy_backward_numpy(z, target, weight, ignore_index, smoothing, grad_loss):
    """grad_z (M, C) for the per-row upstream gradients grad_loss (M,)."""
    M, C = z.shape
    p = softmax_numpy(z)  # (M, C)
    w = np.ones(C, dtype=z.dtype) if weight is None else weight  # (C,)
    keep = target != ignore_index
    safe_target = np.where(keep, target, 0)
    t = np.broadcast_to(smoothing / C * w, (M, C)).copy()  # (M, C), the weighted target
    t[np.arange(M), safe_target] += (1 - smoothing) * w[safe_target]
    t[~keep] = 0  # ignored rows have no target: their gradient is 0 * p, whatever grad_loss
    grad = p * t.sum(axis=1, keepdims=True) - t  # (M, C)
    return (grad * np.where(keep, grad_loss, 1)[:, None]).astype(z.dtype)


# -- the fast path: one pass per row ------------------------------------------------------------


@njit(cache=CACHE, nogil=True)
def log_softmax_kernel(z, out):
    """out[m] = log_softmax(z[m]) for each row of z (M, C)."""
    M, C = z.shape
    for m in range(M):
        top = z[m, 0]
        for c in range(1, C):
            top = max(top, z[m, c])
        total = 0.0
        for c in range(C):
            total += math.exp(z[m, c] - top)
        log_total = math.log(total)
        for c in range(C):
            out[m, c] = (z[m, c] - top) - log_total


@njit(cache=CACHE, nogil=True)
def softmax_kernel(z, out):
    """out[m] = softmax(z[m]) for each row of z (M, C)."""
    M, C = z.shape
    for m in range(M):
        top = z[m, 0]
        for c in range(1, C):
            top = max(top, z[m, c])
        total = 0.0
        for c in range(C):
            out[m, c] = math.exp(z[m, c] - top)
            total += out[m, c]
        for c in range(C):
            out[m, c] /= total


@njit(cache=CACHE, nogil=True)
def cross_entropy_kernel(z, target, w, ignore_index, smoothing, loss, w_y):
    """loss[m] and w_y[m] for each row (see the module docstring); w (C,) holds the weights."""
    M, C = z.shape
    for m in range(M):
        y = target[m]
        if y == ignore_index:
            loss[m] = 0
            w_y[m] = 0
            continue
        top = z[m, 0]
        for c in range(1, C):
            top = max(top, z[m, c])
        total = 0.0
        for c in range(C):
            total += math.exp(z[m, c] - top)
        log_total = math.log(total)
        smooth = 0.0
        for c in range(C):
            smooth -= w[c] * ((z[m, c] - top) - log_total)
        nll = -((z[m, y] - top) - log_total)
        loss[m] = (1 - smoothing) * w[y] * nll
        if smoothing:  # only then: 0 * inf would be NaN for a -inf logit
            loss[m] += smoothing / C * smooth
        w_y[m] = w[y]


@njit(cache=CACHE, nogil=True)
def cross_entropy_backward_kernel(z, target, w, ignore_index, smoothing, grad_loss, out):
    """out[m] = grad_loss[m] * dloss[m]/dz[m] for each row (see the module docstring)."""
    M, C = z.shape
    for m in range(M):
        y = target[m]
        top = z[m, 0]
        for c in range(1, C):
            top = max(top, z[m, c])
        total = 0.0
        for c in range(C):
            total += math.exp(z[m, c] - top)
        if y == ignore_index:  # no target (y may not even be a class): 0 * p
            for c in range(C):
                out[m, c] = 0.0 * (math.exp(z[m, c] - top) / total)
            continue
        t_total = 0.0
        for c in range(C):
            t_total += smoothing / C * w[c] + ((1 - smoothing) * w[y] if c == y else 0.0)
        g = grad_loss[m]
        for c in range(C):
            t = smoothing / C * w[c] + ((1 - smoothing) * w[y] if c == y else 0.0)
            out[m, c] = g * (math.exp(z[m, c] - top) / total * t_total - t)


def log_softmax_numba(z):
    out = np.empty_like(z)
    log_softmax_kernel(z, out)
    return out


def softmax_numba(z):
    out = np.empty_like(z)
    softmax_kernel(z, out)
    return out


def cross_entropy_numba(z, target, weight, ignore_index, smoothing):
    M, C = z.shape
    w = np.ones(C, dtype=z.dtype) if weight is None else weight
    loss = np.empty(M, dtype=z.dtype)
    w_y = np.empty(M, dtype=z.dtype)
    cross_entropy_kernel(z, target, w, ignore_index, smoothing, loss, w_y)
    return loss, w_y


def cross_entropy_backward_numba(z, target, weight, ignore_index, smoothing, grad_loss):
    M, C = z.shape
    w = np.ones(C, dtype=z.dtype) if weight is None else weight
    out = np.empty_like(z)
    cross_entropy_backward_kernel(z, target, w, ignore_index, smoothing, grad_loss, out)
    return out
