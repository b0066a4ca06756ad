#!/usr/bin/env bash
# Runtime stage entrypoint: build the TensorRT engine for *this* GPU and TensorRT at first start
# (engines are specific to both), reusing the timing cache in $TRTFORGE_CACHE_DIR, validate it
# against the ONNX model from the CPU stage, then run the command (default: print engine status).
set -euo pipefail

onnx=${TRTFORGE_ONNX:-/artifacts/model.onnx}
engine=${TRTFORGE_ENGINE:-/engines/model.engine}
read -r -a build_flags <<< "${TRTFORGE_BUILD_FLAGS:-}"
read -r -a validate_flags <<< "${TRTFORGE_VALIDATE_FLAGS:-}"

status=0
python -m trtforge.pipeline.engine.check "$engine" --onnx "$onnx" || status=$?
if [ "$status" -eq 3 ]; then
  echo "trtforge: no GPU or TensorRT in this container; run it with --gpus all on an NVIDIA host" >&2
  exit 3
fi
if [ "$status" -ne 0 ]; then
  echo "trtforge: building $engine for this GPU (timing cache: ${TRTFORGE_CACHE_DIR:-default})" >&2
  trtforge build "$onnx" -o "$engine" --target tensorrt "${build_flags[@]}"
  data=(--random-data)
  if [ -e /artifacts/validation.npz ]; then
    data=(--data /artifacts/validation.npz)
  fi
  trtforge validate "$onnx" "$engine" "${data[@]}" "${validate_flags[@]}"
fi
exec "$@"
