"""Conversion rate of a synthetic transformer-shaped fp32 model with external data.

    python benchmarks/convert_rate.py [--params 100e6] [--jobs 2] [--folder DIR]

Writes the model chunk by chunk (never whole in memory): per layer the four d × d attention projections and the
d × 4d and 4d × d MLP matrices, d = 1024 by default (12.6 M weights a layer). Converts it with the default
settings and ``--jobs`` in a child process that reports its own peak RSS (VmHWM) and CPU time, and, in this
process, measures the default codec's encode rate on one core (native encoders on one thread, CPU time) on N(0,1)
weights. Prints JSON: weights/s of the conversion (wall clock, and per CPU second: the figure a busy shared machine
does not distort), the per-core rate, the ratio of the wall-clock rate to ``jobs`` × the per-core rate (the
target is ≥ 0.8 at two jobs, on an otherwise idle machine), and the peak RSS against the largest tensor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import hyperonnx
t = time.perf_counter()
result = hyperonnx.convert(sys.argv[1], sys.argv[2], jobs=int(sys.argv[3]))
status = Path("/proc/self/status").read_text()
hwm = next(int(l.split()[1]) * 1024 for l in status.splitlines() if l.startswith("VmHWM:"))
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"peak_rss": hwm, "seconds": time.perf_counter() - t, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                  "tensors": len(result.report.tensors)}))
"""


def write_model(folder: Path, params: float, d: int) -> tuple[Path, int, int]:
    """The model, its weight count and its largest tensor's bytes."""
    shapes = []
    while sum(a * b for a, b in shapes) < params:
        shapes += [(d, d)] * 4 + [(d, 4 * d), (4 * d, d)]
    rng = np.random.default_rng(0)
    inits, nodes, prev, offset = [], [], "x", 0
    with open(folder / "model.onnx.data", "wb") as data:
        for i, shape in enumerate(shapes):
            for _ in range(0, shape[0], 256):
                data.write((rng.standard_normal((256, shape[1]), dtype=np.float32) * np.float32(0.02)).tobytes())
            nbytes = shape[0] * shape[1] * 4
            t = TensorProto(name=f"w{i}", data_type=TensorProto.FLOAT, dims=shape)
            t.data_location = TensorProto.EXTERNAL
            for key, value in (("location", "model.onnx.data"), ("offset", str(offset)), ("length", str(nbytes))):
                entry = t.external_data.add()
                entry.key, entry.value = key, value
            offset += nbytes
            inits.append(t)
            nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"], name=f"mm{i}"))
            prev = f"h{i}"
    graph = helper.make_graph(nodes, "synthetic", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", d])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["N", shapes[-1][1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "model.onnx"
    onnx.save(model, path)
    return path, sum(a * b for a, b in shapes), max(a * b for a, b in shapes) * 4


def per_core_rate(seconds: float = 3.0) -> float:
    """The default codec's encode rate on one core (M weights/s), native encoders on one thread."""
    sys.path.insert(0, str(ROOT))
    import hyperonnx.codec as codec
    from hyperonnx.codec import native

    native.set_threads(1)
    x = np.random.default_rng(1).standard_normal(1 << 21).astype(np.float32) * np.float32(0.02)
    impl = codec.get_codec(codec.DEFAULT_CODEC)
    impl.encode(x, dict(impl.defaults))  # warm-up: tables
    done, start = 0, time.thread_time()  # CPU time of this thread: what one core does, however busy the machine
    while time.thread_time() - start < seconds:
        impl.encode(x, dict(impl.defaults))
        done += x.size
    return done / (time.thread_time() - start) / 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=float, default=100e6, help="weights in the model (default 100e6)")
    parser.add_argument("--d", type=int, default=1024, help="model width (default 1024)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--folder", help="where to write the model (default: a temporary folder, removed)")
    args = parser.parse_args(argv)
    folder = Path(args.folder or tempfile.mkdtemp(prefix="hx-convert-rate-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        src, weights, largest = write_model(folder, args.params, args.d)
        rate = per_core_rate()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run([sys.executable, "-c", CHILD, str(src), str(folder / "model.hx.onnx"), str(args.jobs)],
                              capture_output=True, text=True, env=env, cwd=ROOT, check=False)
        if proc.returncode != 0:
            sys.exit(proc.stderr[-3000:])
        stats = json.loads(proc.stdout.strip().splitlines()[-1])
        mws = weights / stats["seconds"] / 1e6
        print(json.dumps({
            "weights": weights, "jobs": args.jobs, "tensors": stats["tensors"], "seconds": round(stats["seconds"], 2),
            "cpu_seconds": round(stats["cpu_seconds"], 2),
            "convert_mws": round(mws, 2), "convert_mws_per_cpu_second": round(weights / stats["cpu_seconds"] / 1e6, 2),
            "encode_mws_per_core": round(rate, 2),
            "ratio_to_jobs_x_per_core": round(mws / (args.jobs * rate), 3),
            "peak_rss_gib": round(stats["peak_rss"] / 2**30, 3), "largest_tensor_gib": round(largest / 2**30, 3),
            "peak_rss_above_largest_gib": round((stats["peak_rss"] - largest) / 2**30, 3),
        }, indent=1))
    finally:
        if not args.folder:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
