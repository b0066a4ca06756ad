"""Tiny PyTorch models for the export tests (factories usable as ``tests.models_torch:NAME``)."""

from __future__ import annotations

import torch
from torch import nn


class ConvBN(nn.Module):
    """x[N,1,6,6] -> Conv3x3(1->4) -> BN -> ReLU -> GlobalAvgPool -> Linear(4->3)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():  # non-trivial BN statistics, so folding it changes the weights
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.2, 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.conv(x)))
        return self.fc(y.mean(dim=(2, 3)))


class TwoInputs(nn.Module):
    """(a[N,4], b[N,4]) -> (a @ W + b, sum over features of a*b): two inputs, two outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lin(a) + b, (a * b).sum(dim=1, keepdim=True)


class DataDependent(nn.Module):
    """Branches on a tensor value: torch.export refuses it, the TorchScript tracer records one branch."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        if bool(y.sum() > -1e9):  # always true for the test data; a data-dependent branch all the same
            return y * 2
        return y


def conv_bn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return ConvBN().eval()


def two_inputs() -> nn.Module:
    torch.manual_seed(0)
    return TwoInputs().eval()


def data_dependent() -> nn.Module:
    torch.manual_seed(0)
    return DataDependent().eval()


def not_a_module() -> object:
    return {"not": "a module"}
