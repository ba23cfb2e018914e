"""`blocktcq`: block-scaled trellis-coded θ at a fixed rate — the default codec.

blockvq's framing (per-block 8-bit log scale and level-set choice, fixed-width codes, decodable everywhere)
with tcq's trellis in place of nearest-level rounding. Each block picks one of four *fine* level sets of 2L
levels (a doubled Lloyd-Gaussian set, stored; uniform and two skewed, computed), split into four cosets by index mod 4; an 8-state
trellis lets each weight use only the half of the set (even or odd indices) its state allows, so a weight's θ
is a ``bits``-bit index into that half, and the encoder's Viterbi search picks the block's path of least
squared error. At the same size as blockvq that is 1.0–1.4 dB less noise (benchmarks/codec.py): the
space-filling gain a scalar quantizer cannot have, at a fixed rate, with no entropy coder.

Layout and arithmetic: docs/format.md (``blocktcq``). Per block (state 0 at its first weight):
    f = 2 · θ + (state & 1);  value = books[book_b][f] · scale[k_b];  state = NEXT[state][f & 3]
The state's parity is a fixed linear function (over GF(2)) of the earlier θs' low bits, which is what lets the
portable form decode it with a matrix product (``parity_matrix``).
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import numpy as np

from hyperonnx.codec import bitpack, native
from hyperonnx.codec.base import Codec, Encoded, dtype_from_name
from hyperonnx.codec.blockvq import (
    BITS_LADDER,
    BOOKS,
    CHUNK_BLOCKS,
    HEADER_BITS,
    Nearest,
    lloyd_gaussian,
    read_block_side_info,
    scale_table,
)
from hyperonnx.codec.tcq import NEXT, trellis_backtrack, trellis_forward

# Scale codes tried around the block's absolute maximum: six coarser and five finer. The trellis's best path
# reaches past the doubled Lloyd set's outer levels, so coarser scales than blockvq's pay (+0.2 dB at 5 bits).
SCALE_OFFSETS = tuple(range(-6, 6))
# Of the 48 (scale, level set) candidates per block, the Viterbi search runs on the TOP_CANDIDATES whose plain
# nearest-level error on the whole fine set is least: on N(0,1), 8 loses < 0.01 dB against all, at 1/3 the time.
TOP_CANDIDATES = 8
# The state's parity at position t is u_(t−1), where u_t = b_t ⊕ u_(t−2) ⊕ u_(t−3) and b_t is θ_t's low bit:
# u = b / (1 + D² + D³) over GF(2), whose impulse response repeats with period 7.
IMPULSE = (1, 0, 1, 1, 1, 0, 0)
# Weights per encoder pass: its Viterbi search holds TOP_CANDIDATES rows of them (measured fastest).
ENCODE_CHUNK_WEIGHTS = 1 << 15
# The ranking reads a weight's squared distance to a set's nearest level from a table of cells over
# [−PROXY_LIMIT, PROXY_LIMIT] (in units of the candidate scale): it only orders candidates, so the cell width
# (1/1024) need not be exact; the Viterbi search computes the chosen candidates' errors exactly.
PROXY_LIMIT = 2.0
PROXY_CELLS = 1 << 12


@functools.cache
def fine_codebooks(bits: int, block: int) -> np.ndarray:
    """The four fine level sets, (4, 2^(bits+1)) float32: Lloyd-Gaussian for blocks normalised by their absolute
    maximum (the one set stored), and the three that ``level_sets`` computes from it."""
    return level_sets(lloyd_gaussian(2 << bits, block).astype(np.float32))


def level_sets(gaussian: np.ndarray) -> np.ndarray:
    """The four fine level sets from the stored first one (2L float32 values), (4, 2L) float32.

    Set 0 is the stored (Lloyd-Gaussian) set; sets 1–3 are exact quotients of integers (one rounding each, so
    every decoder computes the same bits and they cost no storage), with n = 2L − 1:
    uniform (2i − n)/n on [−1, 1], and blockvq's two skewed sets (5n − 6i)/(5n) on [1, −0.2] and its negation,
    ordered from their far end. Index 0 is the only extreme a block's first weight can take (state 0 allows even
    indices), so a block of one sign — a constant tensor — reaches its extreme and decodes exactly.
    """
    gaussian = np.asarray(gaussian, dtype=np.float32)
    n = gaussian.size - 1
    i = np.arange(n + 1)
    uniform = (2 * i - n).astype(np.float32) / np.float32(n)
    far_positive = (5 * n - 6 * i).astype(np.float32) / np.float32(5 * n)
    return np.stack([gaussian, uniform, far_positive, -far_positive]).astype(np.float32)


class _CosetSearch:
    """Nearest level among one coset's levels (indices ≡ c mod 4 of a fine set, in any order)."""

    def __init__(self, book: np.ndarray, coset: int):
        members = np.arange(coset, book.size, 4)
        order = np.argsort(book[members], kind="stable")
        self.nearest = Nearest(book[members][order])
        self.index = members[order]  # position in the sorted coset → index in the fine set
        self.levels = self.nearest.levels

    def __call__(self, v: np.ndarray, cells: np.ndarray | None = None) -> np.ndarray:
        """The fine-set index of the coset level nearest each ``v`` (``cells``: ``Nearest.cells(v)``)."""
        return self.index[self.nearest(v, cells)]


