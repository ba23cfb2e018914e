"""Load-time peak memory and load time of the portable decoder, which ONNX Runtime constant-folds at session creation.

    python benchmarks/portable.py [--size 4096] [--repeat 3] [--codec blocktcq --codec blockvq:bits=4 …]
                                  [--model model.onnx | --opset 17] [--python PYTHON] [--json]

Builds MatMul(x, W) with one fp32 weight W of size×size (or takes ``--model``), converts it with
--runtime portable for each codec setting (default: blocktcq and blockvq at their defaults and at bits 4, paper and
paper-cnn), and measures in a fresh process each: the peak RSS growth while creating the session (VmHWM after
minus VmRSS before) and the session creation time, as ratios against the plain fp32 model and against the decoded
weight's bytes; medians of ``--repeat`` fresh processes. Also prints the file size and the `ort` form's size for
the same setting. Target: peak ≤ 3× the decoded weight where the codec allows it (the block codecs' decoders hold
a few float32 intermediates of the weight's size while ORT folds them).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hyperonnx  # noqa: E402

DEFAULT_SETTINGS = ("blocktcq", "blocktcq:bits=4", "blockvq", "blockvq:bits=4", "paper", "paper-cnn")

PROBE = r"""
import json, sys, time
import onnxruntime as ort
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
so = ort.SessionOptions()
so.log_severity_level = 3
before = status("VmRSS:")
start = time.perf_counter()
session = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
seconds = time.perf_counter() - start
print(json.dumps({"peak_growth": status("VmHWM:") - before, "seconds": seconds}))
"""


def build(size: int, path: Path, opset: int = 17) -> None:
    w = (np.random.default_rng(0).standard_normal((size, size)) * 0.05).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "mm",
                              [helper.make_tensor_value_info("x", 1, [1, size])],
                              [helper.make_tensor_value_info("y", 1, [1, size])], [numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))


def probe(path: Path, repeat: int, python: str) -> dict:
    """Medians of ``repeat`` fresh processes."""
    runs = []
    for _ in range(repeat):
        out = subprocess.run([python, "-c", PROBE, str(path)], capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout))
    return {key: statistics.median(r[key] for r in runs) for key in ("peak_growth", "seconds")}


def parse_setting(text: str) -> tuple[str, dict]:
    """``codec[:key=value,…]`` → (codec, options)."""
    name, _, rest = text.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        options[key] = int(value) if value.lstrip("-").isdigit() else float(value)
    return name, options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--model", type=Path, help="convert this model instead of the size×size MatMul")
    parser.add_argument("--opset", type=int, default=17, help="the MatMul model's opset (below 14 the portable "
                        "decoder sums code planes in float32/int32, not uint8)")
    parser.add_argument("--codec", action="append", dest="settings", metavar="CODEC[:K=V,…]",
                        help=f"codec setting (repeatable; default: {' '.join(DEFAULT_SETTINGS)})")
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per model (median)")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the ONNX Runtime to measure")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    args = parser.parse_args()
    settings = args.settings or list(DEFAULT_SETTINGS)
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "plain.onnx"
        if args.model:
            plain = args.model
        else:
            build(args.size, plain, args.opset)
        base = probe(plain, args.repeat, args.python)
        rows = []
        for setting in settings:
            codec_name, options = parse_setting(setting)
            target, ort_form = Path(tmp) / "portable.onnx", Path(tmp) / "ort.onnx"
            result = hyperonnx.convert(plain, target, codec_name=codec_name, options=options, runtime="portable")
            weight_bytes = sum(t.bytes_before for t in result.report.tensors)
            hyperonnx.convert(plain, ort_form, codec_name=codec_name, options=options, runtime="ort")
            measured = probe(target, args.repeat, args.python)
            rows.append({"setting": setting, "file_bytes": target.stat().st_size, "ort_bytes": ort_form.stat().st_size,
                         "weight_bytes": weight_bytes, "peak_growth": measured["peak_growth"],
                         "seconds": measured["seconds"], "peak_per_weight": measured["peak_growth"] / weight_bytes,
                         "peak_per_plain": measured["peak_growth"] / base["peak_growth"],
                         "load_per_plain": measured["seconds"] / base["seconds"]})
    if args.json:
        print(json.dumps({"plain": base}))
        for row in rows:
            print(json.dumps(row))
        return
    print(f"plain model: peak +{base['peak_growth'] / 2**20:.0f} MiB, load {base['seconds'] * 1e3:.0f} ms "
          f"(medians of {args.repeat})")
    print(f"{'portable':18} {'file MiB':>9} {'ort MiB':>8} {'peak MiB':>9} {'peak/weight':>12} {'peak/plain':>11} "
          f"{'load ms':>8} {'load/plain':>11}")
    for r in rows:
        print(f"{r['setting']:18} {r['file_bytes'] / 2**20:9.2f} {r['ort_bytes'] / 2**20:8.2f} "
              f"{r['peak_growth'] / 2**20:9.0f} {r['peak_per_weight']:12.2f} {r['peak_per_plain']:11.2f} "
              f"{r['seconds'] * 1e3:8.0f} {r['load_per_plain']:11.2f}")


if __name__ == "__main__":
    main()
