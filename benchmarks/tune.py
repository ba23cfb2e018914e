"""``convert --target-cosine`` on the real models: target → whole-file size ratio → task fidelity.

    python benchmarks/tune.py [--models mobilenet,minilm,terrain] [--targets 0.99,0.995,0.999] [--codec ecsq]
                              [--strip-debug-info] [--json OUT.json]

The target is tuned on held-out inputs and the task metrics (benchmarks/fidelity.py) are measured on each model's
usual evaluation data, so the achieved task fidelity is out of sample:

- MobileNetV2: tuned on 32 crops (``imagenet_inputs(4, seed=1)``), evaluated on the 96 crops of
  ``imagenet_inputs()`` (seed 0): top-1 agreement on all and on confident inputs, KL;
- all-MiniLM-L6-v2: tuned on pydoc sentences 256–319, evaluated on sentences 0–255: embedding cosine, NN agreement;
- terrain UNet: tuned on seeds 8–15, evaluated on seeds 0–7: PSNR of the one-step output against fp32.

For each target, the same file size allocated without measured sensitivity (``--max-size`` of the tuned file:
every tensor's noise weighted alike) is measured too, and the default conversion once per model, all in one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import fidelity  # noqa: E402
import realmodels as rm  # noqa: E402

import hyperonnx  # noqa: E402
from hyperonnx import model_io, runtime  # noqa: E402


def plain_session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def hx_session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), runtime.session_options(), providers=["CPUExecutionProvider"])


def tuning_inputs(name: str, folder: Path) -> Path:
    path = folder / f"{name}-tune.npz"
    if name == "mobilenet":
        np.savez(path, input=rm.imagenet_inputs(n_per_image=4, seed=1))
    elif name == "minilm":
        np.savez(path, **rm.minilm_encode(rm.pydoc_sentences(320)[256:]))
    else:  # seeds 8..15: none of them is an evaluation seed
        feeds = rm.terrain_inputs(16)[8:]
        np.savez(path, **{k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]})
    return path


MODELS = {
    "mobilenet": (rm.mobilenet_v2, fidelity.mobilenet),
    "minilm": (rm.minilm, fidelity.minilm),
    "terrain": (rm.terrain_unet, fidelity.terrain),
}


def run(name: str, targets: list[float], folder: Path, codec_name: str, strip: bool) -> list[dict]:
    build, task = MODELS[name]
    source = build()
    reference = plain_session(source)
    size = model_io.file_size(source)
    inputs = tuning_inputs(name, folder)
    rows = []

    def measure(label: str, out: Path, seconds: float, extra: dict) -> dict:
        row = {"model": name, "setting": label, "ratio": size / model_io.file_size(out), "seconds": seconds, **extra,
               **task(reference, hx_session(out))}
        rows.append(row)
        print(json.dumps(row), flush=True)
        return row

    out = folder / f"{name}-default.onnx"
    start = time.perf_counter()
    hyperonnx.convert(source, out, strip_debug_info=strip)
    measure("default", out, time.perf_counter() - start, {})
    for target in targets:
        out = folder / f"{name}-{target}.onnx"
        start = time.perf_counter()
        result = hyperonnx.convert(source, out, codec_name=codec_name, target_cosine=target, inputs=str(inputs),
                                   strip_debug_info=strip,
                                   progress=lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
        tuned = result.extra["tune"]
        measure(f"{codec_name} target {target}", out, time.perf_counter() - start,
                {"tuned_cosine": tuned["cosine"], "evaluations": len(tuned["evaluations"])})
        same = folder / f"{name}-{target}-unweighted.onnx"
        start = time.perf_counter()
        hyperonnx.convert(source, same, codec_name=codec_name, max_size=model_io.file_size(out),
                          strip_debug_info=strip)
        measure(f"same size, unweighted ({target})", same, time.perf_counter() - start, {})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mobilenet,minilm")
    parser.add_argument("--targets", default="0.99,0.995,0.999")
    parser.add_argument("--codec", default="blockvq", help="codec whose settings the search allocates")
    parser.add_argument("--strip-debug-info", action="store_true", help="drop exporter debug data (terrain UNet)")
    parser.add_argument("--json", type=Path, default=None, help="Write the rows here.")
    args = parser.parse_args()
    targets = [float(t) for t in args.targets.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="hyperonnx-tune-bench-") as folder:
        for name in args.models.split(","):
            rows += run(name, targets, Path(folder), args.codec, args.strip_debug_info)
    print(f"\n{'model':10} {'setting':34} {'ratio':>6} {'s':>6}  task fidelity")
    for r in rows:
        keys = [k for k in r if k not in ("model", "setting", "ratio", "seconds")]
        metrics = ", ".join(f"{k} {r[k]:.4f}" if isinstance(r[k], float) else f"{k} {r[k]}" for k in keys)
        print(f"{r['model']:10} {r['setting']:34} {r['ratio']:6.2f} {r['seconds']:6.1f}  {metrics}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
