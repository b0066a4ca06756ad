"""Train the digits example deterministically and write the committed checkpoint.

Run from the repository root::

    python -m examples.digits.train

Writes, beside this file:

- ``weights.pt``        the state_dict of ``model.build_model()``
- ``model.pt2``         a ``torch.export`` ExportedProgram with a dynamic batch dim (``torch.export.save``)
- ``data/calib.npz``    ``x``: 512 training samples (float32 [512, 1, 8, 8]) for INT8 calibration
- ``data/val.npz``      ``x`` and ``labels``: the 360 validation samples
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make ``examples.digits`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from torch import nn

from examples.digits.dataset import DigitsSplit, load_digits_split

HERE = Path(__file__).resolve().parent
NUM_CALIB = 512
EPOCHS = 8
SEED = 0


def fit(model: nn.Module, split: DigitsSplit, epochs: int, seed: int, lr: float = 2e-3) -> float:
    """Train ``model`` in place with Adam with a one-cycle schedule, batch 64; return val top-1 (0..1)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x_train, y_train = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train)
    steps_per_epoch = -(-len(x_train) // 64)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(x_train)))
        for start in range(0, len(order), 64):
            idx = order[start : start + 64]
            opt.zero_grad()
            loss = loss_fn(model(_shift(x_train[idx], rng)), y_train[idx])
            loss.backward()
            opt.step()
            sched.step()
    return evaluate(model, split)


def _shift(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Augmentation: roll the whole batch by up to one pixel in each direction."""
    dy, dx = (int(v) for v in rng.integers(-1, 2, size=2))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3)) if (dy or dx) else x


@torch.no_grad()
def evaluate(model: nn.Module, split: DigitsSplit) -> float:
    model.eval()
    logits = model(torch.from_numpy(split.x_val))
    return float((logits.argmax(1).numpy() == split.y_val).mean())


def export_program(model: nn.Module, path: Path) -> None:
    """Save a ``torch.export`` program of ``model`` with a dynamic batch dim named ``batch``."""
    model.eval()
    example = (torch.zeros(2, 1, 8, 8),)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(model, example, dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(path))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--out", type=Path, default=HERE, help="directory to write into (default: beside this file)"
    )
    args = parser.parse_args(argv)

    from examples.digits.model import build_model

    torch.use_deterministic_algorithms(True)
    split = load_digits_split()
    torch.manual_seed(args.seed)
    model = build_model()
    start = time.perf_counter()
    top1 = fit(model, split, args.epochs, args.seed)
    seconds = time.perf_counter() - start
    print(f"val top-1 {top1 * 100:.2f}% ({len(split.y_val)} samples), {args.epochs} epochs in {seconds:.1f}s")

    out: Path = args.out
    (out / "data").mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "weights.pt")
    export_program(model, out / "model.pt2")
    calib = split.x_train[np.random.default_rng(args.seed).permutation(len(split.x_train))[:NUM_CALIB]]
    np.savez(out / "data" / "calib.npz", x=np.ascontiguousarray(calib, dtype=np.float32))
    np.savez(out / "data" / "val.npz", x=split.x_val, labels=split.y_val)
    print(f"wrote {out / 'weights.pt'}, {out / 'model.pt2'}, {out / 'data'}/calib.npz, val.npz")


if __name__ == "__main__":
    main()
