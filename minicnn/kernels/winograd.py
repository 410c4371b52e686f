"""Winograd F(2x2, 3x3): a 3x3, stride-1 conv2d with 2.25 times fewer multiplications.

Direct convolution spends 9 multiplications per input channel on each output pixel: 36 for
a 2x2 block of outputs. Winograd's minimal filtering computes that block from the 4x4 input
tile ``d`` under it and the 3x3 filter ``g`` with 16, all of them in one elementwise product:

    Y = AT @ ((G @ g @ G.T) * (BT @ d @ BT.T)) @ AT.T        # (2, 2) = the conv's 2x2 block

A whole layer transforms every filter once, ``U = G g G.T`` (16, C_out, C), every 4x4 input
tile (tiles overlap by 2 pixels), ``V = BT d BT.T`` (16, C, tiles), and the sums over input
channels become 16 matrix products, one per position of the 4x4 tile:

    M[k] = U[k] @ V[k]        # (C_out, C) @ (C, tiles), k = 0..15

after which each tile's 16 numbers go back to a 2x2 block of outputs, ``Y = AT M AT.T``. The
deck's conv2 (32 -> 64 channels, 14x14) then needs 3.2 MFLOP per image instead of 7.2.

The backward pass is the forward's adjoint, step by step in reverse. The output gradient's
2x2 blocks go to the tile domain, ``dM = AT.T dY AT``; then ``dU[k] = dM[k] @ V[k].T`` (the
weight gradient, summed over tiles, back to 3x3 by ``G.T dU G``) and ``dV[k] = U[k].T @
dM[k]`` (each input tile's gradient ``BT.T dV BT``, added onto the pixels the tile covers).
Every step is exact algebra, so the results equal direct convolution's up to round-off, which
the transforms' small integer and 1/2 coefficients keep at a few units in the last place.

F(4x4, 3x3) is the same algebra with larger matrices (``G4``, ``BT4``, ``AT4`` below): 6x6
input tiles 4 pixels apart, 36 products, a 4x4 block of outputs per tile, 2.25
multiplications per output where F(2x2, 3x3) spends 4. The twin takes ``m=4`` for it; its
fast kernels are in ``minicnn.kernels.winograd4``.

Shapes: x (N, C, H, W), weight (C_out, C, 3, 3), ``padding = (top, bottom, left, right)``,
out (N, C_out, oH, oW) with oH = H + top + bottom - 2; tH = ceil(oH / m) tile rows, tW tile
columns, T = tH * tW tiles per image; tiles past the last output read zeros and are dropped.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.lib.stride_tricks import sliding_window_view

from minicnn.kernels.im2col import pad_image, unpad_image

G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])  # (4, 3)
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])  # (4, 4)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]])  # (2, 4)

# F(4x4, 3x3) (``minicnn.kernels.winograd4``): 6x6 tiles, a 4x4 block of outputs from each
G4 = np.array([  # (6, 3)
    [1 / 4, 0, 0],
    [-1 / 6, -1 / 6, -1 / 6],
    [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6],
    [1 / 24, -1 / 12, 1 / 6],
    [0, 0, 1],
])  # fmt: skip
BT4 = np.array([  # (6, 6)
    [4, 0, -5, 0, 1, 0],
    [0, -4, -4, 1, 1, 0],
    [0, 4, -4, -1, 1, 0],
    [0, -2, -1, 2, 1, 0],
    [0, 2, -1, -2, 1, 0],
    [0, 4, 0, -5, 0, 1],
])  # fmt: skip
AT4 = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]])

MATRICES = {2: (G, BT, AT), 4: (G4, BT4, AT4)}  # m, the output block's side: (G, BT, AT)


def tiles_for(out_hw: tuple[int, int], m: int = 2) -> tuple[int, int]:
    """(tH, tW): how many m x m output blocks cover an oH x oW output."""
    return -(-out_hw[0] // m), -(-out_hw[1] // m)


# -- the NumPy twin: the formulas above, one array expression each ---------------------------
# (m = 2 by default; m = 4 is F(4x4, 3x3), the same steps with 6x6 tiles)


def _padded(x, padding, tH, tW, m):
    """x zero-padded to the (m*tH + 2, m*tW + 2) plane its tiles cover."""
    top, _, left, _ = padding
    _, _, H, W = x.shape
    return np.pad(x, ((0, 0), (0, 0), (top, m * tH + 2 - H - top), (left, m * tW + 2 - W - left)))


def _tiles(xpad, m):
    """The (m + 2)x(m + 2) tiles of xpad, m pixels apart: (N, C, tH, tW, m + 2, m + 2)."""
    return sliding_window_view(xpad, (m + 2, m + 2), axis=(2, 3))[:, :, ::m, ::m]


def conv2d_forward_numpy(x, weight, bias, padding, m=2):
    """out = conv2d(x, weight, bias, padding=padding) for a 3x3 kernel, stride 1, by tiles."""
    N, C, H, W = x.shape
    C_out = weight.shape[0]
    top, bottom, left, right = padding
    oH, oW = H + top + bottom - 2, W + left + right - 2
    tH, tW = tiles_for((oH, oW), m)
    g, bt, at = (a.astype(x.dtype) for a in MATRICES[m])

    d = _tiles(_padded(x, padding, tH, tW, m), m)  # (N, C, tH, tW, m+2, m+2)
    V = bt @ d @ bt.T  # (N, C, tH, tW, m+2, m+2): the input tiles, transformed
    U = g @ weight @ g.T  # (C_out, C, m+2, m+2): the filters, transformed
    M = np.einsum("nctuab,ocab->notuab", V, U)  # (N, C_out, tH, tW, m+2, m+2): sums over c
    Y = at @ M @ at.T  # (N, C_out, tH, tW, m, m): each tile's block of outputs
    out = Y.transpose(0, 1, 2, 4, 3, 5).reshape(N, C_out, m * tH, m * tW)[:, :, :oH, :oW]
    out = np.ascontiguousarray(out)  # (N, C_out, oH, oW)
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def conv2d_backward_numpy(grad_out, x, weight, padding, input_grad=True, m=2):
    """(grad_x, grad_weight, grad_bias) of ``conv2d_forward_numpy``: its steps' adjoints."""
    N, C, H, W = x.shape
    C_out = weight.shape[0]
    top, _, left, _ = padding
    _, _, oH, oW = grad_out.shape
    tH, tW = tiles_for((oH, oW), m)
    g, bt, at = (a.astype(x.dtype) for a in MATRICES[m])

    xpad = _padded(x, padding, tH, tW, m)  # (N, C, m*tH+2, m*tW+2)
    V = bt @ _tiles(xpad, m) @ bt.T  # (N, C, tH, tW, m+2, m+2)
    U = g @ weight @ g.T  # (C_out, C, m+2, m+2)
    dY = np.pad(grad_out, ((0, 0), (0, 0), (0, m * tH - oH), (0, m * tW - oW)))
    dY = dY.reshape(N, C_out, tH, m, tW, m).transpose(0, 1, 2, 4, 3, 5)  # (N, C_out, tH, tW, m, m)
    dM = at.T @ dY @ at  # (N, C_out, tH, tW, m+2, m+2)
    dU = np.einsum("notuab,nctuab->ocab", dM, V)  # (C_out, C, m+2, m+2)
    grad_weight = g.T @ dU @ g  # (C_out, C, 3, 3)
    grad_bias = grad_out.sum(axis=(0, 2, 3))
    if not input_grad:
        return None, grad_weight, grad_bias
    dV = np.einsum("notuab,ocab->nctuab", dM, U)  # (N, C, tH, tW, m+2, m+2)
    dd = bt.T @ dV @ bt  # (N, C, tH, tW, m+2, m+2): each input tile's gradient
    grad_pad = np.zeros_like(xpad)  # (N, C, m*tH+2, m*tW+2)
    for a in range(m + 2):  # tiles overlap: add each tile position's share onto its pixels
        for b in range(m + 2):
            grad_pad[:, :, a : a + m * tH : m, b : b + m * tW : m] += dd[..., a, b]
    grad_x = np.ascontiguousarray(grad_pad[:, :, top : top + H, left : left + W])
    return grad_x, grad_weight, grad_bias


