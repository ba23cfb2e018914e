"""The native rANS encoder alone (custom_ops/src/encoders/rans.cc, docs/encoders.md): the vector walk (16 lanes at
a time, AVX-512 VBMI2, where the CPU has it) against the portable walk, on the same streams in interleaved rounds.

    .venv/bin/python benchmarks/rans_encode.py [--symbols 8e6] [--rounds 15] [--step 0.1] [--baseline LIB] [--json]

The stream is tcq-like: N(0, 1) weights at --step 0.1 (levels j, symbols (j >> 1) + 127, about 4.4 bits each,
within 48 values: looked up in registers) and one scale code per block of 64 (a second phase and model), as one
`rans.encode` call; --step 0.07 spreads the levels over 71 values (registers still), 0.02 over 236 (gathers).
HYPERONNX_ENCODERS_ISA=256 selects the portable walk (rans_walk.h). --baseline times another build of the library
too (e.g. main's, copied aside before rebuilding). Each walk is timed as one `hx_rans_encode` call into a reused
output buffer (the Python-side preparation and the fresh buffer's page faults of `native.rans_encode` left out):
the calling thread's CPU time, medians (and minima) of interleaved rounds. Every stream is checked against numpy's
`rans.encode`.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hyperonnx.codec import native, rans  # noqa: E402

ISA_ENV = "HYPERONNX_ENCODERS_ISA"


def tcq_like_phases(count: int, step: float = 0.1, seed: int = 0) -> list[tuple[np.ndarray, rans.Model]]:
    rng = np.random.default_rng(seed)
    levels = np.rint(rng.standard_normal(count) / step).astype(np.int64)
    symbols = np.clip((levels >> 1) + 127, 0, 255).astype(np.uint8)
    scales = np.clip(np.rint(rng.normal(128, 2, max(1, count // 64))), 0, 255).astype(np.uint8)
    return [(s, rans.Model.fit(s)) for s in (symbols, scales)]


class Call:
    """One hx_rans_encode call on fixed arguments, into a reused buffer, in the library at ``path``."""

    def __init__(self, path: str, phases) -> None:
        self.lib = ctypes.CDLL(path)
        self.lib.hx_rans_bound.restype = ctypes.c_uint64
        self.symbols = [np.ascontiguousarray(s) for s, _ in phases]
        self.freq = np.zeros((len(phases), 256), dtype=np.uint32)
        self.cum = np.zeros((len(phases), 256), dtype=np.uint32)
        for p, (_, model) in enumerate(phases):
            self.freq[p, model.lo : model.lo + model.freq.size] = model.freq
            self.cum[p, model.lo : model.lo + model.cum.size] = model.cum
        self.counts = np.array([s.size for s in self.symbols], dtype=np.uint64)
        self.pointers = (ctypes.c_void_p * len(self.symbols))(*[s.ctypes.data for s in self.symbols])
        self.out = np.ones(self.lib.hx_rans_bound(ctypes.c_uint64(int(self.counts.sum()))), dtype=np.uint8)

    def __call__(self) -> tuple[float, bytes]:
        size = ctypes.c_uint64(0)
        ptr = ctypes.c_void_p
        start = time.thread_time()
        rc = self.lib.hx_rans_encode(len(self.symbols), self.pointers, ptr(self.counts.ctypes.data),
                                     ptr(self.freq.ctypes.data), ptr(self.cum.ctypes.data), ptr(self.out.ctypes.data),
                                     ctypes.c_uint64(self.out.size), ctypes.byref(size))
        elapsed = time.thread_time() - start
        if rc != 0:
            raise SystemExit(f"hx_rans_encode returned {rc}")
        return elapsed, self.out[: size.value].tobytes()


def with_isa(isa: str | None, call: Call) -> tuple[float, bytes]:
    saved = os.environ.get(ISA_ENV)
    if isa is None:
        os.environ.pop(ISA_ENV, None)
    else:
        os.environ[ISA_ENV] = isa
    try:
        return call()
    finally:
        if saved is None:
            os.environ.pop(ISA_ENV, None)
        else:
            os.environ[ISA_ENV] = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=float, default=8e6)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--step", type=float, default=0.1,
                        help="the weights' step: 0.02 spreads the symbols over more than 128 values (gathers)")
    parser.add_argument("--baseline", help="another build of libhyperonnx_encoders.so to time alongside")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    phases = tcq_like_phases(int(args.symbols), args.step)
    total = sum(s.size for s, _ in phases)
    path = native.library_path()
    if path is None:
        raise SystemExit("the native encoder library is not available")
    here = Call(path, phases)
    walks = {"portable": lambda: with_isa("256", here), "vector": lambda: with_isa(None, here)}
    if args.baseline:
        walks["baseline"] = Call(args.baseline, phases)
    times: dict[str, list[float]] = {name: [] for name in walks}
    want = rans.encode(phases)
    for _ in range(args.rounds):
        for name, walk in walks.items():
            elapsed, blob = walk()
            if blob != want:
                raise SystemExit(f"the {name} walk's stream differs from numpy's")
            times[name].append(elapsed)
    row = {"symbols": total, "lanes": rans.lanes_for(total), "stream_bytes": len(want),
           "load_average": round(os.getloadavg()[0], 2)}
    for name, values in times.items():
        row[f"{name}_ms"] = round(1e3 * statistics.median(values), 2)
        row[f"{name}_min_ms"] = round(1e3 * min(values), 2)
        row[f"{name}_ns_per_symbol"] = round(1e9 * statistics.median(values) / total, 3)
    before = statistics.median(times["baseline" if args.baseline else "portable"])
    row["speedup"] = round(before / statistics.median(times["vector"]), 2)
    if args.json:
        print(json.dumps(row))
    else:
        for key, value in row.items():
            print(f"{key:>26}: {value}")


if __name__ == "__main__":
    main()
