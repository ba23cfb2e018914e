"""Rewrite one weight as a decoder: a HyperDecode node (``ort``) or standard ONNX ops (``portable``).

The decoder's output keeps the weight's name, so every consumer is untouched; nothing else in the graph
changes (see ``apply``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hyperonnx import codec
from hyperonnx.codec import Encoded
from hyperonnx.codec.paper import lattice_side as paper_lattice_side
from hyperonnx.ops import DOMAIN, OP_TYPE
from hyperonnx.passes.select import FLOAT_TYPES, WeightSite

DTYPE_TO_ONNX = {name: code for code, name in FLOAT_TYPES.items()}
PORTABLE_TAG = "hyperonnx:"  # the doc_string prefix that marks a portable decoder's Gather node


def node_attributes(enc: Encoded, mode: str) -> dict:
    attrs = {
        "codec": enc.codec,
        "format": enc.format_version,
        "shape": list(enc.shape),
        "dtype": DTYPE_TO_ONNX[enc.dtype],
        "group": enc.group,
        "bits": enc.bits,
        "mode": mode,
    }
    attrs.update({f"i_{key}": list(values) for key, values in enc.ints.items()})
    attrs.update({f"f_{key}": list(values) for key, values in enc.floats.items()})
    return attrs


def encoded_from_attributes(attrs: dict, blob: np.ndarray) -> Encoded:
    """Rebuild an Encoded from a node's attributes (the inverse of ``node_attributes``)."""
    try:
        dtype = FLOAT_TYPES[int(attrs["dtype"])]
        return Encoded(
            codec=str(attrs["codec"]),
            shape=tuple(int(d) for d in attrs["shape"]),
            dtype=dtype,
            group=int(attrs["group"]),
            bits=int(attrs["bits"]),
            blob=np.asarray(blob, dtype=np.uint8).reshape(-1),
            ints={k[2:]: tuple(int(v) for v in vals) for k, vals in attrs.items() if k.startswith("i_")},
            floats={k[2:]: tuple(float(v) for v in vals) for k, vals in attrs.items() if k.startswith("f_")},
            format_version=int(attrs["format"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed HyperDecode attributes ({exc})") from None


class Namer:
    """Fresh names in one graph (names already taken there are never reused)."""

    def __init__(self, graph: onnx.GraphProto):
        self.taken = {t.name for t in graph.initializer} | {o for n in graph.node for o in n.output}
        self.taken |= {v.name for v in graph.input} | {v.name for v in graph.output}

    def __call__(self, base: str) -> str:
        name, i = base, 1
        while name in self.taken:
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        return name


@dataclass
class Rewrite:
    """What replaces one weight: initializers and decoder nodes."""

    site: WeightSite
    initializers: list[onnx.TensorProto]
    nodes: list[onnx.NodeProto]


def apply(graph: onnx.GraphProto, rewrites: list[Rewrite]) -> None:
    """Apply all rewrites of one graph in a single pass over its initializers and nodes.

    An initializer's replacements take its place in the initializer list and its decoder nodes go first in
    the node list (in the order the weights were found); a Constant node is replaced in place.
    """
    by_initializer = {r.site.name: r for r in rewrites if r.site.constant_node is None}
    by_constant = {r.site.name: r for r in rewrites if r.site.constant_node is not None}
    initializers: list[onnx.TensorProto] = []
    for tensor in graph.initializer:
        rewrite = by_initializer.get(tensor.name)
        initializers.extend(rewrite.initializers if rewrite else [tensor])
    for rewrite in by_constant.values():
        initializers.extend(rewrite.initializers)
    nodes: list[onnx.NodeProto] = [n for r in rewrites if r.site.constant_node is None for n in r.nodes]
    for node in graph.node:
        rewrite = by_constant.get(node.output[0]) if node.op_type == "Constant" and node.output else None
        nodes.extend(rewrite.nodes if rewrite else [node])
    graph.ClearField("initializer")
    graph.initializer.extend(initializers)
    graph.ClearField("node")
    graph.node.extend(nodes)


def emit_ort(site: WeightSite, namer: Namer, enc: Encoded, mode: str, stats: dict) -> Rewrite:
    theta = namer(f"{site.name}::theta")
    blob = numpy_helper.from_array(enc.blob, theta)
    node = helper.make_node(OP_TYPE, [theta], [site.name], name=f"hyperonnx/{site.name}", domain=DOMAIN,
                            doc_string=json.dumps(stats, sort_keys=True), **node_attributes(enc, mode))
    return Rewrite(site, [blob], [node])


def emit_portable(site: WeightSite, namer: Namer, enc: Encoded, stats: dict) -> Rewrite:
    """Standard-op decoder: the codec's rows (a Gather from its table) → Reshape (→ Slice) → Reshape.

    Codes are stored one per uint8/uint16 (byte-aligned, so standard ops can index with them). Tables are
    generated in the graph from a few scalars with the format's float32 operations where the codec allows it
    (`paper`, `blockvq`); ORT folds them at load. Needs opset ≥ 11 (Range, input-driven Pad and Slice). The Gather carries the codec attributes in its doc_string so
    that `inspect` and `decompress` understand the model.
    """
    code_bytes = codec.base.bitpack.packed_size(enc.count, enc.bits)
    codes = codec.base.bitpack.unpack(enc.blob[:code_bytes], enc.count, enc.bits)
    store = np.uint8 if enc.bits <= 8 else np.uint16 if enc.bits <= 16 else np.int32
    base = site.name
    n_codes = namer(f"{base}::codes")
    inits = [numpy_helper.from_array(codes.astype(store), n_codes)]
    nodes: list[onnx.NodeProto] = []
    meta = dict(stats, name=site.name, codes=n_codes,
                **{k: v for k, v in node_attributes(enc, "load").items() if k != "mode"})
    tag = PORTABLE_TAG + json.dumps(meta, sort_keys=True)
    index = n_codes
    if store is not np.int32:
        index = namer(f"{base}::codes_i32")
        nodes.append(helper.make_node("Cast", [n_codes], [index], to=onnx.TensorProto.INT32,
                                      name=f"hyperonnx/{base}/cast"))
    if enc.codec == "blockvq":
        rows = _blockvq_nodes(enc, namer, base, index, inits, nodes, tag)
    else:
        if enc.codec == "paper":
            n_table = _paper_table_nodes(enc, namer, base, inits, nodes)
        else:
            n_table = namer(f"{base}::table")
            inits.append(numpy_helper.from_array(codec.table(enc), n_table))
        rows = namer(f"{base}::rows")
        nodes.append(helper.make_node("Gather", [n_table, index], [rows], axis=0, name=f"hyperonnx/{base}/gather",
                                      doc_string=tag))
    pad = enc.count * enc.group - enc.numel
    flat_shape = namer(f"{base}::flat_shape")
    inits.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), flat_shape))
    flat = namer(f"{base}::flat")
    nodes.append(helper.make_node("Reshape", [rows, flat_shape], [flat], name=f"hyperonnx/{base}/flatten"))
    if pad or enc.codec == "blockvq":  # blockvq rows cover whole blocks
        bounds = [namer(f"{base}::{b}") for b in ("start", "end")]
        inits.append(numpy_helper.from_array(np.array([0], dtype=np.int64), bounds[0]))
        inits.append(numpy_helper.from_array(np.array([enc.numel], dtype=np.int64), bounds[1]))
        trimmed = namer(f"{base}::trimmed")
        nodes.append(helper.make_node("Slice", [flat, *bounds], [trimmed], name=f"hyperonnx/{base}/trim"))
        flat = trimmed
    if codec.base.dtype_from_name(enc.dtype) != np.float32:
        cast = namer(f"{base}::cast_out")
        nodes.append(helper.make_node("Cast", [flat], [cast], to=DTYPE_TO_ONNX[enc.dtype],
                                      name=f"hyperonnx/{base}/cast_out"))
        flat = cast
    shape = namer(f"{base}::shape")
    inits.append(numpy_helper.from_array(np.array(enc.shape, dtype=np.int64), shape))
    nodes.append(helper.make_node("Reshape", [flat, shape], [site.name], name=f"hyperonnx/{base}/reshape"))
    return Rewrite(site, inits, nodes)