@functools.lru_cache(maxsize=64)
def _searchers(bits: int, block: int) -> tuple[tuple[Nearest, tuple[_CosetSearch, ...]], ...]:
    """Per level set: a nearest-level search over the whole set (sorted) and one per coset."""
    return tuple((Nearest(np.sort(book)), tuple(_CosetSearch(book, c) for c in range(4)))
                 for book in fine_codebooks(bits, block))


@functools.lru_cache(maxsize=64)
def _proxy_table(bits: int, block: int) -> np.ndarray:
    """(PROXY_CELLS + 1, BOOKS) float32: the squared distance from each cell's centre to each fine set's nearest
    level (the extra cell holds values clipped at the top)."""
    centres = -PROXY_LIMIT + (np.arange(PROXY_CELLS + 1) + 0.5) * (2 * PROXY_LIMIT / PROXY_CELLS)
    table = np.empty((PROXY_CELLS + 1, BOOKS), dtype=np.float32)
    for b, book in enumerate(fine_codebooks(bits, block).astype(np.float64)):
        table[:, b] = np.min((centres[:, None] - book[None, :]) ** 2, axis=1)
    return table


def parity_matrix(block: int) -> np.ndarray:
    """(block, block) 0/1 float32 matrix T with parity = (low bits @ T) mod 2 for one block's θ low bits."""
    t = np.arange(block)
    lag = t[None, :] - 1 - t[:, None]  # row k (an earlier θ), column t (the weight whose parity it feeds)
    impulse = np.asarray(IMPULSE, dtype=np.float32)
    return np.where(lag >= 0, impulse[np.maximum(lag, 0) % len(IMPULSE)], 0).astype(np.float32)


class BlockTcqCodec(Codec):
    name: ClassVar[str] = "blocktcq"
    family: ClassVar[str] = "blocktcq"
    defaults: ClassVar[dict[str, Any]] = {"bits": 5, "block": 32}
    summary: ClassVar[str] = ("block-scaled trellis-coded θ at a fixed rate (8-state trellis over four fine "
                              "level sets, 8-bit log block scales)")
    int_keys: ClassVar[tuple[str, ...]] = ("block", "levels")
    float_keys: ClassVar[tuple[str, ...]] = ("smax", "books")
    budget_ladder: ClassVar[tuple[dict[str, Any], ...]] = BITS_LADDER  # blockvq's framing: the same sizes
    block_headers: ClassVar[bool] = True
    portable: ClassVar[str | None] = "blocktcq"

    def encode(self, x: np.ndarray, params: dict[str, Any]) -> Encoded:
        bits, block = int(params["bits"]), int(params["block"])
        if not 1 <= bits <= 8:
            raise ValueError(f"blocktcq codec: bits must be in 1..8, got {bits}")
        if not 2 <= block <= 4096:
            raise ValueError(f"blocktcq codec: block must be in 2..4096, got {block}")
        flat = np.asarray(x).reshape(-1)
        smax = float(np.float32(max(float(flat.max()), -float(flat.min()))))
        if not np.isfinite(smax):
            raise ValueError("blocktcq codec: the tensor's largest magnitude overflows float32")
        books = fine_codebooks(bits, block)
        scales = scale_table(smax)
        blob = native.encode_blocktcq(flat, bits, block, smax, scales, native_tables(bits, block)) if smax > 0 \
            else None
        if blob is None:  # numpy: the specification, and the fallback without the native library
            blob = _encode_reference(flat, bits, block, smax, books, scales)
        return Encoded(
            codec=self.family,
            shape=tuple(int(d) for d in np.shape(x)),
            dtype=np.asarray(x).dtype.name,
            group=1,
            bits=bits,
            blob=blob,
            ints={"block": (block,), "levels": (1 << bits,)},
            floats={"smax": (smax,), "books": tuple(float(v) for v in books[0])},  # the other sets are computed
        )

    def table(self, enc: Encoded) -> np.ndarray:
        raise ValueError("blocktcq has per-block scales and a trellis state: it has no single decode table")

    def decode(self, enc: Encoded) -> np.ndarray:
        return decode_blocktcq(enc)


