"""Winograd F(4x4, 3x3): the fast kernels, for convs whose products outweigh their transforms.

The same algebra as ``minicnn.kernels.winograd`` (its docstring and NumPy twin give the
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


@njit(inline="always")
def _numbers(a):
    """2, 4, 5 and 8 in ``a``'s dtype."""
    return (np.full(1, 2, a.dtype)[0], np.full(1, 4, a.dtype)[0], np.full(1, 5, a.dtype)[0],
            np.full(1, 8, a.dtype)[0])  # fmt: skip


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
# vectorises, where dividing by 6, 12 and 24 made the filter transforms ten times slower


@njit(inline="always")
def _g(w0, w1, w2):
    """G @ (w0, w1, w2), in float64."""
    s, s4 = w0 + w2, w0 + 4.0 * w2
    return (0.25 * w0, -SIXTH * (s + w1), -SIXTH * (s - w1), TWENTY_FOURTH * (s4 + 2.0 * w1),
            TWENTY_FOURTH * (s4 - 2.0 * w1), 1.0 * w2)  # fmt: skip


@njit(inline="always")
def _gt(u0, u1, u2, u3, u4, u5):
    """G.T @ (u0, ..., u5), in float64."""
    s, s2 = u1 + u2, u3 + u4
    return (0.25 * u0 - SIXTH * s + TWENTY_FOURTH * s2, SIXTH * (u2 - u1) + TWELFTH * (u3 - u4),
            SIXTH * (s2 - s) + 1.0 * u5)  # fmt: skip


@njit(inline="always")
def _rows(A, first, start, length):
    """Rows first..first + 2 of the 2-d A, columns start..start + length: three views, so
    that the loops over them read contiguous memory."""
    stop = start + length
    return A[first, start:stop], A[first + 1, start:stop], A[first + 2, start:stop]


FILTERS = 256  # filters per block of the filter transforms: their float64 rows stay in L1


@njit(cache=True, nogil=True)
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
                (cols[0, q, f], cols[1, q, f], cols[2, q, f], cols[3, q, f], cols[4, q, f],
                 cols[5, q, f]) = _g(w[f0 + f, q], w[f0 + f, 3 + q], w[f0 + f, 6 + q])  # fmt: skip
        for a in range(6):  # then G along each row of the results
            c0, c1, c2 = cols[a, 0], cols[a, 1], cols[a, 2]
            u0, u1, u2 = _rows(u, 6 * a, f0, n)
            u3, u4, u5 = _rows(u, 6 * a + 3, f0, n)
            for f in range(n):
                u0[f], u1[f], u2[f], u3[f], u4[f], u5[f] = _g(c0[f], c1[f], c2[f])


@njit(cache=True, nogil=True)
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
                    rows[0, q, f], rows[1, q, f], rows[2, q, f], rows[3, q, f], rows[4, q, f],
                    rows[5, q, f]
                )  # fmt: skip


# Each hot transform runs its butterflies across many tiles at once: every tile of the chunk
# for a block of channels, one row of each plane (contiguous). Within one plane (4 tiles in
# the deck's conv3) the loops are too short to pay for the vector loop's entry, whose
# overlap tests between the six rows read and the six written cost more than the butterflies.
BLOCK = 512  # tiles per butterfly loop, about: whole channels' tiles, one channel at least


