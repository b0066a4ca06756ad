"""A test-only stage that runs other stages as sub-steps (what search and ensemble stages will do)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from trtforge.pipeline.artifact import Artifact
from trtforge.pipeline.registry import register_stage
from trtforge.pipeline.stage import Gate, Stage, StageContext, StageResult


@dataclass(frozen=True)
class NestedConfig:
    tag: int = 0  # changes the parent's cache key, not its sub-steps'


@register_stage("nested_for_test")
class NestedStage(Stage[NestedConfig]):
    config_cls: ClassVar[type] = NestedConfig

    def _run(self, artifact: Artifact, ctx: StageContext) -> StageResult:
        from trtforge.pipeline.stages.fuse import FuseConfig
        from trtforge.pipeline.stages.validate import ValidateConfig

        first = ctx.artifact_of("fuse")  # an earlier stage's artifact, reached through the history
        fused = ctx.run_stage("fuse", FuseConfig(simplify_shapes=False), artifact)
        checked = ctx.run_stage("validate", ValidateConfig(), fused.artifact)
        metrics = {
            "history": [o.stage for o in ctx.history],
            "first_is_input": first.sha256 == artifact.sha256,
            "validate_metrics": sorted(checked.metrics),
        }
        gate = Gate("sub_steps_passed", bool(checked), detail=", ".join(g.name for g in checked.gates))
        return StageResult(fused.artifact, metrics, modified=True, gates=(gate,))