def _encode_reference(flat: np.ndarray, bits: int, block: int, smax: float, books: np.ndarray,
                      scales: np.ndarray) -> np.ndarray:
    """The numpy encoder's blob (codes, then headers)."""
    numel = flat.size
    nblocks = -(-numel // block)
    digits = np.zeros(nblocks * block, dtype=np.uint16)
    headers = np.zeros(nblocks, dtype=np.uint32)
    chunk_blocks = max(1, ENCODE_CHUNK_WEIGHTS // block)
    for start in range(0, nblocks if smax > 0 else 0, chunk_blocks):  # all zeros: scale 0 decodes them
        stop = min(nblocks, start + chunk_blocks)
        chunk = np.zeros((stop - start) * block, dtype=np.float32)
        part = flat[start * block : stop * block]
        chunk[: part.size] = part
        last = numel - (nblocks - 1) * block if stop == nblocks else block  # weights the chunk's last block holds
        d, h = _encode_blocks(chunk.reshape(-1, block), books, _searchers(bits, block),
                              _proxy_table(bits, block), scales, smax, last)
        digits[start * block : stop * block] = d.ravel()
        headers[start:stop] = h
    return np.concatenate([bitpack.pack(digits[:numel], bits), bitpack.pack(headers, HEADER_BITS)])


def _encode_blocks(x: np.ndarray, books: np.ndarray, searchers, proxy_table: np.ndarray, scales: np.ndarray,
                   smax: float, last: int):
    """Per block: the (scale code, level set) and trellis path of least squared error; returns θ and headers.

    The candidates are ranked by plain nearest-level error on the whole fine set (the trellis's error tracks
    it), and the Viterbi search decides among the best TOP_CANDIDATES of each block, all of them in one pass.
    The last block's first ``last`` weights are real: its zero padding is neither stored nor counted as error.
    """
    x = x.astype(np.float32)
    nb, width = x.shape
    absmax = np.abs(x).max(axis=1).astype(np.float64)
    with np.errstate(divide="ignore"):
        k0 = np.floor(-np.log2(np.maximum(absmax, 1e-300) / smax) * 16)
    # Scales past `top` underflow to zero: a tensor within 2^-16 of float32's smallest subnormal never uses them.
    top = int(np.count_nonzero(scales > 0)) - 1
    k0 = np.clip(k0, 0, top).astype(np.int64)
    offsets = np.asarray(SCALE_OFFSETS)
    # Rank: each weight's distance to its set's nearest level, read from a table of cells (scaled to x's units).
    proxy = np.empty((offsets.size, nb, BOOKS), dtype=np.float32)
    xt = np.ascontiguousarray(x.T)  # positions × blocks: the sum over a block adds whole rows
    cells = np.empty((width, nb), dtype=np.float32)
    for o, offset in enumerate(offsets):
        s = scales[np.clip(k0 + offset, 0, top)]
        with np.errstate(over="ignore", invalid="ignore"):  # subnormal scales: handled below
            per_unit = (PROXY_CELLS / (2 * PROXY_LIMIT) / np.maximum(s, np.float32(1e-38))).astype(np.float32)
            np.multiply(xt, per_unit[None, :], out=cells)
        cells += np.float32(PROXY_CELLS / 2)
        if not np.isfinite(per_unit).all():
            # A scale deep in the subnormals makes per_unit infinite and a zero weight's cell 0·∞ = NaN: a zero
            # weight sits in the middle cell at every scale.
            np.nan_to_num(cells, copy=False, nan=PROXY_CELLS / 2, posinf=PROXY_CELLS, neginf=0)
        np.clip(cells, 0, PROXY_CELLS, out=cells)
        distance = np.take(proxy_table, cells.astype(np.int32), axis=0)  # positions × blocks × BOOKS
        if last < width:
            distance[last:, -1] = 0.0
        np.sum(distance, axis=0, out=proxy[o])
        proxy[o] *= (s * s)[:, None]
    # The shortlist in candidate order (offset-major), so that among equal errors the first candidate wins.
    ranked = np.argsort(proxy.transpose(1, 0, 2).reshape(nb, -1), axis=1, kind="stable")
    shortlist = np.sort(ranked[:, :TOP_CANDIDATES], axis=1)
    book = (shortlist % BOOKS).ravel()
    k = np.clip(k0[:, None] + offsets[shortlist // BOOKS], 0, top).ravel()
    # One Viterbi pass over every (block, candidate) row, rows grouped by level set for the coset searches.
    order = np.argsort(book, kind="stable")
    book, k = book[order], k[order]
    s = scales[k][None, :]
    xr = np.ascontiguousarray(x[order // TOP_CANDIDATES].T)  # positions × rows: the trellis search's layout
    v = xr / s
    rows = order.size
    d = np.empty((width, 4, rows))
    index = np.empty((4, width, rows), dtype=np.int16)  # each coset's nearest level, in the fine set
    bounds = np.searchsorted(book, np.arange(BOOKS + 1))
    for b in range(BOOKS):
        lo, hi = bounds[b], bounds[b + 1]
        if lo == hi:
            continue
        cells = Nearest.cells(v[:, lo:hi])  # shared by the four cosets' searches
        for c, search in enumerate(searchers[b][1]):
            index[c, :, lo:hi] = search(v[:, lo:hi], cells)
            diff = books[b][index[c, :, lo:hi]] * s[:, lo:hi] - xr[:, lo:hi]
            np.square(diff, out=d[:, c, lo:hi], dtype=np.float64)
    if last < width:  # the padding: every path through it costs nothing
        d[last:, :, order // TOP_CANDIDATES == nb - 1] = 0.0
    took, cost = trellis_forward(d)
    # Back to (block, candidate) order; each block keeps its candidate of least error (the first among equals),
    # and only its path is traced back.
    final = np.argmin(cost, axis=0)
    err = cost[final, np.arange(rows)]
    unsorted = np.empty(rows, dtype=np.int64)
    unsorted[order] = np.arange(rows)
    err = err[unsorted].reshape(nb, TOP_CANDIDATES)
    best = unsorted.reshape(nb, TOP_CANDIDATES)[np.arange(nb), np.argmin(err, axis=1)]
    cosets = trellis_backtrack(took, final[best], best)  # positions × blocks
    fine = np.take_along_axis(index[:, :, best], cosets[None], axis=0)[0].T  # blocks × positions
    digits = (fine >> 1).astype(np.uint16)
    headers = (k[best] | (book[best] << 8)).astype(np.uint32)
    return digits, headers


def decode_blocktcq(enc: Encoded) -> np.ndarray:
    """The reference decoder (docs/format.md, ``blocktcq``)."""
    side = read_block_side_info(enc, "blocktcq", 1, 2)
    block, levels, book, block_scales = side.block, side.levels, side.book, side.block_scales
    books = level_sets(side.stored).ravel()
    bits, numel = enc.bits, enc.numel
    nblocks = -(-numel // block)
    values = np.empty(nblocks * block, dtype=np.float32)
    for first in range(0, nblocks, CHUNK_BLOCKS):  # bounded working memory: a chunk of blocks at a time
        last = min(nblocks, first + CHUNK_BLOCKS)
        lo, hi = first * block, min(numel, last * block)
        theta = np.zeros((last - first) * block, dtype=np.int64)
        # CHUNK_BLOCKS is a multiple of 8, so every chunk's codes start on a byte boundary
        theta[: hi - lo] = bitpack.unpack(enc.blob[lo * bits // 8 : bitpack.packed_size(hi, bits)], hi - lo, bits)
        theta = theta.reshape(-1, block)
        fine = np.empty_like(theta)
        state = np.zeros(theta.shape[0], dtype=np.int64)
        for t in range(block):  # the state walk: sequential along a block, vectorised across blocks
            fine[:, t] = 2 * theta[:, t] + (state & 1)
            state = NEXT[state, fine[:, t] & 3]
        rows = book[first:last, None] * (2 * levels) + fine
        values[lo : last * block] = (books[rows] * block_scales[first:last, None]).reshape(-1)
    values = values[:numel]
    return values.astype(dtype_from_name(enc.dtype), copy=False).reshape(enc.shape)



@functools.lru_cache(maxsize=64)
def native_tables(bits: int, block: int) -> tuple[np.ndarray, ...]:
    """The numpy tables in the native encoder's layout (encoders.h): books, proxy, and per (level set, coset) the
    _CosetSearch's padded edges, fine-set index, lookup grid and exact-grid flag."""
    books = np.ascontiguousarray(fine_codebooks(bits, block), dtype=np.float32)
    proxy = np.ascontiguousarray(_proxy_table(bits, block), dtype=np.float32)
    cosets = [search for _, per_coset in _searchers(bits, block) for search in per_coset]
    m = books.shape[1] // 4
    if any(s.index.size != m for s in cosets):
        raise RuntimeError("blocktcq coset searches do not have 2L/4 levels each")
    edges = np.ascontiguousarray(np.stack([s.nearest.edges for s in cosets]), dtype=np.float32)
    index = np.ascontiguousarray(np.stack([s.index for s in cosets]), dtype=np.int16)
    lut = np.ascontiguousarray(np.stack([s.nearest.lut for s in cosets]), dtype=np.int32)
    exact = np.array([bool(s.nearest.exact_grid) for s in cosets], dtype=np.uint8)
    return books, proxy, edges, index, lut, exact


__all__ = ["BlockTcqCodec", "decode_blocktcq", "fine_codebooks", "level_sets", "native_tables", "parity_matrix"]
