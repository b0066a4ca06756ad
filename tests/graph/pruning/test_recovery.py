"""The torch interpreter matches ONNX Runtime; distillation recovers a pruned model without labels."""

from __future__ import annotations

import numpy as np
import pytest

from trtforge.pipeline.errors import InputError

from . import models
from .conftest import prune, run

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(
    "build",
    [models.chain, models.concat, models.split, models.depthwise, models.flatten_gemm, models.attention],
)
def test_interpreter_matches_onnxruntime(build):
    from trtforge.pipeline.graph.recovery import TorchFromOnnx

    model = build()
    shape = (2, 6, 32) if build is models.attention else (2, 3, 8, 8)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        got = TorchFromOnnx(model)(x=torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(got, run(model, x), rtol=1e-4, atol=1e-4)


def test_interpreter_refuses_unknown_ops():
    from trtforge.pipeline.graph.recovery import TorchFromOnnx

    with pytest.raises(InputError, match="LRN"):
        TorchFromOnnx(models.unknown_op())


def test_distillation_improves_parity_and_keeps_2_4_pattern():
    from trtforge.pipeline.graph.pruning import sparsity
    from trtforge.pipeline.graph.recovery import RecoverySettings, distill

    teacher = models.chain()
    _, pruned = prune(teacher, ratio=0.5)
    sparse, masks, found = sparsity.apply_2_4(pruned)
    rng = np.random.default_rng(0)
    batches = [{"x": rng.standard_normal((16, 3, 8, 8)).astype(np.float32)} for _ in range(4)]
    res = distill(teacher, sparse, batches, RecoverySettings(epochs=30, lr=3e-3), masks=masks)
    assert res.after.mean_abs < 0.7 * res.before.mean_abs
    x = batches[0]["x"]
    assert np.abs(run(res.model, x) - run(teacher, x)).mean() < res.before.mean_abs
    weights = {t.name: t for t in res.model.graph.initializer}
    from onnx import numpy_helper

    for layer in found:
        if layer.eligible:
            assert sparsity.is_2_4(numpy_helper.to_array(weights[layer.weight]), layer.axis)
