"""The backward pass of max_pool2d(relu(y)) in one step: the pooled gradient goes to each
window's winner unless relu blocked it there (the winner 0 or less; relu's gradient is 0
there, 1 above 0 and, as in torch, at a NaN). ``minicnn.kernels.fused`` and
``minicnn.kernels.fastconv.direct`` build the conv output's gradient with these.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from minicnn.kernels.pool import clipped_2x2
from minicnn.kernels.runtime.cache import CACHE

# -- the rules, each written once: every layout's kernel below and in fastconv calls them ---


@njit(inline="always")
def relu_passes(value):
    """Whether relu passes the gradient at ``value``: above 0, or NaN (torch's relu gradient
    is 1 there, 0 at 0 or less)."""
    return not value <= 0


@njit(inline="always")
def winner_grad(grad, value, zero):
    """The gradient a relu'd max-pool window passes to its winner: its pooled gradient
    ``grad``, or ``zero`` (0 in the arrays' dtype) where relu blocked it (``relu_passes`` of
    the pooled ``value``)."""
    return grad if relu_passes(value) else zero


@njit(inline="always")
def offset_in_2x2(k, W):
    """(below, d, inside) of a winner ``k`` pixels past the first pixel of its 2x2 window in
    a plane W wide: its row in the window (0 or 1), its column d, and whether it is one of
    the window's four pixels (0, 1, W or W + 1). An index that is not from the forward pass
    may not be: then the plane or chunk goes to the general kernel."""
    below = k >= W
    d = k - W if below else k
    return below, d, (d >= 0) & (d <= 1)


@njit(inline="always")
def in_clipped_2x2(index, r0, r1, c0, c1, W):
    """``offset_in_2x2``'s ``inside`` for a 2x2 window clipped to the plane (rows r0, r1,
    columns c0, c1, a clipped-off one repeating its neighbour: ``pool.clipped_2x2``): whether
    ``index`` is one of its pixels, compared, not divided by W."""
    top = (index == r0 * W + c0) | (index == r0 * W + c1)
    return top | (index == r1 * W + c0) | (index == r1 * W + c1)


# -- the kernels ------------------------------------------------------------------------------


@njit(cache=CACHE, nogil=True)
def relu_max_pool2d_backward_kernel(grad_out, indices, out_values, y, grad_y):
    """grad_y[n, c] (zeroed here) += grad_out[n, c, i, j] at the winner of window (i, j),
    where relu passed it (``relu_passes``): of the window's maximum, or, when ``y`` (the
    conv's output) is given rather than empty, of y at the winner."""
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
                    if relu_passes(value):
                        plane[h, w] += grad_out[n, c, i, j]


@njit(inline="always")
def stray_plane_backward(grad_out, indices, out_values, n, c, grad_plane):
    """grad_plane (1, 1, H, W) = plane (n, c)'s gradient by the general kernel: the one way
    every 2x2 kernel handles a plane whose indices left their windows."""
    nothing = np.empty((0, 0, 0, 0), dtype=grad_plane.dtype)
    plane = slice(n, n + 1), slice(c, c + 1)
    relu_max_pool2d_backward_kernel(
        grad_out[plane], indices[plane], out_values[plane], nothing, grad_plane
    )


@njit(inline="always")
def unpool_2x2(grad, indices, values, W, stride, g):
    """For the 2x2, stride-2 windows of a plane W wide: each window's gradient written at its
    winner in ``g``, the plane flat with rows ``stride`` apart (zeroed by the caller), 0 where
    relu blocked it (``winner_grad``). Returns whether an index left its window (not the
    forward pass's): then g is not the plane's gradient. grad, indices, values (pH, pW),
    the pooled plane's."""
    pH, pW = grad.shape
    zero = np.zeros(1, dtype=g.dtype)[0]
    stray = False
    for i in range(pH):
        base, row = 2 * i * W, 2 * i * stride  # the window row's first index, and in g
        for j in range(pW):
            below, d, inside = offset_in_2x2(indices[i, j] - base - 2 * j, W)
            if not inside:
                stray = True
                continue
            g[row + below * stride + 2 * j + d] = winner_grad(grad[i, j], values[i, j], zero)
    return stray


@njit(inline="always")
def _unpool_clipped(grad, indices, values, pH, pW, H, W, plane):
    """``unpool_2x2`` for windows clipped to an (H, W) plane (padding pH, pW of 0 or 1, or
    ceil_mode's overhang: ``pool.max_pool2d_2x2_clipped_kernel``'s), into the flat plane."""
    oH, oW = grad.shape
    zero = np.zeros(1, dtype=plane.dtype)[0]
    stray = False
    for i in range(oH):
        r0, r1 = clipped_2x2(i, pH, H)  # the window's rows
        for j in range(oW):
            index = indices[i, j]
            c0, c1 = clipped_2x2(j, pW, W)  # and columns
            if not in_clipped_2x2(index, r0, r1, c0, c1, W):
                stray = True
                continue
            plane[index] = winner_grad(grad[i, j], values[i, j], zero)
    return stray


@njit(cache=CACHE, nogil=True)
def relu_max_pool2d_2x2_backward_kernel(grad_out, indices, out_values, pH, pW, grad_y):
    """``relu_max_pool2d_backward_kernel`` for the 2x2, stride-2 pools with padding pH, pW of
    0 or 1 (any ceil_mode): windows never overlap, so each plane is zeroed in one pass and
    each window's gradient written at its winner, no additions (faster than writing each
    window's four pixels by selects: benchmarks/README.md, "What we measured"). Windows
    inside the plane go through ``unpool_2x2``, clipped ones through ``_unpool_clipped``. A
    plane whose indices leave their windows (not the forward pass's) goes to the general
    kernel (``stray_plane_backward``)."""
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
                stray_plane_backward(
                    grad_out, indices, out_values, n, c, grad_y[n : n + 1, c : c + 1]
                )
