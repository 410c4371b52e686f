"""Winograd F(4x4, 3x3): the fast kernels, for convs whose products outweigh their transforms.

The same algebra as ``minicnn.kernels.fastconv.winograd`` (its docstring and NumPy twin give the
formulas, ``conv2d_forward_numpy(..., m=4)``) with 6x6 input tiles that overlap by 2 pixels,
36 products instead of 16 and a 4x4 block of outputs per tile: 36 multiplications per block
where F(2x2, 3x3) spends 64 and direct convolution 144. The deck's conv3 (64 -> 128
channels, 7x7) covers its output with 4 tiles of 4x4 where it needed 16 of 2x2: its products
shrink from 256 to 144 per pair of channels.

The price is round-off: the matrices' entries reach 8 (and 1/24), so float32 results are a
few times further from the exact ones than F(2x2, 3x3)'s, still within 1e-5 of them relative
to the terms (tests/test_winograd.py measures both at the deck's sizes).

The layout is F(2x2, 3x3)'s with 36 planes: U (36, C_out, C), V (36, C, N*T), M (36, C_out,
N*T), plane ``6a + b`` holding entry (a, b) of every tile. The integer coefficients are passed
in the arrays' own dtype: a float32 times a Python number is a float64 in Numba, and the
transforms would run at half the vector width.
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
def numbers(a):
    """2, 4, 5 and 8 in ``a``'s dtype."""
    return (
        np.full(1, 2, a.dtype)[0],
        np.full(1, 4, a.dtype)[0],
        np.full(1, 5, a.dtype)[0],
        np.full(1, 8, a.dtype)[0],
    )


@njit(inline="always")
def _bt(d0, d1, d2, d3, d4, d5, two, four, five):
    """BT @ (d0, ..., d5)."""
    return (
        four * d0 - five * d2 + d4,
        (d3 + d4) - four * (d1 + d2),
        (d4 - d3) + four * (d1 - d2),
        (d4 - d2) - two * (d1 - d3),
        (d4 - d2) + two * (d1 - d3),
        four * d1 - five * d3 + d5,
    )


@njit(inline="always")
def _b(v0, v1, v2, v3, v4, v5, two, four, five):
    """BT.T @ (v0, ..., v5)."""
    return (
        four * v0,
        four * (v2 - v1 + v5) + two * (v4 - v3),
        -five * v0 - four * (v1 + v2) - (v3 + v4),
        (v1 - v2) + two * (v3 - v4) - five * v5,
        v0 + v1 + v2 + v3 + v4,
        v5,
    )


@njit(inline="always")
def _at(m0, m1, m2, m3, m4, m5, two, four, eight):
    """AT @ (m0, ..., m5)."""
    s, d, s2, d2 = m1 + m2, m1 - m2, m3 + m4, m3 - m4
    return m0 + s + s2, d + two * d2, s + four * s2, d + eight * d2 + m5


@njit(inline="always")
def _a(y0, y1, y2, y3, two, four, eight):
    """AT.T @ (y0, y1, y2, y3)."""
    e, o = y0 + y2, y1 + y3
    e2, o2 = y0 + four * y2, two * y1 + eight * y3
    return y0, e + o, e - o, e2 + o2, e2 - o2, y3


SIXTH, TWELFTH, TWENTY_FOURTH = 1 / 6, 1 / 12, 1 / 24  # G's fractions: multiplying by them
# vectorises, where dividing by 6, 12 and 24 did not


@njit(inline="always")
def _g(w0, w1, w2):
    """G @ (w0, w1, w2), in float64."""
    s, s4 = w0 + w2, w0 + 4.0 * w2
    return (
        0.25 * w0,
        -SIXTH * (s + w1),
        -SIXTH * (s - w1),
        TWENTY_FOURTH * (s4 + 2.0 * w1),
        TWENTY_FOURTH * (s4 - 2.0 * w1),
        1.0 * w2,
    )


@njit(inline="always")
def _gt(u0, u1, u2, u3, u4, u5):
    """G.T @ (u0, ..., u5), in float64."""
    s, s2 = u1 + u2, u3 + u4
    return (
        0.25 * u0 - SIXTH * s + TWENTY_FOURTH * s2,
        SIXTH * (u2 - u1) + TWELFTH * (u3 - u4),
        SIXTH * (s2 - s) + 1.0 * u5,
    )


@njit(inline="always")
def _rows(A, first, start, length):
    """Rows first..first + 2 of the 2-d A, columns start..start + length: three views, so
    that the loops over them read contiguous memory."""
    stop = start + length
    return A[first, start:stop], A[first + 1, start:stop], A[first + 2, start:stop]


FILTERS = 256  # filters per block of the filter transforms: their float64 rows stay in L1


