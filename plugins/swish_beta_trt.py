"""TensorRT implementation of ``trtforge::SwishBeta`` through ``tensorrt.plugin`` (TensorRT 10.6+, JIT).

No ``from __future__ import annotations`` here: ``tensorrt.plugin`` reads the annotations of the
registered functions at run time and needs real objects, not strings.

The kernel is torch on the plugin's CUDA stream (torch is present wherever TensorRT runs in this
project); an AOT variant would need a compiled kernel and is not shipped.
"""

import threading
from typing import Any

_lock = threading.Lock()
_registered: dict[str, Any] = {}

PLUGIN_ID = "trtforge::SwishBeta"


def register(lazy: bool = False) -> None:
    """Register the plugin with TensorRT's plugin registry (idempotent).

    ``lazy=True`` only validates and records the signatures (``tensorrt.plugin``'s ``lazy_register``),
    which is what the name check does against the bindings without a GPU.
    """
    with _lock:
        if PLUGIN_ID in _registered:
            return
        _registered[PLUGIN_ID] = _define(lazy)


def _define(lazy: bool) -> Any:
    import tensorrt.plugin as trtp

    @trtp.register(PLUGIN_ID, lazy_register=lazy)  # type: ignore[untyped-decorator]
    def swish_beta_desc(inp0: trtp.TensorDesc, beta: float) -> trtp.TensorDesc:
        return inp0.like()

    @trtp.impl(PLUGIN_ID)  # type: ignore[untyped-decorator]
    def swish_beta_impl(inp0: trtp.Tensor, beta: float, outputs: tuple[trtp.Tensor], stream: int) -> None:
        import torch

        x = torch.as_tensor(inp0, device="cuda")
        y = torch.as_tensor(outputs[0], device="cuda")
        with torch.cuda.stream(torch.cuda.ExternalStream(stream)):  # type: ignore[no-untyped-call]
            torch.mul(x, torch.sigmoid(x * beta), out=y)

    return swish_beta_desc
