"""INT8 and FP16 tooling for trtforge: data sources, statistics, ranges, Q/DQ placement, caches.

This package sits below ``pipeline``: it uses onnx/onnxruntime directly and never imports ``pipeline``.
"""

from trtforge.calibration.errors import CalibrationError, DataError

__all__ = ["CalibrationError", "DataError"]
