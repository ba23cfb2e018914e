"""Conversion rate of a synthetic transformer-shaped fp32 model with external data.

    python benchmarks/convert_rate.py [--params 100e6] [--d 1024] [--jobs 2] [--codec NAME] [--folder DIR]

Writes the model chunk by chunk (never whole in memory): per layer the four d × d attention projections and the
d × 4d and 4d × d MLP matrices, d = 1024 by default (12.6 M weights a layer). Converts it with the default
settings (the default policy; ``--codec`` names a fixed codec at its defaults instead) and ``--jobs`` in a child
process that reports its own peak RSS (VmHWM) and CPU time. In this process it measures the per-core encode rate
of what that conversion runs (native encoders on one thread, CPU time, on N(0, 0.02) tensors of the model's own
shapes, weighed as the model holds them): for the default policy, tcq at the step it predicts for the matmul
target that every weight of this model gets (one encoding a tensor on such weights), else the codec at its
defaults. Prints JSON: weights/s of the conversion (wall clock, and per CPU second: the
figure a busy shared machine does not distort), the per-core rate, the ratio of the wall-clock rate to ``jobs`` ×
the per-core rate (the target is ≥ 0.8 at two jobs, on an otherwise idle machine), the same ratio per CPU second
(``cpu_ratio``: the share of the conversion's CPU time that is encoding at the per-core rate; threads that scale
reach ``ratio`` = ``cpu_ratio`` on an idle machine), the load average while it ran, the peak RSS against the
largest tensor (the target: at most 1 GiB above it, whatever the model's size), and the input's and output's
sizes on disk. For the default policy, the same two ratios against the policy's whole per-tensor step on one
core (``policy_mws_per_core``: encode, decode and SQNR check), which leave only what threads and I/O cost.
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
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import hyperonnx
t = time.perf_counter()
settings = {"codec_name": sys.argv[4]} if len(sys.argv) > 4 else {}
result = hyperonnx.convert(sys.argv[1], sys.argv[2], jobs=int(sys.argv[3]), **settings)
status = Path("/proc/self/status").read_text()
hwm = next(int(l.split()[1]) * 1024 for l in status.splitlines() if l.startswith("VmHWM:"))
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"peak_rss": hwm, "seconds": time.perf_counter() - t, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                  "tensors": len(result.report.tensors)}))
"""


def write_model(folder: Path, params: float, d: int) -> None:
    """Writes the model (model.onnx and model.onnx.data) into ``folder``."""
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
    onnx.save(model, folder / "model.onnx")


def per_core_rates(codec_name: str | None, shapes: dict[tuple[int, int], int],
                   seconds: float = 1.5) -> tuple[float, float | None]:
    """Rates on one core (M weights/s, native encoders on one thread) of what the conversion runs, on the model's
    own tensor shapes (``shapes``: shape → weights the model holds in tensors of it), each an N(0, 0.02) tensor
    like the model's, combined as the model weighs them (its weights over the sum of each shape's time): the
    codec's encode, and for the default policy also its whole per-tensor step (policy.encode_to_target: the grid
    check, the encode, the decode and SQNR that check the target). A large tensor codes slower than a small one
    (its working set leaves the cache: 2048 x 8192 at 0.75-0.8 of 1024 x 2048's rate), so a rate taken on a small
    tensor would overstate what one core does for this model."""
    sys.path.insert(0, str(ROOT))
    import hyperonnx.codec as codec
    from hyperonnx.codec import native
    from hyperonnx.passes import policy

    native.set_threads(1)
    limits = threadpool_limits(limits=1, user_api="blas")  # as the conversion runs (hyperonnx.api.convert)
    totals = [0.0, 0.0]  # seconds for the model's weights: encode, policy step
    for shape, weights in shapes.items():
        x = np.random.default_rng(1).standard_normal(shape, dtype=np.float32) * np.float32(0.02)
        if codec_name is None:  # the default policy: every weight here is a MatMul's, so its target is matmul's
            options = {"step": round(policy.predicted_step(policy.MATMUL_DB), 6)}
            steps = [lambda x=x, o=options: codec.encode(x, "tcq", **o),
                     lambda x=x: policy.encode_to_target(x, policy.MATMUL_DB)]
        else:
            steps = [lambda x=x: codec.encode(x, codec_name)]
        for i, step in enumerate(steps):
            step()  # warm-up: tables
            done, start = 0, time.thread_time()  # CPU time of this thread: what one core does, however busy
            while time.thread_time() - start < seconds:
                step()
                done += x.size
            totals[i] += weights * (time.thread_time() - start) / done
    native.set_threads(None)
    limits.restore_original_limits()
    weights = sum(shapes.values())
    rates = [weights / t / 1e6 if t else None for t in totals]
    return rates[0], rates[1]


