"""Fixed-width bit packing of integer codes (LSB-first, little-endian).

Code ``i`` occupies bits ``[i*b, (i+1)*b)`` of the blob, bit ``j`` of the blob being bit ``j % 8`` of byte
``j // 8``. The blob is exactly ``ceil(count * b / 8)`` bytes long. Every runtime (C++, CUDA, portable ONNX)
reads this layout; see docs/format.md.
"""

from __future__ import annotations

import numpy as np

MAX_BITS = 32


def packed_size(count: int, bits: int) -> int:
    return (count * bits + 7) // 8


CHUNK_CODES = 1 << 20  # a multiple of 8: chunks start on byte boundaries, so they pack independently


def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack non-negative integer ``codes`` (< 2**bits) into a uint8 blob."""
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bit width {bits} outside 1..{MAX_BITS}")
    codes = np.asarray(codes).ravel()
    if codes.size > CHUNK_CODES:  # bounded working memory: the wide intermediates below are per chunk
        return np.concatenate([_pack(codes[i : i + CHUNK_CODES], bits) for i in range(0, codes.size, CHUNK_CODES)])
    return _pack(codes, bits)


def _pack(codes: np.ndarray, bits: int) -> np.ndarray:
    codes = np.ascontiguousarray(codes, dtype=np.uint64).ravel()
    count = codes.size
    out = np.zeros(packed_size(count, bits), dtype=np.uint8)
    # Work in groups of 8 codes: a group occupies exactly `bits` bytes, so every byte is owned by one group.
    groups = -(-count // 8)
    padded = np.zeros(groups * 8, dtype=np.uint64)
    padded[:count] = codes
    padded = padded.reshape(groups, 8)
    acc = np.zeros((groups, bits), dtype=np.uint64)
    for t in range(8):
        offset = t * bits
        first, shift = divmod(offset, 8)
        value = padded[:, t] << np.uint64(shift)  # at most 39 bits: fits
        nbytes = (shift + bits + 7) // 8
        for j in range(nbytes):
            acc[:, first + j] |= (value >> np.uint64(8 * j)) & np.uint64(0xFF)
    flat = acc.astype(np.uint8).ravel()
    out[:] = flat[: out.size]
    return out


def unpack(blob: np.ndarray, count: int, bits: int) -> np.ndarray:
    """Inverse of :func:`pack`; returns ``count`` codes as uint32."""
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bit width {bits} outside 1..{MAX_BITS}")
    blob = np.ascontiguousarray(blob, dtype=np.uint8).ravel()
    if blob.size != packed_size(count, bits):
        raise ValueError(f"blob holds {blob.size} bytes, expected {packed_size(count, bits)} for {count} codes of {bits} bits")
    groups = -(-count // 8)
    padded = np.zeros(groups * bits, dtype=np.uint8)
    padded[: blob.size] = blob
    padded = padded.reshape(groups, bits)
    mask = np.uint64((1 << bits) - 1)
    out = np.empty((groups, 8), dtype=np.uint32)
    for t in range(8):
        first, shift = divmod(t * bits, 8)
        nbytes = (shift + bits + 7) // 8
        value = padded[:, first].astype(np.uint64)
        for j in range(1, nbytes):
            value |= padded[:, first + j].astype(np.uint64) << np.uint64(8 * j)
        out[:, t] = (value >> np.uint64(shift)) & mask
    return out.ravel()[:count]
