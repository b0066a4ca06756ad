"""TensorRT engine building: shape profiles, cache keys, metadata, version gates and the builder.

Everything here except :mod:`pipeline.engine.builder` runs on CPU without TensorRT; the builder
touches TensorRT only after :func:`pipeline.engine.env.require_trt_env` found a CUDA GPU.
"""
