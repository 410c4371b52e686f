"""Direct 3x3 convolution over flat, zero-padded planes: conv2d's first layer on grayscale.

A 3x3 conv of one input channel has nine taps per output, too few for a matrix product to
pay: im2col writes nine copies of the image for BLAS to read back, and the product, nine
deep, runs far below the core's peak. Computed directly, each output plane is nine
multiply-adds of the padded input plane, shifted. Laid out flat, a zero-padded plane
(Hp, Wp) makes every tap a constant offset: output (i, j) is at m = i*Wp + j and tap (p, q)
reads the padded input at m + p*Wp + q, so one loop over m, with the nine weights in
registers, computes a whole plane. The columns j >= oW of each row are computed and thrown
away (they wrap into the next row): the price of a loop without bounds tests, which the
compiler vectorises.

    out[n, o, i, j] = bias[o] + sum_{c, p, q} xpad[n, c, i + p, j + q] * weight[o, c, p, q]

Two output channels are computed in one loop, each of the nine shifted input values loaded
serving both (eighteen weights in registers); the weight gradient's eighteen sums share
their loads the same way (the forward loop runs no faster for it than with one channel: its
multiplies bound it, not its loads; benchmarks/README.md, "What we measured").

The backward pass is the same picture reversed: the weight gradient is nine dot products of
the output gradient with the shifted input; the input gradient gathers ``grad * weight``
from the nine shifted outputs that read each pixel, both planes laid out the same flat way
(zeros in the thrown-away columns). Given a 2x2 pool's indices, both kernels fuse the deck's
ReLU and pool (see ``minicnn.kernels.fused``).

The pool is why the planes are also cut into phases: output (2i + dk, 2j + ek) is in phase
(dk, ek), at i * hW + j, so a 2x2 window's four pixels are the same position m of the four
phases, and the pooled planes share that layout. The input is cut the same way (phase
(a, b), and each also a column on), so that each tap of an output phase reads one input
phase a whole number of rows away: a flat shift again, with no thrown-away columns. So the
forward computes a plane phase by phase and pools it in one flat loop over its windows,
and the backward puts each window's gradient at its winner's phase, by selects in flat
loops, where a plane of the size of the conv's would take a scattered store per window
(faster both ways: benchmarks/README.md). The weight
gradient is then summed phase by phase, from the pooled gradient or, for the conv alone,
from a whole plane's cut into phases: the same sums either way, so the fused and unfused
layers agree bit for bit. Where the windows do not tile the plane (odd sides) the forward
pools row by row.

The readable twin is ``conv.conv2d_forward_numpy`` and its backward, one tap at a time over
the whole batch; these kernels take stride 1 and dilation 1 only, and weights with an even
number of filters (``DirectPlan`` pads with a zero filter).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from minicnn.kernels.fastconv.im2col import pad_image, unpad_image
from minicnn.kernels.pool import max_pool_phases_2x2, max_pool_row_2x2
from minicnn.kernels.relu_pool import relu_passes, stray_plane_backward, unpool_2x2
from minicnn.kernels.runtime.cache import CACHE

# -- the shared loops: two output planes, their gradients, the input's gradient ---------------


@njit(inline="always")
def _nine_taps(x0, x1, x2, x3, x4, x5, x6, x7, x8, u, v, b0, b1, first, p0, p1):
    """p0, p1 (M,) (+)= the nine taps (3, 3) u and v of one input channel, read from its
    nine shifted values x0..x8 (M,): written with the biases b0, b1 for the ``first``
    channel, added for the others (faster than adding onto planes set to the bias, the same
    values: benchmarks/README.md)."""
    u0, u1, u2, u3, u4 = u[0, 0], u[0, 1], u[0, 2], u[1, 0], u[1, 1]
    u5, u6, u7, u8 = u[1, 2], u[2, 0], u[2, 1], u[2, 2]
    v0, v1, v2, v3, v4 = v[0, 0], v[0, 1], v[0, 2], v[1, 0], v[1, 1]
    v5, v6, v7, v8 = v[1, 2], v[2, 0], v[2, 1], v[2, 2]
    for m in range(p0.size):
        a0, a1, a2, a3, a4 = x0[m], x1[m], x2[m], x3[m], x4[m]
        a5, a6, a7, a8 = x5[m], x6[m], x7[m], x8[m]
        s0 = u0 * a0 + u1 * a1 + u2 * a2 + u3 * a3 + u4 * a4 + u5 * a5 + u6 * a6 + u7 * a7 + u8 * a8
        s1 = v0 * a0 + v1 * a1 + v2 * a2 + v3 * a3 + v4 * a4 + v5 * a5 + v6 * a6 + v7 * a7 + v8 * a8
        if first:
            p0[m], p1[m] = b0 + s0, b1 + s1
        else:
            p0[m] += s0
            p1[m] += s1


@njit(inline="always")
def _two_planes(flat, weight, bias, o, Wp, p0, p1):
    """p0, p1 (M,) = output planes o and o + 1, flat (rows Wp apart), from ``flat``
    (C, (oH + 3) * Wp), the zero-padded input planes."""
    M = p0.size
    for c in range(flat.shape[0]):
        xc = flat[c]
        # the nine shifted planes, sliced first so that the loop indexes from 0
        x0, x1, x2 = xc[0:M], xc[1 : M + 1], xc[2 : M + 2]
        x3, x4, x5 = xc[Wp : Wp + M], xc[Wp + 1 : Wp + M + 1], xc[Wp + 2 : Wp + M + 2]
        x6, x7 = xc[2 * Wp : 2 * Wp + M], xc[2 * Wp + 1 : 2 * Wp + M + 1]
        x8 = xc[2 * Wp + 2 : 2 * Wp + M + 2]
        _nine_taps(
            x0,
            x1,
            x2,
            x3,
            x4,
            x5,
            x6,
            x7,
            x8,
            weight[o, c],
            weight[o + 1, c],
            bias[o],
            bias[o + 1],
            c == 0,
            p0,
            p1,
        )


@njit(inline="always")
def _two_phase_planes(P, weight, bias, o, dk, ek, hW, p0, p1):
    """p0, p1 (M,) = phase (dk, ek) of output planes o and o + 1 (their outputs (2i + dk,
    2j + ek), rows hW apart), from the input's phases P (see ``_input_phases``): each
    output computed as ``_two_planes`` computes it."""
    M = p0.size
    for c in range(P.shape[0]):
        _nine_taps(
            _phase(P, c, dk, ek, hW, M),
            _phase(P, c, dk, ek + 1, hW, M),
            _phase(P, c, dk, ek + 2, hW, M),
            _phase(P, c, dk + 1, ek, hW, M),
            _phase(P, c, dk + 1, ek + 1, hW, M),
            _phase(P, c, dk + 1, ek + 2, hW, M),
            _phase(P, c, dk + 2, ek, hW, M),
            _phase(P, c, dk + 2, ek + 1, hW, M),
            _phase(P, c, dk + 2, ek + 2, hW, M),
            weight[o, c],
            weight[o + 1, c],
            bias[o],
            bias[o + 1],
            c == 0,
            p0,
            p1,
        )


@njit(inline="always")
def _phase(P, c, A, B, hW, M):
    """The M values of input channel c that output phase (dk, ek)'s tap (p, q) reads, with
    A = dk + p and B = ek + q: phase (A % 2, B % 2) shifted B // 2 columns, from row A // 2
    on (see ``_input_phases``)."""
    start = (A // 2) * hW
    return P[c, A % 2, B % 2, B // 2, start : start + M]


@njit(inline="always")
def _phase_weight_grads(P, G, o, hW, zero, grad_w):
    """grad_w[o], grad_w[o + 1] (C, 3, 3) += the weight gradients of output planes o, o + 1
    from their gradients' phases G (2, 4, M) and the input's phases P: for each phase (dk,
    ek) of the outputs, the nine dot products with the input phases its taps read, eighteen
    sums sharing their loads, each summed from ``zero`` (a zero in the arrays' precision:
    the sums run lane by lane in it)."""
    M = G.shape[2]
    for c in range(P.shape[0]):
        u, v = grad_w[o, c], grad_w[o + 1, c]
        for k in range(4):
            dk, ek = k // 2, k % 2
            x0 = _phase(P, c, dk, ek, hW, M)
            x1 = _phase(P, c, dk, ek + 1, hW, M)
            x2 = _phase(P, c, dk, ek + 2, hW, M)
            x3 = _phase(P, c, dk + 1, ek, hW, M)
            x4 = _phase(P, c, dk + 1, ek + 1, hW, M)
            x5 = _phase(P, c, dk + 1, ek + 2, hW, M)
            x6 = _phase(P, c, dk + 2, ek, hW, M)
            x7 = _phase(P, c, dk + 2, ek + 1, hW, M)
            x8 = _phase(P, c, dk + 2, ek + 2, hW, M)
            g0, g1 = G[0, k], G[1, k]
            s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = s8 = zero
            t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = t8 = zero
            for m in range(M):
                a0, a1, a2, a3, a4 = x0[m], x1[m], x2[m], x3[m], x4[m]
                a5, a6, a7, a8 = x5[m], x6[m], x7[m], x8[m]
                e, f = g0[m], g1[m]
                s0 += e * a0
                s1 += e * a1
                s2 += e * a2
                s3 += e * a3
                s4 += e * a4
                s5 += e * a5
                s6 += e * a6
                s7 += e * a7
                s8 += e * a8
                t0 += f * a0
                t1 += f * a1
                t2 += f * a2
                t3 += f * a3
                t4 += f * a4
                t5 += f * a5
                t6 += f * a6
                t7 += f * a7
                t8 += f * a8
            u[0, 0] += s0
            u[0, 1] += s1
            u[0, 2] += s2
            u[1, 0] += s3
            u[1, 1] += s4
            u[1, 2] += s5
            u[2, 0] += s6
            u[2, 1] += s7
            u[2, 2] += s8
            v[0, 0] += t0
            v[0, 1] += t1
            v[0, 2] += t2
            v[1, 0] += t3
            v[1, 1] += t4
            v[1, 2] += t5
            v[2, 0] += t6
            v[2, 1] += t7
            v[2, 2] += t8


@njit(inline="always")
def _input_phases(xpad, hW, P):
    """P[c, a, b, s, r * hW + j] = xpad[c, 2r + a, 2(j + s) + b], 0 past xpad's edges: the
    padded input planes cut into their four phases of rows and columns, each also shifted
    by a column, so that every tap is a whole number of rows away (see ``_phase``)."""
    H, W = xpad.shape[1:]
    rows = P.shape[4] // hW
    P[:] = 0
    for c in range(xpad.shape[0]):
        for a in range(2):
            for b in range(2):
                for s in range(2):
                    phase = P[c, a, b, s]
                    for r in range(min((H - a + 1) // 2, rows)):
                        row = xpad[c, 2 * r + a, 2 * s + b :: 2]
                        dst = phase[r * hW : r * hW + min(row.size, hW)]
                        for j in range(dst.size):
                            dst[j] = row[j]


@njit(inline="always")
def _grad_phases(g, hW, G):
    """G (4, hH * hW) = the four phases of one output plane's gradient g (oH, oW): G[2dk +
    ek, i * hW + j] = g[2i + dk, 2j + ek], 0 past g's edges."""
    oH, oW = g.shape
    for k in range(4):
        dk, ek = k // 2, k % 2
        phase = G[k]
        for i in range(phase.size // hW):
            dst = phase[i * hW : (i + 1) * hW]
            dst[:] = 0
            if 2 * i + dk < oH:
                row = g[2 * i + dk, ek::2]
                for j in range(row.size):
                    dst[j] = row[j]


@njit(inline="always")
def _window_origins(pH, pW, W):
    """(pH * pW,) the first pixel of each 2x2, stride-2 window of a plane W wide, window by
    window, as the pooled plane lays them out (pH 0: none)."""
    origin = np.empty(pH * pW, dtype=np.int64)
    for m in range(origin.size):
        origin[m] = 2 * (m // pW) * W + 2 * (m % pW)
    return origin


@njit(inline="always")
def _winners(g, idx, origin, values, target, zero, dst):
    """dst[m] = g[m] where window m's winner is ``target`` pixels past its origin, as relu
    lets it through (``winner_grad``), else 0; returns how many windows won there. One flat
    loop over the windows, by selects."""
    hits = 0
    for m in range(dst.size):
        hit = idx[m] - origin[m] == target
        hits += hit
        dst[m] = g[m] if hit and relu_passes(values[m]) else zero  # ``winner_grad``'s rule
    return hits


@njit(inline="always")
def _pooled_grad_phases(grad, indices, values, W, hW, origin, zero, G):
    """G (4, hH * hW) = the phases of a conv plane's gradient (W wide) from its relu'd 2x2,
    stride-2 pool's, by ``relu_pool.unpool_2x2``'s rule: each window's gradient at its
    winner's phase, 0 at the other three and where relu blocked it (``relu_pool.winner_grad``).
    When the windows tile the plane (even sides) the phases have the pooled planes'
    layout, and each is one flat loop over them (``_winners``); else the windows are done
    row by row and G must hold zeros outside them. ``origin`` (pH * pW,): each window's
    first pixel. Returns whether an index left its window (then G is not the plane's
    gradient). grad, indices, values (pH, pW), the pooled plane's."""
    pH, pW = grad.shape
    S = pH * pW
    if S == G.shape[1]:
        g, idx, v = grad.reshape(S), indices.reshape(S), values.reshape(S)
        hits = _winners(g, idx, origin, v, 0, zero, G[0])
        hits += _winners(g, idx, origin, v, 1, zero, G[1])
        hits += _winners(g, idx, origin, v, W, zero, G[2])
        hits += _winners(g, idx, origin, v, W + 1, zero, G[3])
        return hits != S
    hits = 0
    for i in range(pH):
        g, idx, v, first = grad[i], indices[i], values[i], origin[i * pW : (i + 1) * pW]
        at = i * hW
        hits += _winners(g, idx, first, v, 0, zero, G[0, at : at + pW])
        hits += _winners(g, idx, first, v, 1, zero, G[1, at : at + pW])
        hits += _winners(g, idx, first, v, W, zero, G[2, at : at + pW])
        hits += _winners(g, idx, first, v, W + 1, zero, G[3, at : at + pW])
    return hits != S


@njit(inline="always")
def _input_grad(gext, E, Wp, k, d):
    """d (P,) += the gradient that one output plane (flat in ``gext`` at offset E, zeros
    around it) sends through one filter plane k (3, 3) to the flat padded input plane d:
    pixel m gathers from the outputs at m - p*Wp - q."""
    P = d.size
    g0, g1, g2 = gext[E : E + P], gext[E - 1 : E + P - 1], gext[E - 2 : E + P - 2]
    g3, g4 = gext[E - Wp : E + P - Wp], gext[E - Wp - 1 : E + P - Wp - 1]
    g5, g6 = gext[E - Wp - 2 : E + P - Wp - 2], gext[E - 2 * Wp : E + P - 2 * Wp]
    g7, g8 = gext[E - 2 * Wp - 1 : E + P - 2 * Wp - 1], gext[E - 2 * Wp - 2 : E + P - 2 * Wp - 2]
    k0, k1, k2, k3, k4 = k[0, 0], k[0, 1], k[0, 2], k[1, 0], k[1, 1]
    k5, k6, k7, k8 = k[1, 2], k[2, 0], k[2, 1], k[2, 2]
    for m in range(P):
        d[m] += (
            k0 * g0[m]
            + k1 * g1[m]
            + k2 * g2[m]
            + k3 * g3[m]
            + k4 * g4[m]
            + k5 * g5[m]
            + k6 * g6[m]
            + k7 * g7[m]
            + k8 * g8[m]
        )


# -- the kernels ------------------------------------------------------------------------------


@njit(cache=CACHE, nogil=True)
def conv3x3_forward(x, weight, bias, top, left, xpad, planes, P, Y, out, indices):
    """out = conv2d(x, weight, bias) at stride 1 with (top, left) padding, two planes at a
    time (see the module docstring); or, when ``indices`` is not empty, out, indices =
    max_pool2d(relu(conv2d(x, weight, bias)), 2), each conv plane pooled as soon as it is
    computed (indices are positions in the conv's (oH, oW) plane). When the pool's windows
    tile the plane (even sides), the plane is computed phase by phase, in the pooled
    plane's layout, and pooled in one flat loop (``max_pool_phases_2x2``); else row by row
    (``max_pool_row_2x2``). Either way each output is the same sum, in the same order.

    x (N, C, H, W); weight (C_out', C, 3, 3) and bias (C_out',), zeros for none, with C_out'
    even, C_out or one more; xpad (C, oH + 3, oW + 2), scratch (a row more than the taps
    reach: the thrown-away columns of the last row read past it); planes (2, oH * (oW + 2)),
    scratch; with hH = ceil(oH / 2) and hW = ceil(oW / 2), P (C, 2, 2, 2, (hH + 1) * hW)
    and Y (2, 4, hH * hW), scratch, used for the phases only (may be empty otherwise); out
    (N, C_out, oH, oW), or out and indices (N, C_out, pH, pW) with 2pH <= oH and 2pW <= oW.
    """
    N, C = x.shape[:2]
    C_out = out.shape[1]
    oH, oW, Wp = xpad.shape[1] - 3, xpad.shape[2] - 2, xpad.shape[2]
    flat = xpad.reshape(C, xpad.shape[1] * Wp)
    pooled = indices.size > 0
    pH, pW = out.shape[2:]
    phases = pooled and 2 * pH == oH and 2 * pW == oW
    origin = _window_origins(pH if phases else 0, pW, oW)
    for n in range(N):
        pad_image(x, n, top, left, xpad)
        if phases:
            _input_phases(xpad, pW, P)
            for o in range(0, C_out, 2):
                for k in range(4):
                    _two_phase_planes(P, weight, bias, o, k // 2, k % 2, pW, Y[0, k], Y[1, k])
                for k in range(min(2, C_out - o)):
                    y = Y[k]
                    max_pool_phases_2x2(
                        y[0],
                        y[1],
                        y[2],
                        y[3],
                        origin,
                        oW,
                        out[n, o + k].reshape(origin.size),
                        indices[n, o + k].reshape(origin.size),
                        True,
                    )
            continue
        for o in range(0, C_out, 2):
            _two_planes(flat, weight, bias, o, Wp, planes[0], planes[1])
            for k in range(min(2, C_out - o)):
                plane = planes[k]
                if pooled:
                    for i in range(out.shape[2]):
                        top_row = plane[2 * i * Wp : (2 * i + 1) * Wp]
                        bottom_row = plane[(2 * i + 1) * Wp : (2 * i + 2) * Wp]
                        max_pool_row_2x2(
                            top_row,
                            bottom_row,
                            oW,
                            2 * i * oW,
                            out[n, o + k, i],
                            indices[n, o + k, i],
                            True,
                        )
                    continue
                for i in range(oH):  # (loops: a slice assignment costs more than a row here)
                    row, src = out[n, o + k, i], plane[i * Wp : i * Wp + oW]
                    for j in range(oW):
                        row[j] = src[j]


@njit(inline="always")
def _input_grads(weight, o, E, Wp, gext, gpad):
    """gpad (C, oH + 3, Wp) += the input gradient from output planes o, o + 1, flat in gext
    at E."""
    gflat = gpad.reshape(gpad.shape[0], gpad.shape[1] * Wp)
    for k in range(2):
        for c in range(gpad.shape[0]):
            _input_grad(gext[k], E, Wp, weight[o + k, c], gflat[c])


@njit(inline="always")
def _phases_sum(G, zero):
    """The sum of one plane's gradient phases G (4, M) (zeros outside the plane): its bias
    gradient, in one loop."""
    flat = G.reshape(G.size)
    total = zero
    for m in range(flat.size):
        total += flat[m]
    return total


@njit(inline="always")
def _pooled_plane(grad_out, indices, out, n, c, oH, oW, Wp, one, g):
    """g = conv plane (n, c)'s gradient from its relu'd 2x2 pool's (``unpool_2x2``), or,
    where an index leaves its window, from the general kernel through ``one`` (1, 1, oH, oW).
    Returns whether it took the general kernel (then pixels outside the windows hold
    values)."""
    g[: 2 * grad_out.shape[2] * Wp] = 0  # the windows' rows (the rest stays 0)
    if not unpool_2x2(grad_out[n, c], indices[n, c], out[n, c], oW, Wp, g):
        return False
    stray_plane_backward(grad_out, indices, out, n, c, one)
    for i in range(oH):
        for j in range(oW):
            g[i * Wp + j] = one[0, 0, i, j]
    return True


@njit(cache=CACHE, nogil=True, fastmath={"reassoc"})  # the sums vectorise
def conv3x3_backward(
    grad, indices, out, x, weight, top, left, xpad, P, G, gext, grad_w, grad_b, gpad, grad_x
):
    """For stride 1 and (top, left) padding: add the weight and bias gradients into
    ``grad_w`` (C_out', C, 3, 3) and ``grad_b`` (C_out',); write the input gradient into
    ``grad_x`` (N, C, H, W) unless it is empty.

        grad_w[o, c, p, q] += sum_{n, i, j} grad[n, o, i, j] * xpad[n, c, i + p, j + q]
        grad_x[n, c] = the padding cut from  sum_{o, p, q} grad[n, o] * weight[o, c, p, q]
                                             added onto xpad's pixels at (i + p, j + q)

    The weight gradient is summed phase by phase (see the module docstring): each output
    plane's gradient cut into its four phases G, the padded input into its phases P.

    grad is the conv output's gradient (N, C_out, oH, oW) when ``indices`` is empty; else,
    for ``conv3x3_forward``'s pool, the pooled gradient (N, C_out, pH, pW), with the
    winners ``indices`` and the pooled values ``out``: each conv plane's gradient phases are
    then built from them (``relu_pool.relu_max_pool2d_2x2_backward_kernel``'s rule), and the
    plane itself only for the input gradient.

    x (N, C, H, W); weight (C_out', C, 3, 3), C_out' as in ``conv3x3_forward``; xpad and
    gpad (C, oH + 3, oW + 2), scratch (gpad unused, and may be empty, without an input
    gradient); with hH = ceil(oH / 2) and hW = ceil(oW / 2), P (C, 2, 2, 2, (hH + 1) * hW)
    and G (2, 4, hH * hW), scratch; gext (2, (oH + 5) * Wp + 2), scratch: two output planes'
    gradients, flat, the columns past oW zero, between margins of zeros for the input
    gradient's taps.
    """
    N = x.shape[0]
    C_out = grad.shape[1]
    oH, oW, Wp = xpad.shape[1] - 3, xpad.shape[2] - 2, xpad.shape[2]
    hW = (oW + 1) // 2
    E = 2 * Wp + 2  # the margin before each gradient plane in gext
    zero = np.zeros(1, dtype=grad_w.dtype)[0]
    pooled = indices.size > 0
    dense = gpad.size > 0  # the input gradient needs each plane's gradient in place
    one = np.empty((1, 1, oH, oW), dtype=x.dtype)  # a stray pooled plane's gradient
    pH, pW = grad.shape[2:]
    origin = _window_origins(pH if pooled else 0, pW, oW)
    gext[:] = 0
    G[:] = 0
    for n in range(N):
        pad_image(x, n, top, left, xpad)
        _input_phases(xpad, hW, P)
        if dense:
            gpad[:] = 0
        for o in range(0, C_out, 2):
            if o + 1 == C_out:  # the zero filter's plane: no gradient
                G[1] = 0
                gext[1] = 0
            strays = False
            for k in range(min(2, C_out - o)):
                g = gext[k, E:]
                if pooled:
                    if (
                        _pooled_grad_phases(
                            grad[n, o + k],
                            indices[n, o + k],
                            out[n, o + k],
                            oW,
                            hW,
                            origin,
                            zero,
                            G[k],
                        )
                        or dense
                    ):
                        if _pooled_plane(grad, indices, out, n, o + k, oH, oW, Wp, one, g):
                            _grad_phases(one[0, 0], hW, G[k])
                            strays = True
                else:
                    _grad_phases(grad[n, o + k], hW, G[k])
                    if dense:
                        for i in range(oH):
                            row, dst = grad[n, o + k, i], g[i * Wp : i * Wp + oW]
                            for j in range(oW):
                                dst[j] = row[j]
                grad_b[o + k] += _phases_sum(G[k], zero)
            _phase_weight_grads(P, G, o, hW, zero, grad_w)
            if dense:
                _input_grads(weight, o, E, Wp, gext, gpad)
            if strays:  # values outside the windows: zeros again for the next planes
                gext[:] = 0
                G[:] = 0
        if dense:
            unpad_image(gpad, top, left, grad_x, n)