@njit(cache=CACHE, nogil=True)
def filter_transform(weight, U):
    """U[6a + b, o, c] = (G @ weight[o, c] @ G.T)[a, b]; weight (C_out, C, 3, 3),
    U (36, C_out, C). Down the columns first, then along the rows, in float64, a block of
    filters at a time."""
    F = weight.shape[0] * weight.shape[1]
    w = weight.reshape(F, 9)  # (F, 3*3)
    u = U.reshape(36, F)
    cols = np.empty((6, 3, FILTERS))  # G down each column of each filter
    for f0 in range(0, F, FILTERS):
        n = min(F, f0 + FILTERS) - f0
        for q in range(3):
            for f in range(n):
                (
                    cols[0, q, f],
                    cols[1, q, f],
                    cols[2, q, f],
                    cols[3, q, f],
                    cols[4, q, f],
                    cols[5, q, f],
                ) = _g(w[f0 + f, q], w[f0 + f, 3 + q], w[f0 + f, 6 + q])
        for a in range(6):  # then G along each row of the results
            c0, c1, c2 = cols[a, 0], cols[a, 1], cols[a, 2]
            u0, u1, u2 = _rows(u, 6 * a, f0, n)
            u3, u4, u5 = _rows(u, 6 * a + 3, f0, n)
            for f in range(n):
                u0[f], u1[f], u2[f], u3[f], u4[f], u5[f] = _g(c0[f], c1[f], c2[f])


@njit(cache=CACHE, nogil=True)
def grad_filter_transform(dU, grad_weight):
    """grad_weight[o, c] = G.T @ dU[:, o, c].reshape(6, 6) @ G, ``filter_transform``'s
    adjoint; dU (36, C_out, C), grad_weight (C_out, C, 3, 3)."""
    F = grad_weight.shape[0] * grad_weight.shape[1]
    u = dU.reshape(36, F)
    g = grad_weight.reshape(F, 9)  # (F, 3*3)
    rows = np.empty((6, 3, FILTERS))  # G.T along each row of each dU
    for f0 in range(0, F, FILTERS):
        n = min(F, f0 + FILTERS) - f0
        for a in range(6):
            r0, r1, r2 = rows[a, 0], rows[a, 1], rows[a, 2]
            u0, u1, u2 = _rows(u, 6 * a, f0, n)
            u3, u4, u5 = _rows(u, 6 * a + 3, f0, n)
            for f in range(n):
                r0[f], r1[f], r2[f] = _gt(u0[f], u1[f], u2[f], u3[f], u4[f], u5[f])
        for q in range(3):  # then G.T down each column of the results
            for f in range(n):
                g[f0 + f, q], g[f0 + f, 3 + q], g[f0 + f, 6 + q] = _gt(
                    rows[0, q, f],
                    rows[1, q, f],
                    rows[2, q, f],
                    rows[3, q, f],
                    rows[4, q, f],
                    rows[5, q, f],
                )


# -- the input's tiles, and their gradient back to the input (layouts: ``tiles``) ----------


@njit(cache=CACHE, nogil=True)
def input_transform(x, top, left, xpad, V):
    """V[6a + b, n*T + ti*tW + tj, c] = (BT @ d @ BT.T)[a, b], d the 6x6 tile of image n's
    zero-padded channel c at (4ti, 4tj). x (N, C, H, W); xpad (4tH + 2, 4, tW + 1, C),
    scratch (``tiles.pad_channels_last``'s); V (36, N*T, C).

    Per tile row: BT down the columns (all of them at once), then BT along each tile's rows,
    across the tile row: tile tj's columns 4tj + q are (q % 4, tj + q // 4) in xpad."""
    N, C = x.shape[:2]
    Hp, _, Q, _ = xpad.shape
    tH, tW = (Hp - 2) // 4, Q - 1
    T, L, R = tH * tW, 4 * Q * C, tW * C  # a padded row, flat; a tile row's tiles
    two, four, five, _ = numbers(V)
    xf = xpad.reshape(Hp, L)
    Vf = V.reshape(36, N * T * C)
    rows = np.empty((6, L), dtype=V.dtype)  # BT @ (a tile row's six pixel rows)
    xpad[:] = 0  # the padding; the pixels are written for each image
    for n in range(N):
        pad_channels_last(x, n, top, left, xpad, 4)
        for ti in range(tH):
            d0, d1, d2 = _rows(xf, 4 * ti, 0, L)
            d3, d4, d5 = _rows(xf, 4 * ti + 3, 0, L)
            r0, r1, r2 = _rows(rows, 0, 0, L)
            r3, r4, r5 = _rows(rows, 3, 0, L)
            for j in range(L):  # BT down the columns
                r0[j], r1[j], r2[j], r3[j], r4[j], r5[j] = _bt(
                    d0[j], d1[j], d2[j], d3[j], d4[j], d5[j], two, four, five
                )
            base = (n * T + ti * tW) * C
            for a in range(6):  # then BT along each tile's rows
                row = rows[a]
                e0, e1 = row[0:R], row[Q * C : Q * C + R]  # columns 4tj, 4tj + 1
                e2, e3 = row[2 * Q * C : 2 * Q * C + R], row[3 * Q * C : 3 * Q * C + R]
                e4, e5 = row[C : C + R], row[Q * C + C : Q * C + C + R]  # 4(tj + 1), + 1
                v0, v1, v2 = _rows(Vf, 6 * a, base, R)
                v3, v4, v5 = _rows(Vf, 6 * a + 3, base, R)
                for j in range(R):
                    v0[j], v1[j], v2[j], v3[j], v4[j], v5[j] = _bt(
                        e0[j], e1[j], e2[j], e3[j], e4[j], e5[j], two, four, five
                    )


