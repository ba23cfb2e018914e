"""`grid`: exact storage of tensors that already lie on a per-block integer grid (weights dequantized from GGUF).

A model exported from a quantized checkpoint (llama.cpp's Q4_0/Q4_1/Q5_x/Q8_0) holds float weights that are
``d_b · q + m_b`` per block of 32, with q a small integer and ``d_b``, ``m_b`` float16 numbers. Compressing
them lossily again stacks a second rounding on the first; storing the grid itself is exact and smaller. The
converter *detects* such tensors (:func:`detect`); nothing is ever approximated: a tensor is stored here only
when every element decodes to its exact original bits, else the chosen lossy codec takes it.

θ is the per-weight integer q (−128…127) plus, per block, the float16 bit patterns of d and m; all are
entropy coded with the interleaved rANS of :mod:`hyperonnx.codec.rans`. docs/format.md (``grid``):
    value = f32(f32(D_b · float(q)) + M_b),  D_b = float(fp16 d_b),  M_b = float(fp16 m_b)
"""

from __future__ import annotations

import numpy as np

from hyperonnx.codec import native, rans
from hyperonnx.codec.base import Codec, Encoded, dtype_from_name

ZERO = 128  # symbol of q = 0
SEGMENT_BLOCKS = 1 << 17
BLOCK = 32  # GGUF's block size for the legacy and k-quant formats
PHASES = ("d_lo", "d_hi", "m_lo", "m_hi")  # per-block byte streams, then the q stream
# The q stream is coded with one model per context: a block's context is the level where its zero lies,
# round(−m/d) clamped to 0..15 (a block's levels cluster around it; measured −0.066 bits a weight on the Q4_1
# linears of SmolLM2 against one model).
CONTEXTS = 16