# -- the fast path: the transforms as loops, the 16 products by BLAS --------------------------
#
# Each transform is a 4-point (or 2-point) butterfly applied to rows, then to columns. The
# kernels take a chunk of images; matrices in the tile domain keep the chunk's tiles side by
# side, (16, channels, N*T), so each of the 16 products is one wide BLAS call.


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


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
def input_transform(x, top, left, xpad, V):
    """V[4a + b, c, n*T + ti*tW + tj] = (BT @ d @ BT.T)[a, b], d the 4x4 tile of image n's
    zero-padded channel c at (2ti, 2tj). x (N, C, H, W); xpad (C, 2tH + 2, 2tW + 2), scratch;
    V (16, C, N*T)."""
    N, C = x.shape[:2]
    _, Hp, Wp = xpad.shape
    tH, tW = (Hp - 2) // 2, (Wp - 2) // 2
    rows = np.empty((4, Wp), dtype=V.dtype)  # BT @ (a tile row's four pixel rows)
    for n in range(N):
        pad_image(x, n, top, left, xpad)
        for c in range(C):
            for ti in range(tH):
                plane, i = xpad[c], 2 * ti
                for w in range(Wp):  # BT down the columns, every column of the tile row
                    e = _bt(plane[i, w], plane[i + 1, w], plane[i + 2, w], plane[i + 3, w])
                    rows[0, w], rows[1, w], rows[2, w], rows[3, w] = e
                t0 = (n * tH + ti) * tW
                for a in range(4):  # then BT along each tile's rows
                    r = rows[a]
                    v0, v1, v2, v3 = V[4 * a, c], V[4 * a + 1, c], V[4 * a + 2, c], V[4 * a + 3, c]
                    for tj in range(tW):
                        j = 2 * tj
                        v0[t0 + tj], v1[t0 + tj], v2[t0 + tj], v3[t0 + tj] = _bt(
                            r[j], r[j + 1], r[j + 2], r[j + 3]
                        )


