"""Fused kernels vs fp32 and ORT's MatMulNBits (docs/fused.md, "Measurements").

    nice -n 10 .venv/bin/python benchmarks/fused.py --quick    # 4096², M ∈ {1, 64}, 1 thread, MiniLM (~1 minute)
    nice -n 10 .venv/bin/python benchmarks/fused.py            # the full grid, MiniLM and SmolLM2 (several minutes)

Y = X @ W, W of K×N, X of M×K, in one ORT session per variant, all timed in interleaved rounds (a load change on
the machine hits every variant alike), medians:
  fp32     MatMul with W a constant initializer (MLAS prepacks it at session creation);
  nbits0   com.microsoft MatMulNBits, 4 bits, blocks of 32, accuracy_level 0 (fp32 compute);
  nbits4   the same with accuracy_level 4 (int8 activations);
  call     HyperDecode (mode call) + MatMul: today's call mode;
  fused    HyperMatMul: W decoded a tile at a time inside the multiply.
W is a blocktcq encoding at the codec's defaults (5 bits, blocks of 32) with random θ and block headers (the
decoders' speed does not depend on the values); MatMulNBits gets random packed nibbles and scales. Prints
milliseconds per run, each variant's ratio to fp32, fused / nbits4, the resident weight bytes of each, and the
fused op's time per weight at M = 1 on one thread (decode + multiply: an upper bound on its decode cost).
Then the end-to-end rows (benchmarks/fused_e2e.py): all-MiniLM-L6-v2 and SmolLM2-135M converted with
``--decode call``, against fp32 (``--models``; SmolLM2 is optional and skipped where its package is missing).

--clock cpu times one-thread runs by this thread's CPU time (time.thread_time: ORT runs a one-thread session on the
caller's thread) instead of wall time, for a shared machine where other processes' turns would swamp wall time;
two-thread rows stay on wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import fused_e2e  # noqa: E402  (benchmarks/, this script's folder, is on sys.path)

from hyperonnx import codec, runtime  # noqa: E402
from hyperonnx.codec import bitpack  # noqa: E402
from hyperonnx.passes.ort_node import node_attributes  # noqa: E402

VARIANTS = ("fp32", "nbits0", "nbits4", "call", "fused")
NBITS_BLOCK = 32


def blocktcq_weight(k: int, n: int, seed: int = 0, **options) -> codec.Encoded:
    """A K×N blocktcq encoding at the defaults (or ``options``: ``bits=6``): side information from a small real
    encoding, random θ and headers (scale codes in the range real weights use, any of the four level sets)."""
    rng = np.random.default_rng(seed)
    small = codec.encode((rng.standard_normal(4096) * 0.02).astype(np.float32), "blocktcq", **options)
    block, numel = small.ints["block"][0], k * n
    theta = rng.integers(0, 1 << small.bits, size=numel, dtype=np.uint64)
    nblocks = -(-numel // block)
    headers = rng.integers(0, 48, size=nblocks, dtype=np.uint64) | (
        rng.integers(0, 4, size=nblocks, dtype=np.uint64) << np.uint64(8))
    blob = np.concatenate([bitpack.pack(theta, small.bits), bitpack.pack(headers, 10)])
    return dataclasses.replace(small, shape=(k, n), blob=blob)


def _model(nodes, inits, k: int, n: int, m: int, domains: list[str]) -> bytes:
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [m, k])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])
    opsets = [helper.make_opsetid("", 17), *[helper.make_opsetid(d, 1) for d in domains]]
    return helper.make_model(helper.make_graph(nodes, "mm", [x], [y], initializer=inits),
                             opset_imports=opsets, ir_version=8).SerializeToString()


def models(enc: codec.Encoded, w: np.ndarray, m: int) -> tuple[dict[str, bytes], dict[str, int]]:
    """Every variant's model for batch m, and its resident weight bytes."""
    k, n = enc.shape
    rng = np.random.default_rng(1)
    attrs = node_attributes(enc, "call")
    theta = numpy_helper.from_array(enc.blob, "theta")
    out, size = {}, {}
    out["fp32"] = _model([helper.make_node("MatMul", ["X", "W"], ["Y"])], [numpy_helper.from_array(w, "W")],
                         k, n, m, [])
    size["fp32"] = w.nbytes
    kb = k // NBITS_BLOCK
    packed = rng.integers(0, 256, size=(n, kb, NBITS_BLOCK // 2), dtype=np.uint8)
    scales = (rng.random(n * kb, dtype=np.float32) * 0.01).astype(np.float32)
    for level in (0, 4):
        node = helper.make_node("MatMulNBits", ["X", "B", "scales"], ["Y"], domain="com.microsoft", K=k, N=n, bits=4,
                                block_size=NBITS_BLOCK, accuracy_level=level)
        out[f"nbits{level}"] = _model([node], [numpy_helper.from_array(packed, "B"),
                                               numpy_helper.from_array(scales, "scales")], k, n, m, ["com.microsoft"])
        size[f"nbits{level}"] = packed.nbytes + scales.nbytes
    decode = helper.make_node("HyperDecode", ["theta"], ["W"], domain="ai.hyperonnx", **attrs)
    out["call"] = _model([decode, helper.make_node("MatMul", ["X", "W"], ["Y"])], [theta], k, n, m, ["ai.hyperonnx"])
    attrs.pop("mode")
    fused = helper.make_node("HyperMatMul", ["X", "theta"], ["Y"], domain="ai.hyperonnx", **attrs)
    out["fused"] = _model([fused], [theta], k, n, m, ["ai.hyperonnx"])
    size["call"] = size["fused"] = enc.blob.nbytes
    return out, size


def session(model: bytes, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model, runtime.session_options(threads=threads, options=so),
                                providers=["CPUExecutionProvider"])


def time_variants(sessions: dict[str, ort.InferenceSession], feeds: dict, budget_s: float,
                  clock=time.perf_counter) -> dict[str, float]:
    """Median seconds per run of each session, in interleaved rounds (at least 3, about budget_s of wall time)."""
    for s in sessions.values():
        s.run(None, feeds)  # warm-up
    times = {name: [] for name in sessions}
    started = time.perf_counter()
    while True:
        for name, s in sessions.items():
            t0 = clock()
            s.run(None, feeds)
            times[name].append(clock() - t0)
        rounds = len(times["fp32"])
        if rounds >= 3 and (time.perf_counter() - started > budget_s or rounds >= 50):
            break
    return {name: statistics.median(t) for name, t in times.items()}


def rel_error(y: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(y - ref).max() / max(np.abs(ref).max(), 1e-30))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4096×4096, M ∈ {1, 64}, 1 thread")
    parser.add_argument("--budget", type=float, default=None, help="seconds of timing per configuration")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: one-thread rows by the thread's CPU time (a shared machine)")
    parser.add_argument("--threads", type=int, nargs="+", default=None, help="thread counts (default 1 2)")
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="M values")
    parser.add_argument("--models", nargs="*", default=None, choices=fused_e2e.MODELS,
                        help="end-to-end rows (default: minilm with --quick, else minilm smollm2; none: no rows)")
    parser.add_argument("--no-matmul", action="store_true", help="only the end-to-end rows")
    args = parser.parse_args()
    shapes = [(4096, 4096)] if args.quick else [(4096, 4096), (4096, 11008)]
    batches = [1, 64] if args.quick else [1, 8, 64, 512]
    thread_counts = args.threads or ([1] if args.quick else [1, 2])
    batches = args.batches or batches
    budget = args.budget if args.budget is not None else (1.0 if args.quick else 2.0)
    print(f"onnxruntime {ort.__version__}; times in ms (medians; {args.clock} clock for one thread); ratios to fp32 "
          "in the same run")
    header = (f"{'K×N':>10} {'M':>4} {'thr':>3} " + " ".join(f"{v:>8}" for v in VARIANTS)
              + "  " + " ".join(f"{v + '/fp32':>12}" for v in VARIANTS[1:]) + f" {'fused/nb4':>9}")
    for k, n in [] if args.no_matmul else shapes:
        enc = blocktcq_weight(k, n)
        w = codec.decode(enc)
        sizes = None
        print()
        print(header)
        for m in batches:
            built, sizes = models(enc, w, m)
            x = np.random.default_rng(m).standard_normal((m, k)).astype(np.float32)
            for threads in thread_counts:
                sessions = {name: session(model, threads) for name, model in built.items()}
                y_fused = sessions["fused"].run(None, {"X": x})[0]
                err = rel_error(y_fused, sessions["fp32"].run(None, {"X": x})[0])
                cpu = args.clock == "cpu" and threads == 1
                t = time_variants(sessions, {"X": x}, budget, time.thread_time if cpu else time.perf_counter)
                ratios = " ".join(f"{t[v] / t['fp32']:>12.2f}" for v in VARIANTS[1:])
                print(f"{f'{k}×{n}':>10} {m:>4} {threads:>3} " + " ".join(f"{t[v] * 1e3:>8.2f}" for v in VARIANTS)
                      + f"  {ratios} {t['fused'] / t['nbits4']:>9.2f}   (fused vs fp32: rel err {err:.1e})")
                if m == 1 and threads == 1:
                    print(f"{'':>19}fused at M = 1, 1 thread: {t['fused'] / (k * n) * 1e9:.3f} ns per weight "
                          "(decode + multiply)")
                del sessions
        print("resident weight bytes: " + ", ".join(f"{v} {sizes[v]:,} ({sizes[v] / sizes['fp32']:.3f}×)"
                                                    for v in VARIANTS))
    names = args.models if args.models is not None else (["minilm"] if args.quick else list(fused_e2e.MODELS))
    if names:
        fused_e2e.run(names, thread_counts, budget, args.clock == "cpu", time_variants)


if __name__ == "__main__":
    main()
