"""Decode throughput of the HyperDecode op library through ONNX Runtime (docs/ops.md, "Measurements").

    .venv/bin/python benchmarks/decode.py [--codec paper|kronecker|blockvq|tcq|ecsq] [--quick]
    (also: benchmarks/runtime.py --decode-only [--codec ...], the name docs/ops.md quotes)

The kernel regenerates a large synthetic float32 tensor (16M weights, paper codec at its defaults, or --codec
kronecker: N=2, U=4096, --codec blockvq: bits 5, blocks of 32, or the entropy-coded --codec tcq / ecsq: N(0, 1)
weights at step 0.1, about 35 dB, blocks of 64, one rANS stream a 8 M weights) at 1 and 2 decode threads, against copying the
same decoded bytes with one numpy copy (np.copyto into a reused buffer: glibc's memcpy, one thread). Ratio > 1:
decoding is faster than copying the result. The three are timed in interleaved rounds, so a load change on the
machine hits them alike; the load average is printed, as other processes on a small machine skew the 2-thread
numbers (then compare the fastest rounds, also printed: a 3 ms decode preempted once by another process takes
7 ms).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hyperonnx import codec, runtime  # noqa: E402
from hyperonnx.codec import bitpack  # noqa: E402

PARAMS = {"paper": "n=1600, rings=3", "kronecker": "N=2, U=4096", "blockvq": "bits=5, block=32",
          "tcq": "step=0.1, block=64", "ecsq": "step=0.1, block=64"}
ENTROPY_CODED = {"tcq", "ecsq"}


def hyperdecode_attributes(enc: codec.Encoded, mode: str = "load") -> dict:
    attrs = {"codec": enc.codec, "format": enc.format_version, "shape": list(enc.shape), "dtype": 1,
             "group": enc.group, "bits": enc.bits, "mode": mode}
    attrs.update({f"i_{k}": list(v) for k, v in enc.ints.items()})
    attrs.update({f"f_{k}": list(v) for k, v in enc.floats.items()})
    return attrs


def synthetic_encoding(shape: tuple[int, ...], seed: int = 0, codec_name: str = "paper") -> codec.Encoded:
    """Side information from a small sample (the codec's defaults), with uniformly random codes for the full size
    (the numpy encoder would take minutes on millions of weights; the decoder's speed does not depend on the
    codes)."""
    rng = np.random.default_rng(seed)
    if codec_name in ENTROPY_CODED:  # rANS streams cannot be made of random codes: encode real weights (native)
        weights = rng.standard_normal(int(np.prod(shape)), dtype=np.float32).reshape(shape)
        return codec.encode(weights, codec_name, step=0.1, block=64, rank1=0)
    small = codec.encode((rng.standard_normal(4096) * 0.02).astype(np.float32), codec_name)
    if small.codec == "blockvq":  # no table: random pair codes, then random block headers (scale code, codebook)
        numel, block = int(np.prod(shape)), small.ints["block"][0]
        theta = rng.integers(0, 1 << small.bits, size=-(-numel // 2), dtype=np.uint64)
        headers = rng.integers(0, 48, size=-(-numel // block), dtype=np.uint64) | (
            rng.integers(0, 4, size=-(-numel // block), dtype=np.uint64) << np.uint64(8))
        blob = np.concatenate([bitpack.pack(theta, small.bits), bitpack.pack(headers, 10)])
        return dataclasses.replace(small, shape=tuple(shape), blob=blob)
    entries = codec.table(small).shape[0]
    count = -(-int(np.prod(shape)) // small.group)
    codes = rng.integers(0, entries, size=count, dtype=np.uint64)
    bits = max(1, (entries - 1).bit_length())
    return dataclasses.replace(small, shape=tuple(shape), bits=bits, blob=bitpack.pack(codes, bits))


def decode_throughput(weights: int, repeat: int, codec_name: str = "paper") -> dict:
    enc = synthetic_encoding((weights,), codec_name=codec_name)
    decoded = codec.decode(enc)
    attrs = hyperdecode_attributes(enc, "call")
    graph = helper.make_graph(
        [helper.make_node("HyperDecode", ["theta"], ["W"], domain="ai.hyperonnx", **attrs)], "decode", [],
        [helper.make_tensor_value_info("W", TensorProto.FLOAT, [weights])],
        initializer=[numpy_helper.from_array(enc.blob, "theta")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.hyperonnx", 1)],
                              ir_version=8).SerializeToString()
    runs: dict[object, Callable[[], object]] = {}
    outputs = {}
    for threads in (1, 2):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(model, runtime.session_options("call", threads=threads, options=so),
                                    providers=["CPUExecutionProvider"])
        outputs[threads] = out = np.empty_like(decoded)
        binding = sess.io_binding()
        binding.bind_ortvalue_output("W", ort.OrtValue.ortvalue_from_numpy(out))  # decode into a reused buffer
        runs[threads] = lambda s=sess, b=binding: s.run_with_iobinding(b)
    dst = np.empty_like(decoded)
    runs["copy"] = lambda: np.copyto(dst, decoded)
    times: dict[object, list[float]] = {key: [] for key in runs}
    for fn in runs.values():  # warm-up: page faults, thread start
        fn()
    for _ in range(repeat):  # interleaved, so load changes hit all three alike
        for key, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    for out in outputs.values():
        assert out.tobytes() == decoded.tobytes(), "kernel output differs from the reference"
    t_copy = statistics.median(times["copy"])
    rows = [{"threads": t, "decode_ms": statistics.median(times[t]) * 1e3, "min_ms": min(times[t]) * 1e3}
            for t in (1, 2)]
    for r in rows:
        r["ns_per_code"] = r["decode_ms"] * 1e6 / enc.count
        r["decode_GBps"] = decoded.nbytes / r["decode_ms"] / 1e6
        r["ratio"] = t_copy * 1e3 / r["decode_ms"]
        r["min_ratio"] = min(times["copy"]) * 1e3 / r["min_ms"]
    return {"codes": enc.count, "bits_per_weight": 8 * enc.blob.size / weights, "copy_ms": t_copy * 1e3, "copy_min_ms": min(times["copy"]) * 1e3,
            "copy_GBps": decoded.nbytes / t_copy / 1e9, "rows": rows}


def report(codec_name: str, quick: bool) -> None:
    weights, repeat = (1 << 20, 5) if quick else (1 << 24, 31)
    print(f"onnxruntime {ort.__version__}, {os.cpu_count()} CPUs, library {runtime.library_path()}")
    load = os.getloadavg()[0]
    tp = decode_throughput(weights, repeat, codec_name)
    print(f"\ndecode throughput, {weights / 2**20:.0f}M float32 weights ({codec_name} codec, {PARAMS[codec_name]}, "
          f"{tp['bits_per_weight']:.2f} bits a weight), median of {repeat} interleaved rounds; load average {load:.2f} -> "
          f"{os.getloadavg()[0]:.2f}")
    print(f"   copy (np.copyto, 1 thread): {tp['copy_ms']:.2f} ms, {tp['copy_GBps']:.1f} GB/s "
          f"(min {tp['copy_min_ms']:.2f} ms)")
    print(f"{'threads':>7} {'decode ms':>10} {'ns/code':>8} {'GB/s':>6} {'decode vs copy':>15} {'min ms':>7} "
          f"{'min vs min':>11}")
    for r in tp["rows"]:
        print(f"{r['threads']:>7} {r['decode_ms']:>10.2f} {r['ns_per_code']:>8.3f} {r['decode_GBps']:>6.1f} "
              f"{r['ratio']:>14.2f}x {r['min_ms']:>7.2f} {r['min_ratio']:>10.2f}x")
    print("   (min: the fastest round, the one least disturbed by other processes; with the load average above "
          "the core count, compare mins)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1M weights, 5 rounds (smoke test)")
    parser.add_argument("--codec", choices=tuple(PARAMS), default="paper",
                        help="codec of the synthetic tensor (blockvq: its defaults, bits 5, blocks of 32)")
    args = parser.parse_args()
    report(args.codec, args.quick)


if __name__ == "__main__":
    main()
