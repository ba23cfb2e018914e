"""What a portable decoder stores, as its writer (the codec modules of this package) and its reader
(:mod:`hyperonnx.passes.decoders`) both see it (docs/format.md, "Portable form"): the tag on the decoder's Gather
node, and the bit planes that hold codes of any width in uint8."""

from __future__ import annotations

import json

import numpy as np

from hyperonnx.codec import Encoded

TAG = "hyperonnx:"  # the doc_string prefix that marks a portable decoder's Gather node; a JSON object follows
BOOK_BITS = 2  # a block codec's level-set id (0..3): its portable form stores it as a 2-bit plane


def tag(meta: dict) -> str:
    """The Gather's doc_string: ``TAG`` and ``meta`` as JSON (keys sorted)."""
    return TAG + json.dumps(meta, sort_keys=True)


def read_tag(doc_string: str) -> dict | None:
    """The JSON object a tagged doc_string holds, or None for a doc_string without the tag."""
    if not doc_string.startswith(TAG):
        return None
    return json.loads(doc_string[len(TAG) :])


def json_float32(value: float) -> float:
    """A float32 value as the float whose JSON text is shortest and still reads back (through float32) as it:
    0.10000000149011612 becomes 0.1. A portable decoder's doc_string repeats blocktcq's 64 stored levels, so this
    halves it."""
    exact = np.float32(value)
    short = float(str(exact))
    return short if np.float32(short) == exact else float(value)


def code_planes(bits: int) -> list[tuple[int, int]] | None:
    """The portable form's planes for ``bits``-bit codes, (width, shift) each: the binary digits of ``bits``,
    widest first, from bit 0 up (5 → 4 + 1: (4, 0), (1, 4); 10 → 8 + 2; 11 → 8 + 2 + 1). None for 8 and 16 bits
    and more, which are stored one code per uint8/uint16/int32 element."""
    if bits == 8 or bits >= 16:
        return None
    planes, shift = [], 0
    for width in (8, 4, 2, 1):
        if bits & width:
            planes.append((width, shift))
            shift += width
    return planes


def plane_group(planes: list[tuple[int, int]]) -> int:
    """Codes per group, K: the narrowest plane's codes per byte."""
    return 8 // min(width for width, _ in planes)


def plane_codes(count: int, planes: list[tuple[int, int]]) -> int:
    """Codes the planes hold for ``count`` codes: whole groups."""
    group = plane_group(planes)
    return -(-count // group) * group


def _plane_shape(chunk: int, width: int, group: int) -> tuple[int, ...]:
    """A plane's stored shape: (2, …, 2, 1, …, 1, M) with log2(K / k) twos and log2(k) ones, k = 8 / width its codes
    per byte and M = ``chunk``. BitShift by a (2, …, 2, 1) vector (log2(k) twos) broadcasts every plane to the same
    (2, …, 2, M), in long runs of M bytes: no Unsqueeze, no Reshape before the planes are summed."""
    per_byte = 8 // width
    return (2,) * ((group // per_byte).bit_length() - 1) + (1,) * (per_byte.bit_length() - 1) + (chunk,)


def pack_planes(codes: np.ndarray, planes: list[tuple[int, int]]) -> list[np.ndarray]:
    """The portable form's code layout: ``codes`` (< 2^bits), padded with zero codes to K·M codes (K =
    ``plane_group``, M = ceil(count / K)) and seen as K chunks of M consecutive codes, split into ``planes``:
    plane (w, s) holds bits [s, s + w) of every code, k = 8 / w codes a byte: byte (j, g) of the plane, j < K / k,
    holds at bits [f·w, (f + 1)·w) the field of code ((j·k + f)·M + g), f < k. uint8 arrays shaped by
    ``_plane_shape`` (row-major: byte j·M + g). ``unpack_planes`` is the inverse."""
    codes = np.asarray(codes).reshape(-1)
    total, group = plane_codes(codes.size, planes), plane_group(planes)
    padded = np.zeros(total, dtype=np.uint32)
    padded[: codes.size] = codes
    out = []
    for width, shift in planes:
        per_byte = 8 // width
        fields = ((padded >> np.uint32(shift)) & np.uint32((1 << width) - 1)).astype(np.uint8)
        fields = fields.reshape(group // per_byte, per_byte, total // group)
        packed = np.zeros((group // per_byte, total // group), dtype=np.uint8)
        for f in range(per_byte):
            packed |= fields[:, f] << np.uint8(f * width)
        out.append(packed.reshape(_plane_shape(total // group, width, group)))
    return out


def unpack_planes(arrays: list[np.ndarray], planes: list[tuple[int, int]], count: int) -> np.ndarray:
    """Inverse of ``pack_planes``: the first ``count`` codes, uint32. Raises ValueError on inconsistent sizes."""
    if len(arrays) != len(planes) or not planes:
        raise ValueError(f"{len(arrays)} code planes stored for a layout of {len(planes)}")
    if any(width not in (1, 2, 4, 8) or not 0 <= shift <= 32 - width for width, shift in planes):
        raise ValueError(f"bad code planes {planes}")
    total, group = plane_codes(count, planes), plane_group(planes)
    for array, (width, _) in zip(arrays, planes):
        if array.size * (8 // width) != total:
            raise ValueError(f"a code plane of {array.size} bytes (width {width}) does not hold {total} codes")
    codes = np.zeros(total, dtype=np.uint32)
    for array, (width, shift) in zip(arrays, planes):
        per_byte = 8 // width
        packed = np.asarray(array, dtype=np.uint8).reshape(group // per_byte, 1, total // group)
        fields = (packed >> (np.arange(per_byte, dtype=np.uint8) * width).reshape(1, -1, 1)) & ((1 << width) - 1)
        codes |= fields.reshape(-1).astype(np.uint32) << np.uint32(shift)
    return codes[:count]


def element_dtype(bits: int) -> type:
    """The element type of codes stored one per element (``code_planes`` None, 8 and 16 bits and more)."""
    return np.uint8 if bits <= 8 else np.uint16 if bits <= 16 else np.int32


def blocks(enc: Encoded) -> int:
    """Blocks of a codec framed by block headers (its ``block`` side information)."""
    return -(-enc.numel // enc.ints["block"][0])


def code_bytes(enc: Encoded, block_headers: bool) -> int:
    """Bytes of codes (and, with ``block_headers``, the headers) that the portable form stores for ``enc``."""
    planes = code_planes(enc.bits)
    if planes is None:
        total = enc.count * np.dtype(element_dtype(enc.bits)).itemsize
    else:
        total = plane_codes(enc.count, planes) * enc.bits // 8
    if block_headers:
        nblocks = blocks(enc)
        total += nblocks + plane_codes(nblocks, [(BOOK_BITS, 0)]) * BOOK_BITS // 8  # scale code + level set
    return total
