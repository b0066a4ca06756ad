"""``python -m trtforge.pipeline.engine.check ENGINE [--onnx MODEL]``: is ENGINE ready to run on this machine?

Exit 0: it matches this GPU and TensorRT version (and MODEL's hash, when given); 1: it is missing,
stale or built for another GPU/TensorRT, so rebuild it; 3: no GPU or no TensorRT here. Used by the
Docker runtime stage to build the engine at first start only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trtforge.pipeline.errors import TrtforgeError


def engine_status(engine_path: Path, onnx: Path | None = None) -> str | None:
    """None when ``engine_path`` can run here (for ``onnx``); otherwise why it must be rebuilt."""
    from trtforge.pipeline.artifact import sha256_model_files
    from trtforge.pipeline.engine.env import require_trt_env
    from trtforge.pipeline.engine.metadata import incompatibility, metadata_path, read_metadata

    if not engine_path.is_file() or not metadata_path(engine_path).is_file():
        return f"{engine_path}: no engine (or no {metadata_path(engine_path).name}) yet"
    meta = read_metadata(engine_path)
    if onnx is not None and sha256_model_files(onnx) != meta.onnx_sha256:
        return f"{engine_path}: built from another model than {onnx}"
    trt, gpu = require_trt_env("checking a TensorRT engine")
    return incompatibility(meta, str(trt.__version__), gpu)


def main(argv: list[str] | None = None) -> int:
    argp = argparse.ArgumentParser(prog="python -m trtforge.pipeline.engine.check", description=__doc__)
    argp.add_argument("engine_path", metavar="ENGINE", type=Path)
    argp.add_argument("--onnx", type=Path, help="the model the engine must have been built from")
    args = argp.parse_args(argv)
    try:
        reason = engine_status(args.engine_path, args.onnx)
    except TrtforgeError as exc:
        print(f"trtforge: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if reason is not None:
        print(f"rebuild needed: {reason}")
        return 1
    print(json.dumps({"engine": str(args.engine_path), "ready": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
