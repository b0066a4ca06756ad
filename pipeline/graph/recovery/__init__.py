"""Recovery after pruning: a torch interpreter of ONNX graphs and label-free distillation."""

from trtforge.pipeline.graph.recovery.distill import RecoveryResult, RecoverySettings, distill
from trtforge.pipeline.graph.recovery.interpreter import TorchFromOnnx, unsupported_ops, write_back

__all__ = ["RecoveryResult", "RecoverySettings", "TorchFromOnnx", "distill", "unsupported_ops", "write_back"]
