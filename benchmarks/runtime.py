"""Runtime benchmark of the HyperDecode op library (docs/ops.md, "Measurements").

    .venv/bin/python benchmarks/runtime.py            # about a minute on 2 cores; --quick for a smoke run

1. Decode throughput: the kernel regenerating a large synthetic float32 tensor (16M weights, paper codec at its
   defaults, or --codec kronecker: N=2, U=4096, or --codec blockvq: bits 5, blocks of 32) at 1 and 2 decode threads vs copying the same decoded bytes with
   one numpy copy (np.copyto into a reused buffer: glibc's memcpy, one thread). Ratio > 1: decoding is faster
   than copying the result. The three are timed in interleaved rounds, so a load change on the machine hits
   them alike; the load average is printed, as other processes on a small machine skew the 2-thread numbers
   (then compare the fastest rounds, also printed: a 3 ms decode preempted once by another process takes 7 ms).
2. Per model (MODELS below; real models can be appended), each variant in a fresh process: session load time,
   peak RSS during load (above the process's RSS before the session), and median Run latency, with ratios vs
   the original model:
     original  plain float32 initializers
     load      HyperDecode kernel, decoded once, cached tensor copied into the output on every Run
     call      HyperDecode kernel, decoded on every Run
     init      hyperonnx.runtime.session(mode="init"): decoded once into ordinary initializers
All ratios come from the same invocation on the same machine; medians of repeated runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hyperonnx import codec, runtime  # noqa: E402
from hyperonnx.codec import bitpack  # noqa: E402

VARIANTS = ("original", "load", "call", "init")


# -- models -------------------------------------------------------------------------------------------------
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


def matmul_models(folder: Path, k: int, n: int, batch: int) -> dict[str, Path]:
    """Y = X @ W with W (k x n): the original float32 model and its HyperDecode form."""
    enc = synthetic_encoding((k, n))
    w = codec.decode(enc)
    x_info = helper.make_tensor_value_info("X", TensorProto.FLOAT, [batch, k])
    y_info = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [batch, n])
    opsets = [helper.make_opsetid("", 17)]
    matmul = helper.make_node("MatMul", ["X", "W"], ["Y"])
    original = helper.make_model(helper.make_graph([matmul], "mm", [x_info], [y_info],
                                                   initializer=[numpy_helper.from_array(w, "W")]),
                                 opset_imports=opsets, ir_version=8)
    decode = helper.make_node("HyperDecode", ["W_theta"], ["W"], domain="ai.hyperonnx", name="decode_W",
                              **hyperdecode_attributes(enc))
    compressed = helper.make_model(
        helper.make_graph([decode, matmul], "mm_hx", [x_info], [y_info],
                          initializer=[numpy_helper.from_array(enc.blob, "W_theta")]),
        opset_imports=[*opsets, helper.make_opsetid("ai.hyperonnx", 1)], ir_version=8)
    paths = {"original": folder / "mm.onnx", "compressed": folder / "mm.hx.onnx"}
    onnx.save(original, str(paths["original"]))
    onnx.save(compressed, str(paths["compressed"]))
    return paths


@dataclasses.dataclass
class Model:
    name: str
    build: Callable[[Path], dict[str, Path]]  # folder -> {"original": path, "compressed": path}
    feeds: Callable[[], dict[str, np.ndarray]]


def _mm_feeds(k: int, batch: int) -> Callable[[], dict[str, np.ndarray]]:
    return lambda: {"X": np.random.default_rng(1).standard_normal((batch, k)).astype(np.float32)}


def _realmodels():
    import realmodels  # beside this script; imported late: only the real-model rows need it

    return realmodels


def real_model(get: Callable[[], Path]) -> Callable[[Path], dict[str, Path]]:
    """The real model (benchmarks/realmodels.py) and its conversion with the default codec."""

    def build(folder: Path) -> dict[str, Path]:
        import hyperonnx

        source = get()
        target = folder / (source.stem + ".hx.onnx")
        hyperonnx.convert(source, target)
        return {"original": source, "compressed": target}

    return build


# build() returns the original and the converted model paths, feeds() the inputs of one Run.
MODELS = [
    Model("matmul 2048x2048 (16 MiB fp32), batch 8", lambda d: matmul_models(d, 2048, 2048, 8), _mm_feeds(2048, 8)),
    Model("MobileNetV2, batch 1", real_model(lambda: _realmodels().mobilenet_v2()),
          lambda: {"input": _realmodels().imagenet_inputs(1)[:1]}),
    Model("all-MiniLM-L6-v2, 8 sentences", real_model(lambda: _realmodels().minilm()),
          lambda: _realmodels().minilm_inputs(n=8)),
]


# -- 1. decode throughput --------------------------------------------------------------------------------------
def median_time(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up: page faults, thread start
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
    return {"codes": enc.count, "bits": enc.bits, "copy_ms": t_copy * 1e3, "copy_min_ms": min(times["copy"]) * 1e3,
            "copy_GBps": decoded.nbytes / t_copy / 1e9, "rows": rows}


# -- 2. per-model variants (each in a child process, so RSS and caches start clean) ---------------------------
def status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def reset_peak_rss() -> None:
    """Make VmHWM (peak RSS) restart from the current RSS (Linux >= 4.0), so imports do not count."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def child(variant: str, path: str, model_index: int, runs: int) -> dict:
    feeds = MODELS[model_index].feeds()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1  # compare the decode paths, not ORT's threading
    reset_peak_rss()
    before = status_kib("VmRSS")
    start = time.perf_counter()
    if variant == "original":
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    else:
        sess = runtime.session(path, mode=variant, options=so)
    load_s = time.perf_counter() - start
    peak_kib = status_kib("VmHWM") - before
    latency = median_time(lambda: sess.run(None, feeds), runs)
    return {"load_s": load_s, "peak_load_MiB": peak_kib / 1024, "latency_ms": latency * 1e3}