def _builders(namer: Namer, base: str, inits: list, nodes: list):
    """``const(label, value)`` adds an initializer and ``node(op, inputs, label, **attrs)`` a node; both return
    the fresh, unique name of what they made (node names derive from their unique output names)."""

    def const(label: str, value) -> str:
        name = namer(f"{base}::{label}")
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list[str], label: str, **attrs) -> str:
        out = namer(f"{base}::{label}")
        nodes.append(helper.make_node(op, inputs, [out], name=f"hyperonnx/{base}/{out[len(base) + 2:]}", **attrs))
        return out

    return const, node


def _blockvq_nodes(enc: Encoded, namer: Namer, base: str, index: str, inits: list, nodes: list, tag: str) -> str:
    """Pair rows of a `blockvq` tensor, (nblocks, B/2, 2) float32, exactly as docs/format.md specifies."""
    from hyperonnx.codec import blockvq

    (block,), (levels,) = enc.ints["block"], enc.ints["levels"]
    nblocks = -(-enc.numel // block)
    code_bytes = codec.base.bitpack.packed_size(enc.count, enc.bits)
    headers = codec.base.bitpack.unpack(enc.blob[code_bytes:], nblocks, blockvq.HEADER_BITS)

    const, node = _builders(namer, base, inits, nodes)

    scale_code = const("scale_code", (headers & 0xFF).astype(np.uint8))
    book = const("book", (headers >> 8).astype(np.uint8))
    scales, table = _blockvq_table_nodes(enc, levels, const, node)
    block_scale = node("Gather", [scales, node("Cast", [scale_code], "scale_code_i32", to=onnx.TensorProto.INT32)],
                       "block_scale")
    l2 = const("l2", np.int32(levels * levels))
    return _blockvq_rows(enc, nblocks, block, index, book, l2, table, block_scale, const, node, namer, base, nodes,
                         tag)


def _blockvq_table_nodes(enc: Encoded, levels: int, const, node) -> tuple[str, str]:
    """The 256 block scales and the pair table, computed in the graph exactly as docs/format.md specifies."""
    from hyperonnx.codec import blockvq

    f32 = np.float32
    # Block scales: smax · M[k mod 16], then an exact power-of-two step (a product by 2^-(k div 16)).
    k = node("Range", [const("k0", np.int32(0)), const("k256", np.int32(256)), const("k1", np.int32(1))], "k")
    sixteen = const("sixteen", np.int32(16))
    mantissa = node("Gather", [const("steps", blockvq.STEPS), node("Mod", [k, sixteen], "k_mod")], "mantissa")
    powers = const("powers", np.ldexp(np.ones(16, dtype=f32), -np.arange(16)).astype(f32))
    exponent = node("Gather", [powers, node("Div", [k, sixteen], "k_div")], "exponent")
    scales = node("Mul", [node("Mul", [const("smax", f32(enc.floats["smax"][0])), mantissa], "scaled"), exponent],
                  "scales")
    # Rows of the pair table: book·L² + θ.
    books = const("books", np.asarray(enc.floats["books"], dtype=f32))
    # The pair table (8·L² values) is generated in the graph from the books (4·L values).
    r = node("Range", [const("r0", np.int32(0)), const("rn", np.int32(blockvq.BOOKS * levels * levels)),
                       const("r1", np.int32(1))], "r")
    l2 = const("l2_table", np.int32(levels * levels))
    n_levels = const("levels", np.int32(levels))
    book_base = node("Mul", [node("Div", [r, l2], "r_book"), n_levels], "book_base")
    theta = node("Mod", [r, l2], "r_theta")
    first = node("Gather", [books, node("Add", [book_base, node("Div", [theta, n_levels], "d0")], "i0")], "first")
    second = node("Gather", [books, node("Add", [book_base, node("Mod", [theta, n_levels], "d1")], "i1")], "second")
    column = const("column", np.array([-1, 1], dtype=np.int64))
    table = node("Concat", [node("Reshape", [first, column], "first_col"),
                            node("Reshape", [second, column], "second_col")], "pair_table", axis=1)
    return scales, table


def _blockvq_rows(enc, nblocks, block, index, book, l2, table, block_scale, const, node, namer, base, nodes, tag):
    """Gather each pair's row (book·L² + θ) and multiply by its block's scale: (nblocks, B/2, 2) float32."""
    # Codes padded to whole blocks (the pad codes are 0 and get trimmed), one row per block.
    per_block = block // 2
    padded_count = nblocks * per_block
    if padded_count != enc.count:
        pads = const("code_pads", np.array([0, padded_count - enc.count], dtype=np.int64))
        index = node("Pad", [index, pads], "codes_padded")
    grid = node("Reshape", [index, const("grid", np.array([nblocks, per_block], dtype=np.int64))], "code_grid")
    row_base = node("Mul", [node("Cast", [book], "book_i32", to=onnx.TensorProto.INT32), l2], "row_base")
    rows_index = node("Add", [grid, node("Reshape", [row_base, const("col", np.array([-1, 1], dtype=np.int64))],
                                         "row_base_col")], "rows_index")
    rows = namer(f"{base}::rows")
    nodes.append(helper.make_node("Gather", [table, rows_index], [rows], axis=0, name=f"hyperonnx/{base}/gather",
                                  doc_string=tag))
    scale_col = node("Reshape", [block_scale, const("scale_shape", np.array([-1, 1, 1], dtype=np.int64))],
                     "scale_col")
    return node("Mul", [rows, scale_col], "values")


def _paper_table_nodes(enc: Encoded, namer: Namer, base: str, inits: list, nodes: list) -> str:
    """Nodes computing the `paper` table exactly as docs/format.md specifies (float32, same op order)."""
    n = enc.ints["n"][0]
    m = paper_lattice_side(n)
    f32 = np.float32

    const, node = _builders(namer, base, inits, nodes)

    k = node("Range", [const("k0", np.int32(0)), const("kn", np.int32(n)), const("k1", np.int32(1))], "k")
    row = node("Mod", [k, const("m", np.int32(m))], "row")
    half = const("half", f32(enc.floats["half"][0]))
    dx = node("Sub", [node("Mul", [node("Cast", [k], "kf", to=onnx.TensorProto.FLOAT),
                                   const("step_x", f32(enc.floats["step"][0]))], "kx"), half], "dx_lattice")
    dy = node("Sub", [node("Mul", [node("Cast", [row], "rowf", to=onnx.TensorProto.FLOAT),
                                   const("step_y", f32(enc.floats["step"][1]))], "ry"), half], "dy_lattice")
    zero = const("zero", np.zeros(1, dtype=f32))
    dx = node("Concat", [zero, dx], "dx", axis=0)  # index 0 is the centroid: offset 0
    dy = node("Concat", [zero, dy], "dy", axis=0)
    scale = const("scale", np.asarray(enc.floats["scale"], dtype=f32).reshape(-1, 1))
    column = const("column", np.array([-1, 1], dtype=np.int64))
    parts = []
    for axis, offset in ((dx, enc.floats["center"][0]), (dy, enc.floats["center"][1])):
        ring_major = node("Add", [const("c", f32(offset)), node("Mul", [axis, scale], "scaled")], "coord")
        parts.append(node("Reshape", [ring_major, column], "coord_col"))
    return node("Concat", parts, "table", axis=1)
