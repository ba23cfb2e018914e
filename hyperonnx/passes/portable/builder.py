"""Building one portable decoder's graph: fresh names under the decoder's prefix, constants and nodes, and the
steps every codec shares (the codes from their bit planes, as the decoder's grid; the tagged Gather)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hyperonnx.codec import Encoded
from hyperonnx.passes.emit import Namer
from hyperonnx.passes.portable.layout import blocks, plane_codes


class Builder:
    """One decoder's initializers and nodes: values are named ``<prefix>::<label>`` and nodes
    ``hyperonnx/<prefix>/<label>``, unique in the model (``namer``; a clash gets a suffix)."""

    def __init__(self, namer: Namer, prefix: str):
        self.namer = namer
        self.prefix = prefix
        self.initializers: list[onnx.TensorProto] = []
        self.nodes: list[onnx.NodeProto] = []

    def name(self, label: str) -> str:
        """A fresh value name."""
        return self.namer(f"{self.prefix}::{label}")

    def add(self, name: str, array: np.ndarray) -> None:
        """``array`` as the initializer ``name`` (a name from ``name``)."""
        self.initializers.append(numpy_helper.from_array(array, name))

    def const(self, label: str, value) -> str:
        """A new initializer holding ``value``; returns its fresh name."""
        name = self.name(label)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], label: str, **attrs) -> str:
        """A new node whose one output gets a fresh name (the node is named after it); returns that name."""
        out = self.name(label)
        self.step(op, inputs, out, out[len(self.prefix) + 2 :], **attrs)
        return out

    def step(self, op: str, inputs: list[str], output: str, node_label: str, **attrs) -> None:
        """A new node named ``hyperonnx/<prefix>/<node_label>`` with the given output name."""
        self.nodes.append(helper.make_node(op, inputs, [output], name=f"hyperonnx/{self.prefix}/{node_label}",
                                           **attrs))

    def gather(self, table: str, rows_index: str, tag: str) -> str:
        """The decoder's Gather of table rows; it carries the codec attributes (``tag``): it is how decoders.py
        finds the portable decoder."""
        rows = self.name("rows")
        self.nodes.append(helper.make_node("Gather", [table, rows_index], [rows], axis=0,
                                           name=f"hyperonnx/{self.prefix}/gather", doc_string=tag))
        return rows


def plane_nodes(b: Builder, planes: list[tuple[int, int]], names: list[str], count: int, grid: list[int], to: int,
                uint8_add: bool) -> str:
    """The ``count`` codes from their stored planes (``layout.pack_planes``), as type ``to`` in the decoder's
    ``grid`` shape (zero codes after the last one).

    Each plane's fields come out of its bytes by a BitShift LEFT (a vector: field f's top bit to bit 7) and a
    BitShift RIGHT by 8 − w, in uint8. With ``uint8_add`` (Add on uint8: opset 14) the planes of each byte of the
    code (bits 0–7, 8–15: no plane straddles two) are shifted to their place and summed in uint8 (their fields are
    disjoint), so a code of up to 8 bits is cast once. Otherwise, and for the code's second byte, each part takes
    the grid's shape in uint8, is cast and multiplied to its place (exact: integers below 2^16) and the parts are
    summed in ``to``.
    """
    stored = plane_codes(count, planes)
    parts: dict[int, list[tuple[str, int]]] = {}  # by byte: (uint8 value, its shift still to apply)
    for (width, shift), name in zip(planes, names):
        per_byte = 8 // width
        value = name
        if per_byte > 1:
            lefts = np.array([8 - (f + 1) * width for f in range(per_byte)], dtype=np.uint8)
            lefts = lefts.reshape((2,) * (per_byte.bit_length() - 1) + (1,))
            value = b.node("BitShift", [value, b.const(f"plane{width}_left", lefts)], f"plane{width}_top",
                           direction="LEFT")
            value = b.node("BitShift", [value, b.const(f"plane{width}_right", np.uint8(8 - width))], f"plane{width}",
                           direction="RIGHT")
        byte, within = divmod(shift, 8)
        if within and (uint8_add or byte == 0):
            value = b.node("BitShift", [value, b.const(f"plane{width}_shift", np.uint8(within))],
                           f"plane{width}_shifted", direction="LEFT")
            shift -= within
        parts.setdefault(byte, []).append((value, shift))
    if uint8_add:
        for byte, values in parts.items():
            value = values[0][0]
            for other, _ in values[1:]:
                value = b.node("Add", [value, other], "codes_u8" if byte == 0 else f"codes_byte{byte}_u8")
            parts[byte] = [(value, 8 * byte)]
    if to == onnx.TensorProto.UINT8:  # codes of up to 8 bits, summed in uint8 (``uint8_add``): no Cast
        ((value, _),) = parts[0]
        return _to_grid(b, value, stored, grid)
    label = "codes_f32" if to == onnx.TensorProto.FLOAT else "codes_i32"
    dtype = np.float32 if to == onnx.TensorProto.FLOAT else np.int32
    total = None
    for value, shift in (part for values in parts.values() for part in values):
        value = b.node("Cast", [_to_grid(b, value, stored, grid)], label if total is None else "part_cast", to=to)
        if shift:
            value = b.node("Mul", [value, b.const("part_scale", dtype(1 << shift))], "part_scaled")
        total = value if total is None else b.node("Add", [total, value], label)
    return total


def _to_grid(b: Builder, codes: str, stored: int, grid: list[int]) -> str:
    """``stored`` codes (any shape) as ``grid``: trimmed or padded with zero codes at the end when the counts
    differ. Pad codes are 0, as ``code_grid``'s; the values they give are trimmed."""
    want = int(np.prod(grid))
    if stored == want:
        return b.node("Reshape", [codes, b.const("grid", np.array(grid, dtype=np.int64))], "code_grid")
    flat = b.node("Reshape", [codes, b.const("flat_codes", np.array([-1], dtype=np.int64))], "codes_flat")
    if stored > want:
        flat = b.node("Slice", [flat, b.const("codes_start", np.array([0], dtype=np.int64)),
                                b.const("codes_end", np.array([want], dtype=np.int64))], "codes_trimmed")
    else:
        flat = b.node("Pad", [flat, b.const("code_pads", np.array([0, want - stored], dtype=np.int64))],
                      "codes_padded")
    if len(grid) == 1:
        return flat
    return b.node("Reshape", [flat, b.const("grid", np.array(grid, dtype=np.int64))], "code_grid")


def code_grid(b: Builder, enc: Encoded, index: str, per_block: int) -> str:
    """The codes (as ``index`` holds them: int32, or float32 for blocktcq), padded to whole blocks, one row per
    block: (nblocks, per_block). The pad codes are 0; the values they give are trimmed, and in a trellis block
    they come after every real weight, so the state (which only looks back) is unchanged. Codes of whole blocks
    are stored in this shape (``emit_portable``): they need no node here."""
    nblocks = blocks(enc)
    padded_count = nblocks * per_block
    if padded_count == enc.count:
        return index  # emit_portable stored whole blocks of codes as this grid already
    pads = b.const("code_pads", np.array([0, padded_count - enc.count], dtype=np.int64))
    index = b.node("Pad", [index, pads], "codes_padded")
    return b.node("Reshape", [index, b.const("grid", np.array([nblocks, per_block], dtype=np.int64))], "code_grid")
