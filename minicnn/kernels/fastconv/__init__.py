"""The fast conv2d: how ``minicnn.kernels.conv``'s numba path computes, and nothing else uses.

``plans`` picks and prepares one algorithm per conv (``minicnn.kernels.conv.make_plan``):

- ``im2col``: receptive fields unfolded into a matrix, one BLAS product per chunk of images;
- ``direct``: 3x3 loops over flat padded planes, for one input channel (the deck's first conv);
- ``winograd``: Winograd's minimal filtering, its algebra and NumPy twin; ``winograd_f2x2`` and
  ``winograd_f4x4`` its fast F(2x2, 3x3) and F(4x4, 3x3) kernels, on the channels-last tiles
  of ``tiles``; ``tile_pool`` pools a ReLU'd conv output straight from Winograd's blocks.

Every plan is tested against the twin ``minicnn.kernels.conv.conv2d_forward_numpy``.
"""