def contexts(d: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The q-model context of each block: floor(f32(f32(−M / D) + 0.5)) clamped to 0..15, 0 when not a number
    (D = 0). D, M float32 (exact float16 values); float32 division and sum, as every decoder computes them."""
    d, m = np.asarray(d, np.float32), np.asarray(m, np.float32)
    with np.errstate(all="ignore"):
        t = (-m / d).astype(np.float32) + np.float32(0.5)
        return np.where(t >= 1, np.where(t < CONTEXTS, np.floor(t), CONTEXTS - 1), 0).astype(np.int64)


def _halves(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return (lo.astype(np.uint16) | (hi.astype(np.uint16) << 8)).view(np.float16).astype(np.float32)


def segments(numel: int, block: int) -> list[tuple[int, int]]:
    size = SEGMENT_BLOCKS * block
    return [(first, min(numel, first + size)) for first in range(0, numel, size)]


def _reconstruct(d: np.ndarray, m: np.ndarray, q: np.ndarray) -> np.ndarray:
    """f32(f32(d·q) + m) per element; d, m float32 per block (broadcast), q integer."""
    return (d * q.astype(np.float32)).astype(np.float32) + m


def _fit_blocks(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(d, m as float16, q as int) reproducing every block of ``v`` (rows) bit for bit, or None."""
    # Guesses may overflow float16 or divide by zero on arbitrary data: such guesses simply fail the exact check.
    with np.errstate(all="ignore"):
        return _fit(v)


def _fit(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    nb = v.shape[0]
    vmin, vmax = v.min(axis=1), v.max(axis=1)
    # A block fits only with an offset of its minimum (then a float16 value) or of zero (then every value is d·q, a
    # float16 times an integer below 2^8 in magnitude: at most 19 significant bits, so the low 4 bits of its float32
    # significand are 0). Trained float32 weights fail both at once; without this screen they took the 36 guesses
    # below first (2 ms a tensor, Python calls on a 64-block sample).
    offset_ok = vmin.astype(np.float16).astype(np.float32) == vmin
    if not (offset_ok | ((v.view(np.uint32) & 0xF) == 0).all(axis=1)).all():
        return None
    ok = np.zeros(nb, dtype=bool)
    best_d = np.zeros(nb, np.float16)
    best_m = np.zeros(nb, np.float16)
    best_q = np.zeros(v.shape, np.int16)
    bits = v.view(np.uint32)
    # The smallest gap between distinct values: one step, or a few, whatever the level count.
    ordered = np.sort(v, axis=1).astype(np.float64)
    gaps = np.diff(ordered, axis=1)
    gap = np.where(gaps > 0, gaps, np.inf).min(axis=1)
    gap = np.where(np.isfinite(gap), gap, 1.0)
    # Hypotheses for the offset: the block minimum (asymmetric grids: q ≥ 0) or zero (symmetric grids).
    for m in (vmin, np.zeros_like(vmin)):
        m16 = m.astype(np.float16)
        m_ok = m16.astype(np.float32) == m
        spread = np.maximum(vmax - m, m - vmin).astype(np.float64)
        levels = np.maximum(np.rint(spread / gap), 1)  # the spread in steps, if the smallest gap is one step
        # The step: the block's spread over its level count (from the gap, then the counts GGUF formats use).
        for top in (None, 15, 7, 8, 127, 31, 16, 3, 1, 63, 255, 128):
            todo = ~ok & m_ok
            if not todo.any():
                break
            count = levels[todo] if top is None else top
            guess = (spread[todo] / count).astype(np.float16)
            for ulps in (0, -1, 1):
                d16 = (guess.view(np.uint16) + np.uint16(ulps & 0xFFFF)).view(np.float16) if ulps else guess
                d = d16.astype(np.float32)
                q = np.rint((v[todo].astype(np.float64) - m[todo, None]) / d[:, None])
                q = np.nan_to_num(q, nan=0.0, posinf=0.0, neginf=0.0)
                q = np.clip(q, -ZERO, ZERO - 1).astype(np.int16)
                rec = _reconstruct(d[:, None], m16[todo].astype(np.float32)[:, None], q)
                exact = (rec.view(np.uint32) == bits[todo]).all(axis=1) & np.isfinite(d)
                if exact.any():
                    rows = np.flatnonzero(todo)[exact]
                    ok[rows] = True
                    best_d[rows], best_m[rows], best_q[rows] = d16[exact], m16[todo][exact], q[exact]
                    todo = ~ok & m_ok
                    if not todo.any():
                        break
                    count = levels[todo] if top is None else top
                    guess = (spread[todo] / count).astype(np.float16)
    return (best_d, best_m, best_q) if ok.all() else None


def detect(array: np.ndarray, block: int = BLOCK) -> Encoded | None:
    """The exact `grid` encoding of ``array``, or None when it does not lie on a float16 block grid.

    Blocks run along the flattened tensor, or — for a weight stored transposed, as exporters do for MatMul —
    down its first axis: the tensor seen as [R, C] is then encoded as its transpose (``i_transpose = [1]``).
    """
    x = np.asarray(array)
    if x.dtype != np.float32 or x.size < block:
        return None
    rows = x.shape[0] if x.ndim >= 2 else 1
    sample = min(x.size, 64 * block)  # a cheap screen first: trained fp32 weights fail it at once
    if x.size % block == 0 and _fit_blocks(x.reshape(-1)[:sample].reshape(-1, block)) is not None:
        enc = _encode_view(x, x.reshape(-1), block, 0)
        if enc is not None:
            return enc
    if x.ndim >= 2 and rows % block == 0:
        matrix = x.reshape(rows, -1)
        head = matrix[:, : -(-sample // rows)].T.reshape(-1)[:sample]  # the transposed stream's first blocks
        if _fit_blocks(head.reshape(-1, block)) is not None:  # only now is the transposed copy worth making
            return _encode_view(x, np.ascontiguousarray(matrix.T).reshape(-1), block, 1)
    return None


def _encode_view(x: np.ndarray, flat: np.ndarray, block: int, transpose: int) -> Encoded | None:
    ds, ms, qs = [], [], []
    for first in range(0, flat.size, SEGMENT_BLOCKS * block):
        part = flat[first : first + SEGMENT_BLOCKS * block].reshape(-1, block)
        fit = _fit_blocks(part)
        if fit is None:
            return None
        ds.append(fit[0])
        ms.append(fit[1])
        qs.append((fit[2] + ZERO).astype(np.uint8).reshape(-1))
    return _pack(x.shape, x.dtype.name, block, transpose, ds, ms, qs)


def _byte_streams(halves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    raw = halves.view(np.uint16)
    return (raw & 0xFF).astype(np.uint8), (raw >> 8).astype(np.uint8)


def pack(shape: tuple[int, ...], block: int, transpose: int, d: np.ndarray, m: np.ndarray, q: np.ndarray,
         dtype: str = "float32") -> Encoded:
    """The `grid` encoding of given float16 steps ``d`` and offsets ``m`` (one per block) and integer levels
    ``q`` (−128…127, stream order), cut into segments as :func:`detect` does. For tests and golden vectors: the
    converter only stores what :func:`detect` proves exact."""
    q = np.asarray(q).reshape(-1)
    size = SEGMENT_BLOCKS * block
    ds, ms, qs = [], [], []
    for first in range(0, q.size, size):
        b0, b1 = first // block, -(-min(q.size, first + size) // block)
        ds.append(np.asarray(d, np.float16)[b0:b1])
        ms.append(np.asarray(m, np.float16)[b0:b1])
        qs.append((q[first : first + size] + ZERO).astype(np.uint8))
    return _pack(tuple(shape), dtype, block, transpose, ds, ms, qs)


def _pack(shape: tuple[int, ...], dtype: str, block: int, transpose: int, ds: list, ms: list,
          qs: list) -> Encoded:
    per_segment, ctx = [], []
    for d, m, q in zip(ds, ms, qs):
        per_segment.append([*_byte_streams(d), *_byte_streams(m), q])
        ctx.append(np.repeat(contexts(d.astype(np.float32), m.astype(np.float32)), block)[: q.size])
    models = [rans.Model.fit(np.concatenate([seg[i] for seg in per_segment])) for i in range(4)]
    # each context's level counts at once (one pass, not one per context)
    counts = np.zeros((CONTEXTS, 256), dtype=np.int64)
    for q, ids in zip(qs, ctx):
        counts += np.bincount(ids * 256 + q, minlength=CONTEXTS * 256).reshape(CONTEXTS, 256)
    qmodels = [rans.Model.from_counts(counts[c]) if counts[c].any() else rans.Model(ZERO, [rans.PROB_SCALE])
               for c in range(CONTEXTS)]
    parts = [model.header() for model in models + qmodels]
    for seg, ids in zip(per_segment, ctx):
        phases = list(zip(seg[:4], models)) + [(seg[4], rans.Mixed(qmodels, ids))]
        freq, cum = rans.symbol_frequencies(phases)  # per symbol, from its context's model
        parts.append(native.rans_encode_pairs(freq, cum) or rans.encode(phases))  # numpy without the library
    blob = np.frombuffer(b"".join(parts), dtype=np.uint8).copy()
    return Encoded(codec="grid", shape=tuple(int(d) for d in shape), dtype=dtype, group=1, bits=8,
                   blob=blob, ints={"block": (block,), "transpose": (transpose,)})


def decode_grid(enc: Encoded) -> np.ndarray:
    """The reference decoder (docs/format.md, ``grid``)."""
    try:
        (block,), (transpose,) = enc.ints["block"], enc.ints["transpose"]
    except (KeyError, ValueError) as exc:
        raise ValueError(f"grid codec: missing or malformed side information ({exc})") from None
    if not 1 <= block <= 4096:
        raise ValueError(f"grid codec: block must be in 1..4096, got {block}")
    if enc.group != 1 or enc.bits != 8 or transpose not in (0, 1):
        raise ValueError("grid codec: inconsistent side information (group 1, bits 8, transpose 0 or 1)")
    blob = np.asarray(enc.blob, dtype=np.uint8)
    models, pos = [], 0
    for _ in range(4 + CONTEXTS):
        model, pos = rans.Model.parse(blob, pos)
        models.append(model)
    numel = enc.numel
    out = np.empty(numel, dtype=dtype_from_name(enc.dtype))

    def level_contexts(side: list[np.ndarray], count: int) -> np.ndarray:
        d, m = _halves(side[0], side[1]), _halves(side[2], side[3])
        if not (np.isfinite(d).all() and np.isfinite(m).all()):
            raise ValueError("grid codec: a block's step or offset is not finite")
        return np.repeat(contexts(d, m), block)[:count]

    for first, stop in segments(numel, block):
        nb, count = -(-(stop - first) // block), stop - first
        levels = rans.Mixed(models[4:], lambda side, count=count: level_contexts(side, count))
        streams, pos = rans.decode(blob, pos, [(nb, models[i]) for i in range(4)] + [(count, levels)])
        d, m = _halves(streams[0], streams[1]), _halves(streams[2], streams[3])
        q = streams[4].astype(np.int16) - ZERO
        idx = np.arange(stop - first) // block
        out[first:stop] = _reconstruct(d[idx], m[idx], q).astype(out.dtype, copy=False)
    if pos != blob.size:
        raise ValueError(f"grid codec: {blob.size - pos} unexpected byte(s) after the last stream")
    if transpose:  # the stream holds the tensor seen as [R, C] transposed, R = shape[0]
        rows = enc.shape[0] if len(enc.shape) >= 1 and enc.shape[0] else 1
        return np.ascontiguousarray(out.reshape(-1, rows).T).reshape(enc.shape)
    return out.reshape(enc.shape)


class GridCodec(Codec):
    """Decode-only entry of the codec table: `grid` encodings come from :func:`detect`, never from a user's
    choice (it is exact or nothing)."""

    name = "grid"
    family = "grid"
    defaults: dict = {}
    summary = "exact storage of weights already on a float16 block grid (detected automatically)"
    int_keys = ("block", "transpose")

    def encode(self, x: np.ndarray, params: dict) -> Encoded:
        enc = detect(x)
        if enc is None:
            raise ValueError("grid codec: the tensor does not lie on a float16 block grid (it is detected, "
                             "not chosen)")
        return enc

    def table(self, enc: Encoded) -> np.ndarray:
        raise ValueError("grid has per-block steps: it has no single decode table")

    def decode(self, enc: Encoded) -> np.ndarray:
        return decode_grid(enc)


__all__ = ["GridCodec", "decode_grid", "detect", "pack"]
