"""A small model zoo on scikit-learn's digits, for the INT8 and pruning benchmarks.

Three architectures, all ``x: float32 [N, 1, 8, 8] -> logits [N, 10]``, trained on the same
fixed split as the digits example (``examples/digits/dataset.py``):

- ``resnet``: the digits example (``examples/digits/model.py``): Conv/BN/ReLU residual blocks.
- ``dwconcat``: MobileNet-like depthwise-separable convs with a Concat of two branches (channel
  coupling through Concat and depthwise convs is what a pruner must get right).
- ``transformer``: a 2-layer encoder over the 8 image rows as tokens: LayerNorm, multi-head
  attention written as MatMul -> Softmax -> MatMul (so it exports as those ops, not a fused
  attention op), GELU MLP, residual Adds.

Run ``python -m benchmarks.zoo --out DIR`` to train each, print val top-1 and training time,
and export each to ``DIR/<name>.onnx`` through trtforge's export stage.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch import nn

from examples.digits.dataset import DigitsSplit
from examples.digits.dataset import load_digits_split as _load_split
from examples.digits.model import build_model as build_resnet

__all__ = [
    "ZOO",
    "build_dwconcat",
    "build_resnet",
    "build_transformer",
    "export_onnx",
    "load_digits_split",
    "train",
]


def load_digits_split() -> DigitsSplit:
    """The fixed 1437/360 digits split (standardised float32 NCHW), as the example uses."""
    return _load_split()


# ------------------------------------------------------------------------------------------ dwconcat


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(),
    )


def _dw_separable(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    """Depthwise kxk conv (groups = channels) then pointwise 1x1 conv, each with BN + ReLU6."""
    return nn.Sequential(_conv_bn(cin, cin, k, stride, groups=cin), _conv_bn(cin, cout, 1))


class DWConcatNet(nn.Module):
    """stem 1->32 | branch a: dwsep 3x3 32->48 | branch b: 1x1 32->16, dwsep 5x5 16->48 | Concat (96)
    | dwsep 96->128 stride 2 | dwsep 128->128 | GlobalAvgPool | Linear 128->10."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = _conv_bn(1, 32, 3)
        self.branch_a = _dw_separable(32, 48, 3)
        self.branch_b = nn.Sequential(_conv_bn(32, 16, 1), _dw_separable(16, 48, 5))
        self.body = nn.Sequential(_dw_separable(96, 128, 3, stride=2), _dw_separable(128, 128, 3))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.cat([self.branch_a(x), self.branch_b(x)], dim=1)
        return self.fc(torch.flatten(self.pool(self.body(x)), 1))


def build_dwconcat() -> nn.Module:
    return DWConcatNet()


# ---------------------------------------------------------------------------------------- transformer


class Attention(nn.Module):
    """Multi-head self-attention as plain MatMul/Softmax (no fused scaled_dot_product_attention)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [N, heads, T, head_dim]
        scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        out = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


class EncoderLayer(nn.Module):
    """Pre-norm: x + Attention(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class RowTransformer(nn.Module):
    """The 8 rows of the image are 8 tokens of 8 pixels: embed to 64, add positions, 2 layers, mean-pool."""

    def __init__(
        self, dim: int = 64, heads: int = 4, hidden: int = 128, layers: int = 2, classes: int = 10
    ) -> None:
        super().__init__()
        self.embed = nn.Linear(8, dim)
        self.pos = nn.Parameter(torch.zeros(1, 8, dim))
        self.layers = nn.Sequential(*[EncoderLayer(dim, heads, hidden) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x.reshape(x.shape[0], 8, 8)) + self.pos
        return self.head(self.norm(self.layers(tokens)).mean(dim=1))


def build_transformer() -> nn.Module:
    return RowTransformer()


# ------------------------------------------------------------------------------------------ train/export

ZOO: dict[str, Callable[[], nn.Module]] = {
    "resnet": build_resnet,
    "dwconcat": build_dwconcat,
    "transformer": build_transformer,
}
EPOCHS = {"resnet": 8, "dwconcat": 12, "transformer": 30}


def train(model: nn.Module, epochs: int, seed: int = 0, lr: float = 2e-3) -> float:
    """Train ``model`` in place (Adam, one-cycle, batch 64, seeded); return val top-1 in [0, 1]."""
    from examples.digits.train import fit

    torch.manual_seed(seed)
    return fit(model, load_digits_split(), epochs, seed, lr=lr)


def export_onnx(model: nn.Module, path: str | Path, *, static: bool = False) -> dict[str, object]:
    """Export through trtforge's export stage (dynamic batch unless ``static``); returns its metrics."""
    from trtforge.pipeline.api import run_single
    from trtforge.pipeline.stages.export import ExportConfig, torch_artifact

    model.eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    with tempfile.TemporaryDirectory(prefix="zoo-") as tmp:
        pt2 = Path(tmp) / "model.pt2"
        program = torch.export.export(model, (torch.zeros(2, 1, 8, 8),), dynamic_shapes={"x": {0: batch}})
        torch.export.save(program, str(pt2))
        cfg = ExportConfig(inputs=("x:1x1x8x8",), outputs=("logits",), static=static)
        result = run_single("export", cfg, torch_artifact(str(pt2)), Path(path))
    if not result:
        raise RuntimeError(f"export parity failed for {path}: {result.gates[0].detail}")
    return dict(result.metrics)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the digits model zoo and export each to ONNX.")
    parser.add_argument("--out", type=Path, help="directory for <name>.onnx (default: no export)")
    parser.add_argument("--only", choices=sorted(ZOO), action="append", help="train only these (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.use_deterministic_algorithms(True)
    for name in args.only or list(ZOO):
        torch.manual_seed(args.seed)
        model = ZOO[name]()
        params = sum(p.numel() for p in model.parameters())
        start, cpu = time.perf_counter(), time.process_time()
        top1 = train(model, EPOCHS[name], args.seed)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        line = (
            f"{name:12s} params {params:,d} val top-1 {top1 * 100:6.2f}%  train {wall:5.1f}s (cpu {cpu:.1f}s)"
        )
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            m = export_onnx(model, args.out / f"{name}.onnx")
            line += f"  export {m['exporter']} {m['export_s']:.2f}s max abs err {m['max_abs_err']:.2g}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
