"""Fuse ``call``-mode decoders into their consumers: ``HyperDecode(θ) → MatMul(A, W)`` becomes ``HyperMatMul(A, θ)``
(docs/fused.md), whose kernel decodes W a tile at a time inside the multiply instead of materializing it on every
run. Other consumers of the same weight keep the HyperDecode node; the θ initializer is shared.

``unfuse_model`` is the exact inverse (decompress and inspect see HyperDecode nodes again). What it needs is in the
fused node's doc string: the decoder's own statistics plus ``weight`` (the decoded tensor's name) and ``matmul`` (the
original node's name).
"""

from __future__ import annotations

import json

import onnx
from onnx import helper

from hyperonnx.ops import DOMAIN, OP_TYPE
from hyperonnx.ops.fused import MATMUL_OP_TYPE
from hyperonnx.passes.graphs import consumers, walk

# The codecs whose kernels read a tile of rows (custom_ops/src/fused/weight.h); the others keep HyperDecode.
FUSABLE_CODECS = ("blocktcq", "blockvq")
_FLOAT = onnx.TensorProto.FLOAT


def _attributes(node: onnx.NodeProto) -> dict:
    values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}


def _fusable(attrs: dict) -> bool:
    return (attrs.get("mode") == "call" and attrs.get("codec") in FUSABLE_CODECS and attrs.get("dtype") == _FLOAT
            and len(attrs.get("shape", ())) == 2)


def _stats(doc: str) -> dict:
    try:
        value = json.loads(doc) if doc else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def fuse_model(model: onnx.ModelProto) -> list[str]:
    """Rewrite every fusable pair in place (every graph); returns the fused weights' names, in graph order."""
    fused: list[str] = []
    reads = consumers(model.graph)
    for scope in walk(model.graph):
        graph = scope.graph
        outputs = {o.name for o in graph.output}
        decoders = {n.output[0]: n for n in graph.node
                    if n.domain == DOMAIN and n.op_type == OP_TYPE and _fusable(_attributes(n))}
        if not decoders:
            continue
        matmuls = [n for n in graph.node if n.op_type == "MatMul" and n.domain in ("", "ai.onnx")
                   and len(n.input) == 2 and n.input[1] in decoders and n.input[0] != n.input[1]]
        if not matmuls:
            continue
        replaced: dict[int, onnx.NodeProto] = {}
        for mm in matmuls:
            decoder = decoders[mm.input[1]]
            attrs = {k: v for k, v in _attributes(decoder).items() if k != "mode"}
            doc = {**_stats(decoder.doc_string), "weight": mm.input[1], "matmul": mm.name}
            replaced[id(mm)] = helper.make_node(
                MATMUL_OP_TYPE, [mm.input[0], decoder.input[0]], list(mm.output),
                name=mm.name or f"hyperonnx/{mm.input[1]}/matmul", domain=DOMAIN,
                doc_string=json.dumps(doc, sort_keys=True), **attrs)
            if mm.input[1] not in fused:
                fused.append(mm.input[1])
        # A decoder stays when anything but the fused MatMuls reads its output (another op, a subgraph, an output).
        fused_reads = {}
        for mm in matmuls:
            fused_reads[mm.input[1]] = fused_reads.get(mm.input[1], 0) + 1
        dead = {id(d) for name, d in decoders.items()
                if name not in outputs and len(reads.get(name, ())) == fused_reads.get(name, 0)}
        nodes = [replaced.get(id(n), n) for n in graph.node if id(n) not in dead]
        graph.ClearField("node")
        graph.node.extend(nodes)
    return fused


def unfuse_model(model: onnx.ModelProto) -> list[str]:
    """Turn every fused node back into HyperDecode (mode ``call``) + the standard op, in place; returns the fused
    weights' names. Raises ValueError for a fused node whose doc string lacks its weight's name."""
    names: list[str] = []
    for scope in walk(model.graph):
        graph = scope.graph
        produced = {o for n in graph.node for o in n.output}
        decoders: list[onnx.NodeProto] = []
        nodes: list[onnx.NodeProto] = []
        for node in graph.node:
            if node.domain != DOMAIN or node.op_type != MATMUL_OP_TYPE:
                nodes.append(node)
                continue
            doc = _stats(node.doc_string)
            weight = doc.pop("weight", None)
            if not isinstance(weight, str) or not weight:
                raise ValueError(f"fused node {node.name!r} does not name its weight")
            matmul_name = doc.pop("matmul", "")
            if weight not in produced:
                produced.add(weight)
                decoders.append(helper.make_node(OP_TYPE, [node.input[1]], [weight], name=f"hyperonnx/{weight}",
                                                 domain=DOMAIN, doc_string=json.dumps(doc, sort_keys=True),
                                                 **_attributes(node), mode="call"))
            if weight not in names:
                names.append(weight)
            nodes.append(helper.make_node("MatMul", [node.input[0], weight], list(node.output), name=matmul_name))
        if decoders:
            graph.ClearField("node")
            graph.node.extend(decoders + nodes)
    return names


__all__ = ["FUSABLE_CODECS", "fuse_model", "unfuse_model"]
