"""`blocktcq`'s portable decoder: each weight's fine level from its code and the trellis state's parity (in
closed form, no sequential walk), gathered from the four level sets and scaled by its block's scale
(docs/format.md, `blocktcq`). From opset 14, where the parity sums fit uint16, the row index is computed in
integers (``_lean_rows``); otherwise in float32 (``_float_rows``)."""

from __future__ import annotations

import numpy as np
import onnx

from hyperonnx.codec import Encoded
from hyperonnx.codec.blocktcq import IMPULSE, level_sets, parity_matrix
from hyperonnx.codec.blockvq import BOOKS
from hyperonnx.passes.portable.blocks import (
    Headers,
    book_nodes,
    book_rows,
    header_nodes,
    scale_table_nodes,
    scaled_rows,
)
from hyperonnx.passes.portable.builder import Builder

# The trellis parity (``trellis_parity_half``): a matrix product up to this block size (B multiply-adds per
# weight, few passes over the codes); above it, running sums (~12 passes whatever B, no B×B matrix: 16 M entries
# at B = 4096). Measured at load (ORT 1.30 and 1.32): the product is faster up to B = 512 on a MobileNetV2-shaped
# net (3.5 M weights in 35 tensors) and on one 2048×2048 weight, and ties at B = 1024.
PARITY_MATMUL_MAX_BLOCK = 512


def _lean(enc: Encoded, opset: int) -> bool:
    return opset >= 14 and lean_parity_fits(enc.bits, enc.ints["block"][0])


def index_type(enc: Encoded, opset: int) -> int:
    """The codes as uint8 for the integer row index (``_lean_rows``), else as float32."""
    return onnx.TensorProto.UINT8 if _lean(enc, opset) else onnx.TensorProto.FLOAT


def table_bytes(enc: Encoded) -> int:
    """No table is stored: the level sets are constants of the side information's size."""
    return 0


def rows(b: Builder, enc: Encoded, theta: str, headers: Headers, tag: str, opset: int) -> str:
    """The weight's values, (nblocks, B) float32, from the codes θ as an (nblocks, B) grid of ``index_type``."""
    return (_lean_rows if _lean(enc, opset) else _float_rows)(b, enc, theta, headers, tag)


def _float_rows(b: Builder, enc: Encoded, theta: str, headers: Headers, tag: str) -> str:
    """Values of a `blocktcq` tensor, (nblocks, B) float32, exactly as docs/format.md specifies, from the codes θ
    as a float32 (nblocks, B) grid.

    The trellis state's parity comes from the format's closed form (``trellis_parity_half``), not a sequential
    walk. The row c·2L + 2θ + parity is computed as 2·(θ + c·L + parity/2) in float32, on integers and halves
    below 2^24 (exact), and cast once: ORT holds every folded node's full-size output until folding ends, so each
    node saved is load-time memory as well as time.
    """
    (block,), (levels,) = enc.ints["block"], enc.ints["levels"]
    book, block_scale = header_nodes(b, enc, headers)
    parity_half = trellis_parity_half(b, theta, block)
    pair_row = book_rows(b, b.node("Add", [theta, parity_half], "theta_parity"), book, levels,
                         onnx.TensorProto.FLOAT)  # θ + c·L + parity/2
    rows_index = b.node("Cast", [b.node("Mul", [pair_row, b.const("two", np.float32(2))], "rows_f32")],
                        "rows_index_i32", to=onnx.TensorProto.INT32)  # c·2L + f
    # All four level sets as one constant: the three computed ones are exact quotients, computed here once.
    books = b.const("books", level_sets(np.asarray(enc.floats["books"], dtype=np.float32)).reshape(-1))
    return scaled_rows(b, books, rows_index, block_scale, 2, tag)


def lean_parity_fits(bits: int, block: int | None) -> bool:
    """Whether ``_lean_rows`` applies: its parity sums (at most 2^bits − 1 times a column sum of the parity
    matrix) fit uint16, and the block is small enough for the matrix product."""
    if block is None or block > PARITY_MATMUL_MAX_BLOCK:
        return False
    return int(parity_matrix(block).sum(axis=0).max()) * ((1 << bits) - 1) < 1 << 16


