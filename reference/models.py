"""The deck's CNN and DeepCNN in PyTorch, exactly as the deck writes them."""

from __future__ import annotations

import torch


class CNN(torch.nn.Module):
    """Conv(1→32)+ReLU+MaxPool → Conv(32→64)+ReLU+MaxPool → Linear(3136→10)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer1 = torch.nn.Sequential(
            torch.nn.Conv2d(1, 32, kernel_size=3, stride=1, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.layer2 = torch.nn.Sequential(
            torch.nn.Conv2d(32, 64, kernel_size=3, stride=1, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.fc = torch.nn.Linear(7 * 7 * 64, 10, bias=True)
        torch.nn.init.xavier_uniform_(self.fc.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer1(x)  # (N, 32, 14, 14)
        out = self.layer2(out)  # (N, 64, 7, 7)
        out = out.view(out.size(0), -1)  # (N, 3136)
        out = self.fc(out)  # (N, 10)
        return out


class DeepCNN(torch.nn.Module):
    """Three conv blocks → Linear(2048→625)+ReLU+Dropout → Linear(625→10); ``fc1`` is also
    ``layer4[0]``, as in the deck."""

    def __init__(self, keep_prob: float = 0.5) -> None:
        super().__init__()
        self.keep_prob = keep_prob
        self.layer1 = torch.nn.Sequential(
            torch.nn.Conv2d(1, 32, kernel_size=3, stride=1, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.layer2 = torch.nn.Sequential(
            torch.nn.Conv2d(32, 64, kernel_size=3, stride=1, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.layer3 = torch.nn.Sequential(
            torch.nn.Conv2d(64, 128, kernel_size=3, stride=1, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(kernel_size=2, stride=2, padding=1),
        )
        self.fc1 = torch.nn.Linear(4 * 4 * 128, 625, bias=True)
        torch.nn.init.xavier_uniform_(self.fc1.weight)
        self.layer4 = torch.nn.Sequential(
            self.fc1,
            torch.nn.ReLU(),
            torch.nn.Dropout(p=1 - self.keep_prob),
        )
        self.fc2 = torch.nn.Linear(625, 10, bias=True)
        torch.nn.init.xavier_uniform_(self.fc2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer1(x)  # (N, 32, 14, 14)
        out = self.layer2(out)  # (N, 64, 7, 7)
        out = self.layer3(out)  # (N, 128, 4, 4)
        out = out.view(out.size(0), -1)  # (N, 2048)
        out = self.layer4(out)  # (N, 625)
        out = self.fc2(out)  # (N, 10)
        return out


MODELS = {"cnn": CNN, "deep": DeepCNN}