def _shapes(dims: list[tuple[int, ...]]) -> dict[tuple[int, int], int]:
    shapes: dict[tuple[int, int], int] = {}
    for a, b in dims:
        shapes[(a, b)] = shapes.get((a, b), 0) + a * b
    return shapes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=float, default=100e6, help="weights in the model (default 100e6)")
    parser.add_argument("--d", type=int, default=1024, help="model width (default 1024)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--codec", help="a fixed codec at its defaults (default: the default policy)")
    parser.add_argument("--folder", help="where to write the model and keep it (a model already there is reused; "
                                         "default: a temporary folder, removed)")
    args = parser.parse_args(argv)
    folder = Path(args.folder or tempfile.mkdtemp(prefix="hx-convert-rate-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        src = folder / "model.onnx"
        if not (args.folder and src.exists()):  # else a model this script wrote there before
            write_model(folder, args.params, args.d)
        dims = [tuple(t.dims) for t in onnx.load(src, load_external_data=False).graph.initializer]
        weights, largest = sum(a * b for a, b in dims), max(a * b for a, b in dims) * 4
        rate, policy_rate = per_core_rates(args.codec, _shapes(dims))
        for name in ("model.hx.onnx", "model.hx.onnx.data"):  # a previous run's output: replacing it frees its
            folder.joinpath(name).unlink(missing_ok=True)        # page cache inside the save (0.3 s at 1 B)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        load = os.getloadavg()[0]
        proc = subprocess.run([sys.executable, "-c", CHILD, str(src), str(folder / "model.hx.onnx"), str(args.jobs),
                               *([args.codec] if args.codec else [])],
                              capture_output=True, text=True, env=env, cwd=ROOT, check=False)
        load = max(load, os.getloadavg()[0])
        if proc.returncode != 0:
            sys.exit(proc.stderr[-3000:])
        stats = json.loads(proc.stdout.strip().splitlines()[-1])
        input_bytes = sum(folder.joinpath(name).stat().st_size for name in ("model.onnx", "model.onnx.data"))
        output_bytes = sum(folder.joinpath(name).stat().st_size for name in ("model.hx.onnx", "model.hx.onnx.data"))
        mws = weights / stats["seconds"] / 1e6
        per_cpu_second = weights / stats["cpu_seconds"] / 1e6
        print(json.dumps({
            "codec": args.codec or "default policy (tcq)", "weights": weights, "jobs": args.jobs,
            "tensors": stats["tensors"], "seconds": round(stats["seconds"], 2),
            "cpu_seconds": round(stats["cpu_seconds"], 2),
            "convert_mws": round(mws, 2), "convert_mws_per_cpu_second": round(per_cpu_second, 2),
            "encode_mws_per_core": round(rate, 2),
            "ratio_to_jobs_x_per_core": round(mws / (args.jobs * rate), 3),
            "cpu_ratio": round(per_cpu_second / rate, 3), "load_average": round(load, 1),
            **({} if policy_rate is None else {
                "policy_mws_per_core": round(policy_rate, 2),
                "ratio_to_jobs_x_policy_per_core": round(mws / (args.jobs * policy_rate), 3),
                "cpu_ratio_to_policy": round(per_cpu_second / policy_rate, 3)}),
            "peak_rss_gib": round(stats["peak_rss"] / 2**30, 3), "largest_tensor_gib": round(largest / 2**30, 3),
            "peak_rss_above_largest_gib": round((stats["peak_rss"] - largest) / 2**30, 3),
            "input_gib": round(input_bytes / 2**30, 3), "output_gib": round(output_bytes / 2**30, 3),
        }, indent=1))
    finally:
        if not args.folder:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
