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
    """Standard-op decoder: Gather(table, codes) → Reshape (→ Slice) → Reshape.

    Codes are stored one per uint8/uint16 (byte-aligned, so standard ops can index with them) and the table
    is stored already cast to the output dtype: ORT folds this at load with intermediates of at most
    ~2.5× the decoded weight (int32 indices + gathered rows + reshape).
    """
    codes = codec.base.bitpack.unpack(enc.blob, enc.count, enc.bits)
    store = np.uint8 if enc.bits <= 8 else np.uint16 if enc.bits <= 16 else np.int32
    dtype = codec.base.dtype_from_name(enc.dtype)
    table = codec.table(enc).astype(dtype)
    base = site.name
    n_codes = namer(f"{base}::codes")
    n_table = namer(f"{base}::table")
    inits = [numpy_helper.from_array(codes.astype(store), n_codes), numpy_helper.from_array(table, n_table)]
    nodes = []
    index = n_codes
    if store is not np.int32:
        index = namer(f"{base}::codes_i32")
        nodes.append(helper.make_node("Cast", [n_codes], [index], to=onnx.TensorProto.INT32,
                                      name=f"hyperonnx/{base}/cast"))
    rows = namer(f"{base}::rows")
    meta = dict(stats, name=site.name, **{k: v for k, v in node_attributes(enc, "load").items() if k != "mode"})
    nodes.append(helper.make_node("Gather", [n_table, index], [rows], axis=0, name=f"hyperonnx/{base}/gather",
                                  doc_string=PORTABLE_TAG + json.dumps(meta, sort_keys=True)))
    pad = enc.count * enc.group - enc.numel
    if pad:
        flat_shape = namer(f"{base}::flat_shape")
        inits.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), flat_shape))
        flat = namer(f"{base}::flat")
        nodes.append(helper.make_node("Reshape", [rows, flat_shape], [flat], name=f"hyperonnx/{base}/flatten"))
        bounds = [namer(f"{base}::{b}") for b in ("start", "end")]
        inits.append(numpy_helper.from_array(np.array([0], dtype=np.int64), bounds[0]))
        inits.append(numpy_helper.from_array(np.array([enc.numel], dtype=np.int64), bounds[1]))
        trimmed = namer(f"{base}::trimmed")
        nodes.append(helper.make_node("Slice", [flat, *bounds], [trimmed], name=f"hyperonnx/{base}/trim"))
        rows = trimmed
    shape = namer(f"{base}::shape")
    inits.append(numpy_helper.from_array(np.array(enc.shape, dtype=np.int64), shape))
    nodes.append(helper.make_node("Reshape", [rows, shape], [site.name], name=f"hyperonnx/{base}/reshape"))
    return Rewrite(site, inits, nodes)
