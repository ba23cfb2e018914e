"""The library's rANS loops (scalar, AVX2, AVX-512: custom_ops/src/codecs/rans_simd.cc) on streams numpy's encoder
wrote (hyperonnx/codec/rans.py): ecsq, tcq and grid tensors with streams of 16 lanes or more, where the vector loops
run, decode natively to numpy's bits with HYPERONNX_RANS_ISA pinning each loop, as a user pins it (the library reads
it once per process: one process per loop), and a damaged blob fails with the same message on every loop.
hyperonnx_rans_test (ctest rans_vector) compares the loops call by call on random, truncated and corrupt streams."""

from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hyperonnx.codec as codec
from hyperonnx.codec import grid, native, rans

ROOT = Path(__file__).parents[2]

needs_decoding = pytest.mark.skipif(native.library_path() is None, reason="libhyperonnx_encoders.so is not built")

# Decodes the pickled encodings natively; prints a pickled list of (decoded bytes or None, error message or "").
CHILD = """
import pickle, sys
from hyperonnx.codec import native
out = []
for enc in pickle.load(open(sys.argv[1], "rb")):
    try:
        out.append((native.decode(enc).tobytes(), ""))
    except RuntimeError as exc:
        out.append((None, str(exc)))
sys.stdout.buffer.write(pickle.dumps(out))
"""


def _numpy_encodings() -> list[codec.Encoded]:
    """Streams from numpy's rANS encoder: ecsq (blocks of 7: 1/7 side symbols, odd calls), tcq, and grid's
    context-coded levels (a model switch every block of 32)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal(150_000).astype(np.float32)
    q = rng.integers(-8, 8, 96_000)
    d = rng.uniform(0.001, 0.02, 3000).astype(np.float16)
    m = (-d.astype(np.float32) * 8).astype(np.float16)
    return [codec.encode(x, "ecsq", step=0.05, block=7, rank1=0), codec.encode(x[:100_000], "tcq"),
            grid.pack((3000, 32), 32, 0, d, m, q)]


def _decode_with(isa: str, encodings: list, tmp_path: Path) -> list[tuple[bytes | None, str]]:
    path = tmp_path / "encodings.pkl"
    path.write_bytes(pickle.dumps(encodings))
    env = {k: v for k, v in os.environ.items() if k not in ("HYPERONNX_RANS_ISA", native.ENV)}
    if isa:  # "": unset, the widest loop this CPU runs
        env["HYPERONNX_RANS_ISA"] = isa
    r = subprocess.run([sys.executable, "-c", CHILD, str(path)], env=env, cwd=ROOT, capture_output=True, check=True)
    return pickle.loads(r.stdout)


@needs_decoding
def test_every_rans_loop_decodes_numpy_streams_to_numpy_bits(tmp_path, monkeypatch):
    monkeypatch.setenv(native.ENV, "0")  # numpy's encoders, numpy's rANS streams
    encodings = _numpy_encodings()
    monkeypatch.delenv(native.ENV)
    want = [codec.decode(enc).tobytes() for enc in encodings]
    for enc in encodings:  # every stream in the vector loops' range (numpy's own lane rule)
        assert rans.lanes_for(int(np.prod(enc.shape))) >= 16
    # Damaged copies: the last 2 bytes cut (the words run out at some symbol), a word's bits flipped mid-stream.
    damaged = []
    for enc in encodings:
        blob = enc.blob.copy()
        blob[blob.size // 2] ^= 0x5A
        damaged += [dataclasses.replace(enc, blob=enc.blob[:-2]), dataclasses.replace(enc, blob=blob)]
    results = {isa: _decode_with(isa, encodings + damaged, tmp_path) for isa in ("scalar", "avx2", "")}
    for isa, got in results.items():
        assert [g for g, _ in got[: len(encodings)]] == want, f"HYPERONNX_RANS_ISA={isa}"
        assert got[len(encodings):] == results["scalar"][len(encodings):], isa
    failures = [message for _, message in results["scalar"][len(encodings):] if message]
    assert len(failures) >= 3 and any("ran out of words" in m or "truncated" in m for m in failures), failures