def _lean_rows(b: Builder, enc: Encoded, theta: str, headers: Headers, tag: str) -> str:
    """``_float_rows`` from the codes θ as a uint8 (nblocks, B) grid, with the row index computed in uint16
    (opset 14: Add, Mul and Mod on uint16) instead of float32: half the bytes per intermediate, and the parity is
    one Mod of the integer sums instead of a Floor and a Sub. The parity's matrix product is MatMulInteger on the
    uint8 codes (int32 sums, exact). The block scales are folded into the Gather's table (256 × 4 × 2L rows: a
    uint16 index up to 5 bits; above, when the table is no larger than the weight, an int32 one), so no full-size
    scale Mul is left. ORT holds every folded output until folding ends; the load peak at the defaults
    (benchmarks/portable.py): float32 15.4× the weight, uint16 index 13.4×, then MatMulInteger 11.9×, folded
    scales 10.9×.
    """
    (block,), (levels,) = enc.ints["block"], enc.ints["levels"]
    table_rows = 256 * BOOKS * 2 * levels  # one row per (scale code, level set, fine level)
    # Fold while every row index fits uint16 (up to 5 bits), and above that while the table is no larger than
    # the weight: the index is then added in int32 (+2 bytes a weight) and the full-size scale Mul (+8) goes.
    folded = table_rows <= max(1 << 16, enc.numel)
    wide = folded and table_rows > 1 << 16  # unfolded, the per-block base is a level set's: uint16 holds it
    if folded:
        book = book_nodes(b, enc, headers)
    else:
        book, block_scale = header_nodes(b, enc, headers)
    uint16 = onnx.TensorProto.UINT16
    sums = b.node("Cast", [_parity_sums_integer(b, theta, block)], "sums_u16", to=uint16)
    two = b.const("two_u16", np.uint16(2))
    parity = b.node("Mod", [sums, two], "parity", fmod=0)
    fine = b.node("Add", [b.node("Mul", [b.node("Cast", [theta], "codes_u16", to=uint16), two], "two_theta"),
                          parity], "fine")  # f = 2θ + parity
    set_rows = b.const("set_rows", np.int32(2 * levels))
    books = b.const("books", level_sets(np.asarray(enc.floats["books"], dtype=np.float32)).reshape(-1))
    # Each block's first table row, in units of 2L: its level set c, or with the scale folded in, k·4 + c: row
    # (k·4 + c)·2L + f of a 256 × (4·2L) table holds books[c·2L + f] · scales[k], the very product the unfolded
    # decoder computes per weight, so the Gather's output is the weight's values and the full-size scale Mul goes.
    block_rows = book
    if folded:
        code = b.node("Cast", [headers[0]], "scale_code_i32", to=onnx.TensorProto.INT32)
        block_rows = b.node("Add", [b.node("Mul", [code, b.const("sets", np.int32(BOOKS))], "code_sets"), book],
                            "block_set")
    set_base = b.node("Mul", [block_rows, set_rows], "set_base_i32")
    col_shape = b.const("col", np.array([-1, 1], dtype=np.int64))
    if wide:  # rows past 2^16: the per-weight Add runs in int32 (the Gather's index type anyway)
        column = b.node("Reshape", [set_base, col_shape], "set_base_col")
        fine_i32 = b.node("Cast", [fine], "fine_i32", to=onnx.TensorProto.INT32)
        rows_index = b.node("Add", [fine_i32, column], "rows_index_i32")
    else:
        column = b.node("Reshape", [b.node("Cast", [set_base], "set_base", to=uint16), col_shape], "set_base_col")
        rows_index = b.node("Cast", [b.node("Add", [fine, column], "rows_u16")], "rows_index_i32",
                            to=onnx.TensorProto.INT32)
    if not folded:
        return scaled_rows(b, books, rows_index, block_scale, 2, tag)
    shape = {name: b.const(name, np.array(dims, dtype=np.int64))
             for name, dims in (("scales_col_shape", [-1, 1]), ("books_row_shape", [1, -1]), ("flat", [-1]))}
    scales = b.node("Reshape", [scale_table_nodes(b, enc), shape["scales_col_shape"]], "scales_col")
    books_row = b.node("Reshape", [books, shape["books_row_shape"]], "books_row")
    table = b.node("Reshape", [b.node("Mul", [scales, books_row], "scaled_books"), shape["flat"]], "scaled_table")
    return b.gather(table, rows_index, tag)


def trellis_parity_half(b: Builder, theta: str, block: int) -> str:
    """Half blocktcq's trellis-state parity, (state & 1) / 2 ∈ {0, 0.5} at each element, float32 (nblocks, B), from
    the codes as float32 (nblocks, B), with no sequential walk.

    docs/format.md's closed form: parity_t = (Σ_(s<t) b_s·g_(t−1−s)) mod 2, b_s = θ_s & 1, g = IMPULSE repeating
    with period 7. Reduction mod 2 commutes with the sum, so the sums run over θ itself (no low-bit pass): with
    half = that sum / 2 (an exact multiple of 0.5), parity/2 = half − ⌊half⌋ (Floor and Sub: ORT runs a float
    Mod 4× slower).
    """
    half_sums = _parity_half_sums_matmul if block <= PARITY_MATMUL_MAX_BLOCK else _parity_half_sums_runs
    half = half_sums(b, theta, block)
    return b.node("Sub", [half, b.node("Floor", [half], "half_floor")], "parity_half")


def _parity_half_sums_matmul(b: Builder, theta: str, block: int) -> str:
    """(Σ_(s<t) θ_s·g_(t−1−s)) / 2 as θ @ (parity_matrix(B) / 2), the matrix generated in the graph (B² entries).

    Exact in float32 whatever the summation order: every partial sum is a multiple of 0.5 ≤ 255·B/2 < 2^23.
    """
    return _parity_sums_matmul(b, theta, block, tap=0.5)


