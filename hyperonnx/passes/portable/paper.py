"""`paper`'s portable decoder (paper-cnn's too): its table generated in the graph from the side information, with
the format's float32 operations in the format's order (docs/format.md, `paper`), then the rows gathered."""

from __future__ import annotations

import numpy as np
import onnx

from hyperonnx.codec import Encoded
from hyperonnx.codec.paper import lattice_side
from hyperonnx.passes.portable.builder import Builder


def index_type(enc: Encoded, opset: int) -> int:
    """The codes index the table as int32."""
    return onnx.TensorProto.INT32


def table_bytes(enc: Encoded) -> int:
    """No table is stored: it is generated from the side information."""
    return 0


def rows(b: Builder, enc: Encoded, index: str, headers: None, tag: str, opset: int) -> str:
    """The table's rows for the codes ``index`` (int32)."""
    return b.gather(_table_nodes(b, enc), index, tag)


def _table_nodes(b: Builder, enc: Encoded) -> str:
    """Nodes computing the `paper` table exactly as docs/format.md specifies (float32, same op order)."""
    n = enc.ints["n"][0]
    m = lattice_side(n)
    f32 = np.float32

    k = b.node("Range", [b.const("k0", np.int32(0)), b.const("kn", np.int32(n)), b.const("k1", np.int32(1))], "k")
    row = b.node("Mod", [k, b.const("m", np.int32(m))], "row")
    half = b.const("half", f32(enc.floats["half"][0]))
    dx = b.node("Sub", [b.node("Mul", [b.node("Cast", [k], "kf", to=onnx.TensorProto.FLOAT),
                                       b.const("step_x", f32(enc.floats["step"][0]))], "kx"), half], "dx_lattice")
    dy = b.node("Sub", [b.node("Mul", [b.node("Cast", [row], "rowf", to=onnx.TensorProto.FLOAT),
                                       b.const("step_y", f32(enc.floats["step"][1]))], "ry"), half], "dy_lattice")
    zero = b.const("zero", np.zeros(1, dtype=f32))
    dx = b.node("Concat", [zero, dx], "dx", axis=0)  # index 0 is the centroid: offset 0
    dy = b.node("Concat", [zero, dy], "dy", axis=0)
    scale = b.const("scale", np.asarray(enc.floats["scale"], dtype=f32).reshape(-1, 1))
    column = b.const("column", np.array([-1, 1], dtype=np.int64))
    parts = []
    for axis, offset in ((dx, enc.floats["center"][0]), (dy, enc.floats["center"][1])):
        ring_major = b.node("Add", [b.const("c", f32(offset)), b.node("Mul", [axis, scale], "scaled")], "coord")
        parts.append(b.node("Reshape", [ring_major, column], "coord_col"))
    return b.node("Concat", parts, "table", axis=1)
