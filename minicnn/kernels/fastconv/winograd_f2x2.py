"""Winograd F(2x2, 3x3): the fast kernels, channels last.

The algebra is ``minicnn.kernels.fastconv.winograd``'s (its docstring and NumPy twin give the
formulas). Here the tile domain is laid out channels last: V (16, N*T, C) and M (16, N*T,
C_out), plane ``4a + b`` holding entry (a, b) of every tile, each tile's channels side by
side. Every butterfly then runs down a contiguous row of channels, tile after tile, so the
compiler vectorises it, where with the channels apart (16, C, N*T) the butterflies over a
tile row of 7 tiles read pixels two apart and ran one value at a time (benchmarks/README.md,
"What we measured"). The products read the same matrices the other way round,
``M[k] = V[k] @ U[k].T``, and the weight gradient's product needs V no longer transposed.

An image reaches the tile domain through a zero-padded copy of itself with its channels
last and its even and odd columns apart, xpad (Hp, 2, tW + 1, C): the four columns of tile
tj are then even tj, odd tj, even tj + 1, odd tj + 1, each a run of C values, so a tile
row's butterflies along the rows are one loop over tW*C values with constant offsets. The
conv's output comes back through the tiles' 2x2 blocks, Y (4, T*C_out): with a 2x2, stride-2
max pool after it, those blocks are the pool's windows, and the output transform pools them
there (``tile_pool``); the backward pass builds the blocks' gradient from
the pooled one the same way.

Each value is computed by the same operations, in the same order, as the twin's formulas
step by step; only the products' sums (BLAS) may round differently.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from minicnn.kernels.fastconv.tiles import (
    add_tile_rows,
    pad_channels_last,
    place_blocks,
    unpad_channels_last,
)
from minicnn.kernels.runtime.cache import CACHE


@njit(inline="always")
def _bt(d0, d1, d2, d3):
    """BT @ (d0, d1, d2, d3)."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@njit(inline="always")
def _b(v0, v1, v2, v3):
    """BT.T @ (v0, v1, v2, v3)."""
    return v0, v1 - v2 + v3, v1 + v2 - v0, -v3


@njit(inline="always")
def _at(m0, m1, m2, m3):
    """AT @ (m0, m1, m2, m3)."""
    return m0 + m1 + m2, m1 - m2 - m3


@njit(inline="always")
def _a(y0, y1):
    """AT.T @ (y0, y1)."""
    return y0, y0 + y1, y0 - y1, -y1


@njit(inline="always")
def _g(w0, w1, w2):
    """G @ (w0, w1, w2)."""
    return w0, 0.5 * (w0 + w1 + w2), 0.5 * (w0 - w1 + w2), w2


@njit(inline="always")
def _gt(u0, u1, u2, u3):
    """G.T @ (u0, u1, u2, u3)."""
    return u0 + 0.5 * (u1 + u2), 0.5 * (u1 - u2), 0.5 * (u1 + u2) + u3


@njit(cache=CACHE, nogil=True)
def filter_transform(weight, U):
    """U[4a + b, o, c] = (G @ weight[o, c] @ G.T)[a, b]; weight (C_out, C, 3, 3),
    U (16, C_out, C). Each butterfly runs across all filters at once, writing a few of U's
    planes at a time: writing all 16, which lie a power of two apart, at once thrashed L1."""
    F = weight.shape[0] * weight.shape[1]
    w = weight.reshape(F, 9)  # (F, 3*3)
    u = U.reshape(16, F)
    cols = np.empty((4, 3, F), dtype=U.dtype)  # G down each column of each filter
    for q in range(3):
        for f in range(F):
            e = _g(w[f, q], w[f, 3 + q], w[f, 6 + q])
            cols[0, q, f], cols[1, q, f], cols[2, q, f], cols[3, q, f] = e
    for a in range(4):  # then G along each row of the results
        for f in range(F):
            e = _g(cols[a, 0, f], cols[a, 1, f], cols[a, 2, f])
            u[4 * a, f], u[4 * a + 1, f], u[4 * a + 2, f], u[4 * a + 3, f] = e


