"""Fuse ``call``-mode decoders into their consumers (docs/fused.md), so the weight is read straight from θ a tile at a
time instead of being materialized on every run:

* ``HyperDecode(θ) → MatMul(A, W)`` becomes ``HyperMatMul(A, θ)``;
* ``HyperDecode(θ) → Gemm(A, W, C)`` becomes ``HyperGemm(A, θ, C)`` (W is Gemm's B, either transB);
* ``HyperDecode(θ) → Gather(W, indices)`` on axis 0 becomes ``HyperGather(θ, indices)``;
* ``HyperDecode(θ) → Conv(X, W, B)`` with a 1×1 kernel, group 1, strides 1, no padding and dilations 1 becomes
  ``HyperConv(X, θ, B)`` only when asked (``convs=True``): the converter leaves Convs alone, since HyperDecode + Conv
  measured as fast or faster on every MobileNet-sized 1×1 layer (benchmarks/fused_ops.py; docs/fused.md).

Other consumers of the same weight keep the HyperDecode node; the θ initializer is shared.

``unfuse_model`` is the exact inverse (decompress and inspect see HyperDecode nodes again). What it needs is in the
fused node's doc string: the decoder's own statistics plus ``weight`` (the decoded tensor's name), the original
node's name under its op type in lower case (``matmul``, ``gemm``, ``gather``, ``conv``), its ``doc_string`` if
it had one and the attributes the original set that the fused op does not take (Gather's ``axis``, Conv's), as
``attributes``: [name, value, AttributeProto type] in order. A fused Gemm carries the original's alpha, beta, transA and transB as
its own attributes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import onnx
from onnx import helper

from hyperonnx.ops import DOMAIN, OP_TYPE
from hyperonnx.ops.fused import CONV_OP_TYPE, GATHER_OP_TYPE, GEMM_OP_TYPE, MATMUL_OP_TYPE
from hyperonnx.passes.graphs import consumers, walk

# The codecs whose kernels read any range of rows (custom_ops/src/fused/weight.h); the others keep HyperDecode.
FUSABLE_CODECS = ("blocktcq", "blockvq")
_FLOAT = onnx.TensorProto.FLOAT
_GEMM_ATTRIBUTES = ("alpha", "beta", "transA", "transB")


@dataclass(frozen=True)
class _Rule:
    """How one standard op fuses: which input is the weight, what the fused op is called."""

    op_type: str
    fused_type: str
    weight_input: int

    @property
    def doc_key(self) -> str:
        return self.op_type.lower()


_RULES = (_Rule("MatMul", MATMUL_OP_TYPE, 1), _Rule("Gemm", GEMM_OP_TYPE, 1), _Rule("Gather", GATHER_OP_TYPE, 0),
          _Rule("Conv", CONV_OP_TYPE, 1))
_BY_OP = {r.op_type: r for r in _RULES}
_BY_FUSED = {r.fused_type: r for r in _RULES}


def _attributes(node: onnx.NodeProto) -> dict:
    values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}


def _fusable(attrs: dict) -> bool:
    return attrs.get("mode") == "call" and attrs.get("codec") in FUSABLE_CODECS and attrs.get("dtype") == _FLOAT


def _is_matrix(shape: list) -> bool:
    return len(shape) == 2


def _is_1x1_kernel(shape: list) -> bool:
    return len(shape) >= 3 and all(d == 1 for d in shape[2:])


def _plain_conv(attrs: dict) -> bool:
    """A Conv that is a GEMM over the positions: group 1, strides 1, no padding, dilations 1 (any auto_pad: with a
    1×1 kernel and stride 1 every mode pads nothing)."""
    return (attrs.get("group", 1) == 1 and all(v == 1 for v in attrs.get("strides", ()))
            and all(v == 0 for v in attrs.get("pads", ())) and all(v == 1 for v in attrs.get("dilations", ()))
            and all(v == 1 for v in attrs.get("kernel_shape", ())))


def _stats(doc: str) -> dict:
    try:
        value = json.loads(doc) if doc else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _rule_for(node: onnx.NodeProto, decoders: dict, convs: bool) -> _Rule | None:
    """The rule that fuses ``node`` with the decoder of its weight input, or None."""
    rule = _BY_OP.get(node.op_type)
    if rule is None or (rule.op_type == "Conv" and not convs) or node.domain not in ("", "ai.onnx") or len(node.input) <= rule.weight_input:
        return None
    weight = node.input[rule.weight_input]
    others = [name for i, name in enumerate(node.input) if i != rule.weight_input]
    if weight not in decoders or weight in others:
        return None
    shape = list(_attributes(decoders[weight]).get("shape", ()))
    if rule.op_type == "Conv":
        ok = len(node.input) in (2, 3) and _is_1x1_kernel(shape) and _plain_conv(_attributes(node))
    elif rule.op_type == "Gather":  # the weight is 2-D, so axis 0 is also -2
        ok = len(node.input) == 2 and _is_matrix(shape) and _attributes(node).get("axis", 0) in (0, -2)
    else:
        ok = len(node.input) in ((2, 3) if rule.op_type == "Gemm" else (2,)) and _is_matrix(shape)
    return rule if ok else None


def _fused_node(node: onnx.NodeProto, rule: _Rule, decoder: onnx.NodeProto) -> onnx.NodeProto:
    weight = node.input[rule.weight_input]
    attrs = {k: v for k, v in _attributes(decoder).items() if k != "mode"}
    doc = {**_stats(decoder.doc_string), "weight": weight, rule.doc_key: node.name}
    inputs = list(node.input)
    inputs[rule.weight_input] = decoder.input[0]
    if len(inputs) == 3 and not inputs[2]:
        inputs.pop()  # an omitted C (Gemm) or B (Conv)
    kept = [(a, helper.get_attribute_value(a)) for a in node.attribute if a.name not in _GEMM_ATTRIBUTES]
    if kept:
        doc["attributes"] = [[a.name, v.decode() if isinstance(v, bytes) else v, a.type] for a, v in kept]
    if node.doc_string:
        doc["doc_string"] = node.doc_string
    fused = helper.make_node(rule.fused_type, inputs, list(node.output),
                             name=node.name or f"hyperonnx/{weight}/{rule.doc_key}", domain=DOMAIN,
                             doc_string=json.dumps(doc, sort_keys=True), **attrs)
    if rule.op_type == "Gemm":
        fused.attribute.extend(a for a in node.attribute if a.name in _GEMM_ATTRIBUTES)
    return fused


def fuse_model(model: onnx.ModelProto, convs: bool = False) -> list[str]:
    """Rewrite every fusable pair in place (every graph); returns the fused weights' names, in graph order. ``convs``:
    1×1 Convs too."""
    fused: list[str] = []
    reads = consumers(model.graph)
    for scope in walk(model.graph):
        graph = scope.graph
        outputs = {o.name for o in graph.output}
        decoders = {n.output[0]: n for n in graph.node
                    if n.domain == DOMAIN and n.op_type == OP_TYPE and _fusable(_attributes(n))}
        if not decoders:
            continue
        original = list(graph.node)  # held, so the id() keys below stay unique
        replaced: dict[int, onnx.NodeProto] = {}
        fused_reads: dict[str, int] = {}
        for node in original:
            rule = _rule_for(node, decoders, convs)
            if rule is None:
                continue
            weight = node.input[rule.weight_input]
            replaced[id(node)] = _fused_node(node, rule, decoders[weight])
            fused_reads[weight] = fused_reads.get(weight, 0) + 1
            if weight not in fused:
                fused.append(weight)
        if not replaced:
            continue
        # A decoder stays when anything but the fused nodes reads its output (another op, a subgraph, an output).
        dead = {id(d) for name, d in decoders.items()
                if name not in outputs and len(reads.get(name, ())) == fused_reads.get(name, 0)}
        nodes = [replaced.get(id(n), n) for n in original if id(n) not in dead]
        graph.ClearField("node")
        graph.node.extend(nodes)
    return fused


def _standard_node(node: onnx.NodeProto, rule: _Rule, weight: str, doc: dict) -> onnx.NodeProto:
    inputs = list(node.input)
    inputs[rule.weight_input] = weight
    standard = helper.make_node(rule.op_type, inputs, list(node.output), name=doc.pop(rule.doc_key, ""),
                                doc_string=doc.pop("doc_string", None))
    if rule.op_type == "Gemm":
        standard.attribute.extend(a for a in node.attribute if a.name in _GEMM_ATTRIBUTES)
    standard.attribute.extend(helper.make_attribute(name, value, attr_type=kind)
                              for name, value, kind in doc.pop("attributes", []))
    return standard


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
            rule = _BY_FUSED.get(node.op_type) if node.domain == DOMAIN else None
            if rule is None:
                nodes.append(node)
                continue
            doc = _stats(node.doc_string)
            weight = doc.pop("weight", None)
            if not isinstance(weight, str) or not weight:
                raise ValueError(f"fused node {node.name!r} does not name its weight")
            nodes.append(_standard_node(node, rule, weight, doc))
            if weight not in produced:
                produced.add(weight)
                attrs = {k: v for k, v in _attributes(node).items() if k not in _GEMM_ATTRIBUTES}
                decoders.append(helper.make_node(OP_TYPE, [node.input[rule.weight_input]], [weight],
                                                 name=f"hyperonnx/{weight}", domain=DOMAIN,
                                                 doc_string=json.dumps(doc, sort_keys=True), **attrs, mode="call"))
            if weight not in names:
                names.append(weight)
        if decoders:
            graph.ClearField("node")
            graph.node.extend(decoders + nodes)
    return names


__all__ = ["FUSABLE_CODECS", "fuse_model", "unfuse_model"]
