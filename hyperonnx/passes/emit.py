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
from hyperonnx.codec.blocktcq import level_sets
from hyperonnx.codec.paper import lattice_side as paper_lattice_side
from hyperonnx.ops import DOMAIN, OP_TYPE
from hyperonnx.passes.graphs import walk
from hyperonnx.passes.select import FLOAT_TYPES, WeightSite

DTYPE_TO_ONNX = {name: code for code, name in FLOAT_TYPES.items()}
PORTABLE_TAG = "hyperonnx:"  # the doc_string prefix that marks a portable decoder's Gather node
# Codecs framed by 10-bit block headers (scale code, level set): their portable form stores the headers as two
# initializers, ``::scale_code`` (a byte per block) and ``::book`` (a 2-bit plane; a byte per block in files written
# before planes), which decoders.py packs back into the blob.
BLOCK_CODECS = ("blockvq", "blocktcq")
# blocktcq's trellis parity (``_trellis_parity_half``): a matrix product up to this block size (B multiply-adds per
# weight, few passes over the codes); above it, running sums (~12 passes whatever B, no B×B matrix: 16 M entries
# at B = 4096). Measured at load (ORT 1.30 and 1.32): the product is faster up to B = 512 on a MobileNetV2-shaped
# net (3.5 M weights in 35 tensors) and on one 2048×2048 weight, and ties at B = 1024.
PARITY_MATMUL_MAX_BLOCK = 512


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


