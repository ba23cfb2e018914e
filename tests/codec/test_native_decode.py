"""The converter's native check of each encoding (hyperonnx/codec/native.py: decode, sqnr_sums;
custom_ops/src/encoders/decode.cc) and grid's native rANS: the library decodes every codec to numpy's exact bits,
its SQNR sums are numpy's to the last bit, it refuses a corrupt blob loudly, grid's streams are numpy's bytes, and
without the library numpy does all of it."""

from __future__ import annotations

import numpy as np
import pytest
from native_identity import corner_tensors

import hyperonnx.codec as codec
from hyperonnx.codec import base, grid, native
from hyperonnx.passes import compress

needs_decoding = pytest.mark.skipif(native.library_path() is None, reason="libhyperonnx_encoders.so is not built")

# (codec, options) pairs covering every decoder: table codecs, fixed-rate blocks, entropy-coded streams with and
# without the rank-1 term (format 2), tiny and odd blocks.
SETTINGS = [
    ("paper", {}), ("kronecker", {}), ("blockvq", {}), ("blockvq", {"bits": 3}),
    ("blocktcq", {}), ("blocktcq", {"bits": 2, "block": 24}), ("blocktcq", {"bits": 8, "block": 7}),
    ("ecsq", {}), ("ecsq", {"step": 0.05, "block": 7, "rank1": 0}),
    ("tcq", {}), ("tcq", {"step": 2.0, "block": 1}), ("tcq", {"step": 0.03, "block": 13, "rank1": 0}),
]


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


def _numpy_sums(x: np.ndarray, y: np.ndarray, chunk: int = 1 << 20) -> tuple[float, float]:
    """compress.sqnr_db's numpy loop, written out: the specification of the library's sums."""
    x_all, y_all = x.reshape(-1), y.reshape(-1)
    signal = noise = 0.0
    for start in range(0, x_all.size, chunk):
        xs = x_all[start : start + chunk].astype(np.float64)
        noise += float(((xs - y_all[start : start + chunk].astype(np.float64)) ** 2).sum())
        signal += float((xs**2).sum())
    return signal, noise


@needs_decoding
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
def test_native_decode_gives_numpy_bits_for_every_codec(dtype):
    rng = np.random.default_rng(31)
    checked = 0
    for label, x in corner_tensors(rng):
        with np.errstate(all="ignore"):
            x = np.asarray(x).astype(base.dtype_from_name(dtype))
        for name, options in SETTINGS:
            try:
                with np.errstate(all="ignore"):
                    enc = codec.encode(x, name, **options)
                    want = codec.decode(enc)
            except (ValueError, IndexError):  # a setting this tensor cannot take (numpy refuses it): nothing to decode
                continue
            got = native.decode(enc)
            assert got is not None and got.dtype == want.dtype and got.shape == want.shape, (label, name)
            assert _bits(got) == _bits(want), (label, name, options, dtype)
            checked += 1
    assert checked > 100


@needs_decoding
@pytest.mark.parametrize("block", [2, 3, 5, 2047, 2049, 4096])
def test_tcq_trellis_walk_across_chunks_and_block_ends(block):
    """The decoder walks the trellis four symbols a load and 2048 symbols a chunk: blocks that end off a multiple
    of four, and blocks longer than a chunk (the state carried across it), decode to numpy's bits."""
    x = np.random.default_rng(block).standard_normal(3 * 4096 + 17).astype(np.float32)
    enc = codec.encode(x, "tcq", step=0.05, block=block, rank1=0)
    assert _bits(native.decode(enc)) == _bits(codec.decode(enc))


@needs_decoding
def test_native_decode_of_grid_and_rank1_encodings():
    """grid (rANS with per-block contexts, transposed layout) and a rank-1 term large enough to be kept."""
    rng = np.random.default_rng(7)
    d = rng.uniform(0.001, 0.02, 24).astype(np.float16)
    m = -(d.astype(np.float32) * 8).astype(np.float16)
    q = rng.integers(0, 16, 24 * 32)
    for transpose in (0, 1):
        enc = grid.pack((32, 24), 32, transpose, d, m, q)
        assert _bits(native.decode(enc)) == _bits(codec.decode(enc))
    low_rank = (np.outer(rng.standard_normal(64), rng.standard_normal(96)) + 0.01 * rng.standard_normal((64, 96)))
    for name in ("ecsq", "tcq"):
        enc = codec.encode(low_rank.astype(np.float32), name)
        assert enc.format_version == 2
        assert _bits(native.decode(enc)) == _bits(codec.decode(enc))


@needs_decoding
def test_native_decode_refuses_a_corrupt_blob():
    enc = codec.encode(np.random.default_rng(1).standard_normal(5000).astype(np.float32), "tcq")
    blob = enc.blob.copy()
    blob[-3:] ^= 0xFF  # the stream's last words: its final state check fails
    from dataclasses import replace

    with pytest.raises(RuntimeError, match="tcq"):
        native.decode(replace(enc, blob=blob))
    with pytest.raises(RuntimeError, match="tcq"):
        native.decode(replace(enc, blob=enc.blob[:-1]))


