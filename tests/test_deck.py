"""The study deck's worked examples: cross-correlation by hand (no kernel flip, as torch), the
output-size formula, and the shapes and parameter counts of its CNN and DeepCNN."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from minicnn import functional as F
from minicnn import nn, use_backend

BACKENDS = ["numpy", "numba"]
KERNEL = [[1, 0, 1], [1, 0, 1], [0, 1, 0]]
WINDOWS = [  # (window, the deck's answer)
    ([[1, 2, 3], [2, 1, 0], [3, 0, 1]], 6),
    ([[2, 3, 4], [1, 0, 1], [0, 1, 1]], 9),
    ([[2, 1, 0], [3, 0, 1], [1, 4, 1]], 10),
]


def _image(rows) -> np.ndarray:
    return np.array(rows, dtype=np.float64)[None, None]  # (1, 1, H, W)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("window, expected", WINDOWS)
def test_one_window_times_the_kernel(backend, window, expected):
    with use_backend(backend):
        out = F.conv2d(_image(window), _image(KERNEL))  # (1, 1, 1, 1)
    assert out.shape == (1, 1, 1, 1) and out.item() == expected
    theirs = torch.conv2d(torch.tensor(_image(window)), torch.tensor(_image(KERNEL)))
    assert theirs.item() == expected


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_2x2_kernel_slides_over_a_3x3_input(backend):
    x, w = _image([[1, 2, 3], [2, 1, 0], [3, 0, 1]]), _image([[1, 0], [1, 0]])
    with use_backend(backend):
        out = F.conv2d(x, w)
        with_bias = F.conv2d(x, w, np.array([5.0]))
    np.testing.assert_array_equal(out[0, 0], [[3, 3], [5, 1]])
    np.testing.assert_array_equal(with_bias[0, 0], [[8, 8], [10, 6]])
    bias = torch.tensor([5.0], dtype=torch.float64)
    expected = torch.conv2d(torch.tensor(x), torch.tensor(w), bias)  # (1, 1, 2, 2)
    np.testing.assert_array_equal(with_bias, expected.numpy())


def test_the_output_size_formula():
    # O = floor((I - K + 2P) / S) + 1
    assert F.conv_output_size(28, 3, stride=1, padding=1) == 28
    assert F.conv_output_size(14, 3, stride=1, padding=1) == 14
    assert F.conv_output_size(7, 3, stride=1, padding=1) == 7
    assert F.conv_output_size(3, 3) == 1 and F.conv_output_size(3, 2) == 2
    assert F.pool_output_size(28, 2, 2) == 14 and F.pool_output_size(14, 2, 2) == 7
    # the DeepCNN's last pool: (7 - 2 + 2*1) / 2 + 1 = 4.5, which floors to 4 (the deck drops
    # the padding there and writes 3)
    assert (7 - 2 + 2 * 1) / 2 + 1 == 4.5
    assert math.floor((7 - 2 + 2 * 1) / 2) + 1 == F.pool_output_size(7, 2, 2, 1) == 4


def _blocks(lib, deep: bool) -> list:
    """The deck's layers, in order, from torch.nn or minicnn.nn."""
    layers = [
        lib.Conv2d(1, 32, kernel_size=3, stride=1, padding=1),
        lib.ReLU(),
        lib.MaxPool2d(kernel_size=2, stride=2),
        lib.Conv2d(32, 64, kernel_size=3, stride=1, padding=1),
        lib.ReLU(),
        lib.MaxPool2d(kernel_size=2, stride=2),
    ]
    if not deep:
        return layers + [lib.Flatten(), lib.Linear(7 * 7 * 64, 10)]
    return layers + [
        lib.Conv2d(64, 128, kernel_size=3, stride=1, padding=1),
        lib.ReLU(),
        lib.MaxPool2d(kernel_size=2, stride=2, padding=1),
        lib.Flatten(),
        lib.Linear(4 * 4 * 128, 625),
        lib.ReLU(),
        lib.Linear(625, 10),
    ]


SHAPES = {  # (C, H, W) or (features,) after each layer
    False: [
        (32, 28, 28),
        (32, 28, 28),
        (32, 14, 14),
        (64, 14, 14),
        (64, 14, 14),
        (64, 7, 7),
        (3136,),
        (10,),
    ],
    True: [
        (32, 28, 28),
        (32, 28, 28),
        (32, 14, 14),
        (64, 14, 14),
        (64, 14, 14),
        (64, 7, 7),
        (128, 7, 7),
        (128, 7, 7),
        (128, 4, 4),
        (2048,),
        (625,),
        (625,),
        (10,),
    ],
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("deep", [False, True], ids=["CNN", "DeepCNN"])
def test_every_layer_produces_the_decks_shape_like_torch(backend, deep):
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    ours, theirs = nn.Sequential(*_blocks(nn, deep)), torch.nn.Sequential(*_blocks(torch.nn, deep))
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    xt = torch.tensor(x)
    with use_backend(backend), torch.no_grad():
        for layer, torch_layer, shape in zip(ours, theirs, SHAPES[deep], strict=True):
            x, xt = layer(x), torch_layer(xt)
            assert x.shape == tuple(xt.shape) == (2, *shape), type(layer).__name__
            np.testing.assert_allclose(x, xt.numpy(), rtol=1e-4, atol=1e-5)


def _deep_cnn(lib):
    """The deck's DeepCNN: fc1 is an attribute and also the first layer of layer4."""
    blocks = _blocks(lib, deep=True)
    model = lib.Module()
    model.layer1, model.layer2 = lib.Sequential(*blocks[0:3]), lib.Sequential(*blocks[3:6])
    model.layer3 = lib.Sequential(*blocks[6:9])
    model.fc1 = blocks[10]
    model.layer4 = lib.Sequential(model.fc1, lib.ReLU(), lib.Dropout(0.5))
    model.fc2 = blocks[12]
    return model


def test_parameter_counts():
    # CNN: (9*32 + 32) + (9*32*64 + 64) + (3136*10 + 10)
    cnn = nn.Sequential(*_blocks(nn, deep=False))
    assert sum(p.size for p in cnn.parameters()) == 320 + 18_496 + 31_370 == 50_186
    # DeepCNN: + (9*64*128 + 128) + (2048*625 + 625) + (625*10 + 10), the shared fc1 once
    ours, theirs = _deep_cnn(nn), _deep_cnn(torch.nn)
    total = 50_186 - 31_370 + 73_856 + 1_280_625 + 6_260
    assert sum(p.size for p in ours.parameters()) == total == 1_379_557
    assert sum(p.numel() for p in theirs.parameters()) == total
    assert list(ours.state_dict()) == list(theirs.state_dict())  # fc1 under both names
    assert "fc1.weight" in ours.state_dict() and "layer4.0.weight" in ours.state_dict()
