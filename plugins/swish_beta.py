"""``trtforge::SwishBeta``: the custom activation ``y = x * sigmoid(beta * x)``.

``beta = 1`` is SiLU; a learnt or tuned ``beta`` (Swish-beta, Ramachandran et al. 2017) has no
standard ONNX op below opset 24, so exporters emit it as a custom op (see
:mod:`plugins.torch_ops`), ONNX Runtime runs the NumPy reference below through
onnxruntime-extensions, and TensorRT runs :mod:`plugins.swish_beta_trt`.
"""

from __future__ import annotations

import numpy as np

from trtforge.plugins.registry import AttrSpec, Plugin, register_plugin

DOMAIN = "trtforge"
OP_TYPE = "SwishBeta"


def swish_beta(x: np.ndarray, beta: float = 1.0) -> np.ndarray:
    """Reference: ``x * sigmoid(beta * x)``; sigmoid as ``0.5 * (1 + tanh(z / 2))`` so it never overflows."""
    z = np.asarray(x)
    compute = np.float32 if z.dtype == np.float16 else z.dtype
    zc = z.astype(compute, copy=False)
    y = zc * (0.5 * (1.0 + np.tanh(0.5 * np.asarray(beta, dtype=compute) * zc)))
    return np.asarray(y.astype(z.dtype, copy=False))


def _register_tensorrt() -> None:
    from trtforge.plugins.swish_beta_trt import register

    register()


PLUGIN = register_plugin(
    Plugin(
        domain=DOMAIN,
        op_type=OP_TYPE,
        description="x * sigmoid(beta * x) (Swish-beta; beta=1 is SiLU)",
        attributes=(AttrSpec("beta", "float", 1.0),),
        num_inputs=1,
        num_outputs=1,
        reference=swish_beta,
        register_tensorrt=_register_tensorrt,
        dtypes=("float32", "float16"),
    )
)