def compare_models(runs: int, folder: Path) -> list[tuple[str, dict[str, dict]]]:
    results = []
    for index, model in enumerate(MODELS):
        paths = model.build(folder)
        rows = {}
        for variant in VARIANTS:
            path = paths["original" if variant == "original" else "compressed"]
            cmd = [sys.executable, __file__, "--child", variant, str(path), str(index), str(runs)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows[variant] = json.loads(out.strip().splitlines()[-1])
        results.append((model.name, rows))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (smoke test)")
    parser.add_argument("--codec", choices=("paper", "kronecker", "blockvq"), default="paper",
                        help="codec of part 1 (blockvq: its defaults, bits 5, blocks of 32)")
    parser.add_argument("--decode-only", action="store_true", help="part 1 only")
    parser.add_argument("--child", nargs=4, metavar=("VARIANT", "PATH", "MODEL", "RUNS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, path, index, runs = args.child
        print(json.dumps(child(variant, path, int(index), int(runs))))
        return

    weights, repeat, runs = (1 << 20, 5, 20) if args.quick else (1 << 24, 31, 100)
    print(f"onnxruntime {ort.__version__}, {os.cpu_count()} CPUs, library {runtime.library_path()}")
    load = os.getloadavg()[0]
    tp = decode_throughput(weights, repeat, args.codec)
    params = {"paper": "n=1600, rings=3", "kronecker": "N=2, U=4096", "blockvq": "bits=5, block=32"}[args.codec]
    print(f"\n1. decode throughput, {weights / 2**20:.0f}M float32 weights ({args.codec} codec, {params}, "
          f"{tp['bits']}-bit codes), median of {repeat} interleaved rounds; load average {load:.2f} -> "
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
    if args.decode_only:
        return

    print(f"\n2. per model: session load, peak RSS at load, median latency of {runs} runs (intra-op threads 1); "
          "ratios vs original")
    with tempfile.TemporaryDirectory() as tmp:
        for name, rows in compare_models(runs, Path(tmp)):
            base = rows["original"]
            print(f"\n{name}")
            print(f"{'variant':>9} {'load s':>8} {'x':>6} {'peak MiB':>9} {'x':>6} {'latency ms':>11} {'x':>6}")
            for variant, r in rows.items():
                print(f"{variant:>9} {r['load_s']:>8.3f} {r['load_s'] / base['load_s']:>6.2f} "
                      f"{r['peak_load_MiB']:>9.1f} {r['peak_load_MiB'] / max(base['peak_load_MiB'], 1e-9):>6.2f} "
                      f"{r['latency_ms']:>11.3f} {r['latency_ms'] / base['latency_ms']:>6.2f}")


if __name__ == "__main__":
    main()
