# syntax=docker/dockerfile:1
#
# trtforge image, two stages (see README "Docker"):
#
#   cpu      python:3.11-slim. Installs trtforge (torch CPU) and, during `docker build`, runs the
#            CPU stages of YOUR pipeline (export, fuse, prune, quantize, validate on ONNX Runtime)
#            on the model directory passed as a build arg. Results land in /artifacts, including an
#            ONNX Runtime CPU model (build --target onnxruntime). Useful on its own:
#              docker build --target cpu -t trtforge-cpu .
#   runtime  NVIDIA's TensorRT image. Holds /artifacts from the cpu stage; at first start on the
#            target GPU it builds the engine (engines are specific to the GPU and the TensorRT
#            version), reusing the timing cache in the /cache volume, validates it against the
#            ONNX model, then runs CMD.
#
#   docker build -t trtforge \
#       --build-arg MODEL_DIR=examples/digits --build-arg CONFIG=trtforge.toml \
#       --build-arg ENGINE_FLAGS="--shapes x:1x1x8x8,32x1x8x8,256x1x8x8" .
#   docker run --gpus all -v trtforge-cache:/cache -v trtforge-engines:/engines trtforge

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG TRT_IMAGE=nvcr.io/nvidia/tensorrt:25.01-py3

# ---- cpu: install, then run the CPU stages on the user's model ---------------------------------
FROM ${PYTHON_IMAGE} AS cpu
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TRTFORGE_CACHE_DIR=/cache
WORKDIR /opt/trtforge
COPY pyproject.toml constraints.txt README.md ./
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
COPY pipeline/ pipeline/
COPY calibration/ calibration/
COPY plugins/ plugins/
COPY trtforge/ trtforge/
COPY docker/ docker/
RUN pip install --no-cache-dir -c constraints.txt ".[torch,examples]" "onnxruntime-extensions>=0.12"

# the user's model directory (model, weights, data, trtforge.toml), relative to the build context
ARG MODEL_DIR=examples/digits
ARG CONFIG=trtforge.toml
COPY ${MODEL_DIR}/ /work/model/
RUN bash docker/cpu_stages.sh "/work/model/${CONFIG}" /work/run /artifacts

# ---- runtime: NVIDIA's TensorRT image; engine built on the target GPU at first start -------------
FROM ${TRT_IMAGE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# torch CUDA tensors are the TensorRT runner's buffers; pick the wheel index matching the image's CUDA
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ARG ENGINE_FLAGS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    TRTFORGE_CACHE_DIR=/cache \
    TRTFORGE_ONNX=/artifacts/model.onnx \
    TRTFORGE_ENGINE=/engines/model.engine \
    TRTFORGE_BUILD_FLAGS=${ENGINE_FLAGS}
WORKDIR /opt/trtforge
# the image's own tensorrt package stays visible through --system-site-packages
RUN python3 -m venv --system-site-packages /opt/venv
COPY pyproject.toml constraints.txt README.md ./
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX}" "torch==2.13.0"
COPY pipeline/ pipeline/
COPY calibration/ calibration/
COPY plugins/ plugins/
COPY trtforge/ trtforge/
RUN pip install --no-cache-dir -c constraints.txt . "onnxruntime-extensions>=0.12"
COPY --from=cpu /artifacts/ /artifacts/
COPY docker/entrypoint.sh /usr/local/bin/trtforge-entrypoint
VOLUME ["/cache", "/engines"]
ENTRYPOINT ["/usr/local/bin/trtforge-entrypoint"]
CMD ["python", "-m", "trtforge.pipeline.engine.check", "/engines/model.engine", "--onnx", "/artifacts/model.onnx"]
