"""The geometry of a conv and of a pool as named tuples, checked by ``minicnn.functional`` and
read by the kernels: ``pool.out_hw``, never ``args[4]``."""

from __future__ import annotations

from typing import NamedTuple


class ConvGeometry(NamedTuple):
    """A conv2d's geometry past its weight: stride (sH, sW), padding (top, bottom, left,
    right), dilation (dH, dW), groups."""

    stride: tuple[int, int]
    padding: tuple[int, int, int, int]
    dilation: tuple[int, int]
    groups: int


class PoolGeometry(NamedTuple):
    """A pool's windows: kernel (kH, kW), stride (sH, sW), padding (pH, pW), dilation (dH,
    dW), and the output size (oH, oW) they make (torch's ceil_mode rule already applied)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    out_hw: tuple[int, int]

    def is_clipped_2x2(self) -> bool:
        """Whether the windows are 2x2 at stride 2 with padding 0 or 1 and no dilation (any
        ceil_mode): the windows the clipped 2x2 kernels take."""
        return (
            self.kernel == self.stride == (2, 2)
            and self.dilation == (1, 1)
            and max(self.padding) <= 1
        )

    def is_plain_2x2(self, in_hw) -> bool:
        """Whether the windows are 2x2 at stride 2 without padding or dilation, every one
        inside the (H, W) input ``in_hw`` (no ceil_mode overhang): the windows the 2x2
        kernels take."""
        return (
            self.is_clipped_2x2()
            and self.padding == (0, 0)
            and 2 * self.out_hw[0] <= in_hw[0]
            and 2 * self.out_hw[1] <= in_hw[1]
        )