@needs_decoding
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
def test_sqnr_sums_are_numpy_sums_to_the_last_bit(dtype):
    """Sizes about numpy's pairwise blocks (8, 128) and compress.sqnr_db's chunks (2^20), values over many
    magnitudes (the order of the float64 additions shows), and inf/NaN where the dtype has them."""
    rng = np.random.default_rng(11)
    dt = base.dtype_from_name(dtype)
    span = 3 if dtype == "float16" else 6  # within the dtype's range: no overflow, the sums' order still shows
    for n in (0, 1, 7, 8, 9, 127, 128, 129, 1000, 8193, (1 << 20) - 1, (1 << 20) + 9, 3 * (1 << 20) + 100):
        with np.errstate(all="ignore"):
            x = (rng.standard_normal(n) * 10.0 ** rng.uniform(-span, span, n)).astype(dt)
            y = (x.astype(np.float64) * (1 + 1e-3 * rng.standard_normal(n))).astype(dt)
        got, want = native.sqnr_sums(x, y), _numpy_sums(x, y)
        assert got == want and np.isfinite(want).all(), (dtype, n)
    x = np.array([1.0, np.inf, 2.0] * 5, dtype=dt)
    with np.errstate(invalid="ignore"):
        want = _numpy_sums(x, x)
    assert np.array_equal(native.sqnr_sums(x, x), want, equal_nan=True) and np.isnan(want[1])


@needs_decoding
def test_encode_tensor_measures_through_the_library(monkeypatch):
    """compress.encode_tensor's SQNR is the same number whether the library or numpy decodes and sums, and the
    library does both (numpy's decoder never runs)."""
    x = np.random.default_rng(5).standard_normal((3, 1000, 77)).astype(np.float32)
    monkeypatch.setenv(native.ENV, "0")
    want = compress.encode_tensor(x, "tcq", {"step": 0.1})
    monkeypatch.setenv(native.ENV, "1")
    monkeypatch.setattr(codec, "decode", lambda enc: pytest.fail("numpy decoded"))
    got = compress.encode_tensor(x, "tcq", {"step": 0.1})
    assert got[1] == want[1] and _bits(got[0].blob) == _bits(want[0].blob)


def test_without_the_library_numpy_decodes_and_sums(monkeypatch):
    monkeypatch.setenv(native.ENV, "0")
    x = np.random.default_rng(2).standard_normal(3000).astype(np.float16)
    enc = codec.encode(x, "ecsq")
    assert native.decode(enc) is None and native.sqnr_sums(x, x) is None
    decoded = codec.decode(enc)
    assert compress.encode_tensor(x, "ecsq", {})[1] == compress.sqnr_db(x, decoded)
    assert compress.sqnr_db(x, decoded) == 10 * np.log10(_numpy_sums(x, decoded)[0] / _numpy_sums(x, decoded)[1])


@needs_decoding
def test_grid_streams_are_the_same_bytes_natively(monkeypatch):
    """grid's context-coded streams (rans.Mixed), coded by the library from each symbol's (freq, cum): the blob
    numpy alone writes, for a Q4_1-like tensor found by detect and for a packed one."""
    rng = np.random.default_rng(3)
    d = rng.uniform(0.001, 0.02, (96, 1)).astype(np.float16).astype(np.float32)
    m = (-d * rng.uniform(0, 15, (96, 1))).astype(np.float16).astype(np.float32)
    q = rng.integers(0, 16, (96, 32))
    q[:, :2] = (0, 15)  # every block spans the 4-bit range, as GGUF's Q4_1 blocks do
    x = ((d * q.astype(np.float32)).astype(np.float32) + m).reshape(48, 64)
    levels = rng.integers(-8, 8, 40 * 32)
    blobs = []
    for flag in ("1", "0"):
        monkeypatch.setenv(native.ENV, flag)
        found = grid.detect(x)
        packed = grid.pack((40, 32), 32, 0, d[:40, 0], m[:40, 0], levels)
        assert found is not None
        blobs.append((found.blob.tobytes(), packed.blob.tobytes()))
    assert blobs[0] == blobs[1]
    freq, cum = np.array([0, 4096]), np.array([0, 0])  # a symbol without frequency: numpy's error, not the library's
    monkeypatch.setenv(native.ENV, "1")
    assert native.rans_encode_pairs(freq, cum) is None


@needs_decoding
def test_library_holds_the_decoders_without_onnxruntime():
    """The decoder core compiled into the encoders library: it exports only its hx_* C entry points (the decode
    and SQNR ones among them) and needs no ONNX Runtime."""
    import shutil
    import subprocess

    if shutil.which("nm") is None or shutil.which("readelf") is None:
        pytest.skip("binutils (nm, readelf) not installed")
    path = native.library_path()
    symbols = subprocess.run(["nm", "-D", "--defined-only", path], capture_output=True, text=True, check=True).stdout
    exported = {line.split()[-1] for line in symbols.splitlines() if line.split()[-2:-1] == ["T"]}
    assert {"hx_decode", "hx_sqnr_sums", "hx_rans_encode_pairs"} <= exported
    assert all(name.startswith("hx_") for name in exported), sorted(exported)
    needed = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True).stdout
    assert "NEEDED" in needed and "onnxruntime" not in needed