@njit(cache=True, nogil=True)
def output_transform(M, bias, out):
    """out[n, o, 2ti + i, 2tj + j] = (AT @ M[:, o, n*T + ti*tW + tj].reshape(4, 4) @ AT.T)[i, j]
    + bias[o], the blocks cut at the output's edge. M (16, C_out, N*T); bias (C_out,) (zeros
    for none); out (N, C_out, oH, oW)."""
    N, C_out, oH, oW = out.shape
    tH, tW = (oH + 1) // 2, (oW + 1) // 2
    T = tH * tW
    # each tile's rows times AT.T, for a whole plane: tile t's two columns at 2t and 2t + 1,
    # which are also the columns 2tj, 2tj + 1 of tile row ti, at 2tW * ti
    rows = np.empty((4, 2 * T), dtype=out.dtype)
    for n in range(N):
        for o in range(C_out):
            for a in range(4):  # AT.T along every tile's rows: one loop over the plane's tiles
                m0, m1, m2, m3 = M[4 * a, o], M[4 * a + 1, o], M[4 * a + 2, o], M[4 * a + 3, o]
                r = rows[a]
                for t in range(T):
                    r[2 * t], r[2 * t + 1] = _at(
                        m0[n * T + t], m1[n * T + t], m2[n * T + t], m3[n * T + t]
                    )
            b = bias[o]
            for ti in range(tH):  # then AT down the columns, two output rows per tile row
                i, c = 2 * ti, 2 * tW * ti
                for w in range(oW):
                    y0, y1 = _at(rows[0, c + w], rows[1, c + w], rows[2, c + w], rows[3, c + w])
                    out[n, o, i, w] = y0 + b
                    if i + 1 < oH:
                        out[n, o, i + 1, w] = y1 + b


