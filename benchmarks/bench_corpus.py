# ruff: noqa: E501
"""Every trtforge verb on every model of the corpus (benchmarks/corpus/), through the real CLI.

    bash benchmarks/corpus/setup.sh                                  # once: corpus env + models/ + data
    benchmarks/corpus/.venv/bin/python benchmarks/bench_corpus.py    # the whole matrix (sequential)
    benchmarks/corpus/.venv/bin/python benchmarks/bench_corpus.py --models magika,silero_vad --verbs fuse,quantize_ort

Each cell runs ``<corpus venv>/bin/trtforge <verb> ... --json`` in a subprocess with a timeout and is classified:

- ``ok``: exit 0, no traceback, no temporary path in the output, and the model it wrote (if any) passes
  ``onnx.checker`` and loads in ONNX Runtime. Where a model is written, its quality and speed against the FP32
  input are measured with ``trtforge validate REF CAND --data VAL --no-elementwise --json`` and
  ``trtforge bench REF CAND --data VAL --json`` (cosine, max abs error, top-1 agreement / accuracy, p50 speedup).
- ``gate``: exit 1 because a gate the verb checks failed (parity, accuracy budget), reported cleanly.
- ``refused``: exit 2 or 3 with a clean ``trtforge: error: ...`` line (bad input, missing environment).
- ``failed``: a traceback, an exit code other than 0-3, exit 1 for a reason other than a gate, a timeout, an invalid
  model written with exit 0, or a message that names a temporary path (/tmp/...).

Results merge into benchmarks/results/corpus.json (a run with filters updates only its cells) and
benchmarks/results/corpus.md (printed). Work files go to benchmarks/corpus/work/ (git-ignored).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import tomllib

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "benchmarks" / "corpus"
MODELS = CORPUS / "models"
WORK = CORPUS / "work"
RESULTS = ROOT / "benchmarks" / "results"

#: the columns, in order, and the trtforge verb behind each (for --help flag discovery)
VERB_CMD = {
    "inspect": "inspect",
    "export": "export",
    "fuse": "fuse",
    "prune": "prune",
    "prune_lossless": "prune",
    "quantize_ort": "quantize",
    "quantize_trt": "quantize",
    "convert_fp16": "convert-fp16",
    "build_ort": "build",
    "validate": "validate",
    "bench": "bench",
    "run": "run",
}
COLUMN_HELP = {
    "inspect": "inspect MODEL --json",
    "export": "export SRC -o OUT (torch sources: .pt2 / module:factory) --calibration-data CALIB",
    "fuse": "fuse MODEL -o OUT --validation-data VAL",
    "prune": "prune MODEL -o OUT --ratio 0.3 --calibration-data CALIB",
    "prune_lossless": "prune MODEL -o OUT --lossless --calibration-data CALIB",
    "quantize_ort": "quantize MODEL -o OUT --target onnxruntime-cpu --calibration-data CALIB --validation-data VAL",
    "quantize_trt": "quantize MODEL -o OUT --target tensorrt --calibration-data CALIB --validation-data VAL",
    "convert_fp16": "convert-fp16 MODEL -o OUT --calibration-data CALIB",
    "build_ort": "build MODEL -o OUT.onnx --target onnxruntime --validation-data VAL",
    "validate": "validate MODEL MODEL --data VAL (+ --metric top1 for classifiers)",
    "bench": "bench MODEL --batch B --data VAL (the validation data, repeated to fill the batch)",
    "run": "run trtforge.toml: [export] -> fuse -> quantize (onnxruntime-cpu) -> build (onnxruntime) -> validate -> bench",
}
VERBS = list(VERB_CMD)
#: the columns whose verb writes a model (measured against the FP32 input)
PRODUCT_VERBS = set(VERBS[VERBS.index("export") : VERBS.index("build_ort") + 1])
BROKEN_OUTPUT_RE = re.compile(
    r"^the (quantized|fused|pruned|converted|fp16|built|optimized|exported) model\b.*cannot load",
    re.IGNORECASE,
)
TMP_RE = re.compile(r"(?<![\w.~-])/tmp/[^\s'\"),;]+")


# --------------------------------------------------------------------------------------------------------------


class Ctx:
    """One corpus model: registry entry, manifest and paths."""

    def __init__(self, entry: dict[str, Any]):
        self.entry = entry
        self.name: str = entry["name"]
        self.dir = MODELS / self.name
        self.model = self.dir / "model.onnx"
        self.calib = self.dir / entry["calib"]
        self.val = self.dir / entry["val"]
        self.manifest: dict[str, Any] = json.loads((self.dir / "manifest.json").read_text())
        self.work = WORK / self.name
        self.batch = int(entry.get("batch", 1))
        self.state = [s.replace("=", ":") for s in entry.get("state", [])]
        self.metric_output = entry.get("metric_output")
        self.top1 = entry.get("metric") == "top1"

    def export_src(self) -> str | None:
        if self.entry.get("source") != "torch":
            return None
        return self.entry["export"].replace("{dir}", str(self.dir))

    def export_args(self) -> list[str]:
        file = self.entry.get("file", "")
        return [a.replace("{file}", _package_file(file)) for a in self.entry.get("export_args", [])]

    def dynamic_shapes(self) -> list[str]:
        """--shapes NAME:SHAPE for inputs with dynamic non-batch dims, sizes from the val data (random inputs)."""
        out = []
        first = self.manifest["data"]["val"]
        first = first.get("first", first)
        for inp in self.manifest["inputs"]:
            dims = inp.get("shape", [])
            if any(not isinstance(d, int) for d in dims[1:]) and inp["name"] in first:
                shape = list(first[inp["name"]]["shape"])
                if (
                    shape and dims
                ):  # the data's axis 0 counts samples: a dynamic one is the batch (1), a fixed one stays
                    shape[0] = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else 1
                if shape:
                    out.append(f"{inp['name']}:{'x'.join(str(s) for s in shape)}")
        return out


def _package_file(rel: str) -> str:
    if not rel or rel.startswith("("):
        return rel
    top, _, rest = rel.partition("/")
    site = next((CORPUS / ".venv" / "lib").glob("python3*/site-packages"), None)
    return str(site / top / rest) if site else rel


def registry() -> list[dict[str, Any]]:
    with open(CORPUS / "models.toml", "rb") as f:
        return tomllib.load(f)["model"]


# --------------------------------------------------------------------------------------------------------------


class Runner:
    def __init__(self, venv: Path, timeout: float, check_timeout: float):
        self.venv = venv
        self.trtforge = str(venv / "bin" / "trtforge")
        self.python = str(venv / "bin" / "python")
        self.timeout = timeout
        self.check_timeout = check_timeout
        self.env = dict(
            os.environ, TRTFORGE_CACHE_DIR=str(WORK / ".cache"), COLUMNS="200", PYTHONUNBUFFERED="1"
        )
        self._flags: dict[str, set[str]] = {}

    def flags(self, verb: str) -> set[str]:
        """The long options `trtforge VERB --help` lists (flags change while the library is being edited)."""
        if verb not in self._flags:
            p = subprocess.run(
                [self.trtforge, verb, "--help"], capture_output=True, text=True, env=self.env, timeout=120
            )
            self._flags[verb] = set(re.findall(r"(--[a-z0-9][a-z0-9-]*)", p.stdout))
        return self._flags[verb]

    def call(self, argv: list[str], timeout: float) -> dict[str, Any]:
        t0 = time.time()
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=self.env,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            timed_out = True
        return {
            "argv": argv,
            "rc": proc.returncode,
            "stdout": out or "",
            "stderr": err or "",
            "seconds": round(time.time() - t0, 2),
            "timed_out": timed_out,
        }

    def check_model(self, path: Path) -> str | None:
        """None when ``path`` passes onnx.checker and loads in ONNX Runtime, else the first line of why not."""
        code = (
            "import sys, onnx, onnxruntime as ort\n"
            "p = sys.argv[1]\n"
            "onnx.checker.check_model(p)\n"
            "so = ort.SessionOptions(); so.log_severity_level = 3\n"
            "ort.InferenceSession(p, so, providers=['CPUExecutionProvider'])\n"
        )
        p = subprocess.run(
            [self.python, "-c", code, str(path)], capture_output=True, text=True, timeout=300, env=self.env
        )
        if p.returncode == 0:
            return None
        lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
        return (lines[-1] if lines else f"exit {p.returncode}")[:400]


def parse_json(text: str) -> Any:
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        start = text.find("{")  # something printed before the JSON (a library's print)
        if start > 0:
            try:
                return json.loads(text[start:])
            except json.JSONDecodeError:
                return None
        return None


def error_line(stderr: str) -> str:
    lines = [ln.rstrip() for ln in stderr.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("trtforge: error:"):
            return ln[len("trtforge: error:") :].strip()
    for ln in reversed(lines):  # click usage errors
        if ln.startswith("Error:"):
            return ln
    return lines[-1].strip() if lines else "(no message on stderr)"


def traceback_where(stderr: str) -> str | None:
    """The deepest frame of the traceback inside this repository (file:line in function)."""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', stderr)
    ours = [f for f in frames if str(ROOT) in f[0] and "/.venv/" not in f[0]]
    pick = ours[-1] if ours else (frames[-1] if frames else None)
    if not pick:
        return None
    path = pick[0].replace(str(ROOT) + "/", "")
    return f"{path}:{pick[1]} in {pick[2]}"


def failed_gates(payload: Any) -> list[str]:
    out: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            if (
                "passed" in x
                and x.get("passed") is False
                and "name" in x
                and ("threshold" in x or "detail" in x)
            ):
                out.append(
                    f"{x.get('stage', '')}{'.' if x.get('stage') else ''}{x['name']}: {x.get('detail', '')}"[
                        :300
                    ]
                )
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(payload)
    return dedupe_gates(out)


def dedupe_gates(gates: list[str]) -> list[str]:
    seen: list[str] = []
    for g in gates:  # the run report lists a stage's gates twice: "build_parity" and "build.build_parity"
        if g not in seen and not any(x.endswith("." + g) or g.endswith("." + x) for x in seen):
            seen.append(g)
    return seen


def classify(res: dict[str, Any], product: Path | None, runner: Runner) -> dict[str, Any]:
    rc, err, out = res["rc"], res["stderr"], res["stdout"]
    payload = parse_json(out)
    cell: dict[str, Any] = {
        "rc": rc,
        "seconds": res["seconds"],
        "cmd": " ".join(shlex.quote(a.replace(str(ROOT) + "/", "")) for a in res["argv"]),
    }
    tb = "Traceback (most recent call last)" in err
    tmp_err = [m for m in TMP_RE.findall(err) if "torchinductor" not in m]
    if res["timed_out"]:
        cell.update(status="failed", error=f"timeout after {res['seconds']:.0f} s")
    elif tb:
        cell.update(
            status="failed",
            error=error_line(err),
            where=traceback_where(err),
            stderr_tail=err.strip().splitlines()[-12:],
        )
    elif rc == 0:
        cell["status"] = "ok"
        if payload is None and "--json" in res["argv"]:
            cell.update(
                status="failed",
                error="exit 0 but stdout is not JSON: " + (out.strip().splitlines() or [""])[0][:200],
            )
        elif product is not None:
            if not product.exists():
                cell.update(status="failed", error=f"exit 0 but no model written at {product.name}")
            else:
                why = runner.check_model(product)
                if why:
                    cell.update(status="failed", error=f"invalid model written: {why}")
        tmp_out = TMP_RE.findall(out)
        if cell["status"] == "ok" and tmp_out:
            cell.update(status="failed", error=f"output names a temporary path: {tmp_out[0]}")
    elif rc == 1:
        gates = failed_gates(payload)
        line = error_line(err)
        if gates or line.startswith("gate failed"):
            cell.update(status="gate", error=line, failed_gates=gates)
        else:
            cell.update(
                status="failed",
                error=f"exit 1, not a gate: {line}",
                stderr_tail=err.strip().splitlines()[-6:],
            )
    elif rc in (2, 3):
        line = error_line(err)
        if BROKEN_OUTPUT_RE.search(line):  # the verb made a model it cannot load: its own bug, not bad input
            cell.update(status="failed", error=f"exit {rc} for a model the verb itself made: {line}")
        else:
            cell.update(status="refused", error=line)
    else:
        cell.update(
            status="failed", error=f"exit {rc}: {error_line(err)}", stderr_tail=err.strip().splitlines()[-6:]
        )
    if cell["status"] != "ok" and tmp_err and cell["status"] != "failed":
        cell["status"] = "failed"
        cell["error"] = f"message names a temporary path ({tmp_err[0]}): {cell.get('error', '')}"
    if payload is not None:
        cell["json"] = _trim(payload)
    return cell


def _trim(x: Any, depth: int = 0) -> Any:
    """Keep the JSON of a cell small: drop long lists, deep nesting."""
    if depth > 4:
        return "..."
    if isinstance(x, dict):
        return {k: _trim(v, depth + 1) for k, v in list(x.items())[:40]}
    if isinstance(x, list):
        return [_trim(v, depth + 1) for v in x[:12]] + (["..."] if len(x) > 12 else [])
    if isinstance(x, str) and len(x) > 400:
        return x[:400] + "..."
    return x


# --------------------------------------------------------------------------------------------------------------
# the cells


def cell_argv(verb: str, c: Ctx, r: Runner) -> tuple[list[str], Path | None] | None:
    T = r.trtforge
    w = c.work
    fl = r.flags(VERB_CMD[verb])
    state = [a for s in c.state for a in ("--state", s)] if "--state" in fl else []
    M, calib, val = str(c.model), str(c.calib), str(c.val)
    if verb == "inspect":
        return [T, "inspect", M, "--json"], None
    if verb == "export":
        src = c.export_src()
        if src is None:
            return None
        out = w / "export.onnx"
        return [
            T,
            "export",
            src,
            "-o",
            str(out),
            *c.export_args(),
            "--calibration-data",
            calib,
            "--json",
        ], out
    if verb == "fuse":
        out = w / "fuse.onnx"
        return [T, "fuse", M, "-o", str(out), "--validation-data", val, *state, "--json"], out
    if verb in ("prune", "prune_lossless"):
        out = w / f"{verb}.onnx"
        mode = ["--ratio", "0.3"] if verb == "prune" else ["--lossless"]
        return [
            T,
            "prune",
            M,
            "-o",
            str(out),
            *mode,
            "--calibration-data",
            calib,
            "--plan-out",
            str(w / f"{verb}.plan.json"),
            *state,
            "--json",
        ], out
    if verb in ("quantize_ort", "quantize_trt"):
        target = "onnxruntime-cpu" if verb == "quantize_ort" else "tensorrt"
        out = w / f"{verb}.onnx"
        return [
            T,
            "quantize",
            M,
            "-o",
            str(out),
            "--target",
            target,
            "--calibration-data",
            calib,
            "--validation-data",
            val,
            *state,
            "--json",
        ], out
    if verb == "convert_fp16":
        out = w / "fp16.onnx"
        return [T, "convert-fp16", M, "-o", str(out), "--calibration-data", calib, *state, "--json"], out
    if verb == "build_ort":
        out = w / "build_ort.onnx"
        data = ["--validation-data", val] if "--validation-data" in fl else []
        return [T, "build", M, "-o", str(out), "--target", "onnxruntime", *data, "--json"], out
    if verb == "validate":
        metric = ["--metric", "top1"] if c.top1 else []
        if c.top1 and c.metric_output:
            metric += ["--metric-output", c.metric_output]
        return [T, "validate", M, M, "--data", val, *metric, *state, "--json"], None
    if verb == "bench":
        if "--data" in fl:  # real inputs: real shapes, and values a model branches on (a sample rate)
            return [T, "bench", M, "--batch", str(c.batch), "--data", val, *state, "--json"], None
        shapes = [a for s in c.dynamic_shapes() for a in ("--shapes", s)] if "--shapes" in fl else []
        return [T, "bench", M, "--batch", str(c.batch), *shapes, "--json"], None
    if verb == "run":
        cfg = write_run_config(c, r)
        return [T, "run", str(cfg), "-w", str(w / "run"), "--force", "--json"], None
    raise ValueError(verb)


def write_run_config(c: Ctx, r: Runner) -> Path:
    """A small pipeline for the model: [export] -> fuse -> quantize -> build -> validate -> bench."""
    lines = ["[pipeline]", f'name = "{c.name}"']
    stages: list[tuple[str, dict[str, Any]]] = []
    src = c.export_src()
    if src:
        lines.append(f"model = {json.dumps(src)}")
        args = c.export_args()
        exp: dict[str, Any] = {}
        for flag, val in zip(args[::2], args[1::2]):
            if flag == "--input":
                exp.setdefault("inputs", []).append(val)
            elif flag == "--output-name":
                exp.setdefault("outputs", []).append(val)
            elif flag == "--weights":
                lines.append(f"weights = {json.dumps(val)}")
        stages.append(("export", exp))
    else:
        lines.append(f"model = {json.dumps(str(c.model))}")
    lines += [
        f"workdir = {json.dumps(str(c.work / 'run'))}",
        f"calibration_data = {json.dumps(str(c.calib))}",
        f"validation_data = {json.dumps(str(c.val))}",
    ]
    state = {"state": c.state} if c.state else {}
    stages.append(("fuse", {**state} if "--state" in r.flags("fuse") else {}))
    stages.append(
        ("quantize", {"target": "onnxruntime-cpu", **(state if "--state" in r.flags("quantize") else {})})
    )
    stages.append(("build", {"target": "onnxruntime"}))
    val: dict[str, Any] = {"elementwise": False, "min_cosine": 0.9}
    if c.top1:
        val.update(metric="top1", min_top1=0.9)
        if c.metric_output:
            val["metric_output"] = c.metric_output
    if "--state" in r.flags("validate"):
        val.update(state)
    stages.append(("validate", val))
    stages.append(("bench", {"batches": [c.batch]}))
    for typ, table in stages:
        lines += ["", "[[stage]]", f'type = "{typ}"']
        lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    cfg = c.work / "trtforge.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def quality_speed(c: Ctx, product: Path, r: Runner) -> dict[str, Any]:
    """validate (report only) and bench of the product against the model it came from."""
    T = r.trtforge
    ref = c.model
    out: dict[str, Any] = {"size_ratio": round(product.stat().st_size / max(1, ref.stat().st_size), 4)}
    state = [a for s in c.state for a in ("--state", s)] if "--state" in r.flags("validate") else []
    # report-only: --no-elementwise needs some gate, so gates that always pass (min cosine 0, min top-1 0)
    metric = ["--min-cosine", "0"] + (["--metric", "top1", "--min-top1", "0"] if c.top1 else [])
    if c.top1 and c.metric_output:
        metric += ["--metric-output", c.metric_output]
    v = r.call(
        [
            T,
            "validate",
            str(ref),
            str(product),
            "--data",
            str(c.val),
            "--no-elementwise",
            *metric,
            *state,
            "--json",
        ],
        r.check_timeout,
    )
    vj = parse_json(v["stdout"])
    if isinstance(vj, dict) and "outputs" in vj:
        outs = vj["outputs"]
        q: dict[str, Any] = {
            "cosine_min": min((o.get("cosine") for o in outs if o.get("cosine") is not None), default=None),
            "max_abs": max((o.get("max_abs") for o in outs if o.get("max_abs") is not None), default=None),
            "per_output": {
                o["name"]: {k: o.get(k) for k in ("cosine", "max_abs", "mean_abs", "p99_abs")} for o in outs
            },
        }
        if vj.get("top1"):
            q["top1_agreement"] = vj["top1"].get("agreement")
        if vj.get("accuracy"):
            q["accuracy"] = {k: vj["accuracy"].get(k) for k in ("reference", "candidate", "drop")}
        if v["rc"] not in (0, 1) or "Traceback" in v["stderr"]:
            q["validate_rc"] = v["rc"]
        out["quality"] = q
    else:
        out["quality_error"] = {
            "rc": v["rc"],
            "error": error_line(v["stderr"]) if not v["timed_out"] else "timeout",
            "where": traceback_where(v["stderr"]),
        }
    b = r.call(
        [
            T,
            "bench",
            str(ref),
            str(product),
            "--data",
            str(c.val),
            "--batch",
            str(c.batch),
            "--warmup",
            "5",
            "--iters",
            "30",
            "--json",
        ],
        r.check_timeout,
    )
    bj = parse_json(b["stdout"])
    if isinstance(bj, dict) and bj.get("results"):
        res = bj["results"]
        p50 = [x.get("p50_ms") for x in res]
        if len(p50) >= 2 and p50[0] and p50[1]:
            out["speed"] = {
                "batch": c.batch,
                "ref_p50_ms": round(p50[0], 4),
                "cand_p50_ms": round(p50[1], 4),
                "speedup": round(p50[0] / p50[1], 3),
            }
    else:
        out["speed_error"] = {
            "rc": b["rc"],
            "error": error_line(b["stderr"]) if not b["timed_out"] else "timeout",
            "where": traceback_where(b["stderr"]),
        }
    return out


def run_cell(verb: str, c: Ctx, r: Runner, quality: bool) -> dict[str, Any]:
    spec = cell_argv(verb, c, r)
    if spec is None:
        return {"status": "n/a", "why": "ONNX source: nothing to export"}
    argv, product = spec
    if product is not None:
        product.unlink(missing_ok=True)
    if verb == "run":
        shutil.rmtree(c.work / "run", ignore_errors=True)
    res = r.call(argv, r.timeout)
    cell = classify(res, product, r)
    if verb == "run" and isinstance(cell.get("json"), dict):
        rep = cell["json"]
        cell["summary"] = rep.get("summary")
    if quality and product is not None and product.exists() and cell["status"] in ("ok", "gate"):
        try:
            cell.update(quality_speed(c, product, r))
        except Exception as exc:  # the harness must go on
            cell["quality_error"] = {"error": f"harness: {exc!r}"}
    return cell


# --------------------------------------------------------------------------------------------------------------
# output


def short(cell: dict[str, Any]) -> str:
    st = cell.get("status", "?")
    if st == "n/a":
        return "n/a"
    if st == "ok" or (st == "gate" and ("quality" in cell or "speed" in cell)):
        parts = [st if st == "ok" else f"gate ({cell['rc']})"]
        q = cell.get("quality") or {}
        if q.get("cosine_min") is not None:
            parts.append(f"cos {q['cosine_min']:.5f}")
        if q.get("top1_agreement") is not None:
            parts.append(f"top1 {100 * q['top1_agreement']:.1f}%")
        if cell.get("quality_error"):
            parts.append(f"validate✗({cell['quality_error'].get('rc')})")
        s = cell.get("speed")
        if s:
            parts.append(f"{s['speedup']:.2f}x")
        elif cell.get("speed_error"):
            parts.append(f"bench✗({cell['speed_error'].get('rc')})")
        return " · ".join(parts)
    return f"{st} ({cell.get('rc')})"


def markdown(doc: dict[str, Any]) -> str:
    verbs = doc["verbs"]
    names = list(doc["models"])
    out = [
        "# trtforge on the model corpus",
        "",
        f"Generated by `benchmarks/bench_corpus.py` on {doc.get('updated')} ({doc.get('host', {}).get('cpu', '')}, "
        f"trtforge {doc.get('trtforge_commit', '?')[:10]}{' + uncommitted edits' if doc.get('trtforge_dirty') else ''}). Cells: `ok` (+ cosine of the worst output, top-1 agreement "
        "for classifiers, p50 speedup vs the FP32 input model at the natural batch, ONNX Runtime CPU 1 thread), "
        "`gate (1)` (a gate of the verb failed), `refused (rc)` (clean exit 2/3), `failed (rc)` (traceback, "
        "timeout, invalid model, exit 1 without a gate), `validate✗`/`bench✗`: measuring the product failed. "
        "n/a: no torch source.",
        "",
    ]
    out.append("| model | " + " | ".join(verbs) + " |")
    out.append("|---|" + "---|" * len(verbs))
    for n in names:
        row = doc["cells"].get(n, {})
        out.append(f"| {n} | " + " | ".join(short(row[v]) if v in row else "–" for v in verbs) + " |")
    counts: dict[str, int] = {}
    for n in names:
        for v in verbs:
            st = doc["cells"].get(n, {}).get(v, {}).get("status")
            if st:
                counts[st] = counts.get(st, 0) + 1
    out += ["", "Totals: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), ""]
    out += [
        "## Cells that are not ok",
        "",
        "| model | verb | status | exit | first error line | where |",
        "|---|---|---|---|---|---|",
    ]
    for n in names:
        for v in verbs:
            cell = doc["cells"].get(n, {}).get(v)
            if not cell or cell.get("status") in ("ok", "n/a"):
                continue
            err = (cell.get("error") or "").replace("|", "\\|").replace("\n", " ")
            gates = "; ".join(dedupe_gates(cell.get("failed_gates", []))).replace("|", "\\|")
            if gates and gates not in err:
                err += f" [{gates}]"
            out.append(
                f"| {n} | {v} | {cell['status']} | {cell.get('rc')} | {err[:500]} | {cell.get('where') or ''} |"
            )
    out += [
        "",
        "## Measuring the products failed",
        "",
        "| model | verb | what | exit | error | where |",
        "|---|---|---|---|---|---|",
    ]
    for n in names:
        for v in verbs:
            cell = doc["cells"].get(n, {}).get(v) or {}
            for key, what in (("quality_error", "validate REF CAND"), ("speed_error", "bench REF CAND")):
                e = cell.get(key)
                if e:
                    out.append(
                        f"| {n} | {v} | {what} | {e.get('rc')} | {str(e.get('error', '')).replace('|', '/')[:400]} "
                        f"| {e.get('where') or ''} |"
                    )
    out += ["", "## Corpus", "", "| model | package | class | data |", "|---|---|---|---|"]
    for n in names:
        m = doc["models"][n]
        out.append(f"| {n} | {m['package']} | {m['class']} | {m['data']} |")
    out += ["", "## Columns", ""] + [f"- `{v}`: `trtforge {COLUMN_HELP[v]}`" for v in verbs] + [""]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description="Run every trtforge verb on every corpus model.")
    ap.add_argument("--models", help="comma-separated model names (default: all in models.toml)")
    ap.add_argument("--verbs", help=f"comma-separated columns (default: all): {','.join(VERBS)}")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per cell (default 600)")
    ap.add_argument(
        "--check-timeout", type=float, default=300, help="seconds for each quality/speed measurement"
    )
    ap.add_argument(
        "--no-quality", action="store_true", help="skip validate/bench of the models the verbs write"
    )
    ap.add_argument("--venv", type=Path, default=CORPUS / ".venv", help="the corpus environment")
    ap.add_argument("--json-out", type=Path, default=RESULTS / "corpus.json")
    ap.add_argument("--md-out", type=Path, default=RESULTS / "corpus.md")
    ap.add_argument("--fresh", action="store_true", help="do not merge with the existing --json-out")
    ap.add_argument("--markdown-only", action="store_true", help="only rewrite --md-out from --json-out")
    a = ap.parse_args()
    if a.markdown_only:
        doc = json.loads(a.json_out.read_text())
        for e in registry():  # descriptions from models.toml as it is now
            if e["name"] in doc.get("models", {}):
                doc["models"][e["name"]].update({k: e.get(k) for k in ("package", "file", "class", "data")})
        a.json_out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
        a.md_out.write_text(markdown(doc))
        print(markdown(doc))
        return 0

    if not (a.venv / "bin" / "trtforge").exists():
        print(
            f"bench_corpus: {a.venv}/bin/trtforge missing; run bash benchmarks/corpus/setup.sh",
            file=sys.stderr,
        )
        return 2
    entries = registry()
    if a.models:
        want = a.models.split(",")
        unknown = set(want) - {e["name"] for e in entries}
        if unknown:
            print(f"bench_corpus: unknown model(s) {sorted(unknown)}", file=sys.stderr)
            return 2
        entries = [e for e in entries if e["name"] in want]
    verbs = a.verbs.split(",") if a.verbs else VERBS
    if set(verbs) - set(VERBS):
        print(
            f"bench_corpus: unknown verb(s) {sorted(set(verbs) - set(VERBS))}; choose from {VERBS}",
            file=sys.stderr,
        )
        return 2
    missing = [e["name"] for e in entries if not (MODELS / e["name"] / "manifest.json").is_file()]
    if missing:
        print(f"bench_corpus: not collected: {missing}; run bash benchmarks/corpus/setup.sh", file=sys.stderr)
        return 2

    doc: dict[str, Any] = {}
    if a.json_out.is_file() and not a.fresh:
        doc = json.loads(a.json_out.read_text())
    doc.setdefault("schema", "trtforge.corpus/1")
    doc["verbs"] = VERBS
    doc.setdefault("cells", {})
    doc.setdefault("runs", [])
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
    except OSError:
        commit = "?"
    doc["trtforge_commit"] = commit
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "pipeline", "calibration", "plugins", "trtforge"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout.strip()
    doc["trtforge_dirty"] = bool(dirty)  # library files edited but not committed while this ran
    doc["host"] = {
        "cpu": f"{os.cpu_count()} cores {platform.machine()}",
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    all_models = {e["name"]: e for e in registry()}
    doc["models"] = {
        n: {
            k: all_models[n].get(k)
            for k in ("package", "file", "class", "source", "data", "dynamic", "state", "batch")
        }
        for n in all_models
        if (MODELS / n / "manifest.json").is_file()
    }
    runner = Runner(a.venv, a.timeout, a.check_timeout)
    t_start = time.time()
    started = dt.datetime.now().isoformat(timespec="seconds")
    for e in entries:
        c = Ctx(e)
        c.work.mkdir(parents=True, exist_ok=True)
        row = doc["cells"].setdefault(c.name, {})
        for v in verbs:
            t0 = time.time()
            try:
                cell = run_cell(v, c, runner, quality=not a.no_quality)
            except Exception as exc:
                cell = {"status": "failed", "error": f"harness error: {exc!r}", "rc": None}
            cell["at"] = dt.datetime.now().isoformat(timespec="seconds")
            cell["total_seconds"] = round(time.time() - t0, 1)
            row[v] = cell
            print(
                f"{c.name:18s} {v:15s} {short(cell):50s} {cell.get('seconds', 0):7.1f}s  {cell.get('error', '')[:160]}",
                flush=True,
            )
            doc["updated"] = dt.datetime.now().isoformat(timespec="seconds")
            a.json_out.parent.mkdir(parents=True, exist_ok=True)
            a.json_out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    doc["runs"].append(
        {
            "commit": commit,
            "dirty": doc["trtforge_dirty"],
            "started": started,
            "seconds": round(time.time() - t_start, 1),
            "models": [e["name"] for e in entries],
            "verbs": verbs,
        }
    )
    doc["updated"] = dt.datetime.now().isoformat(timespec="seconds")
    a.json_out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    md = markdown(doc)
    a.md_out.write_text(md)
    print()
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