@njit(cache=CACHE, nogil=True)
def grad_input_transform(dV, top, left, gpad, grad_x):
    """grad_x = the input gradient from the tiles' ``dV`` (36, N*T, C): each tile's
    BT.T @ dV @ BT added onto the 6x6 pixels it covers, ``input_transform``'s adjoint, step
    by step in reverse. gpad (4tH + 2, 4, tW + 1, C), scratch; grad_x (N, C, H, W), written.

    Per tile row: BT.T along each tile's rows, the tiles' shares added onto the columns they
    cover (tile tj's columns 4 and 5 are tile tj + 1's 0 and 1), then BT.T down the columns;
    pixel rows 4ti and 4ti + 1 get the share of tile row ti - 1 and of ti."""
    N, C = grad_x.shape[:2]
    Hp, _, Q, _ = gpad.shape
    tH, tW = (Hp - 2) // 4, Q - 1
    T, L, R = tH * tW, 4 * Q * C, tW * C
    two, four, five, _ = numbers(gpad)
    gf = gpad.reshape(Hp, L)
    dVf = dV.reshape(36, N * T * C)
    E = np.empty((6, R), dtype=gpad.dtype)  # BT.T along a tile row: column q of each tile
    rows = np.empty((6, L), dtype=gpad.dtype)  # the shares on each column (xpad's layout)
    down = np.empty((2, 6, L), dtype=gpad.dtype)  # BT.T down the columns, tile row ti % 2
    for n in range(N):
        for ti in range(tH):
            base = (n * T + ti * tW) * C
            for a in range(6):
                d0, d1, d2 = _rows(dVf, 6 * a, base, R)
                d3, d4, d5 = _rows(dVf, 6 * a + 3, base, R)
                e0, e1, e2 = _rows(E, 0, 0, R)
                e3, e4, e5 = _rows(E, 3, 0, R)
                for j in range(R):
                    e0[j], e1[j], e2[j], e3[j], e4[j], e5[j] = _b(
                        d0[j], d1[j], d2[j], d3[j], d4[j], d5[j], two, four, five
                    )
                row = rows[a]
                for r in range(2):  # remainders 0 and 1: columns 4tj + r and 4(tj - 1) + 4 + r
                    dst, first, second = row[r * Q * C : (r + 1) * Q * C], E[r], E[4 + r]
                    for j in range(C):
                        dst[j] = first[j]
                    inner, f, s = dst[C:R], first[C:R], second[: R - C]
                    for j in range(R - C):
                        inner[j] = f[j] + s[j]
                    for j in range(C):
                        dst[R + j] = second[R - C + j]
                for r in range(2, 4):  # remainders 2 and 3: one tile each
                    dst, share = row[r * Q * C : (r + 1) * Q * C], E[r]
                    for j in range(R):
                        dst[j] = share[j]
                    for j in range(R, Q * C):
                        dst[j] = 0
            now, above = down[ti % 2], down[1 - ti % 2]
            r0, r1, r2 = _rows(rows, 0, 0, L)
            r3, r4, r5 = _rows(rows, 3, 0, L)
            f0, f1, f2 = _rows(now, 0, 0, L)
            f3, f4, f5 = _rows(now, 3, 0, L)
            for j in range(L):
                f0[j], f1[j], f2[j], f3[j], f4[j], f5[j] = _b(
                    r0[j], r1[j], r2[j], r3[j], r4[j], r5[j], two, four, five
                )
            add_tile_rows(gf, ti, tH, 4, now, above)
        unpad_channels_last(gpad, top, left, grad_x, n, 4)


# -- the products back to outputs, and the outputs' gradient to the tile domain --------------