@njit(cache=CACHE, nogil=True)
def grad_filter_transform(dU, grad_weight):
    """grad_weight[o, c] = G.T @ dU[:, o, c].reshape(4, 4) @ G, ``filter_transform``'s
    adjoint, the same way round; dU (16, C_out, C), grad_weight (C_out, C, 3, 3)."""
    F = grad_weight.shape[0] * grad_weight.shape[1]
    u = dU.reshape(16, F)
    g = grad_weight.reshape(F, 9)  # (F, 3*3)
    rows = np.empty((4, 3, F), dtype=dU.dtype)  # G.T along each row of each dU
    for a in range(4):
        for f in range(F):
            e = _gt(u[4 * a, f], u[4 * a + 1, f], u[4 * a + 2, f], u[4 * a + 3, f])
            rows[a, 0, f], rows[a, 1, f], rows[a, 2, f] = e
    for q in range(3):  # then G.T down each column of the results
        for f in range(F):
            g[f, q], g[f, 3 + q], g[f, 6 + q] = _gt(
                rows[0, q, f], rows[1, q, f], rows[2, q, f], rows[3, q, f]
            )


# -- the input's tiles, and their gradient back to the input ---------------------------------
#
# The loops below follow what the compiler vectorises: each runs down 1-d slices taken
# before it (``a[r, k0 + j]`` in a loop, or ``a[j + C]``, compiled to gathers or scalar
# code), and reads and writes few arrays (a loop adding onto four rows of one array ran
# scalar: its overlap tests failed).


