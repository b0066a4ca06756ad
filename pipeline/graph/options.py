"""The switches of the fusion passes, in a module light enough for ``--help`` (no onnx-ir import)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FusionOptions"]


@dataclass(frozen=True)
class FusionOptions:
    """Which passes run (the fuse stage's config extends this class with its parity settings)."""

    fold_constants: bool = True
    fold_batchnorm: bool = True
    matmul_add_to_gemm: bool = True
    remove_identity: bool = True
    simplify_shapes: bool = True
    use_onnxslim: bool = True
