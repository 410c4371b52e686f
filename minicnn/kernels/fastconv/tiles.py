"""The layouts Winograd's fast kernels share (``winograd_f2x2``, ``winograd_f4x4``).

The tile domain is channels last: an image's tiles side by side, each tile's channels
contiguous, so that every butterfly runs down a row of channels, tile after tile, and the
compiler vectorises it. Two copies bring an image there and back:

- xpad (Hp, m, Q, C): the zero-padded image, channels last, its columns sorted by their
  remainder mod m: padded column w is xpad[:, w % m, w // m]. The (m + 2) columns of tile
  tj, m*tj + q for q = 0..m+1, are then runs of C values at constant offsets from tile to
  tile: (q % m, tj + q // m), so a tile row's butterflies are one loop.
- D (m*m, N*T*C_out): the output gradient in the tiles' m x m blocks, entry (i, j) of tile
  t's block at D[m*i + j, t*C_out : (t + 1)*C_out]; and Y (m*m, T*C_out), an image's outputs
  the same way before they are put in place.

The image's copies read (and write) the NCHW array in order, plane by plane: going a pixel's
channels at a time, a plane apart, was slower once BLAS's products had filled the caches. The
outputs' copies go a pixel's channels at a time: their loops along a plane's row of tiles are
one or two long (7x7 outputs in 4x4 blocks), and they read or write a chunk's conv output in
scratch space (benchmarks/README.md, "What we measured").
"""

from __future__ import annotations

from numba import njit

from minicnn.kernels.runtime.cache import CACHE


@njit(inline="always")
def _columns(r, offset, W, m):
    """(w0, k0, count): the columns w of a row W wide with (offset + w) % m == r are
    w0 + m*k for k < count, and (offset + w) // m = k0 + k."""
    w0 = (r - offset) % m
    return w0, (offset + w0) // m, (W - w0 + m - 1) // m


@njit(inline="always")
def pad_channels_last(x, n, top, left, xpad, m):
    """xpad[top + h, (left + w) % m, (left + w) // m, c] = x[n, c, h, w]; the padding
    (zeros) is the caller's, written once for a batch. (m is passed as a constant, 2 or 4, so
    the compiler folds it: read off xpad's shape, it cost a division per row.)"""
    C, H, W = x.shape[1:]
    for c in range(C):
        for h in range(H):
            row = x[n, c, h]
            for r in range(m):  # the columns of remainder r
                w0, k0, count = _columns(r, left, W, m)
                dst = xpad[top + h, r]
                for k in range(count):
                    dst[k0 + k, c] = row[w0 + m * k]


@njit(inline="always")
def unpad_channels_last(gpad, top, left, grad_x, n, m):
    """grad_x[n, c, h, w] = gpad[top + h, (left + w) % m, (left + w) // m, c]:
    ``pad_channels_last``'s adjoint, which drops the padding's gradient."""
    C, H, W = grad_x.shape[1:]
    for c in range(C):
        for h in range(H):
            row = grad_x[n, c, h]
            for r in range(m):
                w0, k0, count = _columns(r, left, W, m)
                src = gpad[top + h, r]
                for k in range(count):
                    row[w0 + m * k] = src[k0 + k, c]


@njit(inline="always")
def add_tile_rows(gf, ti, tH, m, now, above):
    """Pixel rows m*ti .. m*ti + m - 1 of a flat padded gradient gf (rows of xpad's layout)
    from tile row ti's shares ``now`` (m + 2, L), the input transform's adjoint down the
    columns: tiles overlap by two rows, so the first two also get tile row ti - 1's last two
    (``above``, unused for ti = 0); the last of the tH tile rows writes its last two too."""
    g0, g1, f0, f1 = gf[m * ti], gf[m * ti + 1], now[0], now[1]
    if ti == 0:
        g0[:] = f0
        g1[:] = f1
    else:
        a0, a1 = above[m], above[m + 1]
        for j in range(g0.size):  # (one row a loop: two ran scalar)
            g0[j] = a0[j] + f0[j]
        for j in range(g1.size):
            g1[j] = a1[j] + f1[j]
    for r in range(2, m if ti < tH - 1 else m + 2):
        gf[m * ti + r] = now[r]


@njit(inline="always")
def place_blocks(Y, m, bias, out, n):
    """out[n, o, h, w] = Y[m*(h % m) + w % m, ((h // m)*tW + w // m)*C_out + o] + bias[o]:
    image n's outputs from its tiles' m x m blocks, cut at the output's edge."""
    C_out, oH, oW = out.shape[1:]
    tW = (oW + m - 1) // m
    for h in range(oH):
        i, k0 = h % m, (h // m) * tW * C_out
        for r in range(m):  # the columns of remainder r
            y, count = Y[m * i + r], (oW - r + m - 1) // m
            for k in range(count):  # a pixel's channels at a time: the planes are short
                pixel, w = y[k0 + k * C_out : k0 + (k + 1) * C_out], r + m * k
                for o in range(C_out):
                    out[n, o, h, w] = pixel[o] + bias[o]


@njit(inline="always")
def _grad_blocks(grad, D, m):
    N, C_out, oH, oW = grad.shape
    tH, tW = (oH + m - 1) // m, (oW + m - 1) // m
    L = tH * tW * C_out
    if oH % m or oW % m:
        D[:] = 0
    for n in range(N):
        for h in range(oH):
            i, k0 = h % m, n * L + (h // m) * tW * C_out
            for r in range(m):  # the columns of remainder r
                d, count = D[m * i + r], (oW - r + m - 1) // m
                for k in range(count):
                    pixel, w = d[k0 + k * C_out : k0 + (k + 1) * C_out], r + m * k
                    for o in range(C_out):
                        pixel[o] = grad[n, o, h, w]


@njit(cache=CACHE, nogil=True)
def output_grad_blocks(grad, D):
    """D[m*i + j, n*T*C_out + (ti*tW + tj)*C_out + o] = grad[n, o, m*ti + i, m*tj + j]: the
    output gradient (N, C_out, oH, oW) in the tiles' m x m blocks, D (m*m, N*T*C_out), m = 2
    or 4 by D's shape, zeros past the output's edge."""
    if D.shape[0] == 4:  # (each with m a constant)
        _grad_blocks(grad, D, 2)
    else:
        _grad_blocks(grad, D, 4)


def scratch_shapes(m: int, b: int, C: int, C_out: int, tH: int, tW: int):
    """The scratch shapes of F(m x m, 3x3) for a chunk of b images: xpad, V, M and D."""
    T = tH * tW
    planes = (m + 2) ** 2
    return (
        (m * tH + 2, m, tW + 1, C),
        (planes, b * T, C),
        (planes, b * T, C_out),
        (m * m, b * T * C_out),
    )
