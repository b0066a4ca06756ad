"""trtforge: export, fuse, prune, quantize, build and validate neural networks for deployment.

Importing this package is light: no torch, no tensorrt, no onnxruntime at import time.
"""

__version__ = "0.1.0"
