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
multiplications per output where F(2x2, 3x3) spends 4. The twin takes ``m=4`` for it.

The fast kernels of F(2x2, 3x3) are in ``winograd_f2x2``, those of F(4x4, 3x3) in
``winograd_f4x4`` (both beside this module); ``plans`` runs them.

Shapes: x (N, C, H, W), weight (C_out, C, 3, 3), ``padding = (top, bottom, left, right)``,
out (N, C_out, oH, oW) with oH = H + top + bottom - 2; tH = ceil(oH / m) tile rows, tW tile
columns, T = tH * tW tiles per image; tiles past the last output read zeros and are dropped.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])  # (4, 3)
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])  # (4, 4)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]])  # (2, 4)

# F(4x4, 3x3) (``winograd_f4x4``): 6x6 tiles, a 4x4 block of outputs from each
G4 = np.array(
    [  # (6, 3)
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ]
)
BT4 = np.array(
    [  # (6, 6)
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ]
)
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
