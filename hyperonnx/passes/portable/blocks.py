"""What the codecs framed by 10-bit block headers (``block_headers``: blockvq, blocktcq) share in their portable
form: the stored headers, each block's level set and scale computed from them, and the row index and scaling
of a table of four level sets."""

from __future__ import annotations

import numpy as np
import onnx

from hyperonnx.codec import Encoded, bitpack, blockvq
from hyperonnx.passes.portable.builder import Builder, plane_nodes
from hyperonnx.passes.portable.layout import BOOK_BITS, blocks, pack_planes

Headers = tuple[str, str]  # the stored headers' initializers: (scale codes, level-set plane)


def store_headers(b: Builder, enc: Encoded) -> Headers:
    """Store the block headers: the scale codes a byte each (``::scale_code``), the level sets as a 2-bit plane
    (``::book``); decoders.py packs them back into the blob."""
    nblocks = blocks(enc)
    code_bytes = bitpack.packed_size(enc.count, enc.bits)
    headers = bitpack.unpack(enc.blob[code_bytes:], nblocks, blockvq.HEADER_BITS)
    scale_code, book = b.name("scale_code"), b.name("book")
    b.add(scale_code, (headers & 0xFF).astype(np.uint8))
    b.add(book, pack_planes((headers >> 8).astype(np.uint8), [(BOOK_BITS, 0)])[0])
    return scale_code, book


def header_nodes(b: Builder, enc: Encoded, headers: Headers) -> tuple[str, str]:
    """Each block's level-set id (int32) and scale (float32) from the stored headers; the 256 scales are computed
    in the graph."""
    scales = scale_table_nodes(b, enc)
    block_scale = b.node("Gather", [scales, b.node("Cast", [headers[0]], "scale_code_i32", to=onnx.TensorProto.INT32)],
                         "block_scale")
    return book_nodes(b, enc, headers), block_scale


def book_nodes(b: Builder, enc: Encoded, headers: Headers) -> str:
    """Each block's level-set id (int32) from the stored headers."""
    nblocks = blocks(enc)
    return plane_nodes(b, [(BOOK_BITS, 0)], [headers[1]], nblocks, [nblocks], onnx.TensorProto.INT32, True)


def scale_table_nodes(b: Builder, enc: Encoded) -> str:
    """The 256 block scales (blockvq's, shared by blocktcq), computed exactly as docs/format.md specifies."""
    f32 = np.float32
    # smax · M[k mod 16], then an exact power-of-two step (a product by 2^-(k div 16)).
    k = b.node("Range", [b.const("k0", np.int32(0)), b.const("k256", np.int32(256)), b.const("k1", np.int32(1))], "k")
    sixteen = b.const("sixteen", np.int32(16))
    mantissa = b.node("Gather", [b.const("steps", blockvq.STEPS), b.node("Mod", [k, sixteen], "k_mod")], "mantissa")
    powers = b.const("powers", np.ldexp(np.ones(16, dtype=f32), -np.arange(16)).astype(f32))
    exponent = b.node("Gather", [powers, b.node("Div", [k, sixteen], "k_div")], "exponent")
    return b.node("Mul", [b.node("Mul", [b.const("smax", f32(enc.floats["smax"][0])), mantissa], "scaled"), exponent],
                  "scales")


def book_rows(b: Builder, grid: str, book: str, rows_per_book: int, to: int = onnx.TensorProto.INT32) -> str:
    """Row index into a table of four level sets: each block's set id · rows_per_book + the block's codes (the
    block offsets computed in int32, then cast to ``to``, the grid's type)."""
    row_base = b.node("Mul", [book, b.const("rows_per_book", np.int32(rows_per_book))], "row_base")
    column = b.node("Reshape", [row_base, b.const("col", np.array([-1, 1], dtype=np.int64))], "row_base_col")
    if to != onnx.TensorProto.INT32:
        column = b.node("Cast", [column], "row_base_cast", to=to)
    return b.node("Add", [grid, column], "rows_index")


def scaled_rows(b: Builder, table: str, rows_index: str, block_scale: str, rank: int, tag: str) -> str:
    """Gather every row (the tagged Gather) and multiply by its block's scale (a rank-``rank`` result, blocks
    first)."""
    rows = b.gather(table, rows_index, tag)
    scale_shape = b.const("scale_shape", np.array([-1] + [1] * (rank - 1), dtype=np.int64))
    return b.node("Mul", [rows, b.node("Reshape", [block_scale, scale_shape], "scale_col")], "values")
