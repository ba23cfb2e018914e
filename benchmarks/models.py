"""Whole-model size and task fidelity of hyperonnx codecs on the real models (benchmarks/realmodels.py).

    python benchmarks/models.py [--codec paper --codec paper-cnn] [--runtime ort|portable] [--models mobilenet,...]

For every model and codec: whole-file size ratio against the fp32 original (external data counted), task
fidelity on the model's own real evaluation data (benchmarks/fidelity.py), conversion time, and session load time
and median latency as ratios against the original, all measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import fidelity  # noqa: E402
import realmodels as rm  # noqa: E402

import hyperonnx  # noqa: E402
from hyperonnx.evaluate import median_latency  # noqa: E402

LATENCY_REPEATS = 7  # median of 7 runs per session

MODELS = {
    "mobilenet": (rm.mobilenet_v2, lambda ref, test, path: fidelity.mobilenet(ref, test)),
    "minilm": (rm.minilm, lambda ref, test, path: fidelity.minilm(ref, test)),
    "terrain": (rm.terrain_unet, lambda ref, test, path: fidelity.terrain(ref, test)),
    "ppocr-det": (lambda: rm.ppocr("det"), lambda ref, test, path: fidelity.ppocr("det", ref, test, path)),
    "ppocr-rec": (lambda: rm.ppocr("rec"), lambda ref, test, path: fidelity.ppocr("rec", ref, test, path)),
    "silero": (rm.silero_vad, lambda ref, test, path: fidelity.silero(ref, test)),
}


def plain_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def timed(make, path):
    start = time.perf_counter()
    session = make(path)
    return session, time.perf_counter() - start


def first_feeds(name: str):
    if name == "mobilenet":
        return {"input": rm.imagenet_inputs(1)[:1]}
    if name == "minilm":
        return rm.minilm_inputs(n=8)
    if name == "terrain":
        return rm.terrain_inputs(1)[0]
    if name.startswith("ppocr"):
        return rm.ppocr_inputs(name.split("-")[1])
    return rm.silero_inputs()[0]


def run(models: list[str], codecs: list[str], runtime: str, options: dict | None = None) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            get, evaluate = MODELS[name]
            source = get()
            reference, load_ref = timed(plain_session, source)
            feeds = first_feeds(name)
            lat_ref = median_latency(reference, feeds, LATENCY_REPEATS)
            for codec_name in codecs:
                target = Path(tmp) / f"{name}.{codec_name}.onnx"
                form = "ort" if runtime == "reference" else runtime
                result = hyperonnx.convert(source, target, codec_name=codec_name, runtime=form,
                                           options=options)
                if runtime == "reference":  # fidelity from the numpy decoder alone: no op library involved
                    decoded = Path(tmp) / f"{name}.{codec_name}.decoded.onnx"
                    hyperonnx.decompress(target, decoded)
                    test, load_test = timed(plain_session, decoded)
                else:
                    make = plain_session if runtime == "portable" else (lambda p: hyperonnx.session(p))
                    test, load_test = timed(make, target)
                row = {"model": name, "codec": codec_name, "runtime": runtime, "ratio": result.ratio,
                       "bytes_before": result.bytes_before, "bytes_after": result.bytes_after,
                       "convert_s": result.report.seconds, "load_ratio": load_test / load_ref,
                       "latency_ratio": median_latency(test, feeds, LATENCY_REPEATS) / lat_ref,
                       **evaluate(reference, test, source)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", action="append", help="codec name (repeatable; default: paper, paper-cnn)")
    parser.add_argument("--runtime", default="ort", choices=["ort", "portable", "reference"],
                        help="reference: decode with numpy and run the plain model (fidelity only)")
    parser.add_argument("--codec-opt", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ",".join(MODELS))
    args = parser.parse_args()
    options = dict(item.split("=", 1) for item in args.codec_opt)
    rows = run(args.models.split(","), args.codec or ["paper", "paper-cnn"], args.runtime, options)
    print()
    print(f"{'model':10} {'codec':10} {'ratio':>6} {'load':>6} {'latency':>8}  fidelity")
    for r in rows:
        keys = [k for k in r if k not in {"model", "codec", "runtime", "ratio", "bytes_before", "bytes_after",
                                           "convert_s", "load_ratio", "latency_ratio"}]
        fid = ", ".join(f"{k}={r[k]:.4g}" if isinstance(r[k], float) else f"{k}={r[k]}" for k in keys)
        print(f"{r['model']:10} {r['codec']:10} {r['ratio']:6.2f} {r['load_ratio']:6.2f} {r['latency_ratio']:8.2f}  {fid}")


if __name__ == "__main__":
    main()