def _json_float32(value: float) -> float:
    """A float32 value as the float whose JSON text is shortest and still reads back (through float32) as it:
    0.10000000149011612 becomes 0.1. A portable decoder's doc_string repeats blocktcq's 64 stored levels, so this
    halves it."""
    exact = np.float32(value)
    short = float(str(exact))
    return short if np.float32(short) == exact else float(value)


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
            # float32 values; a portable decoder's JSON holds them in their shortest decimal form (_json_float32)
            floats={k[2:]: tuple(float(np.float32(v)) for v in vals) for k, vals in attrs.items()
                    if k.startswith("f_")},
            format_version=int(attrs["format"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed HyperDecode attributes ({exc})") from None


class Namer:
    """Fresh names in a graph and all its subgraphs — give it the main graph and use it for every rewrite of the
    model: names already taken anywhere are never reused, since ONNX wants a value's name unique across a
    graph and the subgraphs that may read it."""

    def __init__(self, graph: onnx.GraphProto):
        self.taken: set[str] = set()
        node_names: set[str] = set()
        for scope in walk(graph):
            g = scope.graph
            self.taken |= {t.name for t in g.initializer} | {o for n in g.node for o in n.output}
            self.taken |= {v.name for v in g.input} | {v.name for v in g.output}
            node_names |= {n.name for n in g.node}
        # Prefixes already in the model (an earlier conversion's decoders, or names that merely look like them),
        # found once: every later name this Namer makes uses a prefix it handed out itself.
        self.used_prefixes = {name.split("::", 1)[0] for name in self.taken if "::" in name}
        self.used_prefixes |= {name.split("/")[1] for name in node_names if name.startswith("hyperonnx/")
                               and name.count("/") >= 2}
        self.decoders = 0

    def prefix(self) -> str:
        """A short prefix for one portable decoder's value and node names (``hx0``, ``hx1``, …), used by no name
        in the graph yet: a decoder's ~40 names cost bytes in the file, and the weight's name (often long) in
        each of them cost MobileNetV2's portable file 7 %."""
        while f"hx{self.decoders}" in self.used_prefixes:
            self.decoders += 1
        self.decoders += 1
        return f"hx{self.decoders - 1}"

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


def emit_portable(site: WeightSite, namer: Namer, enc: Encoded, stats: dict, opset: int = 11,
                  packed: bool = True) -> Rewrite:
    """Standard-op decoder: the codes unpacked from their bit planes, then the codec's rows (a Gather from its
    table) (→ Reshape → Slice) → Reshape.

    Codes are stored bit-packed in planes (``code_planes``; ``pack_planes`` describes the layout), unpacked with
    uint8 BitShifts and summed (in uint8 where the model's opset allows it, 14+, and the codes fit; else in the
    decoder's index type), as the decoder's grid: one row per block for the block codecs. Codes of 8 and 16 bits
    (or more), and every code with ``packed=False`` (the layout of files written before planes), are stored one per
    uint8/uint16/int32 element instead. The block codecs' headers are a byte per block for the scale code and a
    2-bit plane for the level set. Tables are generated in the graph from a few scalars with the format's float32
    operations where the codec allows it (`paper`, `blockvq`, `blocktcq`); ORT folds them at load, holding every
    node's output until it is done: a node costs load-time memory, not only time. Needs opset ≥ 11 (BitShift,
    Range, CumSum, input-driven Pad and Slice), and 13 for a bfloat16 weight (its Cast). The Gather carries the
    codec attributes and the layout in its doc_string so that `inspect` and `decompress` understand the model.
    """
    problem = portable_opset_error(opset, enc.dtype == "bfloat16")
    if problem:
        raise ValueError(problem)
    code_bytes = codec.base.bitpack.packed_size(enc.count, enc.bits)
    codes = codec.base.bitpack.unpack(enc.blob[:code_bytes], enc.count, enc.bits)
    block = enc.ints["block"][0] if enc.codec in BLOCK_CODECS else None
    covered = enc.count * enc.group if block is None else -(-enc.numel // block) * block  # values the rows hold
    grid = [enc.count] if block is None else [-(-enc.numel // block), block // enc.group]  # the decoder's codes
    # The decoder's names: a short prefix (the layout before planes, ``packed=False``, used the weight's name);
    # its output keeps the weight's name.
    base = namer.prefix() if packed else site.name
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    const, node = _builders(namer, base, inits, nodes)
    planes = code_planes(enc.bits) if packed else None
    layout: dict = {}
    if planes is None:
        store = np.uint8 if enc.bits <= 8 else np.uint16 if enc.bits <= 16 else np.int32
        codes = codes.astype(store)
        if block is not None and grid[0] * grid[1] == enc.count:
            codes = codes.reshape(grid)  # whole blocks of codes: the decoder's grid, no Reshape node
        n_codes = namer(f"{base}::codes")
        inits.append(numpy_helper.from_array(codes, n_codes))
    else:
        names = [namer(f"{base}::codes" if i == 0 else f"{base}::codes_{width}bit") for i, (width, _) in
                 enumerate(planes)]
        inits.extend(numpy_helper.from_array(a, n) for a, n in zip(pack_planes(codes, planes), names))
        n_codes = names[0]
        layout["planes"] = [[n, width, shift] for n, (width, shift) in zip(names, planes)]
    del codes
    headers = None
    if block is not None:
        headers = _block_headers(enc, namer, base, inits, packed)
        if packed:
            layout["book_planes"] = [[headers[1], BOOK_BITS, 0]]
    if packed:
        layout["prefix"] = base
    meta = dict(stats, name=site.name, codes=n_codes, **layout,
                **{k: [_json_float32(x) for x in v] if k.startswith("f_") else v
                   for k, v in node_attributes(enc, "load").items() if k != "mode"})
    tag = PORTABLE_TAG + json.dumps(meta, sort_keys=True)
    # blocktcq's index arithmetic runs in uint16 from opset 14 (``_blocktcq_lean``: it takes the codes as uint8),
    # else in float32; the others index their table with int32
    lean = enc.codec == "blocktcq" and opset >= 14 and _lean_parity_fits(enc.bits, block)
    to = (onnx.TensorProto.UINT8 if lean else onnx.TensorProto.FLOAT) if enc.codec == "blocktcq" \
        else onnx.TensorProto.INT32
    if planes is None:
        index = n_codes
        if np.dtype(store) != helper.tensor_dtype_to_np_dtype(to):
            index = node("Cast", [n_codes], "codes_f32" if to == onnx.TensorProto.FLOAT else "codes_i32", to=to)
        if block is not None:
            index = _code_grid(enc, index, grid[1], const, node)
    else:
        index = _plane_nodes(planes, names, enc.count, grid, to, opset >= 14, const, node)
    if enc.codec == "blocktcq":
        rows = (_blocktcq_lean if lean else _blocktcq_nodes)(enc, namer, base, index, headers, inits, nodes, tag)
    elif enc.codec == "blockvq":
        rows = _blockvq_nodes(enc, namer, base, index, headers, inits, nodes, tag)
    else:
        if enc.codec == "paper":
            n_table = _paper_table_nodes(enc, namer, base, inits, nodes)
        else:
            n_table = namer(f"{base}::table")
            inits.append(numpy_helper.from_array(codec.table(enc), n_table))
        rows = _tagged_gather(n_table, index, namer, base, nodes, tag)
    flat = rows
    if covered != enc.numel:  # the pad of the last pair or block
        flat_shape = namer(f"{base}::flat_shape")
        inits.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), flat_shape))
        flat = namer(f"{base}::flat")
        nodes.append(helper.make_node("Reshape", [rows, flat_shape], [flat], name=f"hyperonnx/{base}/flatten"))
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


def model_opset(model: onnx.ModelProto) -> int:
    """The model's default-domain opset (17 when it declares none)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)


def portable_opset_error(opset: int, bfloat16: bool = False) -> str | None:
    """Why the portable form cannot be written into a model of this (default-domain) opset, or None: it needs
    opset 11 (BitShift, Range, CumSum, input-driven Pad and Slice), and 13 for a bfloat16 weight (Cast to
    bfloat16)."""
    if opset < 11:
        return f"the portable form needs opset 11 or newer (the model has {opset}); use --runtime ort"
    if bfloat16 and opset < 13:
        return (f"the portable form of a bfloat16 weight needs opset 13 or newer (Cast to bfloat16; the model has "
                f"{opset}); use --runtime ort, or --exclude the bfloat16 weights")
    return None


def check_portable(opset: int, sites: list[WeightSite] = ()) -> None:
    """ValueError (``portable_opset_error``'s message) when the portable form cannot hold these weights."""
    bfloat16 = any(site.tensor.data_type == onnx.TensorProto.BFLOAT16 for site in sites)
    problem = portable_opset_error(opset, bfloat16)
    if problem:
        raise ValueError(problem)


def portable_code_bytes(enc: Encoded) -> int:
    """Bytes of codes (and the block codecs' headers) that ``emit_portable`` stores for ``enc``."""
    planes = code_planes(enc.bits)
    if planes is None:
        total = enc.count * (1 if enc.bits <= 8 else 2 if enc.bits <= 16 else 4)
    else:
        total = _plane_codes(enc.count, planes) * enc.bits // 8
    if enc.codec in BLOCK_CODECS:
        nblocks = -(-enc.numel // enc.ints["block"][0])
        total += nblocks + _plane_codes(nblocks, [(BOOK_BITS, 0)]) * BOOK_BITS // 8  # scale code + level set
    return total


# ---- bit planes: how the portable form stores codes of any width in uint8 (see pack_planes) ----

BOOK_BITS = 2  # a block codec's level-set id (0..3): its portable form stores it as a 2-bit plane


def code_planes(bits: int) -> list[tuple[int, int]] | None:
    """The portable form's planes for ``bits``-bit codes, (width, shift) each: the binary digits of ``bits``,
    widest first, from bit 0 up (5 → 4 + 1: (4, 0), (1, 4); 10 → 8 + 2; 11 → 8 + 2 + 1). None for 8 and 16 bits
    and more, which are stored one code per uint8/uint16/int32 element."""
    if bits == 8 or bits >= 16:
        return None
    planes, shift = [], 0
    for width in (8, 4, 2, 1):
        if bits & width:
            planes.append((width, shift))
            shift += width
    return planes


def _plane_group(planes: list[tuple[int, int]]) -> int:
    """Codes per group, K: the narrowest plane's codes per byte."""
    return 8 // min(width for width, _ in planes)


def _plane_codes(count: int, planes: list[tuple[int, int]]) -> int:
    """Codes the planes hold for ``count`` codes: whole groups."""
    group = _plane_group(planes)
    return -(-count // group) * group


def _plane_shape(chunk: int, width: int, group: int) -> tuple[int, ...]:
    """A plane's stored shape: (2, …, 2, 1, …, 1, M) with log2(K / k) twos and log2(k) ones, k = 8 / width its codes
    per byte and M = ``chunk``. BitShift by a (2, …, 2, 1) vector (log2(k) twos) broadcasts every plane to the same
    (2, …, 2, M), in long runs of M bytes: no Unsqueeze, no Reshape before the planes are summed."""
    per_byte = 8 // width
    return (2,) * ((group // per_byte).bit_length() - 1) + (1,) * (per_byte.bit_length() - 1) + (chunk,)


def pack_planes(codes: np.ndarray, planes: list[tuple[int, int]]) -> list[np.ndarray]:
    """The portable form's code layout: ``codes`` (< 2^bits), padded with zero codes to K·M codes (K =
    ``_plane_group``, M = ceil(count / K)) and seen as K chunks of M consecutive codes, split into ``planes``:
    plane (w, s) holds bits [s, s + w) of every code, k = 8 / w codes a byte: byte (j, g) of the plane, j < K / k,
    holds at bits [f·w, (f + 1)·w) the field of code ((j·k + f)·M + g), f < k. uint8 arrays shaped by
    ``_plane_shape`` (row-major: byte j·M + g). ``unpack_planes`` is the inverse."""
    codes = np.asarray(codes).reshape(-1)
    total, group = _plane_codes(codes.size, planes), _plane_group(planes)
    padded = np.zeros(total, dtype=np.uint32)
    padded[: codes.size] = codes
    out = []
    for width, shift in planes:
        per_byte = 8 // width
        fields = ((padded >> np.uint32(shift)) & np.uint32((1 << width) - 1)).astype(np.uint8)
        fields = fields.reshape(group // per_byte, per_byte, total // group)
        packed = np.zeros((group // per_byte, total // group), dtype=np.uint8)
        for f in range(per_byte):
            packed |= fields[:, f] << np.uint8(f * width)
        out.append(packed.reshape(_plane_shape(total // group, width, group)))
    return out


def unpack_planes(arrays: list[np.ndarray], planes: list[tuple[int, int]], count: int) -> np.ndarray:
    """Inverse of ``pack_planes``: the first ``count`` codes, uint32. Raises ValueError on inconsistent sizes."""
    if len(arrays) != len(planes) or not planes:
        raise ValueError(f"{len(arrays)} code planes stored for a layout of {len(planes)}")
    if any(width not in (1, 2, 4, 8) or not 0 <= shift <= 32 - width for width, shift in planes):
        raise ValueError(f"bad code planes {planes}")
    total, group = _plane_codes(count, planes), _plane_group(planes)
    for array, (width, _) in zip(arrays, planes):
        if array.size * (8 // width) != total:
            raise ValueError(f"a code plane of {array.size} bytes (width {width}) does not hold {total} codes")
    codes = np.zeros(total, dtype=np.uint32)
    for array, (width, shift) in zip(arrays, planes):
        per_byte = 8 // width
        packed = np.asarray(array, dtype=np.uint8).reshape(group // per_byte, 1, total // group)
        fields = (packed >> (np.arange(per_byte, dtype=np.uint8) * width).reshape(1, -1, 1)) & ((1 << width) - 1)
        codes |= fields.reshape(-1).astype(np.uint32) << np.uint32(shift)
    return codes[:count]


def _plane_nodes(planes: list[tuple[int, int]], names: list[str], count: int, grid: list[int], to: int,
                 uint8_add: bool, const, node) -> str:
    """The ``count`` codes from their stored planes (``pack_planes``), as type ``to`` in the decoder's ``grid``
    shape (zero codes after the last one).

    Each plane's fields come out of its bytes by a BitShift LEFT (a vector: field f's top bit to bit 7) and a
    BitShift RIGHT by 8 − w, in uint8. With ``uint8_add`` (Add on uint8: opset 14) the planes of each byte of the
    code (bits 0–7, 8–15: no plane straddles two) are shifted to their place and summed in uint8 (their fields are
    disjoint), so a code of up to 8 bits is cast once. Otherwise, and for the code's second byte, each part takes
    the grid's shape in uint8, is cast and multiplied to its place (exact: integers below 2^16) and the parts are
    summed in ``to``.
    """
    stored = _plane_codes(count, planes)
    parts: dict[int, list[tuple[str, int]]] = {}  # by byte: (uint8 value, its shift still to apply)
    for (width, shift), name in zip(planes, names):
        per_byte = 8 // width
        value = name
        if per_byte > 1:
            lefts = np.array([8 - (f + 1) * width for f in range(per_byte)], dtype=np.uint8)
            lefts = lefts.reshape((2,) * (per_byte.bit_length() - 1) + (1,))
            value = node("BitShift", [value, const(f"plane{width}_left", lefts)], f"plane{width}_top",
                         direction="LEFT")
            value = node("BitShift", [value, const(f"plane{width}_right", np.uint8(8 - width))], f"plane{width}",
                         direction="RIGHT")
        byte, within = divmod(shift, 8)
        if within and (uint8_add or byte == 0):
            value = node("BitShift", [value, const(f"plane{width}_shift", np.uint8(within))],
                         f"plane{width}_shifted", direction="LEFT")
            shift -= within
        parts.setdefault(byte, []).append((value, shift))
    if uint8_add:
        for byte, values in parts.items():
            value = values[0][0]
            for other, _ in values[1:]:
                value = node("Add", [value, other], "codes_u8" if byte == 0 else f"codes_byte{byte}_u8")
            parts[byte] = [(value, 8 * byte)]
    if to == onnx.TensorProto.UINT8:  # codes of up to 8 bits, summed in uint8 (``uint8_add``): no Cast
        ((value, _),) = parts[0]
        return _to_grid(value, stored, grid, const, node)
    label = "codes_f32" if to == onnx.TensorProto.FLOAT else "codes_i32"
    dtype = np.float32 if to == onnx.TensorProto.FLOAT else np.int32
    total = None
    for value, shift in (part for values in parts.values() for part in values):
        value = node("Cast", [_to_grid(value, stored, grid, const, node)], label if total is None else "part_cast",
                     to=to)
        if shift:
            value = node("Mul", [value, const("part_scale", dtype(1 << shift))], "part_scaled")
        total = value if total is None else node("Add", [total, value], label)
    return total


def _to_grid(codes: str, stored: int, grid: list[int], const, node) -> str:
    """``stored`` codes (any shape) as ``grid``: trimmed or padded with zero codes at the end when the counts
    differ. Pad codes are 0, as ``_code_grid``'s; the values they give are trimmed."""
    want = int(np.prod(grid))
    if stored == want:
        return node("Reshape", [codes, const("grid", np.array(grid, dtype=np.int64))], "code_grid")
    flat = node("Reshape", [codes, const("flat_codes", np.array([-1], dtype=np.int64))], "codes_flat")
    if stored > want:
        flat = node("Slice", [flat, const("codes_start", np.array([0], dtype=np.int64)),
                              const("codes_end", np.array([want], dtype=np.int64))], "codes_trimmed")
    else:
        flat = node("Pad", [flat, const("code_pads", np.array([0, want - stored], dtype=np.int64))], "codes_padded")
    if len(grid) == 1:
        return flat
    return node("Reshape", [flat, const("grid", np.array(grid, dtype=np.int64))], "code_grid")


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


def _blockvq_nodes(enc: Encoded, namer: Namer, base: str, grid: str, headers: tuple, inits: list, nodes: list,
                   tag: str) -> str:
    """Pair rows of a `blockvq` tensor, (nblocks, B/2, 2) float32, exactly as docs/format.md specifies, from the
    codes as an int32 (nblocks, B/2) grid."""
    (levels,) = enc.ints["levels"]
    const, node = _builders(namer, base, inits, nodes)
    book, block_scale = _block_header_nodes(enc, headers, const, node)
    table = _pair_table_nodes(enc, levels, const, node)
    rows_index = _book_rows(grid, book, levels * levels, const, node)  # book·L² + θ
    return _scaled_rows(table, rows_index, block_scale, 3, const, node, namer, base, nodes, tag)


def _blocktcq_nodes(enc: Encoded, namer: Namer, base: str, theta: str, headers: tuple, inits: list, nodes: list,
                    tag: str) -> str:
    """Values of a `blocktcq` tensor, (nblocks, B) float32, exactly as docs/format.md specifies, from the codes θ
    as a float32 (nblocks, B) grid.

    The trellis state's parity comes from the format's closed form (``_trellis_parity_half``), not a sequential
    walk. The row c·2L + 2θ + parity is computed as 2·(θ + c·L + parity/2) in float32, on integers and halves
    below 2^24 (exact), and cast once: ORT holds every folded node's full-size output until folding ends, so each
    node saved is load-time memory as well as time.
    """
    (block,), (levels,) = enc.ints["block"], enc.ints["levels"]
    const, node = _builders(namer, base, inits, nodes)
    book, block_scale = _block_header_nodes(enc, headers, const, node)
    parity_half = _trellis_parity_half(theta, block, const, node)
    pair_row = _book_rows(node("Add", [theta, parity_half], "theta_parity"), book, levels, const, node,
                          onnx.TensorProto.FLOAT)  # θ + c·L + parity/2
    rows_index = node("Cast", [node("Mul", [pair_row, const("two", np.float32(2))], "rows_f32")], "rows_index_i32",
                      to=onnx.TensorProto.INT32)  # c·2L + f
    # All four level sets as one constant: the three computed ones are exact quotients, computed here once.
    books = const("books", level_sets(np.asarray(enc.floats["books"], dtype=np.float32)).reshape(-1))
    return _scaled_rows(books, rows_index, block_scale, 2, const, node, namer, base, nodes, tag)


def _lean_parity_fits(bits: int, block: int | None) -> bool:
    """Whether ``_blocktcq_lean`` applies: its parity sums (at most 2^bits − 1 times a column sum of the parity
    matrix) fit uint16, and the block is small enough for the matrix product."""
    if block is None or block > PARITY_MATMUL_MAX_BLOCK:
        return False
    from hyperonnx.codec.blocktcq import parity_matrix

    return int(parity_matrix(block).sum(axis=0).max()) * ((1 << bits) - 1) < 1 << 16


def _blocktcq_lean(enc: Encoded, namer: Namer, base: str, theta: str, headers: tuple, inits: list, nodes: list,
                   tag: str) -> str:
    """``_blocktcq_nodes`` from the codes θ as a uint8 (nblocks, B) grid, with the row index computed in uint16
    (opset 14: Add, Mul and Mod on uint16) instead of float32: half the bytes per intermediate, and the parity is
    one Mod of the integer sums instead of a Floor and a Sub. The parity's matrix product is MatMulInteger on the
    uint8 codes (int32 sums, exact). The block scales are folded into the Gather's table (256 × 4 × 2L rows: a
    uint16 index up to 5 bits; above, when the table is no larger than the weight, an int32 one), so no full-size
    scale Mul is left. ORT holds every folded output until folding ends: at the defaults (benchmarks/portable.py)
    float32 15.4× the weight; uint16 index 13.4× (12.9× in a later run); then MatMulInteger 11.9×, folded scales
    10.9× (ORT 1.21: 12.9×).
    """
    from hyperonnx.codec.blockvq import BOOKS

    (block,), (levels,) = enc.ints["block"], enc.ints["levels"]
    const, node = _builders(namer, base, inits, nodes)
    table_rows = 256 * BOOKS * 2 * levels  # one row per (scale code, level set, fine level)
    # Fold while every row index fits uint16 (up to 5 bits), and above that while the table is no larger than
    # the weight: the index is then added in int32 (+2 bytes a weight) and the full-size scale Mul (+8) goes.
    folded = table_rows <= max(1 << 16, enc.numel)
    wide = folded and table_rows > 1 << 16  # unfolded, the per-block base is a level set's: uint16 holds it
    if folded:
        book = _block_book_nodes(enc, headers, const, node)
    else:
        book, block_scale = _block_header_nodes(enc, headers, const, node)
    uint16 = onnx.TensorProto.UINT16
    sums = node("Cast", [_parity_sums_integer(theta, block, const, node)], "sums_u16", to=uint16)
    two = const("two_u16", np.uint16(2))
    parity = node("Mod", [sums, two], "parity", fmod=0)
    fine = node("Add", [node("Mul", [node("Cast", [theta], "codes_u16", to=uint16), two], "two_theta"), parity],
                "fine")  # f = 2θ + parity
    set_rows = const("set_rows", np.int32(2 * levels))
    books = const("books", level_sets(np.asarray(enc.floats["books"], dtype=np.float32)).reshape(-1))
    # Each block's first table row, in units of 2L: its level set c, or with the scale folded in, k·4 + c: row
    # (k·4 + c)·2L + f of a 256 × (4·2L) table holds books[c·2L + f] · scales[k], the very product the unfolded
    # decoder computes per weight, so the Gather's output is the weight's values and the full-size scale Mul goes.
    block_rows = book
    if folded:
        code = node("Cast", [headers[0]], "scale_code_i32", to=onnx.TensorProto.INT32)
        block_rows = node("Add", [node("Mul", [code, const("sets", np.int32(BOOKS))], "code_sets"), book], "block_set")
    set_base = node("Mul", [block_rows, set_rows], "set_base_i32")
    col_shape = const("col", np.array([-1, 1], dtype=np.int64))
    if wide:  # rows past 2^16: the per-weight Add runs in int32 (the Gather's index type anyway)
        column = node("Reshape", [set_base, col_shape], "set_base_col")
        fine_i32 = node("Cast", [fine], "fine_i32", to=onnx.TensorProto.INT32)
        rows_index = node("Add", [fine_i32, column], "rows_index_i32")
    else:
        column = node("Reshape", [node("Cast", [set_base], "set_base", to=uint16), col_shape], "set_base_col")
        rows_index = node("Cast", [node("Add", [fine, column], "rows_u16")], "rows_index_i32",
                          to=onnx.TensorProto.INT32)
    if not folded:
        return _scaled_rows(books, rows_index, block_scale, 2, const, node, namer, base, nodes, tag)
    shape = {name: const(name, np.array(dims, dtype=np.int64))
             for name, dims in (("scales_col_shape", [-1, 1]), ("books_row_shape", [1, -1]), ("flat", [-1]))}
    scales = node("Reshape", [_scale_table_nodes(enc, const, node), shape["scales_col_shape"]], "scales_col")
    books_row = node("Reshape", [books, shape["books_row_shape"]], "books_row")
    table = node("Reshape", [node("Mul", [scales, books_row], "scaled_books"), shape["flat"]], "scaled_table")
    return _tagged_gather(table, rows_index, namer, base, nodes, tag)


def _block_headers(enc: Encoded, namer: Namer, base: str, inits: list, packed: bool) -> tuple[str, str, bool]:
    """Store the block headers of a codec framed by 10-bit block headers (scale code, level set): the scale codes a
    byte each (``::scale_code``), the level sets as a 2-bit plane (``packed``) or a byte each (``::book``);
    decoders.py packs them back into the blob. Returns (scale code name, level set name, packed)."""
    from hyperonnx.codec import blockvq

    nblocks = -(-enc.numel // enc.ints["block"][0])
    code_bytes = codec.base.bitpack.packed_size(enc.count, enc.bits)
    headers = codec.base.bitpack.unpack(enc.blob[code_bytes:], nblocks, blockvq.HEADER_BITS)
    scale_code, book = namer(f"{base}::scale_code"), namer(f"{base}::book")
    inits.append(numpy_helper.from_array((headers & 0xFF).astype(np.uint8), scale_code))
    book_values = (headers >> 8).astype(np.uint8)
    stored = pack_planes(book_values, [(BOOK_BITS, 0)])[0] if packed else book_values
    inits.append(numpy_helper.from_array(stored, book))
    return scale_code, book, packed


def _block_header_nodes(enc: Encoded, headers: tuple[str, str, bool], const, node) -> tuple[str, str]:
    """Each block's level-set id (int32) and scale (float32) from the stored headers (``_block_headers``); the 256
    scales are computed in the graph."""
    scales = _scale_table_nodes(enc, const, node)
    block_scale = node("Gather", [scales, node("Cast", [headers[0]], "scale_code_i32", to=onnx.TensorProto.INT32)],
                       "block_scale")
    return _block_book_nodes(enc, headers, const, node), block_scale


def _block_book_nodes(enc: Encoded, headers: tuple[str, str, bool], const, node) -> str:
    """Each block's level-set id (int32) from the stored headers (``_block_headers``)."""
    _, book, packed = headers
    nblocks = -(-enc.numel // enc.ints["block"][0])
    if packed:
        return _plane_nodes([(BOOK_BITS, 0)], [book], nblocks, [nblocks], onnx.TensorProto.INT32, True, const, node)
    return node("Cast", [book], "book_i32", to=onnx.TensorProto.INT32)


def _scale_table_nodes(enc: Encoded, const, node) -> str:
    """The 256 block scales (blockvq's, shared by blocktcq), computed exactly as docs/format.md specifies."""
    from hyperonnx.codec import blockvq

    f32 = np.float32
    # smax · M[k mod 16], then an exact power-of-two step (a product by 2^-(k div 16)).
    k = node("Range", [const("k0", np.int32(0)), const("k256", np.int32(256)), const("k1", np.int32(1))], "k")
    sixteen = const("sixteen", np.int32(16))
    mantissa = node("Gather", [const("steps", blockvq.STEPS), node("Mod", [k, sixteen], "k_mod")], "mantissa")
    powers = const("powers", np.ldexp(np.ones(16, dtype=f32), -np.arange(16)).astype(f32))
    exponent = node("Gather", [powers, node("Div", [k, sixteen], "k_div")], "exponent")
    return node("Mul", [node("Mul", [const("smax", f32(enc.floats["smax"][0])), mantissa], "scaled"), exponent],
                "scales")


def _pair_table_nodes(enc: Encoded, levels: int, const, node) -> str:
    """blockvq's pair table (4·L² rows of 2), generated in the graph from the books (4·L values): row book·L² + θ
    holds (books[book·L + θ div L], books[book·L + θ mod L])."""
    from hyperonnx.codec import blockvq

    books = const("books", np.asarray(enc.floats["books"], dtype=np.float32))
    r = node("Range", [const("r0", np.int32(0)), const("rn", np.int32(blockvq.BOOKS * levels * levels)),
                       const("r1", np.int32(1))], "r")
    l2 = const("l2_table", np.int32(levels * levels))
    n_levels = const("levels", np.int32(levels))
    book_base = node("Mul", [node("Div", [r, l2], "r_book"), n_levels], "book_base")
    theta = node("Mod", [r, l2], "r_theta")
    first = node("Gather", [books, node("Add", [book_base, node("Div", [theta, n_levels], "d0")], "i0")], "first")
    second = node("Gather", [books, node("Add", [book_base, node("Mod", [theta, n_levels], "d1")], "i1")], "second")
    column = const("column", np.array([-1, 1], dtype=np.int64))
    return node("Concat", [node("Reshape", [first, column], "first_col"),
                           node("Reshape", [second, column], "second_col")], "pair_table", axis=1)


def _code_grid(enc: Encoded, index: str, per_block: int, const, node) -> str:
    """The codes (as ``index`` holds them: int32, or float32 for blocktcq), padded to whole blocks, one row per
    block: (nblocks, per_block). The pad codes are 0; the values they give are trimmed, and in a trellis block
    they come after every real weight, so the state (which only looks back) is unchanged. Codes of whole blocks
    are stored in this shape (emit_portable): they need no node here."""
    nblocks = -(-enc.numel // enc.ints["block"][0])
    padded_count = nblocks * per_block
    if padded_count == enc.count:
        return index  # emit_portable stored whole blocks of codes as this grid already
    pads = const("code_pads", np.array([0, padded_count - enc.count], dtype=np.int64))
    index = node("Pad", [index, pads], "codes_padded")
    return node("Reshape", [index, const("grid", np.array([nblocks, per_block], dtype=np.int64))], "code_grid")


def _book_rows(grid: str, book: str, rows_per_book: int, const, node, to: int = onnx.TensorProto.INT32) -> str:
    """Row index into a table of four level sets: each block's set id · rows_per_book + the block's codes (the
    block offsets computed in int32, then cast to ``to``, the grid's type)."""
    row_base = node("Mul", [book, const("rows_per_book", np.int32(rows_per_book))], "row_base")
    column = node("Reshape", [row_base, const("col", np.array([-1, 1], dtype=np.int64))], "row_base_col")
    if to != onnx.TensorProto.INT32:
        column = node("Cast", [column], "row_base_cast", to=to)
    return node("Add", [grid, column], "rows_index")


def _scaled_rows(table: str, rows_index: str, block_scale: str, rank: int, const, node, namer: Namer, base: str,
                 nodes: list, tag: str) -> str:
    """Gather every row (``_tagged_gather``) and multiply by its block's scale (a rank-``rank`` result, blocks
    first)."""
    rows = _tagged_gather(table, rows_index, namer, base, nodes, tag)
    scale_shape = const("scale_shape", np.array([-1] + [1] * (rank - 1), dtype=np.int64))
    return node("Mul", [rows, node("Reshape", [block_scale, scale_shape], "scale_col")], "values")


def _tagged_gather(table: str, rows_index: str, namer: Namer, base: str, nodes: list, tag: str) -> str:
    """The decoder's Gather of table rows; it carries the codec attributes (``tag``): it is how decoders.py finds
    the portable decoder."""
    rows = namer(f"{base}::rows")
    nodes.append(helper.make_node("Gather", [table, rows_index], [rows], axis=0, name=f"hyperonnx/{base}/gather",
                                  doc_string=tag))
    return rows


def _trellis_parity_half(theta: str, block: int, const, node) -> str:
    """Half blocktcq's trellis-state parity, (state & 1) / 2 ∈ {0, 0.5} at each element, float32 (nblocks, B), from
    the codes as float32 (nblocks, B), with no sequential walk.

    docs/format.md's closed form: parity_t = (Σ_(s<t) b_s·g_(t−1−s)) mod 2, b_s = θ_s & 1, g = IMPULSE repeating
    with period 7. Reduction mod 2 commutes with the sum, so the sums run over θ itself (no low-bit pass): with
    half = that sum / 2 (an exact multiple of 0.5), parity/2 = half − ⌊half⌋ (Floor and Sub: ORT runs a float
    Mod 4× slower).
    """
    half_sums = _parity_half_sums_matmul if block <= PARITY_MATMUL_MAX_BLOCK else _parity_half_sums_runs
    half = half_sums(theta, block, const, node)
    return node("Sub", [half, node("Floor", [half], "half_floor")], "parity_half")


def _parity_half_sums_matmul(theta: str, block: int, const, node) -> str:
    """(Σ_(s<t) θ_s·g_(t−1−s)) / 2 as θ @ (parity_matrix(B) / 2), the matrix generated in the graph (B² entries).

    Exact in float32 whatever the summation order: every partial sum is a multiple of 0.5 ≤ 255·B/2 < 2^23.
    """
    return _parity_sums_matmul(theta, block, const, node, tap=0.5)


def _parity_taps(block: int, impulse: np.ndarray, const, node) -> tuple[str, str]:
    """The B×B parity matrix's parts, generated in the graph: at row s, column t, the tap ``impulse[(t − 1 − s) mod
    7]`` (``impulse``: g in the matrix product's dtype) and whether it applies (s < t: a weight never depends on
    itself or later ones)."""
    t = node("Range", [const("t0", np.int32(0)), const("tn", np.int32(block)), const("t1", np.int32(1))], "t")
    later = node("Reshape", [t, const("t_row_shape", np.array([1, -1], dtype=np.int64))], "t_row")  # column: t
    earlier = node("Reshape", [t, const("t_col_shape", np.array([-1, 1], dtype=np.int64))], "t_col")  # row: s
    lag = node("Sub", [node("Sub", [later, const("t_one", np.int32(1))], "t_minus_1"), earlier], "lag")  # t − 1 − s
    taps = node("Gather", [const("impulse", impulse),
                           node("Mod", [lag, const("period", np.int32(impulse.size))], "lag_mod")], "taps")
    return taps, node("Greater", [lag, const("lag_floor", np.int32(-1))], "causal_bool")


def _parity_sums_matmul(theta: str, block: int, const, node, tap: float) -> str:
    """``tap`` · Σ_(s<t) θ_s·g_(t−1−s) as θ @ (tap · parity_matrix(B)), the matrix generated in the graph."""
    from hyperonnx.codec.blocktcq import IMPULSE

    taps, causal = _parity_taps(block, np.asarray(IMPULSE, dtype=np.float32) * np.float32(tap), const, node)
    causal = node("Cast", [causal], "causal", to=onnx.TensorProto.FLOAT)
    return node("MatMul", [theta, node("Mul", [taps, causal], "parity_matrix")], "parity_sums")


def _parity_sums_integer(theta: str, block: int, const, node) -> str:
    """Σ_(s<t) θ_s·g_(t−1−s) as int32 from the codes as uint8: MatMulInteger of θ and the 0/1 parity matrix
    (uint8). No float32 copy of θ and no float32 product: 2 bytes a weight fewer than ``_parity_sums_matmul``
    while ORT folds."""
    from hyperonnx.codec.blocktcq import IMPULSE

    taps, causal = _parity_taps(block, np.asarray(IMPULSE, dtype=np.uint8), const, node)
    matrix = node("Where", [causal, taps, const("no_tap", np.uint8(0))], "parity_matrix_u8")
    return node("MatMulInteger", [theta, matrix], "parity_sums_i32")


def _parity_half_sums_runs(theta: str, block: int, const, node) -> str:
    """(Σ_(s<t) θ_s·g_(t−1−s)) / 2 in a fixed number of passes whatever B (no B×B matrix).

    g repeats with period P = 7, so the sum is Σ_(j≥0) v_(t−P·j) with v_t = Σ_d θ_(t−d) over the delays
    d = i + 1 where IMPULSE[i] = 1: a shift-and-add (Pad, Slice, Add), then running sums along each residue
    class mod P (CumSum over the block seen as rows of P). Sums ≤ 255·4·ceil(B/7) < 2^24: exact in float32.
    """
    from hyperonnx.codec.blocktcq import IMPULSE

    period = len(IMPULSE)
    delays = [i + 1 for i, g in enumerate(IMPULSE) if g]
    lead, width = max(delays), -(-block // period) * period
    # padded[:, i] = θ_(i − lead): zeros before the block's first element and after its last (to a whole period)
    padded = node("Pad", [theta, const("delay_pads", np.array([0, lead, 0, width - block], dtype=np.int64))],
                  "theta_padded")
    axis = const("axis1", np.array([1], dtype=np.int64))
    taps = None
    for d in delays:
        start = lead - d
        shifted = node("Slice", [padded, const(f"delay{d}_start", np.array([start], dtype=np.int64)),
                                 const(f"delay{d}_end", np.array([start + width], dtype=np.int64)), axis],
                       f"delay{d}")
        taps = shifted if taps is None else node("Add", [taps, shifted], "taps")
    by_period = node("Reshape", [taps, const("period_rows", np.array([-1, width // period, period], dtype=np.int64))],
                     "taps_by_period")
    running = node("CumSum", [by_period, const("cumsum_axis", np.int32(1))], "taps_running")
    sums = node("Reshape", [running, const("block_rows", np.array([-1, width], dtype=np.int64))], "sums_padded")
    if width != block:
        sums = node("Slice", [sums, const("sums_start", np.array([0], dtype=np.int64)),
                              const("sums_end", np.array([block], dtype=np.int64)), axis], "sums")
    return node("Mul", [sums, const("one_half", np.float32(0.5))], "half_sums")


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
