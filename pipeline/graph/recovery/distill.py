"""Label-free recovery: fine-tune the pruned graph against the unpruned model's outputs.

The teacher is the original model on ONNX Runtime; the student is the pruned graph run by
``TorchFromOnnx`` with its initializers trainable. Only unlabeled inputs are needed (the
calibration data works). Training stops at ``epochs`` or ``max_seconds``, whichever first;
2:4 masks (if given) are re-applied after every step so the pattern survives.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from trtforge.pipeline.deps import require
from trtforge.pipeline.graph.recovery.interpreter import TorchFromOnnx, write_back

log = logging.getLogger(__name__)
Feed = Mapping[str, np.ndarray]
Teacher = onnx.ModelProto | bytes | str | Path  # a model, its bytes, or its path (ONNX Runtime runs it)


@dataclass(frozen=True)
class RecoverySettings:
    epochs: int = 10
    max_seconds: float = 300.0
    lr: float = 1e-3
    loss: str = "mse"  # mse on outputs | kl on the first output with ``temperature``
    temperature: float = 2.0
    seed: int = 0


@dataclass
class RecoveryParity:
    """Student vs teacher on the training inputs: mean |diff| and top-1 agreement (first output).

    A report, not a gate (the pruned model moves by design); the error and the agreement are the
    definitions of ``pipeline.validation`` (``rule.abs_error``, ``metrics.argmax_agreement``).
    """

    mean_abs: float
    top1_agreement: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"mean_abs_diff": self.mean_abs, "top1_agreement": self.top1_agreement}


@dataclass
class RecoveryResult:
    model: onnx.ModelProto
    epochs: int
    steps: int
    seconds: float
    before: RecoveryParity
    after: RecoveryParity
    history: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "steps": self.steps,
            "seconds": round(self.seconds, 2),
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "loss_per_epoch": [round(v, 6) for v in self.history],
        }


def teacher_outputs(teacher: Teacher, batches: Sequence[Feed]) -> list[list[np.ndarray]]:
    from trtforge.pipeline.backends.onnxruntime import OrtRunner

    src = teacher.SerializeToString() if isinstance(teacher, onnx.ModelProto) else teacher
    runner = OrtRunner(src).load()
    names = runner.output_names
    return [[runner.run(b)[n] for n in names] for b in batches]


def _loss(torch: Any, outs: Sequence[Any], targets: Sequence[Any], settings: RecoverySettings) -> Any:
    if settings.loss == "kl":
        t = settings.temperature
        logp = torch.nn.functional.log_softmax(outs[0] / t, dim=-1)
        q = torch.nn.functional.softmax(targets[0] / t, dim=-1)
        return torch.nn.functional.kl_div(logp, q, reduction="batchmean") * t * t
    parts = [torch.nn.functional.mse_loss(o, y) for o, y in zip(outs, targets) if o.is_floating_point()]
    return sum(parts) / max(len(parts), 1)


def parity(module: Any, batches: Sequence[Feed], targets: Sequence[Sequence[np.ndarray]]) -> RecoveryParity:
    from trtforge.pipeline.validation.metrics import argmax_agreement
    from trtforge.pipeline.validation.rule import abs_error

    torch = require("torch", "pruning recovery")
    diffs, agree, total = [], 0, 0
    with torch.no_grad():
        for feed, tgt in zip(batches, targets):
            out = module(**{k: torch.from_numpy(v) for k, v in feed.items()})[0].numpy()
            diffs.append(float(abs_error(tgt[0], out).mean()))
            k, n = argmax_agreement(tgt[0], out)
            agree, total = agree + k, total + n
    return RecoveryParity(float(np.mean(diffs)) if diffs else 0.0, agree / total if total else None)


def distill(
    teacher: Teacher,
    student: onnx.ModelProto,
    batches: Sequence[Feed],
    settings: RecoverySettings,
    masks: Mapping[str, np.ndarray] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    source: str = "model",
) -> RecoveryResult:
    """Fine-tune ``student`` to match ``teacher`` on ``batches``; returns the trained ONNX model."""
    torch = require("torch", "pruning recovery")
    torch.manual_seed(settings.seed)
    module = TorchFromOnnx(student, source)
    targets = teacher_outputs(teacher, batches)
    before = parity(module, batches, targets)
    tfeeds = [{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in b.items()} for b in batches]
    ttargets = [[torch.from_numpy(t) for t in tg] for tg in targets]
    tmasks = {
        module.names[k]: torch.from_numpy(v.astype(np.float32))
        for k, v in (masks or {}).items()
        if k in module.names
    }
    opt = torch.optim.Adam(module.parameters(), lr=settings.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(settings.epochs * len(batches), 1))
    rng = np.random.default_rng(settings.seed)
    t0, steps, history, epoch = time.perf_counter(), 0, [], 0
    for epoch in range(1, settings.epochs + 1):
        total = 0.0
        for i in rng.permutation(len(tfeeds)):
            loss = _loss(torch, module(**tfeeds[i]), ttargets[i], settings)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                for key, m in tmasks.items():
                    module.params[key].mul_(m)
            total += float(loss.detach())
            steps += 1
        history.append(total / max(len(tfeeds), 1))
        if progress:
            progress("recovery", epoch, settings.epochs)
        log.info("recovery epoch %d: loss %.6f", epoch, history[-1])
        if time.perf_counter() - t0 > settings.max_seconds:
            break
    after = parity(module, batches, targets)
    trained = write_back(student, module.state_arrays())
    return RecoveryResult(trained, epoch, steps, time.perf_counter() - t0, before, after, history)
