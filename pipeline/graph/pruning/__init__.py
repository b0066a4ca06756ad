"""Structural pruning on ONNX graphs: dependency groups, importance, plans, surgery,
lossless dead-channel removal and 2:4 sparsity. See ``deps.py`` for the model of channels."""

from pipeline.graph.pruning import handlers_linear, handlers_shape  # noqa: F401  (register their ops first)
from pipeline.graph.pruning.deps import Analysis, Group, analyze
from pipeline.graph.pruning.handlers import OpHandler, register_op_handler
from pipeline.graph.pruning.plan import PlanSettings, PrunePlan
from pipeline.graph.pruning.pruner import Analyzed, PlanRequest, analyze_model, apply_plan, plan_model

__all__ = [
    "Analysis",
    "Analyzed",
    "Group",
    "OpHandler",
    "PlanRequest",
    "PlanSettings",
    "PrunePlan",
    "analyze",
    "analyze_model",
    "apply_plan",
    "plan_model",
    "register_op_handler",
]