@njit(inline="always")
def output_blocks(Mf, start, two, four, eight, Z, Y):
    """Y[4i + j, k] = (AT @ M[:, k] @ AT.T)[i, j] for the L = Y.shape[1] columns k of Mf
    (36, N*T*C_out) from ``start`` on (whole tiles): AT along every tile's rows into Z
    (6, 4, L), then down its columns."""
    L = Y.shape[1]
    for a in range(6):
        m0, m1, m2 = _rows(Mf, 6 * a, start, L)
        m3, m4, m5 = _rows(Mf, 6 * a + 3, start, L)
        z0, z1, z2, z3 = Z[a, 0], Z[a, 1], Z[a, 2], Z[a, 3]
        for k in range(L):
            z0[k], z1[k], z2[k], z3[k] = _at(
                m0[k], m1[k], m2[k], m3[k], m4[k], m5[k], two, four, eight
            )
    for q in range(4):
        y0, y1, y2, y3 = Y[q], Y[4 + q], Y[8 + q], Y[12 + q]
        z0, z1, z2, z3, z4, z5 = Z[0, q], Z[1, q], Z[2, q], Z[3, q], Z[4, q], Z[5, q]
        for k in range(L):
            y0[k], y1[k], y2[k], y3[k] = _at(
                z0[k], z1[k], z2[k], z3[k], z4[k], z5[k], two, four, eight
            )


@njit(cache=CACHE, nogil=True)
def output_transform(M, bias, out):
    """out[n, o, 4ti + i, 4tj + j] = (AT @ M[:, n*T + ti*tW + tj, o].reshape(6, 6) @ AT.T)[i, j]
    + bias[o], the blocks cut at the output's edge. M (36, N*T, C_out); bias (C_out,) (zeros
    for none); out (N, C_out, oH, oW)."""
    N, C_out, oH, oW = out.shape
    tH, tW = (oH + 3) // 4, (oW + 3) // 4
    L = tH * tW * C_out  # an image's tiles
    two, four, _, eight = numbers(M)
    Mf = M.reshape(36, N * L)
    Z = np.empty((6, 4, L), dtype=out.dtype)
    Y = np.empty((16, L), dtype=out.dtype)  # [4i + j]: entry (i, j) of each tile's block
    for n in range(N):
        output_blocks(Mf, n * L, two, four, eight, Z, Y)
        place_blocks(Y, 4, bias, out, n)


TILES = 64  # tiles per block of ``grad_output_transform``: its rows stay in L1 and L2


@njit(cache=CACHE, nogil=True)
def grad_output_transform(D, dM, grad_b):
    """dM[:, t, o] = AT.T @ dY @ AT, dY = the 4x4 block of tile t's output gradient in D
    (16, N*T*C_out) (``tiles.output_grad_blocks``): ``output_transform``'s adjoint, step by
    step in reverse, a block of tiles at a time. dM (36, N*T, C_out). Adds the blocks' sums
    into grad_b (C_out,), the bias gradient, tile after tile."""
    C_out = grad_b.size
    K = D.shape[1]
    two, four, _, eight = numbers(dM)
    dMf = dM.reshape(36, K)
    B = TILES * C_out
    cols = np.empty((4, 6, B), dtype=dM.dtype)  # AT.T down each block's column q
    total = np.zeros(C_out, dtype=grad_b.dtype)
    for start in range(0, K, B):
        L = min(K, start + B) - start
        for q in range(4):
            y0, y1 = D[q, start : start + L], D[4 + q, start : start + L]
            y2, y3 = D[8 + q, start : start + L], D[12 + q, start : start + L]
            c0, c1, c2, c3, c4, c5 = (
                cols[q, 0],
                cols[q, 1],
                cols[q, 2],
                cols[q, 3],
                cols[q, 4],
                cols[q, 5],
            )
            for k in range(L):
                c0[k], c1[k], c2[k], c3[k], c4[k], c5[k] = _a(
                    y0[k], y1[k], y2[k], y3[k], two, four, eight
                )
        for a in range(6):  # then along each block's rows
            e0, e1, e2, e3 = cols[0, a], cols[1, a], cols[2, a], cols[3, a]
            d0, d1, d2 = _rows(dMf, 6 * a, start, L)
            d3, d4, d5 = _rows(dMf, 6 * a + 3, start, L)
            for k in range(L):
                d0[k], d1[k], d2[k], d3[k], d4[k], d5[k] = _a(
                    e0[k], e1[k], e2[k], e3[k], two, four, eight
                )
    for k0 in range(0, K, C_out):
        for i in range(16):
            y = D[i, k0 : k0 + C_out]
            for o in range(C_out):
                total[o] += y[o]
    for o in range(C_out):
        grad_b[o] += total[o]
