#!/usr/bin/env bash
# CPU builder stage: run the user's pipeline (export, fuse, prune, quantize, validate on ONNX Runtime)
# and collect what the runtime stage needs into /artifacts:
#   model.onnx        the last ONNX the pipeline produced (input of the TensorRT build)
#   model.ort.onnx    the same, pre-optimized for ONNX Runtime CPU (+ .json session record)
#   validation.npz    the pipeline's validation data, when it has one
#   report.*          the pipeline report
set -euo pipefail
config=$1
work=${2:-/work/run}
out=${3:-/artifacts}
mkdir -p "$out"
trtforge run "$config" -w "$work"
last=""
for dir in "$work"/[0-9][0-9]-*/; do
  for candidate in "$dir"*.onnx; do
    [ -e "$candidate" ] && last=$candidate
  done
done
if [ -z "$last" ]; then
  echo "cpu_stages: the pipeline in $config produced no ONNX model under $work" >&2
  exit 2
fi
cp "$last" "$out/model.onnx"
if [ -e "$last.data" ]; then
  cp "$last.data" "$out/"
fi
trtforge build "$out/model.onnx" -o "$out/model.ort.onnx" --target onnxruntime
cp "$work"/report.* "$out/" 2>/dev/null || true
validation=$(python -c "import sys, tomllib; p = tomllib.load(open(sys.argv[1], 'rb')).get('pipeline', {}); print(p.get('validation_data') or '')" "$config")
if [[ "$validation" == *.npz ]] && [ -f "$(dirname "$config")/$validation" ]; then
  cp "$(dirname "$config")/$validation" "$out/validation.npz"
fi
echo "cpu_stages: $last -> $out/model.onnx"
