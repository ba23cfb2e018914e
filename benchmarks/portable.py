"""Load-time peak memory of the portable decoder, which ONNX Runtime constant-folds at session creation.

    python benchmarks/portable.py [--size 4096]

Builds MatMul(x, W) with one fp32 weight W of size×size, converts it with --runtime portable (paper and
paper-cnn codecs), and measures in a fresh process each: the peak RSS growth while creating the session
(VmHWM after minus VmRSS before) and the session creation time, as ratios against the plain fp32 model and
against the decoded weight's bytes. Target: peak ≤ 3× the decoded weight.
"""

from __future__ import annotations

import argparse
import json
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

PROBE = r"""
import json, sys, time
import onnxruntime as ort
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
before = status("VmRSS:")
start = time.perf_counter()
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
seconds = time.perf_counter() - start
print(json.dumps({"peak_growth": status("VmHWM:") - before, "seconds": seconds}))
"""


def build(size: int, path: Path) -> None:
    w = (np.random.default_rng(0).standard_normal((size, size)) * 0.05).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "mm",
                              [helper.make_tensor_value_info("x", 1, [1, size])],
                              [helper.make_tensor_value_info("y", 1, [1, size])], [numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def probe(path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    args = parser.parse_args()
    weight_bytes = args.size * args.size * 4
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "plain.onnx"
        build(args.size, plain)
        base = probe(plain)
        print(f"weight {weight_bytes / 2**20:.0f} MiB; plain model: peak +{base['peak_growth'] / 2**20:.0f} MiB, "
              f"load {base['seconds'] * 1e3:.0f} ms")
        print(f"{'form':22} {'file MiB':>9} {'peak MiB':>9} {'peak/weight':>12} {'peak/plain':>11} {'load/plain':>11}")
        for codec_name in ("paper", "paper-cnn"):
            target = Path(tmp) / f"{codec_name}.onnx"
            hyperonnx.convert(plain, target, codec_name=codec_name, runtime="portable")
            result = probe(target)
            print(f"portable {codec_name:13} {target.stat().st_size / 2**20:9.1f} "
                  f"{result['peak_growth'] / 2**20:9.0f} {result['peak_growth'] / weight_bytes:12.2f} "
                  f"{result['peak_growth'] / base['peak_growth']:11.2f} {result['seconds'] / base['seconds']:11.2f}")


if __name__ == "__main__":
    main()