@njit(inline="always")
def _channels_per_block(K):
    """How many channels' K tiles each fit in ``BLOCK`` tiles (one, if K alone exceeds it)."""
    return max(1, BLOCK // K)


@njit(cache=True, nogil=True)
def input_transform(x, top, left, xpad, V):
    """V[6a + b, c, n*T + ti*tW + tj] = (BT @ d @ BT.T)[a, b], d the 6x6 tile of image n's
    zero-padded channel c at (4ti, 4tj). x (N, C, H, W); xpad (4tH + 2, 4tW + 2), scratch;
    V (36, C, N*T).

    Per block of channels: BT down the columns of each image's plane (vectorised along its
    rows), the results gathered tile by tile, then BT along the tiles' rows across the
    block."""
    N, C, H, W = x.shape
    Hp, Wp = xpad.shape
    tH, tW = (Hp - 2) // 4, (Wp - 2) // 4
    T, K = tH * tW, N * tH * tW
    two, four, five, _ = _numbers(V)
    cb = _channels_per_block(K)
    Vf = V.reshape(36, C * K)  # (36, C*K): a block's rows are contiguous
    rows = np.empty((6, Wp), dtype=V.dtype)  # BT @ (a tile row's six pixel rows)
    E = np.empty((6, 6, cb * K), dtype=V.dtype)  # [a, q]: column q of each tile, after BT
    xpad[:] = 0
    for c0 in range(0, C, cb):
        c1 = min(C, c0 + cb)
        for c in range(c0, c1):
            for n in range(N):
                for h in range(H):  # (loops: numba's slice copy was slower)
                    for w in range(W):
                        xpad[top + h, left + w] = x[n, c, h, w]
                for ti in range(tH):
                    i, k0 = 4 * ti, (c - c0) * K + n * T + ti * tW
                    for w in range(Wp):  # BT down the columns, every column of the tile row
                        (rows[0, w], rows[1, w], rows[2, w], rows[3, w], rows[4, w],
                         rows[5, w]) = _bt(xpad[i, w], xpad[i + 1, w], xpad[i + 2, w],
                                           xpad[i + 3, w], xpad[i + 4, w], xpad[i + 5, w], two,
                                           four, five)  # fmt: skip
                    for tj in range(tW):
                        for a in range(6):
                            for q in range(6):
                                E[a, q, k0 + tj] = rows[a, 4 * tj + q]
        base, L = c0 * K, (c1 - c0) * K
        for a in range(6):  # then BT along each tile's rows, across the block
            e0, e1, e2, e3, e4, e5 = E[a, 0], E[a, 1], E[a, 2], E[a, 3], E[a, 4], E[a, 5]
            v0, v1, v2 = _rows(Vf, 6 * a, base, L)
            v3, v4, v5 = _rows(Vf, 6 * a + 3, base, L)
            for j in range(L):
                v0[j], v1[j], v2[j], v3[j], v4[j], v5[j] = _bt(e0[j], e1[j], e2[j], e3[j], e4[j],
                                                               e5[j], two, four, five)  # fmt: skip


@njit(cache=True, nogil=True)
def output_transform(M, bias, out):
    """out[n, o, 4ti + i, 4tj + j] = (AT @ M[:, o, n*T + ti*tW + tj].reshape(6, 6) @ AT.T)[i, j]
    + bias[o], the blocks cut at the output's edge. M (36, C_out, N*T); bias (C_out,) (zeros
    for none); out (N, C_out, oH, oW).

    Per block of output channels: both butterflies across the block's tiles, then each
    tile's 4x4 outputs put in place."""
    N, C_out, oH, oW = out.shape
    tH, tW = (oH + 3) // 4, (oW + 3) // 4
    T, K = tH * tW, N * tH * tW
    two, four, _, eight = _numbers(M)
    ob = _channels_per_block(K)
    Mf = M.reshape(36, C_out * K)
    rows = np.empty((6, 4, ob * K), dtype=out.dtype)  # [a, j]: AT.T along row a of each tile
    Y = np.empty((4, 4, ob * K), dtype=out.dtype)  # [i, j]: each tile's block of outputs
    for o0 in range(0, C_out, ob):
        o1 = min(C_out, o0 + ob)
        base, L = o0 * K, (o1 - o0) * K
        for a in range(6):
            m0, m1, m2 = _rows(Mf, 6 * a, base, L)
            m3, m4, m5 = _rows(Mf, 6 * a + 3, base, L)
            r0, r1, r2, r3 = rows[a, 0], rows[a, 1], rows[a, 2], rows[a, 3]
            for j in range(L):
                r0[j], r1[j], r2[j], r3[j] = _at(m0[j], m1[j], m2[j], m3[j], m4[j], m5[j], two,
                                                 four, eight)  # fmt: skip
        for q in range(4):  # then AT down each tile's columns
            for j in range(L):
                Y[0, q, j], Y[1, q, j], Y[2, q, j], Y[3, q, j] = _at(
                    rows[0, q, j], rows[1, q, j], rows[2, q, j], rows[3, q, j], rows[4, q, j],
                    rows[5, q, j], two, four, eight
                )  # fmt: skip
        for o in range(o0, o1):
            b = bias[o]
            for n in range(N):
                for h in range(oH):
                    y, k0 = Y[h % 4], (o - o0) * K + n * T + (h // 4) * tW
                    for w in range(oW):
                        out[n, o, h, w] = y[w % 4, k0 + w // 4] + b


@njit(cache=True, nogil=True, fastmath={"reassoc"})  # the bias sums vectorise
def grad_output_transform(grad, dM, grad_b):
    """dM[:, o, n*T + ti*tW + tj] = AT.T @ dY @ AT, dY the 4x4 block of grad[n, o] at
    (4ti, 4tj) (zeros past the edge): ``output_transform``'s adjoint, step by step in reverse.
    grad (N, C_out, oH, oW), dM (36, C_out, N*T). It adds each plane's sum into grad_b[o], the
    bias gradient (C_out,)."""
    N, C_out, oH, oW = grad.shape
    tH, tW = (oH + 3) // 4, (oW + 3) // 4
    T, K = tH * tW, N * tH * tW
    two, four, _, eight = _numbers(dM)
    zero = np.zeros(1, dtype=grad_b.dtype)[0]
    ob = _channels_per_block(K)
    dMf = dM.reshape(36, C_out * K)
    rows = np.empty((6, 4, ob * K), dtype=dM.dtype)
    dY = np.zeros((4, 4, ob * K), dtype=dM.dtype)  # past the output's edge: zeros, never written
    for o0 in range(0, C_out, ob):
        o1 = min(C_out, o0 + ob)
        base, L = o0 * K, (o1 - o0) * K
        for o in range(o0, o1):
            total = zero  # in grad_b's precision, lane by lane
            for n in range(N):
                for h in range(oH):
                    y, k0 = dY[h % 4], (o - o0) * K + n * T + (h // 4) * tW
                    for w in range(oW):
                        g = grad[n, o, h, w]
                        total += g
                        y[w % 4, k0 + w // 4] = g
            grad_b[o] += total
        for q in range(4):  # AT.T down each tile's columns
            for j in range(L):
                (rows[0, q, j], rows[1, q, j], rows[2, q, j], rows[3, q, j], rows[4, q, j],
                 rows[5, q, j]) = _a(dY[0, q, j], dY[1, q, j], dY[2, q, j], dY[3, q, j], two,
                                     four, eight)  # fmt: skip
        for a in range(6):  # then along each tile's rows
            r0, r1, r2, r3 = rows[a, 0], rows[a, 1], rows[a, 2], rows[a, 3]
            d0, d1, d2 = _rows(dMf, 6 * a, base, L)
            d3, d4, d5 = _rows(dMf, 6 * a + 3, base, L)
            for j in range(L):
                d0[j], d1[j], d2[j], d3[j], d4[j], d5[j] = _a(r0[j], r1[j], r2[j], r3[j], two,
                                                              four, eight)  # fmt: skip


@njit(cache=True, nogil=True)
def grad_input_transform(dV, top, left, gpad, grad_x):
    """grad_x = the input gradient from the tiles' ``dV`` (36, C, N*T): each tile's
    BT.T @ dV @ BT added onto the 6x6 pixels it covers, ``input_transform``'s adjoint, step
    by step in reverse. gpad (4tH + 2, 4tW + 2), scratch; grad_x (N, C, H, W), written."""
    N, C, H, W = grad_x.shape
    Hp, Wp = gpad.shape
    tH, tW = (Hp - 2) // 4, (Wp - 2) // 4
    T, K = tH * tW, N * tH * tW
    two, four, five, _ = _numbers(gpad)
    cb = _channels_per_block(K)
    dVf = dV.reshape(36, C * K)
    rows = np.empty((6, Wp), dtype=gpad.dtype)  # a tile row's gradients times BT, added up
    E = np.empty((6, 6, cb * K), dtype=gpad.dtype)
    for c0 in range(0, C, cb):
        c1 = min(C, c0 + cb)
        base = c0 * K
        L = (c1 - c0) * K
        for a in range(6):  # BT.T along each tile's rows, across the block
            e0, e1, e2, e3, e4, e5 = E[a, 0], E[a, 1], E[a, 2], E[a, 3], E[a, 4], E[a, 5]
            d0, d1, d2 = _rows(dVf, 6 * a, base, L)
            d3, d4, d5 = _rows(dVf, 6 * a + 3, base, L)
            for j in range(L):
                e0[j], e1[j], e2[j], e3[j], e4[j], e5[j] = _b(d0[j], d1[j], d2[j], d3[j], d4[j],
                                                              d5[j], two, four, five)  # fmt: skip
        for c in range(c0, c1):
            for n in range(N):
                gpad[:] = 0
                for ti in range(tH):
                    i, k0 = 4 * ti, (c - c0) * K + n * T + ti * tW
                    rows[:] = 0
                    for tj in range(tW):  # each tile's columns onto the columns they cover
                        for a in range(6):
                            for q in range(6):
                                rows[a, 4 * tj + q] += E[a, q, k0 + tj]
                    for w in range(Wp):  # then BT.T down the columns, onto the six pixel rows
                        d0, d1, d2, d3, d4, d5 = _b(rows[0, w], rows[1, w], rows[2, w],
                                                    rows[3, w], rows[4, w], rows[5, w], two,
                                                    four, five)  # fmt: skip
                        gpad[i, w] += d0
                        gpad[i + 1, w] += d1
                        gpad[i + 2, w] += d2
                        gpad[i + 3, w] += d3
                        gpad[i + 4, w] += d4
                        gpad[i + 5, w] += d5
                for h in range(H):
                    for w in range(W):
                        grad_x[n, c, h, w] = gpad[top + h, left + w]
