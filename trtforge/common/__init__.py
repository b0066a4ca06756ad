"""What ``trtforge.pipeline``, ``trtforge.calibration`` and ``trtforge.plugins`` share.

The bottom of the import graph: these modules import only the standard library, numpy and onnx at
module level (onnxruntime and plugins inside functions), and nothing from the three packages above
them except ``trtforge.plugins`` inside :func:`trtforge.common.ort.create_session`.

- :mod:`~trtforge.common.errors`: the exception tree, exit codes and ``first_line``;
- :mod:`~trtforge.common.files`: atomic writes (temp file + rename, usual file mode);
- :mod:`~trtforge.common.tensors`: ``TensorSpec``, one input or output of a model;
- :mod:`~trtforge.common.ort`: the one ONNX Runtime session factory.
"""