@njit(cache=CACHE, nogil=True)
def input_transform(x, top, left, xpad, V):
    """V[4a + b, n*T + ti*tW + tj, c] = (BT @ d @ BT.T)[a, b], d the 4x4 tile of image n's
    zero-padded channel c at (2ti, 2tj). x (N, C, H, W); xpad (2tH + 2, 2, tW + 1, C),
    scratch (see the module docstring); V (16, N*T, C).

    Per image: its channels moved last into xpad, then per tile row BT down the columns
    (both column parities at once), then BT along each tile's rows, across the tile row."""
    N, C = x.shape[:2]
    Hp, _, half, _ = xpad.shape
    tH, tW = (Hp - 2) // 2, half - 1
    T, L, R = tH * tW, 2 * half * C, tW * C  # a padded row, flat; a tile row's tiles
    xf = xpad.reshape(Hp, L)
    Vf = V.reshape(16, N * T * C)
    rows = np.empty((4, L), dtype=V.dtype)  # BT @ (a tile row's four pixel rows)
    xpad[:] = 0  # the padding; the pixels are written for each image
    for n in range(N):
        pad_channels_last(x, n, top, left, xpad, 2)
        for ti in range(tH):
            i = 2 * ti
            d0, d1, d2, d3 = xf[i], xf[i + 1], xf[i + 2], xf[i + 3]
            r0, r1, r2, r3 = rows[0], rows[1], rows[2], rows[3]
            for j in range(L):  # BT down the columns, every column of the tile row
                r0[j], r1[j], r2[j], r3[j] = _bt(d0[j], d1[j], d2[j], d3[j])
            base = (n * T + ti * tW) * C
            for a in range(4):  # then BT along each tile's rows: columns 2tj .. 2tj + 3
                e0, o0 = rows[a, :R], rows[a, L // 2 : L // 2 + R]  # even tj, odd tj
                e1, o1 = rows[a, C : C + R], rows[a, L // 2 + C : L // 2 + C + R]  # tj + 1
                v0, v1 = Vf[4 * a, base : base + R], Vf[4 * a + 1, base : base + R]
                v2, v3 = Vf[4 * a + 2, base : base + R], Vf[4 * a + 3, base : base + R]
                for j in range(R):
                    v0[j], v1[j], v2[j], v3[j] = _bt(e0[j], o0[j], e1[j], o1[j])


@njit(cache=CACHE, nogil=True)
def grad_input_transform(dV, top, left, gpad, grad_x):
    """grad_x = the input gradient from the tiles' ``dV`` (16, N*T, C): each tile's
    BT.T @ dV @ BT added onto the 4x4 pixels it covers, ``input_transform``'s adjoint, step
    by step in reverse. gpad (2tH + 2, 2, tW + 1, C), scratch; grad_x (N, C, H, W), written.

    Per tile row: BT.T along each tile's rows, the tiles' shares added onto the columns
    they cover (tile tj's columns 2 and 3 are tile tj + 1's 0 and 1), then BT.T down the
    columns; pixel rows 2ti and 2ti + 1 get the share of tile row ti - 1 and of ti."""
    N, C, H, W = grad_x.shape
    Hp, _, half, _ = gpad.shape
    tH, tW = (Hp - 2) // 2, half - 1
    T, L, R = tH * tW, 2 * half * C, tW * C
    gf = gpad.reshape(Hp, L)
    dVf = dV.reshape(16, N * T * C)
    E = np.empty((4, R), dtype=gpad.dtype)  # BT.T along a tile row: column q of each tile
    rows = np.empty((4, L), dtype=gpad.dtype)  # the shares on each column, parities apart
    down = np.empty((2, 4, L), dtype=gpad.dtype)  # BT.T down the columns, tile row ti % 2
    for n in range(N):
        for ti in range(tH):
            base = (n * T + ti * tW) * C
            for a in range(4):
                d0, d1 = dVf[4 * a, base : base + R], dVf[4 * a + 1, base : base + R]
                d2, d3 = dVf[4 * a + 2, base : base + R], dVf[4 * a + 3, base : base + R]
                e0, e1, e2, e3 = E[0], E[1], E[2], E[3]
                for j in range(R):
                    e0[j], e1[j], e2[j], e3[j] = _b(d0[j], d1[j], d2[j], d3[j])
                even, odd = rows[a, : L // 2], rows[a, L // 2 :]
                for j in range(C):  # the first tile's columns 0 and 1
                    even[j], odd[j] = e0[j], e1[j]
                even_in, odd_in = even[C:R], odd[C:R]  # the columns two tiles share
                e0_in, e1_in, e2_in, e3_in = e0[C:R], e1[C:R], e2[: R - C], e3[: R - C]
                for j in range(R - C):
                    even_in[j], odd_in[j] = e0_in[j] + e2_in[j], e1_in[j] + e3_in[j]
                for j in range(C):  # the last tile's columns 2 and 3
                    even[R + j], odd[R + j] = e2[R - C + j], e3[R - C + j]
            now, above = down[ti % 2], down[1 - ti % 2]
            r0, r1, r2, r3 = rows[0], rows[1], rows[2], rows[3]
            f0, f1, f2, f3 = now[0], now[1], now[2], now[3]
            for j in range(L):
                f0[j], f1[j], f2[j], f3[j] = _b(r0[j], r1[j], r2[j], r3[j])
            add_tile_rows(gf, ti, tH, 2, now, above)
        unpad_channels_last(gpad, top, left, grad_x, n, 2)


# -- the products back to outputs, and the outputs' gradient to the tile domain --------------


@njit(inline="always")
def output_blocks(Mf, start, Y):
    """Y[2i + j, k] = (AT @ M[:, k] @ AT.T)[i, j] for the L = Y.shape[1] columns k of Mf
    (16, N*T*C_out) from ``start`` on (whole tiles): AT along each tile's rows, then down
    its columns, in one pass (two passes through a scratch of the rows' results were slower
    for the same values)."""
    L = Y.shape[1]
    m0, m1, m2, m3 = (
        Mf[0, start : start + L],
        Mf[1, start : start + L],
        Mf[2, start : start + L],
        Mf[3, start : start + L],
    )
    m4, m5, m6, m7 = (
        Mf[4, start : start + L],
        Mf[5, start : start + L],
        Mf[6, start : start + L],
        Mf[7, start : start + L],
    )
    m8, m9, m10, m11 = (
        Mf[8, start : start + L],
        Mf[9, start : start + L],
        Mf[10, start : start + L],
        Mf[11, start : start + L],
    )
    m12, m13, m14, m15 = (
        Mf[12, start : start + L],
        Mf[13, start : start + L],
        Mf[14, start : start + L],
        Mf[15, start : start + L],
    )
    y0, y1, y2, y3 = Y[0], Y[1], Y[2], Y[3]
    for k in range(L):
        a0, a1 = _at(m0[k], m1[k], m2[k], m3[k])  # AT along the tile's rows
        b0, b1 = _at(m4[k], m5[k], m6[k], m7[k])
        c0, c1 = _at(m8[k], m9[k], m10[k], m11[k])
        d0, d1 = _at(m12[k], m13[k], m14[k], m15[k])
        y0[k], y2[k] = _at(a0, b0, c0, d0)  # then down its columns
        y1[k], y3[k] = _at(a1, b1, c1, d1)


@njit(cache=CACHE, nogil=True)
def output_transform(M, bias, out):
    """out[n, o, 2ti + i, 2tj + j] = (AT @ M[:, n*T + ti*tW + tj].reshape(4, 4) @ AT.T)[i, j]
    + bias[o], the blocks cut at the output's edge. M (16, N*T, C_out); bias (C_out,) (zeros
    for none); out (N, C_out, oH, oW)."""
    N, C_out, oH, oW = out.shape
    tH, tW = (oH + 1) // 2, (oW + 1) // 2
    L = tH * tW * C_out  # an image's tiles
    Mf = M.reshape(16, N * L)
    Y = np.empty((4, L), dtype=out.dtype)  # [2i + j]: entry (i, j) of each tile's block
    for n in range(N):
        output_blocks(Mf, n * L, Y)
        place_blocks(Y, 2, bias, out, n)


TILES = 64  # tiles per block of ``grad_output_transform``: its rows stay in L1 and L2


@njit(cache=CACHE, nogil=True)
def grad_output_transform(D, dM, grad_b):
    """dM[:, t, o] = AT.T @ dY @ AT, dY = the 2x2 block of tile t's output gradient in D
    (4, N*T*C_out) (``tiles.output_grad_blocks``): ``output_transform``'s adjoint, a block of
    tiles at a time. dM (16, N*T, C_out). Adds the blocks' sums into grad_b (C_out,), the
    bias gradient, tile after tile."""
    C_out = grad_b.size
    K = D.shape[1]
    dMf = dM.reshape(16, K)
    B = TILES * C_out
    cols = np.empty((2, 4, B), dtype=dM.dtype)  # AT.T down each block's column q
    total = np.zeros(C_out, dtype=grad_b.dtype)
    for start in range(0, K, B):
        L = min(K, start + B) - start
        for q in range(2):
            y0, y1 = D[q, start : start + L], D[2 + q, start : start + L]
            c0, c1, c2, c3 = cols[q, 0], cols[q, 1], cols[q, 2], cols[q, 3]
            for k in range(L):
                c0[k], c1[k], c2[k], c3[k] = _a(y0[k], y1[k])
        for a in range(4):  # then along each block's rows
            e, f = cols[0, a], cols[1, a]
            d0, d1 = dMf[4 * a, start : start + L], dMf[4 * a + 1, start : start + L]
            d2, d3 = dMf[4 * a + 2, start : start + L], dMf[4 * a + 3, start : start + L]
            for k in range(L):
                d0[k], d1[k], d2[k], d3[k] = _a(e[k], f[k])
    for k0 in range(0, K, C_out):
        y0, y1, y2, y3 = (
            D[0, k0 : k0 + C_out],
            D[1, k0 : k0 + C_out],
            D[2, k0 : k0 + C_out],
            D[3, k0 : k0 + C_out],
        )
        for o in range(C_out):
            total[o] += (y0[o] + y1[o]) + (y2[o] + y3[o])
    for o in range(C_out):
        grad_b[o] += total[o]
