"""The deck's two MNIST models, layer for layer and name for name.

``reference.models`` holds the same classes in PyTorch; a ``state_dict`` from either loads
into the other (see ``reference.convert``).
"""

from __future__ import annotations

import numpy as np

from minicnn import init, nn


class CNN(nn.Module):
    """Two conv blocks and a linear classifier: 50,186 parameters.

    Shape: (N, 1, 28, 28) → layer1 (N, 32, 14, 14) → layer2 (N, 64, 7, 7) → flatten
    (N, 3136) → fc (N, 10) logits.
    """

    def __init__(self, dtype=np.float32, generator=None) -> None:
        super().__init__()
        # L1 ImgIn shape=(?, 1, 28, 28): Conv → (?, 32, 28, 28), Pool → (?, 32, 14, 14)
        self.layer1 = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=3, stride=1, padding=1, dtype=dtype, generator=generator),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        # L2 ImgIn shape=(?, 32, 14, 14): Conv → (?, 64, 14, 14), Pool → (?, 64, 7, 7)
        self.layer2 = nn.Sequential(
            nn.Conv2d(32, 64, kernel_size=3, stride=1, padding=1, dtype=dtype, generator=generator),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        # final fully connected layer: 7x7x64 inputs → 10 outputs
        self.fc = nn.Linear(7 * 7 * 64, 10, bias=True, dtype=dtype, generator=generator)
        init.xavier_uniform_(self.fc.weight, generator=generator)

    def forward(self, x: np.ndarray) -> np.ndarray:
        out = self.layer1(x)  # (N, 32, 14, 14)
        out = self.layer2(out)  # (N, 64, 7, 7)
        out = out.reshape(out.shape[0], -1)  # (N, 3136), flattened for the fully connected layer
        out = self.fc(out)  # (N, 10)
        return out


class DeepCNN(nn.Module):
    """Three conv blocks, then Linear(2048→625)+ReLU+Dropout and Linear(625→10):
    1,379,557 parameters.

    ``fc1`` is registered on its own and again as ``layer4[0]``, as in the deck, so
    ``state_dict()`` lists it twice (``fc1.*`` and ``layer4.0.*``, like torch) while
    ``parameters()`` yields it once and an optimizer steps it once.

    Shape: (N, 1, 28, 28) → layer1 (N, 32, 14, 14) → layer2 (N, 64, 7, 7) → layer3
    (N, 128, 4, 4) → flatten (N, 2048) → layer4 (N, 625) → fc2 (N, 10) logits.
    """

    def __init__(self, keep_prob: float = 0.5, dtype=np.float32, generator=None) -> None:
        super().__init__()
        self.keep_prob = keep_prob
        self.layer1 = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=3, stride=1, padding=1, dtype=dtype, generator=generator),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.layer2 = nn.Sequential(
            nn.Conv2d(32, 64, kernel_size=3, stride=1, padding=1, dtype=dtype, generator=generator),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        # (7 - 2 + 2*1) / 2 + 1 = 4.5 → 4: the padding keeps the last row and column
        self.layer3 = nn.Sequential(
            nn.Conv2d(
                64, 128, kernel_size=3, stride=1, padding=1, dtype=dtype, generator=generator
            ),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2, padding=1),
        )
        self.fc1 = nn.Linear(4 * 4 * 128, 625, bias=True, dtype=dtype, generator=generator)
        init.xavier_uniform_(self.fc1.weight, generator=generator)
        self.layer4 = nn.Sequential(
            self.fc1,
            nn.ReLU(),
            nn.Dropout(p=1 - self.keep_prob, generator=generator),
        )
        self.fc2 = nn.Linear(625, 10, bias=True, dtype=dtype, generator=generator)
        init.xavier_uniform_(self.fc2.weight, generator=generator)

    def forward(self, x: np.ndarray) -> np.ndarray:
        out = self.layer1(x)  # (N, 32, 14, 14)
        out = self.layer2(out)  # (N, 64, 7, 7)
        out = self.layer3(out)  # (N, 128, 4, 4)
        out = out.reshape(out.shape[0], -1)  # (N, 2048)
        out = self.layer4(out)  # (N, 625)
        out = self.fc2(out)  # (N, 10)
        return out


MODELS = {"cnn": CNN, "deep": DeepCNN}
