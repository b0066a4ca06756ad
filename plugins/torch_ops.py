"""``torch.ops.trtforge.swish_beta``: the plugin op as a torch custom op that exports to ONNX as
``trtforge::SwishBeta`` (so a model can carry the custom op through ``torch.onnx.export``).

torch is imported inside functions only (it is optional for this package). No
``from __future__ import annotations``: ``torch.library`` infers the op schema from real annotations.
"""

from typing import Any

_DEFINED: dict[str, Any] = {}


def define_ops() -> Any:
    """Define (once) and return ``torch.ops.trtforge.swish_beta``."""
    if "swish_beta" in _DEFINED:
        return _DEFINED["swish_beta"]
    import torch

    @torch.library.custom_op("trtforge::swish_beta", mutates_args=())
    def swish_beta(x: torch.Tensor, beta: float) -> torch.Tensor:
        return x * torch.sigmoid(beta * x)

    @swish_beta.register_fake
    def _(x: torch.Tensor, beta: float) -> torch.Tensor:
        return torch.empty_like(x)

    _DEFINED["swish_beta"] = torch.ops.trtforge.swish_beta
    return _DEFINED["swish_beta"]


def _schema() -> Any:
    import onnx.defs as defs

    from trtforge.plugins.swish_beta import DOMAIN, OP_TYPE

    return defs.OpSchema(
        OP_TYPE,
        DOMAIN,
        1,
        inputs=[defs.OpSchema.FormalParameter("X", "T")],
        outputs=[defs.OpSchema.FormalParameter("Y", "T")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "float tensors")],
        attributes=[
            defs.OpSchema.Attribute("beta", defs.OpSchema.AttrType.FLOAT, "slope inside the sigmoid")
        ],
    )


def onnx_translation_table() -> dict[Any, Any]:
    """``custom_translation_table`` for ``torch.onnx.export(dynamo=True)``: op -> ``trtforge::SwishBeta``."""
    import onnxscript

    from trtforge.plugins.swish_beta import DOMAIN, OP_TYPE

    op = define_ops()
    custom = onnxscript.values.Opset(DOMAIN, 1)

    # onnxscript needs a schema to split inputs from attributes; the op is not in ONNX's registry,
    # so it gets one here (passed to this Op only, not registered globally).
    node = onnxscript.values.Op(custom, OP_TYPE, _schema())

    def swish_beta_onnx(x: Any, beta: float) -> Any:
        return node(x, beta=beta)

    return {op.default: swish_beta_onnx}
