"""A test-only stage that writes part of its output, then waits: the target of a real SIGINT."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

from trtforge.pipeline.artifact import Artifact
from trtforge.pipeline.registry import register_stage
from trtforge.pipeline.stage import Stage, StageContext, StageResult


@dataclass(frozen=True)
class SleepyConfig:
    sleep_s: float = 0.0


@register_stage("sleepy_for_test")
class SleepyStage(Stage[SleepyConfig]):
    config_cls: ClassVar[type] = SleepyConfig

    def _run(self, artifact: Artifact, ctx: StageContext) -> StageResult:
        out = ctx.out_dir / "model.onnx"
        data = artifact.path.read_bytes()
        out.write_bytes(data[: len(data) // 2])  # half-written, as an interrupted writer leaves it
        (ctx.out_dir / "ready").touch()
        time.sleep(self.config.sleep_s)
        out.write_bytes(data)
        return StageResult(Artifact.from_onnx_path(out), {}, False)
