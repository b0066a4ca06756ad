"""A small ResNet-style CNN for scikit-learn's digits (8x8 grey images, 10 classes).

Input ``x``: float32 ``[N, 1, 8, 8]`` (pixels / 16, then standardised); output: logits ``[N, 10]``.

Layout (about 0.5 M parameters, ~17 M multiply-adds per image, almost all in 3x3 convolutions,
so pruning and INT8 show real speedups on it)::

    stem   Conv3x3 1->64, BN, ReLU                    8x8
    block1 BasicBlock 64->64                          8x8   identity shortcut
    block2 BasicBlock 64->96                          8x8   1x1 projection shortcut
    block3 BasicBlock 96->128, stride 2               4x4   1x1 stride-2 projection shortcut
    head   GlobalAvgPool, Linear 128->10
"""

from __future__ import annotations

import torch
from torch import nn

WIDTHS = (64, 96, 128)


class BasicBlock(nn.Module):
    """Conv-BN-ReLU-Conv-BN plus a shortcut (identity, or 1x1 conv + BN when the shape changes), ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.shortcut(x))


class DigitsResNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        w1, w2, w3 = WIDTHS
        self.stem = nn.Sequential(nn.Conv2d(1, w1, 3, padding=1, bias=False), nn.BatchNorm2d(w1), nn.ReLU())
        self.block1 = BasicBlock(w1, w1)
        self.block2 = BasicBlock(w1, w2)
        self.block3 = BasicBlock(w2, w3, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def build_model() -> nn.Module:
    """The untrained digits model (load ``weights.pt`` into it for the trained one)."""
    return DigitsResNet()
