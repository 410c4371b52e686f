"""``Sequential``: modules applied in order, the deck's way of building a model."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from minicnn.nn.fused import fused_children
from minicnn.nn.module import Module


class Sequential(Module):
    """Modules applied in order; children are named ``0``, ``1``, … as in torch."""

    def __init__(self, *modules: Module):
        super().__init__()
        for index, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(
                    f"Sequential: argument {index} is a {type(module).__name__}, not a Module"
                )
            setattr(self, str(index), module)

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def forward(self, x: np.ndarray) -> np.ndarray:
        # the children in order; with the fast kernels, Conv2d → ReLU → MaxPool2d as one call
        for module in fused_children(self):
            x = module(x)
        return x

    # backward: Module's default replays the children's calls in reverse, so a module that
    # appears twice in the sequence gets each of its calls' gradients
