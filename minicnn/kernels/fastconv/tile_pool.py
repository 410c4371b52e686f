"""max_pool2d(relu(conv2d)) done on Winograd's output blocks: the conv's output is never put
in place (``minicnn.kernels.fused`` calls these through the plans).

A Winograd output transform leaves an image's outputs in its tiles' m x m blocks, each
pixel's channels side by side (``minicnn.kernels.fastconv.tiles``). A 2x2, stride-2 pool reads its
windows there:

- F(2x2, 3x3) without pool padding: window (i, j) is tile (i, j)'s 2x2 block
  (``relu_max_pool_tiles``);
- F(4x4, 3x3) with pool padding 0 or 1: each window's (clipped) taps are four pixels of the
  blocks (``relu_max_pool_blocks``; the DeepCNN's conv3 and its padded pool).

Either way a window is four vector reads and a max by selects across the channels, by the
pool kernels' rules (``minicnn.kernels.pool``: the first maximum, a NaN wins, relu's first
tap where nothing is positive), and the indices are positions in the conv's (oH, oW) plane,
as the three ops give them. The backward functions build the output gradient's blocks
(``tiles.output_grad_blocks``'s layout) from the pooled gradient: each window's gradient at
its winner, 0 where relu blocked it (windows never overlap), and report an index that left
its window (not the forward pass's), for which the caller takes the general kernels.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from minicnn.kernels.fastconv import winograd_f2x2, winograd_f4x4
from minicnn.kernels.pool import clipped_2x2, max_of_2x2, max_of_2x2_nan
from minicnn.kernels.relu_pool import in_clipped_2x2, offset_in_2x2, winner_grad
from minicnn.kernels.runtime.cache import CACHE


@njit(inline="always")
def _channels_first(best, winner, out, indices, n):
    """out[n, o, i, j], indices[n, o, i, j] = best, winner[i*pW + j, o]: an image's pooled
    windows, kept channels last, put in place."""
    C_out, pH, pW = out.shape[1:]
    for o in range(C_out):
        for i in range(pH):
            for j in range(pW):
                out[n, o, i, j] = best[i * pW + j, o]
                indices[n, o, i, j] = winner[i * pW + j, o]


@njit(cache=CACHE, nogil=True)
def relu_max_pool_tiles(M, bias, oH, oW, out, indices):
    """out, indices = max_pool2d(relu(conv)), 2x2 windows at stride 2, where conv is
    ``winograd_f2x2.output_transform``'s (oH, oW) output: window (i, j) is tile (i, j)'s block,
    pooled as it is made (``pool.max_pool_row_2x2``'s rule; indices are positions in the
    (oH, oW) plane). M (16, N*T, C_out); bias (C_out,); out, indices (N, C_out, pH, pW), 2pH <= oH,
    2pW <= oW."""
    N, C_out, pH, pW = out.shape
    tH, tW = (oH + 1) // 2, (oW + 1) // 2
    L = tH * tW * C_out
    Mf = M.reshape(16, N * L)
    Y = np.empty((4, L), dtype=out.dtype)
    best = np.empty((pH * pW, C_out), dtype=out.dtype)  # each window's, channels last
    winner = np.empty((pH * pW, C_out), dtype=np.int64)
    zero = np.zeros(1, dtype=out.dtype)[0]
    for n in range(N):
        winograd_f2x2.output_blocks(Mf, n * L, Y)
        nan = False
        for i in range(pH):
            for j in range(pW):
                k0, base = (i * tW + j) * C_out, 2 * i * oW + 2 * j
                y0, y1 = Y[0, k0 : k0 + C_out], Y[1, k0 : k0 + C_out]
                y2, y3 = Y[2, k0 : k0 + C_out], Y[3, k0 : k0 + C_out]
                b, k = best[i * pW + j], winner[i * pW + j]
                for o in range(C_out):  # by selects: the loop vectorises
                    p, q, r, s = y0[o] + bias[o], y1[o] + bias[o], y2[o] + bias[o], y3[o] + bias[o]
                    nan |= (p != p) | (q != q) | (r != r) | (s != s)
                    value, offset = max_of_2x2(p, q, r, s, oW)
                    k[o] = base + (offset if value > 0 else 0)
                    b[o] = value if value > 0 else zero
        if nan:  # the image again, where a NaN wins
            for i in range(pH):
                for j in range(pW):
                    k0, base = (i * tW + j) * C_out, 2 * i * oW + 2 * j
                    for o in range(C_out):
                        value, offset = max_of_2x2_nan(
                            Y[0, k0 + o] + bias[o],
                            Y[1, k0 + o] + bias[o],
                            Y[2, k0 + o] + bias[o],
                            Y[3, k0 + o] + bias[o],
                            oW,
                        )
                        if not (value > 0 or value != value):
                            value, offset = zero, 0
                        best[i * pW + j, o] = value
                        winner[i * pW + j, o] = base + offset
        _channels_first(best, winner, out, indices, n)


@njit(cache=CACHE, nogil=True)
def relu_max_pool_tiles_backward(grad_out, indices, out, oH, oW, D):
    """``tiles.output_grad_blocks`` of the conv output's gradient, built from the gradient of
    its relu'd 2x2 pool (``relu_max_pool_tiles``'s): each window's gradient at its winner, 0
    where relu blocked it (``relu_pool.winner_grad``), 0 elsewhere. grad_out, indices, out
    (N, C_out, pH, pW); D (4, N*T*C_out). Returns whether an index left its window (not the
    forward pass's): then D is not the gradient."""
    N, C_out, pH, pW = grad_out.shape
    tH, tW = (oH + 1) // 2, (oW + 1) // 2
    L, K = tH * tW * C_out, D.shape[1]
    Df = D.reshape(4 * K)
    zero = np.zeros(1, dtype=D.dtype)[0]
    D[:] = 0
    stray = False
    # plane after plane, reading in order (a channel apart is slower once the products have
    # filled the caches), and no branch on the data (it is mispredicted): benchmarks/README.md
    for n in range(N):
        for o in range(C_out):
            for i in range(pH):
                for j in range(pW):
                    k = indices[n, o, i, j] - 2 * i * oW - 2 * j  # past the window's origin
                    below, d, inside = offset_in_2x2(k, oW)
                    stray |= not inside
                    v = winner_grad(grad_out[n, o, i, j], out[n, o, i, j], zero)
                    if not stray:
                        Df[(2 * below + d) * K + n * L + (i * tW + j) * C_out + o] = v
    return stray


@njit(inline="always")
def _pixel(Y, h, w, tW, C_out):
    """Output pixel (h, w)'s channels in an image's blocks Y (16, T*C_out)."""
    k = ((h // 4) * tW + w // 4) * C_out
    return Y[4 * (h % 4) + w % 4, k : k + C_out]


@njit(inline="always")
def _window(i, j, pH, pW, oH, oW):
    """(r0, r1, c0, c1): the rows and columns of 2x2 window (i, j) at stride 2 with padding
    (pH, pW), clipped to the (oH, oW) plane (``pool.clipped_2x2``)."""
    return (*clipped_2x2(i, pH, oH), *clipped_2x2(j, pW, oW))


@njit(cache=CACHE, nogil=True)
def relu_max_pool_blocks(M, bias, oH, oW, pH, pW, out, indices):
    """out, indices = max_pool2d(relu(conv)), 2x2 windows at stride 2 with padding pH, pW of
    0 or 1 (any ceil_mode, no window wholly in the padding), where conv is
    ``winograd_f4x4.output_transform``'s (oH, oW) output: each window's taps read from the tiles'
    blocks, a channel per lane, by ``pool.max_pool2d_2x2_clipped_kernel``'s rule (indices are
    positions in the (oH, oW) plane). M (36, N*T, C_out); bias (C_out,); out, indices
    (N, C_out, qH, qW). Pooled so, the conv's output is never put in place (faster than
    placing and pooling its small planes: benchmarks/README.md, "What we measured")."""
    N, C_out, qH, qW = out.shape
    tH, tW = (oH + 3) // 4, (oW + 3) // 4
    L = tH * tW * C_out
    two, four, _, eight = winograd_f4x4.numbers(M)
    Mf = M.reshape(36, N * L)
    Z = np.empty((6, 4, L), dtype=out.dtype)
    Y = np.empty((16, L), dtype=out.dtype)
    best = np.empty((qH * qW, C_out), dtype=out.dtype)  # each window's, channels last
    winner = np.empty((qH * qW, C_out), dtype=np.int64)
    zero = np.zeros(1, dtype=out.dtype)[0]
    for n in range(N):
        winograd_f4x4.output_blocks(Mf, n * L, two, four, eight, Z, Y)
        nan = False
        for i in range(qH):
            for j in range(qW):
                r0, r1, c0, c1 = _window(i, j, pH, pW, oH, oW)
                ya, yb = _pixel(Y, r0, c0, tW, C_out), _pixel(Y, r0, c1, tW, C_out)
                yd, ye = _pixel(Y, r1, c0, tW, C_out), _pixel(Y, r1, c1, tW, C_out)
                b, k = best[i * qW + j], winner[i * qW + j]
                for o in range(C_out):  # by selects: the loop vectorises
                    p, q, r, s = ya[o] + bias[o], yb[o] + bias[o], yd[o] + bias[o], ye[o] + bias[o]
                    nan |= (p != p) | (q != q) | (r != r) | (s != s)
                    value, offset = max_of_2x2(p, q, r, s, 2)  # offset: 0, 1, 2 or 3
                    h = r1 if offset >= 2 else r0
                    w = c1 if offset % 2 == 1 else c0
                    k[o] = h * oW + w if value > 0 else r0 * oW + c0  # relu: the first tap
                    b[o] = value if value > 0 else zero
        if nan:  # the image again, where a NaN wins
            for i in range(qH):
                for j in range(qW):
                    r0, r1, c0, c1 = _window(i, j, pH, pW, oH, oW)
                    ya, yb = _pixel(Y, r0, c0, tW, C_out), _pixel(Y, r0, c1, tW, C_out)
                    yd, ye = _pixel(Y, r1, c0, tW, C_out), _pixel(Y, r1, c1, tW, C_out)
                    for o in range(C_out):
                        p, q = ya[o] + bias[o], yb[o] + bias[o]
                        value, offset = max_of_2x2_nan(p, q, yd[o] + bias[o], ye[o] + bias[o], 2)
                        h = r1 if offset >= 2 else r0
                        w = c1 if offset % 2 == 1 else c0
                        if not (value > 0 or value != value):
                            value, h, w = zero, r0, c0
                        best[i * qW + j, o] = value
                        winner[i * qW + j, o] = h * oW + w
        _channels_first(best, winner, out, indices, n)


@njit(cache=CACHE, nogil=True)
def relu_max_pool_blocks_backward(grad_out, indices, out, oH, oW, pH, pW, D):
    """``tiles.output_grad_blocks`` of the conv output's gradient, built from the gradient of
    its relu'd, clipped 2x2 pool (``relu_max_pool_blocks``'s): each window's
    gradient at its winner, 0 where relu blocked it (``relu_pool.winner_grad``), 0
    elsewhere (the windows never overlap). grad_out, indices, out (N, C_out, qH, qW); D
    (16, N*T*C_out). Returns whether an index left its window (not the forward pass's):
    then D is not the gradient."""
    N, C_out, qH, qW = grad_out.shape
    tH, tW = (oH + 3) // 4, (oW + 3) // 4
    L = tH * tW * C_out
    zero = np.zeros(1, dtype=D.dtype)[0]
    D[:] = 0
    for n in range(N):
        for o in range(C_out):
            for i in range(qH):
                for j in range(qW):
                    r0, r1, c0, c1 = _window(i, j, pH, pW, oH, oW)
                    index = indices[n, o, i, j]
                    if not in_clipped_2x2(index, r0, r1, c0, c1, oW):
                        return True
                    h = r0 if index < r1 * oW + c0 else r1  # (r1 == r0 + 1, or r0 itself)
                    w = index - h * oW
                    v = winner_grad(grad_out[n, o, i, j], out[n, o, i, j], zero)
                    D[4 * (h % 4) + w % 4, n * L + ((h // 4) * tW + w // 4) * C_out + o] = v
    return False
