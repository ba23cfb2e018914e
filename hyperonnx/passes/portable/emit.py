"""The ``portable`` form's writer: one weight rewritten as a chain of standard ONNX ops that computes exactly what
docs/format.md specifies, and that ONNX Runtime folds to a constant at load. What is shared lives here (the
stored codes, the tag, the end of the chain); each codec's rows come from the module its ``portable`` trait
names (``paper``, ``table``, ``blockvq``, ``blocktcq``)."""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np
import onnx
from onnx import helper

from hyperonnx import codec
from hyperonnx.codec import Encoded, bitpack
from hyperonnx.passes.emit import Namer, Rewrite
from hyperonnx.passes.ort_node import DTYPE_TO_ONNX, node_attributes
from hyperonnx.passes.portable import blocks, layout
from hyperonnx.passes.portable.builder import Builder, code_grid, plane_nodes
from hyperonnx.passes.select import WeightSite


def builder_for(enc: Encoded) -> ModuleType:
    """The module that writes ``enc``'s rows (its codec's ``portable`` trait); ValueError for a codec that has no
    portable form."""
    family = codec.decoder_for(enc.codec)
    if family.portable is None:
        raise ValueError(f"codec {enc.codec!r} has no portable form; use --runtime ort")
    return importlib.import_module(f"{__package__}.{family.portable}")


def portable_bytes(enc: Encoded) -> int:
    """Bytes the portable form stores: bit-planed codes (and block headers) plus what the codec's table needs."""
    side = 4 * sum(len(v) for v in enc.floats.values()) + 8 * (len(enc.shape) + 3)
    side += builder_for(enc).table_bytes(enc)
    return layout.code_bytes(enc, codec.decoder_for(enc.codec).block_headers) + side


def emit_portable(site: WeightSite, namer: Namer, enc: Encoded, stats: dict, opset: int = 11) -> Rewrite:
    """Standard-op decoder: the codes unpacked from their bit planes, then the codec's rows (a Gather from its
    table) (→ Reshape → Slice) → Reshape.

    Codes are stored bit-packed in planes (``layout.code_planes``; ``layout.pack_planes`` describes the layout),
    unpacked with uint8 BitShifts and summed (in uint8 where the model's opset allows it, 14+, and the codes fit;
    else in the decoder's index type), as the decoder's grid: one row per block for the block codecs. Codes of 8
    and 16 bits (or more) are stored one per uint8/uint16/int32 element instead. The block codecs' headers are a
    byte per block for the scale code and a 2-bit plane for the level set. Tables are generated in the graph from
    a few scalars with the format's float32 operations where the codec allows it (`paper`, `blockvq`,
    `blocktcq`); ORT folds them at load, holding every node's output until it is done: a node costs load-time
    memory, not only time. Needs opset ≥ 11 (BitShift, Range, CumSum, input-driven Pad and Slice), and 13 for a
    bfloat16 weight (its Cast). The Gather carries the codec attributes and the layout in its doc_string so that
    `inspect` and `decompress` understand the model.
    """
    problem = portable_opset_error(opset, enc.dtype == "bfloat16")
    if problem:
        raise ValueError(problem)
    rows_of = builder_for(enc)
    code_bytes = bitpack.packed_size(enc.count, enc.bits)
    codes = bitpack.unpack(enc.blob[:code_bytes], enc.count, enc.bits)
    block = enc.ints["block"][0] if codec.decoder_for(enc.codec).block_headers else None
    covered = enc.count * enc.group if block is None else -(-enc.numel // block) * block  # values the rows hold
    grid = [enc.count] if block is None else [-(-enc.numel // block), block // enc.group]  # the decoder's codes
    b = Builder(namer, namer.prefix())  # short names; the output keeps the weight's name
    planes = layout.code_planes(enc.bits)
    stored: dict = {}
    if planes is None:
        store = layout.element_dtype(enc.bits)
        codes = codes.astype(store)
        if block is not None and grid[0] * grid[1] == enc.count:
            codes = codes.reshape(grid)  # whole blocks of codes: the decoder's grid, no Reshape node
        n_codes = b.name("codes")
        b.add(n_codes, codes)
    else:
        names = [b.name("codes" if i == 0 else f"codes_{width}bit") for i, (width, _) in enumerate(planes)]
        for array, name in zip(layout.pack_planes(codes, planes), names):
            b.add(name, array)
        n_codes = names[0]
        stored["planes"] = [[n, width, shift] for n, (width, shift) in zip(names, planes)]
    del codes
    headers = None
    if block is not None:
        headers = blocks.store_headers(b, enc)
        stored["book_planes"] = [[headers[1], layout.BOOK_BITS, 0]]
    stored["prefix"] = b.prefix
    meta = dict(stats, name=site.name, codes=n_codes, **stored,
                **{k: [layout.json_float32(x) for x in v] if k.startswith("f_") else v
                   for k, v in node_attributes(enc, "load").items() if k != "mode"})
    tag = layout.tag(meta)
    to = rows_of.index_type(enc, opset)
    if planes is None:
        index = n_codes
        if np.dtype(store) != helper.tensor_dtype_to_np_dtype(to):
            index = b.node("Cast", [n_codes], "codes_f32" if to == onnx.TensorProto.FLOAT else "codes_i32", to=to)
        if block is not None:
            index = code_grid(b, enc, index, grid[1])
    else:
        index = plane_nodes(b, planes, names, enc.count, grid, to, opset >= 14)
    flat = rows_of.rows(b, enc, index, headers, tag, opset)
    if covered != enc.numel:  # the pad of the last pair or block
        flat_shape = b.name("flat_shape")
        b.add(flat_shape, np.array([-1], dtype=np.int64))
        rows, flat = flat, b.name("flat")
        b.step("Reshape", [rows, flat_shape], flat, "flatten")
        bounds = [b.name(bound) for bound in ("start", "end")]
        b.add(bounds[0], np.array([0], dtype=np.int64))
        b.add(bounds[1], np.array([enc.numel], dtype=np.int64))
        trimmed = b.name("trimmed")
        b.step("Slice", [flat, *bounds], trimmed, "trim")
        flat = trimmed
    if codec.base.dtype_from_name(enc.dtype) != np.float32:
        cast = b.name("cast_out")
        b.step("Cast", [flat], cast, "cast_out", to=DTYPE_TO_ONNX[enc.dtype])
        flat = cast
    shape = b.name("shape")
    b.add(shape, np.array(enc.shape, dtype=np.int64))
    b.step("Reshape", [flat, shape], site.name, "reshape")
    return Rewrite(site, b.initializers, b.nodes)


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
