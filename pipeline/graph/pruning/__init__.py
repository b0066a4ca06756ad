"""Structural pruning on ONNX graphs: dependency groups, importance, plans, surgery,
lossless dead-channel removal and 2:4 sparsity. See ``deps.py`` for the model of channels,
``ops/`` for what is known per op and ``registry.py`` for how handlers are registered."""

from trtforge.pipeline.graph.pruning.cut import Cut
from trtforge.pipeline.graph.pruning.deps import Analysis, Group
from trtforge.pipeline.graph.pruning.ops.base import Carry, OpHandler, couple, pass_to
from trtforge.pipeline.graph.pruning.plan import PlanSettings, PrunePlan
from trtforge.pipeline.graph.pruning.pruner import (
    Analyzed,
    PlanRequest,
    analyze_model,
    apply_plan,
    plan_model,
)
from trtforge.pipeline.graph.pruning.registry import (
    HandlerRegistry,
    builtin_registry,
    default_registry,
    register_op_handler,
)
from trtforge.pipeline.graph.pruning.walk import analyze

__all__ = [
    "Analysis",
    "Analyzed",
    "Carry",
    "Cut",
    "Group",
    "HandlerRegistry",
    "OpHandler",
    "PlanRequest",
    "PlanSettings",
    "PrunePlan",
    "analyze",
    "analyze_model",
    "apply_plan",
    "builtin_registry",
    "couple",
    "default_registry",
    "pass_to",
    "plan_model",
    "register_op_handler",
]
