"""Tiny self-attention graphs with one fused QKV projection, in the layouts torch exports."""

from __future__ import annotations

import numpy as np
import onnx

from .models import RNG, G

HEADS, DH, SEQ = 4, 8, 6
D = HEADS * DH
FORMS = ("gather", "split5", "slice5", "chunk", "slice3")


def _i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _select(g: G, qkv: str, form: str, indices: tuple[int, ...]) -> list[str]:
    """q, k, v as [N, H, T, Dh] from the fused projection output [N, T, 3d]."""
    if form in ("chunk", "slice3"):
        if form == "chunk":
            parts = g.op("Split", [qkv, g.const(_i64(D, D, D))], n_out=3, axis=-1).split(",")
        else:
            parts = [
                g.op("Slice", [qkv, g.const(_i64(s * D)), g.const(_i64((s + 1) * D)), g.const(_i64(-1))])
                for s in range(3)
            ]
        shape = g.const(_i64(0, 0, HEADS, DH))
        return [g.op("Transpose", [g.op("Reshape", [p, shape])], perm=[0, 2, 1, 3]) for p in parts]
    five = g.op("Reshape", [qkv, g.const(_i64(0, 0, 3, HEADS, DH))], name="split_heads")
    if form == "split5":
        parts = g.op("Split", [five, g.const(_i64(1, 1, 1))], n_out=3, axis=2).split(",")
        return [g.op("Transpose", [g.op("Squeeze", [p, g.const(_i64(2))])], perm=[0, 2, 1, 3]) for p in parts]
    perm = g.op("Transpose", [five], perm=[2, 0, 3, 1, 4])  # [3, N, H, T, Dh]
    if form == "gather":
        return [g.op("Gather", [perm, g.const(np.array(s, dtype=np.int64))], axis=0) for s in indices]
    assert form == "slice5", form
    return [
        g.op(
            "Squeeze",
            [
                g.op("Slice", [perm, g.const(_i64(s)), g.const(_i64(s + 1)), g.const(_i64(0))]),
                g.const(_i64(0)),
            ],
        )
        for s in range(3)
    ]


def fused_attention(form: str = "gather", indices: tuple[int, int, int] = (0, 1, 2)) -> onnx.ModelProto:
    """x + Wo(softmax(q k^T / sqrt(Dh)) v), q/k/v from one ``wqkv`` MatMul [d, 3d] (+ bias).

    ``indices``: which of the three blocks the "gather" form reads as q, k, v.
    """
    g = G()
    qkv = g.matmul("x", D, 3 * D, name="wqkv")
    q, k, v = _select(g, qkv, form, indices)
    kt = g.op("Transpose", [k], perm=[0, 1, 3, 2])
    s = g.op("Mul", [g.op("MatMul", [q, kt]), g.const(np.array(DH**-0.5, dtype=np.float32))])
    o = g.op("MatMul", [g.op("Softmax", [s], axis=-1), v])
    o = g.op(
        "Reshape", [g.op("Transpose", [o], perm=[0, 2, 1, 3]), g.const(_i64(0, 0, D))], name="merge_heads"
    )
    y = g.op("Add", ["x", g.matmul(o, D, D, name="wo")])
    return g.model({"x": ["N", SEQ, D]}, [y])


def unknown_reader() -> onnx.ModelProto:
    """The [N, T, 3, H, Dh] tensor is also read by a ReduceMax over the "3" axis: not the pattern."""
    g = G()
    qkv = g.matmul("x", D, 3 * D, name="wqkv")
    five = g.op("Reshape", [qkv, g.const(_i64(0, 0, 3, HEADS, DH))], name="split_heads")
    extra = g.op("ReduceMax", [five], axes=[2], keepdims=0)
    parts = g.op("Split", [five, g.const(_i64(1, 1, 1))], n_out=3, axis=2).split(",")
    q, k, v = (g.op("Squeeze", [p, g.const(_i64(2))]) for p in parts)
    y = g.op("Add", [g.op("Add", [g.op("Mul", [q, k]), v]), extra])
    out = g.op("Reshape", [y, g.const(_i64(0, 0, D))])
    return g.model({"x": ["N", SEQ, D]}, [g.matmul(out, D, D, name="wo")])


def random_input(batch: int = 2) -> np.ndarray:
    return RNG.standard_normal((batch, SEQ, D)).astype(np.float32)
