"""max_pool2d over NCHW batches, and its gradient, as torch computes them
(``minicnn.kernels.avg_pool`` holds avg_pool2d).

Window (i, j) of a pool with kernel (kH, kW), stride (sH, sW), padding (pH, pW) and dilation
(dH, dW) covers input rows ``i*sH - pH + p*dH`` for p in 0..kH-1 (columns alike); taps that
fall in the padding are skipped. The output size (oH, oW) is decided by the caller
(``minicnn.functional`` applies torch's ceil_mode rule) and read off the output arrays here.

The window's largest value; on ties the first in row-major order, a NaN wins over numbers
(the last NaN, as torch's ``val > max or isnan(val)`` scan gives). ``indices`` holds the
winner's flat position ``h * W + w`` in its (H, W) plane; the gradient goes there only.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from minicnn.kernels.geometry import PoolGeometry
from minicnn.kernels.runtime.cache import CACHE
from minicnn.kernels.runtime.parallel import parallel_for

# -- the NumPy twins: a loop over output positions, vectorised over the (N, C) planes -------


def _window(start: int, kernel: int, dilation: int, size: int) -> range:
    """The in-range taps of one window along one axis (torch's clipped window)."""
    first = start
    while first < 0:  # skip the taps that land in the padding
        first += dilation
    end = min(start + (kernel - 1) * dilation + 1, size)
    return range(first, end, dilation)


def max_pool2d_forward_numpy(x, kernel, stride, padding, dilation, out_hw):
    """(out, indices), both (N, C, oH, oW); indices are flat positions in each (H, W) plane."""
    N, C, H, W = x.shape
    oH, oW = out_hw
    out = np.empty((N, C, oH, oW), dtype=x.dtype)
    indices = np.empty((N, C, oH, oW), dtype=np.int64)
    for i in range(oH):
        rows = _window(i * stride[0] - padding[0], kernel[0], dilation[0], H)
        for j in range(oW):
            cols = _window(j * stride[1] - padding[1], kernel[1], dilation[1], W)
            if len(rows) == 0 or len(cols) == 0:
                # a window entirely in the padding: torch answers -inf at its first tap
                out[:, :, i, j] = -np.inf
                indices[:, :, i, j] = rows.start * W + cols.start
                continue
            window = x[:, :, rows.start : rows.stop : rows.step, cols.start : cols.stop : cols.step]
            flat = window.reshape(N, C, len(rows) * len(cols))  # not -1: N or C may be 0
            k = np.argmax(flat, axis=2)  # the first maximum in row-major order
            is_nan = np.isnan(flat)
            last_nan = flat.shape[2] - 1 - np.argmax(is_nan[:, :, ::-1], axis=2)
            k = np.where(is_nan.any(axis=2), last_nan, k)  # (N, C)
            out[:, :, i, j] = np.take_along_axis(flat, k[:, :, None], axis=2)[:, :, 0]
            h = np.asarray(rows)[k // len(cols)]
            w = np.asarray(cols)[k % len(cols)]
            indices[:, :, i, j] = h * W + w
    return out, indices


def max_pool2d_backward_numpy(grad_out, indices, input_hw):
    """grad_x (N, C, H, W): each output's gradient added at the input position that won it."""
    N, C, oH, oW = grad_out.shape
    H, W = input_hw
    grad_x = np.zeros((N, C, H * W), dtype=grad_out.dtype)
    flat_idx = indices.reshape(N, C, oH * oW)
    flat_grad = grad_out.reshape(N, C, oH * oW)
    for n in range(N):
        for c in range(C):
            inside = (flat_idx[n, c] >= 0) & (flat_idx[n, c] < H * W)
            np.add.at(grad_x[n, c], flat_idx[n, c][inside], flat_grad[n, c][inside])
    return grad_x.reshape(N, C, H, W)


# -- the fast path: the same loops compiled, the batch's images split across threads -------


@njit(cache=CACHE, nogil=True)
def _taps(start, kernel, dilation, size):
    """(first, count): the first in-range tap of a window starting at ``start`` and how many
    of its taps lie in [0, size) (a counted loop compiles far better than a strided range)."""
    first = start
    while first < 0:
        first += dilation
    end = min(start + (kernel - 1) * dilation + 1, size)
    return first, max(0, (end - first + dilation - 1) // dilation)


@njit(cache=CACHE, nogil=True)
def max_pool2d_kernel(x, kH, kW, sH, sW, pH, pW, dH, dW, out, indices, relu=False):
    """out[n, c, i, j] = max of window (i, j); indices[n, c, i, j] = its flat position.

    ``relu=True`` pools relu(x) instead of x, as ``minicnn.kernels.fused`` needs: the max of
    relu(x) is relu of the max of x, with the same winner, unless no tap is positive, when
    every tap of relu(x) is 0 and torch's scan picks the first."""
    N, C, H, W = x.shape
    _, _, oH, oW = out.shape
    for n in range(N):
        for c in range(C):
            plane = x[n, c]
            for i in range(oH):
                h0, rows = _taps(i * sH - pH, kH, dH, H)
                for j in range(oW):
                    w0, cols = _taps(j * sW - pW, kW, dW, W)
                    best = -np.inf
                    best_index = h0 * W + w0
                    nan = False
                    for a in range(rows):  # by selects, which no data can mispredict
                        h = h0 + a * dH
                        for b in range(cols):
                            w = w0 + b * dW
                            value = plane[h, w]
                            nan |= value != value
                            best_index = h * W + w if value > best else best_index
                            best = value if value > best else best
                    if nan:  # the window again, where a NaN wins
                        best, best_index = -np.inf, h0 * W + w0
                        for a in range(rows):
                            h = h0 + a * dH
                            for b in range(cols):
                                w = w0 + b * dW
                                value = plane[h, w]
                                if value > best or value != value:
                                    best = value
                                    best_index = h * W + w
                    if relu and rows > 0 and cols > 0 and not (best > 0 or best != best):
                        # pooling relu(x): all taps are 0 then, and the first one wins
                        best, best_index = 0.0, h0 * W + w0
                    out[n, c, i, j] = best
                    indices[n, c, i, j] = best_index


@njit(inline="always")
def clipped_2x2(i, pad, size):
    """(first, last): the rows (or columns) of 2x2 window i at stride 2 with padding ``pad``
    (0 or 1), clipped to a side of ``size``: a clipped-off tap repeats its neighbour inside,
    which changes neither the max nor, as the first of equals wins, the winner."""
    return max(2 * i - pad, 0), min(2 * i - pad + 1, size - 1)


@njit(inline="always")
def max_of_2x2(a, b, c, d, W):
    """(max, offset of the first maximum in row-major order) of the window [[a, b], [c, d]]
    of a plane W wide, for windows without NaN: selects only, no branches, so that the loop
    over windows vectorises."""
    best, k = a, 0
    k = 1 if b > best else k
    best = b if b > best else best
    k = W if c > best else k
    best = c if c > best else best
    k = W + 1 if d > best else k
    best = d if d > best else best
    return best, k


@njit(inline="always")
def max_of_2x2_nan(a, b, c, d, W):
    """``max_of_2x2`` with torch's NaN rule, for windows with one: a NaN wins."""
    best, k = a, 0
    if b > best or b != b:
        best, k = b, 1
    if c > best or c != c:
        best, k = c, W
    if d > best or d != d:
        best, k = d, W + 1
    return best, k


@njit(inline="always")
def _relu_max_2x2(a, b, c, d, W, relu):
    """``max_of_2x2``, relu'd when ``relu`` (see max_pool2d_kernel: a window of values 0 or
    less pools to 0 at its first pixel)."""
    best, k = max_of_2x2(a, b, c, d, W)
    if relu:
        k = k if best > 0 else 0
        best = best if best > 0 else 0.0
    return best, k


@njit(inline="always")
def _relu_max_2x2_nan(a, b, c, d, W, relu):
    """``max_of_2x2_nan``, relu'd when ``relu`` (a NaN passes relu)."""
    best, k = max_of_2x2_nan(a, b, c, d, W)
    if relu and not (best > 0 or best != best):
        best, k = 0.0, 0
    return best, k


@njit(inline="always")
def max_pool_row_2x2(top, bottom, W, base, out, indices, relu):
    """One row of 2x2 windows over the rows ``top`` and ``bottom`` (row ``base // W`` of a
    plane W wide, and the next): out[j], indices[j] for window j. The row is first pooled by
    selects (``max_of_2x2``), and again with the NaN rule only if it holds a NaN."""
    nan = False
    for j in range(out.size):
        a, b, c, d = top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1]
        nan |= (a != a) | (b != b) | (c != c) | (d != d)
        out[j], k = _relu_max_2x2(a, b, c, d, W, relu)
        indices[j] = base + 2 * j + k
    if nan:
        for j in range(out.size):
            a, b, c, d = top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1]
            out[j], k = _relu_max_2x2_nan(a, b, c, d, W, relu)
            indices[j] = base + 2 * j + k


@njit(inline="always")
def max_pool_phases_2x2(a, b, c, d, origin, W, out, indices, relu):
    """``max_pool_row_2x2`` for windows laid out flat: window m is [[a[m], b[m]], [c[m],
    d[m]]] of a plane W wide, its first pixel at origin[m]; out[m], indices[m] its max and
    winner. One loop over all the windows, so that it vectorises (a row of a small plane's
    windows is too short to)."""
    nan = False
    for m in range(out.size):
        am, bm, cm, dm = a[m], b[m], c[m], d[m]
        nan |= (am != am) | (bm != bm) | (cm != cm) | (dm != dm)
        out[m], k = _relu_max_2x2(am, bm, cm, dm, W, relu)
        indices[m] = origin[m] + k
    if nan:
        for m in range(out.size):
            out[m], k = _relu_max_2x2_nan(a[m], b[m], c[m], d[m], W, relu)
            indices[m] = origin[m] + k


@njit(cache=CACHE, nogil=True)
def max_pool2d_2x2_kernel(x, out, indices, relu=False):
    """``max_pool2d_kernel`` for kernel 2, stride 2, no padding, no dilation and every window
    inside the input (the deck's pools), row by row with ``max_pool_row_2x2``: the window's
    shape known to the compiler and no branches, far faster than the general scan
    (benchmarks/README.md, "What we measured")."""
    N, C, H, W = x.shape
    _, _, oH, oW = out.shape
    for n in range(N):
        for c in range(C):
            plane = x[n, c]
            for i in range(oH):
                max_pool_row_2x2(
                    plane[2 * i],
                    plane[2 * i + 1],
                    W,
                    2 * i * W,
                    out[n, c, i],
                    indices[n, c, i],
                    relu,
                )


@njit(cache=CACHE, nogil=True)
def max_pool2d_2x2_clipped_kernel(x, pH, pW, out, indices, relu=False):
    """``max_pool2d_kernel`` for 2x2 windows at stride 2 with padding pH, pW of 0 or 1, or
    windows that overhang the bottom or right edge (ceil_mode): each window clipped to the
    plane reads its real taps, a clipped-off tap replaced by its neighbour inside (the same
    pixel twice changes neither the max nor, as the first of equals wins and the last NaN,
    the winner), by selects as ``max_pool_row_2x2`` does (faster than the general scan:
    benchmarks/README.md). The first real tap, (r0, c0), wins
    where relu leaves no positive tap, as torch's scan gives."""
    N, C, H, W = x.shape
    _, _, oH, oW = out.shape
    r0s, r1s = np.empty(oH, np.int64), np.empty(oH, np.int64)  # each window's two rows
    c0s, c1s = np.empty(oW, np.int64), np.empty(oW, np.int64)  # and columns, clipped
    for i in range(oH):
        r0s[i], r1s[i] = clipped_2x2(i, pH, H)
    for j in range(oW):
        c0s[j], c1s[j] = clipped_2x2(j, pW, W)
    for n in range(N):
        for c in range(C):
            plane = x[n, c]
            for i in range(oH):
                r0, r1 = r0s[i], r1s[i]
                top, bottom = plane[r0], plane[r1]
                for j in range(oW):
                    c0, c1 = c0s[j], c1s[j]
                    a, b, d, e = top[c0], top[c1], bottom[c0], bottom[c1]
                    if (a != a) | (b != b) | (d != d) | (e != e):
                        best, k = max_of_2x2_nan(a, b, d, e, 2)
                    else:
                        best, k = max_of_2x2(a, b, d, e, 2)  # k: 0, 1, 2 or 3
                    h = r1 if k >= 2 else r0
                    w = c1 if k % 2 == 1 else c0
                    if relu and not (best > 0 or best != best):
                        best, h, w = 0.0, r0, c0
                    out[n, c, i, j] = best
                    indices[n, c, i, j] = h * W + w


@njit(cache=CACHE, nogil=True)
def max_pool2d_backward_kernel(grad_out, indices, out):
    """out[n, c] (an (H, W) plane, zeroed here) += grad_out at the winners' positions."""
    N, C, H, W = out.shape
    _, _, oH, oW = grad_out.shape
    for plane in range(N * C):
        n = plane // C
        c = plane % C
        out[n, c] = 0
        for i in range(oH):
            for j in range(oW):
                index = indices[n, c, i, j]
                if 0 <= index < H * W:
                    out[n, c, index // W, index % W] += grad_out[n, c, i, j]


def max_pool2d_into(x, pool: PoolGeometry, out, indices, relu=False):
    """The max pool of a chunk x into ``out`` and ``indices`` (``pool.out_hw`` their size), by
    the 2x2 kernel where it applies (``pool.is_plain_2x2``), the clipped 2x2 kernel for the
    other 2x2, stride-2 pools with padding 0 or 1, and the general kernel for the rest."""
    if pool.is_plain_2x2(x.shape[2:]):
        max_pool2d_2x2_kernel(x, out, indices, relu)
    elif pool.is_clipped_2x2():
        max_pool2d_2x2_clipped_kernel(x, *pool.padding, out, indices, relu)
    else:
        kernel, stride, padding, dilation, _ = pool
        max_pool2d_kernel(x, *kernel, *stride, *padding, *dilation, out, indices, relu)


def max_pool2d_forward_numba(x, kernel, stride, padding, dilation, out_hw):
    N, C, _, _ = x.shape
    pool = PoolGeometry(kernel, stride, padding, dilation, out_hw)
    out = np.empty((N, C, *out_hw), dtype=x.dtype)
    indices = np.empty((N, C, *out_hw), dtype=np.int64)
    parallel_for(N, lambda a, b: max_pool2d_into(x[a:b], pool, out[a:b], indices[a:b]))
    return out, indices


def max_pool2d_backward_numba(grad_out, indices, input_hw):
    N, C, _, _ = grad_out.shape
    grad_x = np.empty((N, C, *input_hw), dtype=grad_out.dtype)
    parallel_for(
        N, lambda a, b: max_pool2d_backward_kernel(grad_out[a:b], indices[a:b], grad_x[a:b])
    )
    return grad_x
