"""`blockvq`'s portable decoder: pair rows of a table generated in the graph from the four level sets, scaled by
each block's scale (docs/format.md, `blockvq`)."""

from __future__ import annotations

import numpy as np
import onnx

from hyperonnx.codec import Encoded, blockvq
from hyperonnx.passes.portable.blocks import Headers, book_rows, header_nodes, scaled_rows
from hyperonnx.passes.portable.builder import Builder


def index_type(enc: Encoded, opset: int) -> int:
    """The codes index the pair table as int32."""
    return onnx.TensorProto.INT32


def table_bytes(enc: Encoded) -> int:
    """No table is stored: it is generated from the side information."""
    return 0


def rows(b: Builder, enc: Encoded, grid: str, headers: Headers, tag: str, opset: int) -> str:
    """Pair rows of a `blockvq` tensor, (nblocks, B/2, 2) float32, exactly as docs/format.md specifies, from the
    codes as an int32 (nblocks, B/2) grid."""
    (levels,) = enc.ints["levels"]
    book, block_scale = header_nodes(b, enc, headers)
    table = _pair_table_nodes(b, enc, levels)
    rows_index = book_rows(b, grid, book, levels * levels)  # book·L² + θ
    return scaled_rows(b, table, rows_index, block_scale, 3, tag)


def _pair_table_nodes(b: Builder, enc: Encoded, levels: int) -> str:
    """blockvq's pair table (4·L² rows of 2), generated in the graph from the books (4·L values): row book·L² + θ
    holds (books[book·L + θ div L], books[book·L + θ mod L])."""
    books = b.const("books", np.asarray(enc.floats["books"], dtype=np.float32))
    r = b.node("Range", [b.const("r0", np.int32(0)), b.const("rn", np.int32(blockvq.BOOKS * levels * levels)),
                         b.const("r1", np.int32(1))], "r")
    l2 = b.const("l2_table", np.int32(levels * levels))
    n_levels = b.const("levels", np.int32(levels))
    book_base = b.node("Mul", [b.node("Div", [r, l2], "r_book"), n_levels], "book_base")
    theta = b.node("Mod", [r, l2], "r_theta")
    first = b.node("Gather", [books, b.node("Add", [book_base, b.node("Div", [theta, n_levels], "d0")], "i0")],
                   "first")
    second = b.node("Gather", [books, b.node("Add", [book_base, b.node("Mod", [theta, n_levels], "d1")], "i1")],
                    "second")
    column = b.const("column", np.array([-1, 1], dtype=np.int64))
    return b.node("Concat", [b.node("Reshape", [first, column], "first_col"),
                             b.node("Reshape", [second, column], "second_col")], "pair_table", axis=1)