def _parity_taps(b: Builder, block: int, impulse: np.ndarray) -> tuple[str, str]:
    """The B×B parity matrix's parts, generated in the graph: at row s, column t, the tap ``impulse[(t − 1 − s) mod
    7]`` (``impulse``: g in the matrix product's dtype) and whether it applies (s < t: a weight never depends on
    itself or later ones)."""
    t = b.node("Range", [b.const("t0", np.int32(0)), b.const("tn", np.int32(block)), b.const("t1", np.int32(1))], "t")
    later = b.node("Reshape", [t, b.const("t_row_shape", np.array([1, -1], dtype=np.int64))], "t_row")  # column: t
    earlier = b.node("Reshape", [t, b.const("t_col_shape", np.array([-1, 1], dtype=np.int64))], "t_col")  # row: s
    lag = b.node("Sub", [b.node("Sub", [later, b.const("t_one", np.int32(1))], "t_minus_1"), earlier],
                 "lag")  # t − 1 − s
    taps = b.node("Gather", [b.const("impulse", impulse),
                             b.node("Mod", [lag, b.const("period", np.int32(impulse.size))], "lag_mod")], "taps")
    return taps, b.node("Greater", [lag, b.const("lag_floor", np.int32(-1))], "causal_bool")


def _parity_sums_matmul(b: Builder, theta: str, block: int, tap: float) -> str:
    """``tap`` · Σ_(s<t) θ_s·g_(t−1−s) as θ @ (tap · parity_matrix(B)), the matrix generated in the graph."""
    taps, causal = _parity_taps(b, block, np.asarray(IMPULSE, dtype=np.float32) * np.float32(tap))
    causal = b.node("Cast", [causal], "causal", to=onnx.TensorProto.FLOAT)
    return b.node("MatMul", [theta, b.node("Mul", [taps, causal], "parity_matrix")], "parity_sums")


def _parity_sums_integer(b: Builder, theta: str, block: int) -> str:
    """Σ_(s<t) θ_s·g_(t−1−s) as int32 from the codes as uint8: MatMulInteger of θ and the 0/1 parity matrix
    (uint8). No float32 copy of θ and no float32 product: 2 bytes a weight fewer than ``_parity_sums_matmul``
    while ORT folds."""
    taps, causal = _parity_taps(b, block, np.asarray(IMPULSE, dtype=np.uint8))
    matrix = b.node("Where", [causal, taps, b.const("no_tap", np.uint8(0))], "parity_matrix_u8")
    return b.node("MatMulInteger", [theta, matrix], "parity_sums_i32")


def _parity_half_sums_runs(b: Builder, theta: str, block: int) -> str:
    """(Σ_(s<t) θ_s·g_(t−1−s)) / 2 in a fixed number of passes whatever B (no B×B matrix).

    g repeats with period P = 7, so the sum is Σ_(j≥0) v_(t−P·j) with v_t = Σ_d θ_(t−d) over the delays
    d = i + 1 where IMPULSE[i] = 1: a shift-and-add (Pad, Slice, Add), then running sums along each residue
    class mod P (CumSum over the block seen as rows of P). Sums ≤ 255·4·ceil(B/7) < 2^24: exact in float32.
    """
    period = len(IMPULSE)
    delays = [i + 1 for i, g in enumerate(IMPULSE) if g]
    lead, width = max(delays), -(-block // period) * period
    # padded[:, i] = θ_(i − lead): zeros before the block's first element and after its last (to a whole period)
    padded = b.node("Pad", [theta, b.const("delay_pads", np.array([0, lead, 0, width - block], dtype=np.int64))],
                    "theta_padded")
    axis = b.const("axis1", np.array([1], dtype=np.int64))
    taps = None
    for d in delays:
        start = lead - d
        shifted = b.node("Slice", [padded, b.const(f"delay{d}_start", np.array([start], dtype=np.int64)),
                                   b.const(f"delay{d}_end", np.array([start + width], dtype=np.int64)), axis],
                         f"delay{d}")
        taps = shifted if taps is None else b.node("Add", [taps, shifted], "taps")
    rows_of_period = b.const("period_rows", np.array([-1, width // period, period], dtype=np.int64))
    by_period = b.node("Reshape", [taps, rows_of_period], "taps_by_period")
    running = b.node("CumSum", [by_period, b.const("cumsum_axis", np.int32(1))], "taps_running")
    sums = b.node("Reshape", [running, b.const("block_rows", np.array([-1, width], dtype=np.int64))], "sums_padded")
    if width != block:
        sums = b.node("Slice", [sums, b.const("sums_start", np.array([0], dtype=np.int64)),
                                b.const("sums_end", np.array([block], dtype=np.int64)), axis], "sums")
    return b.node("Mul", [sums, b.const("one_half", np.float32(0.5))], "half_sums")
