"""The portable decoder of a table codec whose table standard ops cannot generate (`kronecker`: unsigned 64-bit
products): the numpy reference's float32 table stored as an initializer, its rows gathered."""

from __future__ import annotations

import onnx

from hyperonnx import codec
from hyperonnx.codec import Encoded
from hyperonnx.passes.portable.builder import Builder


def index_type(enc: Encoded, opset: int) -> int:
    """The codes index the table as int32."""
    return onnx.TensorProto.INT32


def table_bytes(enc: Encoded) -> int:
    """The stored table's bytes."""
    return codec.table(enc).nbytes


def rows(b: Builder, enc: Encoded, index: str, headers: None, tag: str, opset: int) -> str:
    """The stored table's rows for the codes ``index`` (int32)."""
    table = b.name("table")
    b.add(table, codec.table(enc))
    return b.gather(table, index, tag)
