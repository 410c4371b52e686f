"""The backward pass of max_pool2d(relu(y)) in one step: the pooled gradient goes to each
window's winner unless relu blocked it there (the winner 0 or less; relu's gradient is 0
there, 1 above 0 and, as in torch, at a NaN). ``minicnn.kernels.fused`` and
``minicnn.kernels.fastconv.direct`` build the conv output's gradient with these.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from minicnn.kernels.pool import clipped_2x2


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


@njit(inline="always")
def unpool_2x2(grad, indices, values, W, stride, g):
    """For the 2x2, stride-2 windows of a plane W wide: each window's gradient written at its
    winner in ``g``, the plane flat with rows ``stride`` apart (zeroed by the caller), 0 where
    relu blocked it (the pooled value 0 or less). Returns whether an index left its window
    (not the forward pass's): then g is not the plane's gradient. grad, indices, values
    (pH, pW), the pooled plane's."""
    pH, pW = grad.shape
    stray = False
    for i in range(pH):
        base, row = 2 * i * W, 2 * i * stride  # the window row's first index, and in g
        for j in range(pW):
            k = indices[i, j] - base - 2 * j  # the winner: 0, 1, W or W + 1
            below = k >= W
            d = k - W if below else k  # its column in the window
            if d < 0 or d > 1:
                stray = True
                continue
            v = grad[i, j]
            if values[i, j] <= 0:  # relu blocked it
                v = 0
            g[row + below * stride + 2 * j + d] = v
    return stray


@njit(inline="always")
def _unpool_clipped(grad, indices, values, pH, pW, H, W, plane):
    """``unpool_2x2`` for windows clipped to an (H, W) plane (padding pH, pW of 0 or 1, or
    ceil_mode's overhang: ``pool.max_pool2d_2x2_clipped_kernel``'s), into the flat plane."""
    oH, oW = grad.shape
    stray = False
    for i in range(oH):
        r0, r1 = clipped_2x2(i, pH, H)  # the window's rows
        r0, r1 = r0 * W, r1 * W
        for j in range(oW):
            index = indices[i, j]
            c0, c1 = clipped_2x2(j, pW, W)  # and columns
            # one of its (up to) four pixels? (compared, not divided by W: twice as fast)
            if index != r0 + c0 and index != r0 + c1 and index != r1 + c0 and index != r1 + c1:
                stray = True
                continue
            g = grad[i, j]
            if values[i, j] <= 0:  # relu blocked it
                g = 0
            plane[index] = g
    return stray


@njit(cache=True, nogil=True)
def relu_max_pool2d_2x2_backward_kernel(grad_out, indices, out_values, pH, pW, grad_y):
    """``relu_max_pool2d_backward_kernel`` for the 2x2, stride-2 pools with padding pH, pW of
    0 or 1 (any ceil_mode): windows never overlap, so each plane is zeroed in one pass and
    each window's gradient written at its winner, no additions (per image of the deck's
    second block, 12.5 -> 5.4 us measured, against writing each window's four pixels by
    selects). Windows inside the plane go through ``unpool_2x2``, clipped ones through
    ``_unpool_clipped``. A plane whose indices leave their windows (not the forward pass's)
    goes to the general kernel."""
    N, C, H, W = grad_y.shape
    _, _, oH, oW = grad_out.shape
    plain = pH == 0 and pW == 0 and 2 * oH <= H and 2 * oW <= W
    for n in range(N):
        for c in range(C):
            plane = grad_y[n, c].reshape(H * W)
            plane[:] = 0
            g, k, v = grad_out[n, c], indices[n, c], out_values[n, c]
            if plain:
                stray = unpool_2x2(g, k, v, W, W, plane)
            else:
                stray = _unpool_clipped(g, k, v, pH, pW, H, W, plane)
            if stray:
                nothing = np.empty((0, 0, 0, 0), dtype=grad_y.dtype)
                relu_max_pool2d_backward_kernel(
                    grad_out[n : n + 1, c : c + 1],
                    indices[n : n + 1, c : c + 1],
                    out_values[n : n + 1, c : c + 1],
                    nothing,
                    grad_y[n : n + 1, c : c + 1],
                )
