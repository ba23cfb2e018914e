"""Concurrent Run calls on one session give identical, correct outputs (thread-safe Compute)."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from test_ops_decode import LIBRARY, attributes, decode_model, save

from hyperonnx import codec, runtime
from hyperonnx.codec import bitpack

pytestmark = pytest.mark.skipif(LIBRARY is None, reason="op library not built")


@pytest.mark.parametrize("mode", ["load", "call", "init"])
@pytest.mark.parametrize("constant", [True, False], ids=["initializer", "graph-input"])
def test_eight_threads_one_session(tmp_path, mode, constant):
    # 1.2M weights: above the library's parallel-decode threshold, so decode threads run inside each Run too.
    w = (np.random.default_rng(3).standard_normal((1200, 1000)) * 0.02).astype(np.float32)
    enc = codec.encode(w, "paper")
    ref = codec.decode(enc)
    path = save(decode_model(attributes(enc), enc.blob if constant else None), tmp_path)
    sess = runtime.session(path, mode=mode)
    feeds = {} if constant else {"blob": enc.blob}

    def work(_: int) -> list[bytes]:
        return [sess.run(None, feeds)[0].tobytes() for _ in range(3)]

    with ThreadPoolExecutor(8) as pool:
        results = [r for rs in pool.map(work, range(8)) for r in rs]
    assert len(results) == 24
    assert all(r == ref.tobytes() for r in results)


@pytest.mark.parametrize("mode", ["load", "call"])
def test_eight_threads_kronecker(tmp_path, mode):
    """kronecker N = 3 (12-byte float32 rows) above the parallel threshold, on 8 Run threads at once."""
    small = codec.encode((np.random.default_rng(4).standard_normal(999) * 0.02).astype(np.float32), "kronecker",
                         N=3, U=4096)
    shape = (1100, 1001)  # odd: a partial last group; codes are random (encoding 1.1M weights would be slow)
    count = -(-shape[0] * shape[1] // 3)
    codes = np.random.default_rng(5).integers(0, 4096, size=count, dtype=np.uint64)
    enc = dataclasses.replace(small, shape=shape, blob=bitpack.pack(codes, small.bits))
    ref = codec.decode(enc)
    sess = runtime.session(save(decode_model(attributes(enc), enc.blob), tmp_path), mode=mode)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: sess.run(None, {})[0].tobytes(), range(16)))
    assert all(r == ref.tobytes() for r in results)


@pytest.mark.parametrize("mode", ["load", "call", "init"])
@pytest.mark.parametrize("constant", [True, False], ids=["initializer", "graph-input"])
def test_eight_threads_blockvq(tmp_path, mode, constant):
    """blockvq (bits 5, blocks of 32: the C++ fused path; streaming stores) above the parallel threshold, 8 Run
    threads at once, bit-exact vs the numpy reference. Codes and headers are random (encoding 1.1M weights with
    the numpy encoder would be slow); every 10-bit header is a valid (scale code, codebook)."""
    small = codec.encode((np.random.default_rng(8).standard_normal(999) * 0.02).astype(np.float32), "blockvq",
                         bits=5, block=32)
    shape = (1100, 1001)  # odd: a partial last block and pair
    numel = shape[0] * shape[1]
    rng = np.random.default_rng(9)
    theta = rng.integers(0, 1 << 10, size=-(-numel // 2), dtype=np.uint64)
    headers = rng.integers(0, 1 << 10, size=-(-numel // 32), dtype=np.uint64)
    blob = np.concatenate([bitpack.pack(theta, 10), bitpack.pack(headers, 10)])
    enc = dataclasses.replace(small, shape=shape, blob=blob)
    ref = codec.decode(enc).tobytes()
    path = save(decode_model(attributes(enc), enc.blob if constant else None), tmp_path)
    sess = runtime.session(path, mode=mode)
    feeds = {} if constant else {"blob": enc.blob}
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: sess.run(None, feeds)[0].tobytes(), range(16)))
    assert all(r == ref for r in results)


@pytest.mark.parametrize("mode", ["load", "call", "init"])
@pytest.mark.parametrize("constant", [True, False], ids=["initializer", "graph-input"])
def test_eight_threads_blocktcq(tmp_path, mode, constant):
    """blocktcq (bits 5, blocks of 33: odd, so blocks straddle the decoder's chunks and thread ranges) above the
    parallel threshold, 8 Run threads at once, bit-exact vs the numpy reference. Codes and headers are random
    (encoding 1.1M weights with the numpy encoder would be slow); every θ and every 10-bit header is valid."""
    small = codec.encode((np.random.default_rng(10).standard_normal(999) * 0.02).astype(np.float32), "blocktcq",
                         bits=5, block=33)
    shape = (1100, 1001)  # a partial last block
    numel = shape[0] * shape[1]
    rng = np.random.default_rng(11)
    theta = rng.integers(0, 1 << 5, size=numel, dtype=np.uint64)
    headers = rng.integers(0, 1 << 10, size=-(-numel // 33), dtype=np.uint64)
    blob = np.concatenate([bitpack.pack(theta, 5), bitpack.pack(headers, 10)])
    enc = dataclasses.replace(small, shape=shape, blob=blob)
    ref = codec.decode(enc).tobytes()
    path = save(decode_model(attributes(enc), enc.blob if constant else None), tmp_path)
    sess = runtime.session(path, mode=mode)
    feeds = {} if constant else {"blob": enc.blob}
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: sess.run(None, feeds)[0].tobytes(), range(16)))
    assert all(r == ref for r in results)
