"""Decode rate of the library's decoder core for the entropy-coded codecs, without ONNX Runtime.

    .venv/bin/python benchmarks/decode_core.py [--weights 4194304] [--rounds 15] [--codecs tcq,ecsq,grid]

The converter's check of each encoding decodes this way (hyperonnx.codec.native.decode, the encoders library's
copy of the decoder core), as `verify` and the fast path decode every tensor with the same code. One decode thread;
each figure is the median CPU time of that thread over ``--rounds`` decodes (rounds interleaved across the codecs),
so other processes on a shared machine distort it less than wall time. tcq and ecsq: N(0, 1) float32 weights at
their defaults; grid: a Q4_1-like tensor (float16 steps and offsets per block of 32, 4-bit levels), the weights it
stores exactly. To compare two builds, run each with HYPERONNX_ENCODERS_LIBRARY set, alternating in the same minutes;
HYPERONNX_RANS_ISA=scalar|avx2 pins the rANS loop (docs/ops.md, "The rANS loop").
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hyperonnx import codec  # noqa: E402
from hyperonnx.codec import grid, native  # noqa: E402


def grid_tensor(weights: int, rng: np.random.Generator) -> np.ndarray:
    blocks = weights // 32
    d = rng.uniform(0.001, 0.02, (blocks, 1)).astype(np.float16).astype(np.float32)
    m = (-d * rng.uniform(0, 15, (blocks, 1))).astype(np.float16).astype(np.float32)
    q = np.clip(np.rint(rng.standard_normal((blocks, 32)) * 3 + 7.5), 0, 15)
    q[:, :2] = (0, 15)  # every block spans the 4-bit range, as GGUF's Q4_1 blocks do
    return ((d * q.astype(np.float32)).astype(np.float32) + m).reshape(-1)


def encodings(names: list[str], weights: int) -> dict[str, codec.Encoded]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(weights).astype(np.float32)
    out = {}
    for name in names:
        enc = grid.detect(grid_tensor(weights, rng)) if name == "grid" else codec.encode(x, name)
        if enc is None:
            raise SystemExit(f"{name}: no encoding")
        out[name] = enc
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=int, default=1 << 22, help="weights a tensor (default 4 Mi)")
    parser.add_argument("--rounds", type=int, default=15, help="timed decodes a codec (default 15)")
    parser.add_argument("--codecs", default="tcq,ecsq,grid", help="comma-separated, of tcq, ecsq, grid")
    args = parser.parse_args()
    if not native.available():
        raise SystemExit(f"the encoders library is not usable: {native.describe()}")
    native.set_threads(1)
    encs = encodings(args.codecs.split(","), args.weights - args.weights % 32)
    times: dict[str, list[float]] = {name: [] for name in encs}
    for enc in encs.values():  # warm-up: page faults, the first call's tables
        native.decode(enc)
    for _ in range(args.rounds):
        for name, enc in encs.items():
            start = time.thread_time()
            native.decode(enc)
            times[name].append(time.thread_time() - start)
    print(f"library {native.library_path()}; one thread, median CPU time of {args.rounds} interleaved rounds")
    for name, enc in encs.items():
        ns = statistics.median(times[name]) / enc.count * 1e9 if enc.count else 0.0
        bits = 8 * enc.blob.size / int(np.prod(enc.shape))
        print(f"  {name:5} {int(np.prod(enc.shape)) / 2**20:.0f} Mi weights, {bits:.2f} bits a weight: "
              f"{ns:.3f} ns a weight, {1e3 / ns if ns else 0:.0f} M weights/s")


if __name__ == "__main__":
    main()
