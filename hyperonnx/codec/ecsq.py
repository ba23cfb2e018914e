"""`ecsq`: entropy-coded θ — uniform levels with per-block log scales, θ streams stored with rANS.

Each weight's θ is a small signed integer q; the hyperfunction regenerates the weight as q · scale[k_b], with
k_b the 8-bit log-scale code of its block. The encoder gives every block the same *relative* step (``step`` ×
the block's RMS), so every block keeps the same signal-to-noise ratio whatever its magnitude. Fixed-rate codes
waste bits on such levels — most weights sit near zero — so the q and k streams are entropy coded (order-0
interleaved rANS, :mod:`hyperonnx.codec.rans`) and decoded back to θ at load. At high rate an entropy-coded
uniform quantizer sits 1.5 dB from the rate-distortion bound, against 4.4 dB for a fixed-rate Lloyd quantizer
on Gaussian data; benchmarks/codec.py measures what that buys on real weights.

Layout and arithmetic: docs/format.md (``ecsq``):
    value(i) = f32(q_i) · scale[k_b],  q_i = symbol_i − 127,  b = i div B
    scale[k] = ldexp(f32(base · M[k mod 16]), 8 − (k div 16)),  M[j] = f32(2^(−j/16))

Rank-1 term (format version 2, :mod:`hyperonnx.codec.rank1`): where one outer product u·vᵀ holds most of a
tensor's energy (seen as shape[0] × the rest), the blob starts with u and v in float16 and the streams code
the residual: the same relative step then quantizes an energy 2–300× smaller, for 0.1–2.3 bits a weight more
(the residual's blocks are less regular; on the terrain UNet 8–12 dB per extra bit, against ~6 for a finer step):
    value(i) = f32(f32(q_i) · scale[k_b]) + f32(u[i div C]) · f32(v[i mod C])
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np

from hyperonnx.codec import native, rank1, rans
from hyperonnx.codec.base import Codec, Encoded, dtype_from_name
from hyperonnx.codec.blockvq import STEPS

ZERO = 127  # symbol of q = 0; q spans −127..127
SCALE_CODES = 256
UNITY = 128  # scale code of the tensor's base step
SCALE_STRIDE = 4  # the encoder uses every 4th scale code (measured: −0.03 bits/weight for −0.02 dB)
SEGMENT_BLOCKS = 1 << 17  # blocks per independently decodable segment (8M weights at B = 64)
# A size budget's settings, coarse to fine: relative steps 2^(−1/2) apart, about half a bit a weight between
# neighbours; between two of them the step varies continuously. tcq stores what ecsq stores at the same step
# (about 1 dB less noise), so it shares them.
# The finer steps stop gaining where a block's levels run out: a block's largest magnitude must lie within
# ±127 of its steps, so a block of B weights whose largest one is c times its RMS keeps at most
# 10·log10(12 · 127² / c²) dB, and c can reach √B (one weight holding the block's energy). Depthwise kernels
# mix channels of very different scale in one block, and stopped at 37–41 dB with blocks of 64 whatever the step.
# The top rungs therefore shrink the block too: with B = 4, c ≤ 2, so no tensor falls much below 46.5 dB
# whatever its distribution (ecsq; 46.2 on the worst synthetic tensor of tests/codec/test_ladder_reach.py), at
# 9.1–10.2 bits a weight (median per model), about what blocktcq spends at 8 bits for 44.6–47 dB.
# benchmarks/ladders.py measures the top rung on every tensor of the real models.
STEP_LADDER = tuple({"step": round(0.5 * 2 ** (-i / 2), 4)} for i in range(10)) + (
    {"step": 0.0156, "block": 16}, {"step": 0.011, "block": 4})


def scale_table(base: float) -> np.ndarray:
    """The 256 block steps of a tensor, float32, exactly as every decoder computes them."""
    k = np.arange(SCALE_CODES)
    with np.errstate(over="ignore"):  # near float32's limit the coarsest steps are inf; encoders never use them
        return np.ldexp(np.float32(base) * STEPS[k & 15], 8 - (k >> 4)).astype(np.float32)


def segments(numel: int, block: int) -> list[tuple[int, int]]:
    """(first, stop) weight ranges of the segments; each is one rANS stream (its blocks' k, then its q)."""
    size = SEGMENT_BLOCKS * block
    return [(first, min(numel, first + size)) for first in range(0, numel, size)]


class EcsqCodec(Codec):
    name: ClassVar[str] = "ecsq"
    family: ClassVar[str] = "ecsq"
    defaults: ClassVar[dict[str, Any]] = {"step": 0.25, "block": 64, "rank1": 1}
    summary: ClassVar[str] = "entropy-coded θ: uniform levels, per-block log scales, rANS-coded streams"
    formats: ClassVar[tuple[int, ...]] = (1, rank1.FORMAT_VERSION)
    int_keys: ClassVar[tuple[str, ...]] = ("block",)
    float_keys: ClassVar[tuple[str, ...]] = ("scale",)
    budget_ladder: ClassVar[tuple[dict[str, Any], ...]] = STEP_LADDER
    continuous_option: ClassVar[str | None] = "step"
    portable: ClassVar[str | None] = None  # sequential rANS decoding has no standard-op form
    # The stored step (``base``, the block scales) as a fraction of ``step`` × RMS; the level reach in steps.
    fine: ClassVar[float] = 1.0
    reach: ClassVar[int] = ZERO

    def encode(self, x: np.ndarray, params: dict[str, Any]) -> Encoded:
        step, block = float(params["step"]), int(params["block"])
        if not 0.01 <= step <= 4.0:
            raise ValueError(f"{self.name} codec: step must be in 0.01..4 (relative to each block's RMS), got {step}")
        if block < 1 or block > 4096:
            raise ValueError(f"{self.name} codec: block must be in 1..4096, got {block}")
        if params["rank1"] not in (0, 1):
            raise ValueError(f"{self.name} codec: rank1 must be 0 (never) or 1 (where it pays), got {params['rank1']}")
        x = np.asarray(x)
        fitted = rank1.fit(x) if params["rank1"] else None
        if fitted is not None:  # code the residual; the blob starts with the term (format version 2)
            term, left = fitted
            coded = self._encode_flat(left, x.shape, x.dtype, step, block, rank1.to_bytes(term))
            return replace(coded, format_version=rank1.FORMAT_VERSION)
        return self._encode_flat(x.reshape(-1), x.shape, x.dtype, step, block)

    def _encode_flat(self, flat: np.ndarray, shape: tuple[int, ...], dtype: np.dtype, step: float,
                     block: int, prefix: np.ndarray | bytes = b"") -> Encoded:
        numel = flat.size
        if numel == 0:
            raise ValueError(f"{self.name} codec: nothing to encode (an empty tensor)")
        parts = segments(numel, block)
        # Each block's sum of squares (float64) sets its scale code below; their total sets the tensor's RMS. One
        # pass over the weights for both (a separate float64 sum for the RMS was a tenth of tcq's encode). The
        # segments' blocks are made again below rather than held: for a float16 tensor, or a last segment of a
        # part block, they are float32 copies, and holding every segment's would hold the whole tensor twice.
        with np.errstate(all="ignore"):
            energies = [block_energies(as_blocks(_segment(flat, first, stop), block)) for first, stop in parts]
        total = float(energies[0].sum() if len(energies) == 1 else np.concatenate(energies).sum())
        rms = math.sqrt(total / numel)
        base = float(np.float32(step * self.fine * rms)) if rms > 0 else 1.0
        if base == 0.0:  # a subnormal tensor whose step rounds to zero: the finest float32 step instead
            base = float(np.finfo(np.float32).smallest_subnormal)
        if not np.isfinite(base) or base <= 0:
            raise ValueError(f"{self.name} codec: the tensor's scale is not representable in float32")
        steps = scale_table(base)
        if not (np.isfinite(steps) & (steps > 0)).any():
            raise ValueError(f"{self.name} codec: the tensor's scale is not representable in float32")
        qs, ks = [], []
        for (first, stop), energy in zip(parts, energies):
            with np.errstate(all="ignore"):  # extreme magnitudes: steps that under/overflow just clip
                blocks, k = block_scales(_segment(flat, first, stop), block, step * self.fine, base, steps,
                                         self.reach, energy)
                q = self.levels(blocks, steps[k])
            qs.append(q.reshape(-1)[: stop - first])
            ks.append(k)
        kmodel = rans.Model.fit(ks[0] if len(ks) == 1 else np.concatenate(ks))
        qmodel = rans.Model.fit(qs[0] if len(qs) == 1 else np.concatenate(qs))
        # Built in place: each stream is copied once, from the coder's scratch (a bytes join and a copy to make the
        # array writable were three copies of the blob, each into fresh pages).
        blob = bytearray(prefix)
        blob += kmodel.header()
        blob += qmodel.header()
        for q, k in zip(qs, ks):
            phases = [(k, kmodel), (q, qmodel)]
            stream = native.rans_encode(phases, scratch=True)
            blob += rans.encode(phases) if stream is None else memoryview(stream)  # numpy without the library
        return Encoded(codec=self.family, shape=tuple(int(d) for d in shape), dtype=dtype.name,
                       group=1, bits=8, blob=np.frombuffer(blob, dtype=np.uint8), ints={"block": (block,)},
                       floats={"scale": (base,)})

    def levels(self, blocks: np.ndarray, block_steps: np.ndarray) -> np.ndarray:
        """Level symbols (uint8, blocks × B) of zero-padded blocks whose steps are ``block_steps``."""
        q = np.clip(np.rint(blocks / block_steps[:, None]), -ZERO, ZERO).astype(np.int16) + ZERO
        return q.astype(np.uint8)

    def values(self, symbols: np.ndarray, block: int) -> np.ndarray:
        """The integer multiple of its block's step (float32) that each decoded symbol of a segment stands for."""
        return (symbols.astype(np.int16) - ZERO).astype(np.float32)

    def table(self, enc: Encoded) -> np.ndarray:
        raise ValueError(f"{self.name} has per-block scales: it has no single decode table")

    def decode(self, enc: Encoded) -> np.ndarray:
        return decode_ecsq(enc, self)


def _segment(flat: np.ndarray, first: int, stop: int) -> np.ndarray:
    """A segment's weights as float32: a float32 tensor's own memory (read only), no copy."""
    return np.asarray(flat[first:stop], dtype=np.float32)


def as_blocks(x: np.ndarray, block: int) -> np.ndarray:
    """The segment ``x`` (float32) as zero-padded (blocks, B) rows: itself where it holds whole blocks."""
    n = x.size
    nblocks = -(-n // block)
    if n % block == 0 and x.dtype == np.float32 and x.flags.c_contiguous and x.flags.aligned:
        return x.reshape(nblocks, block)  # whole blocks: the segment itself, no padded copy
    padded = np.zeros(nblocks * block, dtype=np.float32)
    padded[:n] = x
    return padded.reshape(nblocks, block)


def block_energies(blocks: np.ndarray) -> np.ndarray:
    """Each row's sum of squares, float64."""
    return np.einsum("ij,ij->i", blocks, blocks, dtype=np.float64)


def block_scales(x: np.ndarray, block: int, step: float, base: float, steps: np.ndarray, reach: int,
                 energies: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The segment as zero-padded (blocks, B) rows, and each block's scale code (uint8): the code whose step is
    nearest ``step`` × the block's RMS (``base`` is ``step`` × the tensor's RMS, the step of code 128), made
    finer no further than keeps the block's largest magnitude within ``reach`` steps. ``energies``: the rows'
    :func:`block_energies`, when already summed."""
    n = x.size
    blocks = as_blocks(x, block)
    nblocks = blocks.shape[0]
    counts = np.full(nblocks, block, dtype=np.float64)
    counts[-1] = n - (nblocks - 1) * block
    block_rms = np.sqrt((block_energies(blocks) if energies is None else energies) / counts)
    with np.errstate(divide="ignore"):  # steps 2^(1/4) apart: finer costs more scale-code entropy than it saves
        k = UNITY - SCALE_STRIDE * np.rint(16 / SCALE_STRIDE * np.log2(step * block_rms / base))
    # Blocks of zeros (and blocks far below the tensor's scale) take the finest step.
    k = np.clip(np.nan_to_num(k, nan=SCALE_CODES - 1, posinf=SCALE_CODES - 1, neginf=0), 0, SCALE_CODES - 1)
    # Fine steps would clip a block's outliers at the last level: take the finest step that still reaches them.
    fast = None if np.isnan(block_rms).any() else native.block_absmax(blocks)  # a NaN block: numpy's NaN max
    absmax = (np.abs(blocks).max(axis=1) if fast is None else fast).astype(np.float64)
    with np.errstate(divide="ignore"):
        limit = np.floor(UNITY - 16 * np.log2(absmax / (reach * base)))
    k = np.minimum(k, np.clip(np.nan_to_num(limit, nan=SCALE_CODES - 1, posinf=SCALE_CODES - 1), 0,
                              SCALE_CODES - 1)).astype(np.int64)
    # Near float32's limits part of the table overflows (coarse end) or underflows to 0 (fine end): stay inside.
    usable = np.flatnonzero(np.isfinite(steps) & (steps > 0))
    k = np.clip(k, usable[0], usable[-1])
    k -= (absmax / steps[k] > reach + 0.5) & (k > 0)  # float32 rounding of the step table
    return blocks, k.astype(np.uint8)


def decode_ecsq(enc: Encoded, codec: EcsqCodec | None = None) -> np.ndarray:
    """The reference decoder (docs/format.md, ``ecsq``; ``tcq`` maps the symbols through its trellis)."""
    codec = codec or EcsqCodec()
    name = codec.name
    try:
        (block,) = enc.ints["block"]
        (base,) = enc.floats["scale"]
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{name} codec: missing or malformed side information ({exc})") from None
    if not 1 <= block <= 4096:
        raise ValueError(f"{name} codec: block must be in 1..4096, got {block}")
    if enc.group != 1 or enc.bits != 8:
        raise ValueError(f"{name} codec: inconsistent side information (group must be 1, bits 8)")
    if not np.isfinite(base):
        raise ValueError(f"{name} codec: the base step is not finite")
    blob = np.asarray(enc.blob, dtype=np.uint8)
    low, pos = None, 0
    if enc.format_version == rank1.FORMAT_VERSION:
        low, pos = rank1.parse(blob, enc.shape, name)
    kmodel, pos = rans.Model.parse(blob, pos)
    qmodel, pos = rans.Model.parse(blob, pos)
    if qmodel.lo + qmodel.freq.size > 2 * ZERO + 1:
        raise ValueError(f"{name} codec: level alphabet beyond ±127")
    steps = scale_table(base)
    numel = enc.numel
    out = np.empty(numel, dtype=dtype_from_name(enc.dtype))
    for first, stop in segments(numel, block):
        nblocks = -(-(stop - first) // block)
        (k, q), pos = rans.decode(blob, pos, [(nblocks, kmodel), (stop - first, qmodel)])
        block_steps = np.repeat(steps[k], block)[: stop - first]
        values = codec.values(q, block) * block_steps
        if low is not None:
            values += low[first:stop]  # float32: one rounding, after the product's
        out[first:stop] = values.astype(out.dtype, copy=False)
    if pos != blob.size:
        raise ValueError(f"{name} codec: {blob.size - pos} unexpected byte(s) after the last stream")
    return out.reshape(enc.shape)


__all__ = ["EcsqCodec", "block_scales", "decode_ecsq", "scale_table", "segments"]
