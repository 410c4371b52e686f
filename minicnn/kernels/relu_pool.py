"""The backward pass of max_pool2d(relu(y)) in one step: the pooled gradient goes to each
window's winner unless relu blocked it there (the winner 0 or less; relu's gradient is 0
there, 1 above 0 and, as in torch, at a NaN). ``minicnn.kernels.fused`` and
``minicnn.kernels.direct`` build the conv output's gradient with these.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def relu_max_pool2d_backward_kernel(grad_out, indices, out_values, y, grad_y):
    """grad_y[n, c] (zeroed here) += grad_out[n, c, i, j] at the winner of window (i, j),
    where the winner was positive or NaN: where the window's maximum is, or, when ``y`` (the
    conv's output) is given rather than empty, where y is at the winner."""
    N, C, H, W = grad_y.shape
    _, _, oH, oW = grad_out.shape
    known = y.size > 0
    for n in range(N):
        for c in range(C):
            plane = grad_y[n, c]
            plane[:] = 0
            for i in range(oH):
                for j in range(oW):
                    index = indices[n, c, i, j]
                    if index < 0 or index >= H * W:
                        continue
                    h, w = index // W, index % W
                    value = y[n, c, h, w] if known else out_values[n, c, i, j]
                    if not value <= 0:  # relu passes the gradient where x > 0 or x is NaN
                        plane[h, w] += grad_out[n, c, i, j]


@njit(cache=True, nogil=True)
def relu_max_pool2d_2x2_backward_kernel(grad_out, indices, out_values, grad_y):
    """``relu_max_pool2d_backward_kernel`` for the 2x2, stride-2 pools without padding: each
    pixel lies in one window at most, so each window writes its four pixels, the winner's
    gradient and three zeros, by selects: no zeroing pass, no scattered adds. A plane whose
    indices leave their windows (not the forward pass's) goes to the general kernel."""
    N, C, H, W = grad_y.shape
    _, _, oH, oW = grad_out.shape
    for n in range(N):
        for c in range(C):
            plane = grad_y[n, c]
            stray = False
            for i in range(oH):
                top, bottom, base = plane[2 * i], plane[2 * i + 1], 2 * i * W
                for j in range(oW):
                    k = indices[n, c, i, j] - base - 2 * j  # the winner: 0, 1, W or W + 1
                    stray |= (k != 0) & (k != 1) & (k != W) & (k != W + 1)
                    g = grad_out[n, c, i, j]
                    g = 0.0 if out_values[n, c, i, j] <= 0 else g  # relu: blocked at 0 or less
                    top[2 * j] = g if k == 0 else 0.0
                    top[2 * j + 1] = g if k == 1 else 0.0
                    bottom[2 * j] = g if k == W else 0.0
                    bottom[2 * j + 1] = g if k == W + 1 else 0.0
            plane[2 * oH :] = 0  # rows and columns no window covers
            plane[:, 2 * oW :] = 0
            if stray:
                nothing = np.empty((0, 0, 0, 0), dtype=grad_y.dtype)
                relu_max_pool2d_backward_kernel(grad_out[n : n + 1, c : c + 1],
                                                indices[n : n + 1, c : c + 1],
                                                out_values[n : n + 1, c : c + 1], nothing,
                                                grad_y[n : n + 1, c : c + 1])  # fmt: skip