@njit(cache=True, nogil=True, fastmath={"reassoc"})  # the bias sums vectorise
def grad_output_transform(grad, dM, grad_b):
    """dM[:, o, n*T + ti*tW + tj] = AT.T @ dY @ AT, dY the 2x2 block of grad[n, o] at
    (2ti, 2tj) (zeros past the edge): ``output_transform``'s adjoint. grad (N, C_out, oH, oW),
    dM (16, C_out, N*T). Reading every output gradient anyway, it adds each plane's sum into
    grad_b[o], the bias gradient (C_out,)."""
    N, C_out, oH, oW = grad.shape
    tH, tW = (oH + 1) // 2, (oW + 1) // 2
    T = tH * tW
    zero = np.zeros(1, dtype=grad_b.dtype)[0]
    cols = np.zeros((4, 2 * T), dtype=dM.dtype)  # AT.T @ each block row, laid out as rows is
    for n in range(N):  # in output_transform; zeros past the edge stay zeros
        for o in range(C_out):
            total = zero  # in grad_b's precision, lane by lane
            for ti in range(tH):  # AT.T down the columns
                i, c = 2 * ti, 2 * tW * ti
                if i + 1 < oH:
                    for w in range(oW):
                        g0, g1 = grad[n, o, i, w], grad[n, o, i + 1, w]
                        total += g0 + g1
                        e = _a(g0, g1)
                        cols[0, c + w], cols[1, c + w], cols[2, c + w], cols[3, c + w] = e
                else:  # the last block row of an odd-sized output: one row, zeros below
                    for w in range(oW):
                        g0 = grad[n, o, i, w]
                        total += g0
                        e = _a(g0, 0)
                        cols[0, c + w], cols[1, c + w], cols[2, c + w], cols[3, c + w] = e
            grad_b[o] += total
            for a in range(4):  # then AT.T along every tile's rows, one loop over the tiles
                d0, d1, d2, d3 = dM[4 * a, o], dM[4 * a + 1, o], dM[4 * a + 2, o], dM[4 * a + 3, o]
                ca = cols[a]
                for t in range(T):
                    d0[n * T + t], d1[n * T + t], d2[n * T + t], d3[n * T + t] = _a(
                        ca[2 * t], ca[2 * t + 1]
                    )


@njit(cache=True, nogil=True)
def grad_input_transform(dV, top, left, gpad, grad_x):
    """grad_x = the input gradient from the tiles' ``dV`` (16, C, N*T): each tile's BT.T @ dV
    @ BT added onto the 4x4 pixels it covers, ``input_transform``'s adjoint. gpad
    (C, 2tH + 2, 2tW + 2), scratch; grad_x (N, C, H, W), written."""
    N, C = grad_x.shape[:2]
    _, Hp, Wp = gpad.shape
    tH, tW = (Hp - 2) // 2, (Wp - 2) // 2
    rows = np.empty((4, Wp), dtype=gpad.dtype)  # a tile row's gradients times BT, added up
    for n in range(N):
        gpad[:] = 0
        for c in range(C):
            for ti in range(tH):
                rows[:] = 0
                t0 = (n * tH + ti) * tW
                for a in range(4):  # BT.T along each tile's rows, onto the columns it covers
                    for tj in range(tW):
                        t, j = t0 + tj, 2 * tj
                        e = _b(
                            dV[4 * a, c, t],
                            dV[4 * a + 1, c, t],
                            dV[4 * a + 2, c, t],
                            dV[4 * a + 3, c, t],
                        )
                        for q in range(4):
                            rows[a, j + q] += e[q]
                plane, i = gpad[c], 2 * ti
                for w in range(Wp):  # then BT.T down the columns, onto the four pixel rows
                    d = _b(rows[0, w], rows[1, w], rows[2, w], rows[3, w])
                    for p in range(4):
                        plane[i + p, w] += d[p]
        unpad_image(gpad, top, left, grad_x, n)
