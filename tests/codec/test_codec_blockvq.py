"""blockvq's encoder against its written specification (hyperonnx/codec/blockvq.py, _encode_blocks; docs/encoders.md):
the arithmetic order that lets the native encoder match numpy byte for byte, checked by an independent, plain
implementation, with the numpy encoder and with the native one."""

from __future__ import annotations

import numpy as np
import pytest

from hyperonnx.codec import bitpack, blockvq, native

ENCODERS = ["numpy", pytest.param("native", marks=pytest.mark.skipif(native.library_path() is None,
                                                                      reason="libhyperonnx_encoders.so is not built"))]


def _encode(x: np.ndarray, params: dict, encoder: str, monkeypatch) -> tuple[np.ndarray, np.ndarray]:
    """(headers, digits) of the encoder's blob."""
    monkeypatch.setenv(native.ENV, "1" if encoder == "native" else "0")
    assert (native.library() is not None) == (encoder == "native")
    enc = blockvq.BlockVQCodec().encode(x, params)
    bits, block = params["bits"], params["block"]
    code_bytes = bitpack.packed_size(enc.count, enc.bits)
    theta = bitpack.unpack(enc.blob[:code_bytes], enc.count, enc.bits).astype(np.int64)
    digits = np.stack([theta >> bits, theta & ((1 << bits) - 1)], axis=1).reshape(-1)
    return bitpack.unpack(enc.blob[code_bytes:], -(-x.size // block), blockvq.HEADER_BITS), digits


def _candidate(block: np.ndarray, levels: np.ndarray, s: np.float32) -> tuple[np.float32, np.ndarray]:
    """One candidate's error and digits, operation by operation: v = x / s, the nearest level (the number of
    decision edges below v), d = level · s − x, and the float32 sum of d · d in position order."""
    edges = ((levels[1:].astype(np.float64) + levels[:-1]) / 2).astype(np.float32)
    digits = np.array([np.searchsorted(edges, np.float32(x / s)) for x in block])
    err = np.float32(0)
    for x, digit in zip(block, digits):
        d = np.float32(np.float32(levels[digit] * s) - x)
        err = np.float32(err + np.float32(d * d))
    return err, digits


def _specified(x: np.ndarray, bits: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """(headers, digits) as the specification chooses them, block by block."""
    flat = x.astype(np.float32).reshape(-1)
    smax = float(np.float32(max(float(flat.max()), -float(flat.min()))))
    scales, books = blockvq.scale_table(smax), blockvq.codebooks(bits, block)
    padded = np.zeros(-(-flat.size // block) * block, dtype=np.float32)
    padded[: flat.size] = flat
    top = int(np.count_nonzero(scales > 0)) - 1  # the last nonzero scale: candidates stop there
    headers, digits = [], []
    for values in padded.reshape(-1, block):
        absmax = float(np.abs(values).max())
        k0 = int(np.clip(np.floor(-np.log2(max(absmax, 1e-300) / smax) * 16), 0, top))
        best, header = np.float32(np.inf), 0
        for offset in blockvq.SCALE_OFFSETS:
            k = min(max(k0 + offset, 0), top)
            for book in range(blockvq.BOOKS):
                err, _ = _candidate(values, books[book], scales[k])
                if err < best:
                    best, header = err, k | book << 8
        headers.append(header)
        digits.append(_candidate(values, books[header >> 8], scales[header & 0xFF])[1])
    return np.array(headers), np.concatenate(digits)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_a_near_tie_goes_to_the_position_order_sum(encoder, monkeypatch):
    """A MiniLM block where two scale codes' errors differ in the last bit: the exact sum prefers code 49, a
    float32 sum in position order code 50 (and a pairwise or np.einsum sum ties them, so 49 would win as the
    first). The specified order decides, in numpy and natively alike."""
    block = np.array([float.fromhex(h) for h in ("-0x1.edad74p-6", "0x1.0e3146p-7", "-0x1.2e26d2p-4",
                                                 "-0x1.8821b8p-5", "-0x1.f053dep-6", "0x1.ed600ep-4")], np.float32)
    x = np.concatenate([block, np.array([1.0494, 0, 0, 0, 0, 0], np.float32)])  # the tensor's largest weight
    scales, (gaussian, *_) = blockvq.scale_table(float(np.float32(1.0494))), blockvq.codebooks(3, 6)
    (e49, d49), (e50, d50) = _candidate(block, gaussian, scales[49]), _candidate(block, gaussian, scales[50])
    exact = [float(((gaussian[d] * s - block).astype(np.float64) ** 2).sum())
             for d, s in ((d49, scales[49]), (d50, scales[50]))]
    assert e50 < e49 and exact[0] < exact[1]
    headers, digits = _encode(x, {"bits": 3, "block": 6}, encoder, monkeypatch)
    assert headers[0] == 50 and np.array_equal(digits[:6], d50)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_encoders_choose_as_the_specification(encoder, monkeypatch):
    """Every block's header and digits, against the plain implementation above: ties, all-zero blocks, a partial
    last block (its padding is encoded too), a tensor near float32's smallest subnormal (most scales underflow to
    zero), and weights whose squared errors overflow (no candidate's error is below +inf: scale code 0 and the
    Gaussian set)."""
    rng = np.random.default_rng(12)
    ties = np.round(rng.standard_normal(130) * 4) / 4
    ties[30:60] = 0.0
    floor = ties * np.float32(1e-44)
    huge = rng.standard_normal(40) * np.float32(1e38)
    for x, bits, block in ((ties, 3, 6), (rng.standard_t(3, 203), 5, 32), (ties, 1, 10), (floor, 5, 8),
                           (huge, 4, 8)):
        x = x.astype(np.float32)
        with np.errstate(over="ignore"):
            want_headers, want_digits = _specified(x, bits, block)
            headers, digits = _encode(x, {"bits": bits, "block": block}, encoder, monkeypatch)
        assert np.array_equal(headers, want_headers), (bits, block)
        assert np.array_equal(digits, want_digits[: digits.size]), (bits, block)
    assert (headers == 0).any()  # some of the overflowing blocks took scale code 0, set 0


@pytest.mark.parametrize("magnitude", [1e-44, 3e-45, 1e-40])
@pytest.mark.parametrize("encoder", ENCODERS)
def test_tensors_at_the_subnormal_floor_encode(magnitude, encoder, monkeypatch):
    """A tensor a few units above float32's smallest subnormal: most block scales underflow to zero, and a zero
    weight over a zero scale would be NaN. The candidates stop at the last nonzero scale, so both encoders code
    it (numpy once raised IndexError), and it decodes close to the original."""
    x = (np.random.default_rng(3).standard_normal((40, 64)) * magnitude).astype(np.float32)
    x[::3] = 0.0
    monkeypatch.setenv(native.ENV, "1" if encoder == "native" else "0")
    enc = blockvq.BlockVQCodec().encode(x, {"bits": 5, "block": 32})
    assert np.abs(blockvq.decode_blockvq(enc) - x).max() <= 0.1 * np.abs(x).max()
