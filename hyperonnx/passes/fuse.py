"""Fuse ``call``-mode decoders into their consumers (docs/fused.md), so the weight is read straight from θ a tile at a
time instead of being materialized on every run:

* ``HyperDecode(θ) → MatMul(A, W)`` becomes ``HyperMatMul(A, θ)``;
* ``HyperDecode(θ) → Transpose(W) → MatMul(A, Wᵀ)`` (a 2-D W, the two axes swapped) becomes
  ``HyperMatMul(A, θ, transB=1)``: a tied LM head reading its embedding table, which a HyperGather also reads from
  the same θ. The Transpose goes when only fused MatMuls read it, else it stays with its HyperDecode;
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
its own attributes. A MatMul fused through a Transpose also records the Transpose under ``transpose``: its ``name``,
``output``, ``attributes`` and ``doc_string``, so unfusing writes it back (once, before the first MatMul reading it,
unless the graph still has it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import onnx
from onnx import helper

from hyperonnx.ops import DOMAIN, OP_TYPE
from hyperonnx.ops.fused import CONV_OP_TYPE, GATHER_OP_TYPE, GEMM_OP_TYPE, MATMUL_OP_TYPE
from hyperonnx.passes.graphs import consumers, doc_json, walk

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


def _is_2d_transpose(node: onnx.NodeProto, decoders: dict) -> bool:
    """A Transpose of a 2-D decoded weight that swaps its two axes (perm [1, 0], or none: reversed)."""
    if node.op_type != "Transpose" or node.domain not in ("", "ai.onnx") or len(node.input) != 1 \
            or len(node.output) != 1 or node.input[0] not in decoders:
        return False
    shape = list(_attributes(decoders[node.input[0]]).get("shape", ()))
    return _is_matrix(shape) and list(_attributes(node).get("perm", (1, 0))) == [1, 0]


def _transposed_matmul(node: onnx.NodeProto, transposes: dict) -> onnx.NodeProto | None:
    """The Transpose whose output ``node`` (a MatMul) reads as B, where it can fuse as HyperMatMul transB, or None."""
    if node.op_type != "MatMul" or node.domain not in ("", "ai.onnx") or len(node.input) != 2:
        return None
    b = node.input[1]
    return transposes.get(b) if node.input[0] != b else None


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


def _attribute_list(node: onnx.NodeProto, skip: tuple[str, ...] = ()) -> list:
    """[name, value, AttributeProto type] of each attribute of ``node`` not in ``skip``, in order."""
    kept = [(a, helper.get_attribute_value(a)) for a in node.attribute if a.name not in skip]
    return [[a.name, v.decode() if isinstance(v, bytes) else v, a.type] for a, v in kept]


def _fused_node(node: onnx.NodeProto, rule: _Rule, decoder: onnx.NodeProto,
                transpose: onnx.NodeProto | None = None) -> onnx.NodeProto:
    weight = decoder.output[0]
    attrs = {k: v for k, v in _attributes(decoder).items() if k != "mode"}
    doc = {**doc_json(decoder.doc_string), "weight": weight, rule.doc_key: node.name}
    if transpose is not None:  # MatMul(A, Transpose(W)): HyperMatMul with transB
        doc["transpose"] = {"name": transpose.name, "output": transpose.output[0],
                            "attributes": _attribute_list(transpose)}
        if transpose.doc_string:
            doc["transpose"]["doc_string"] = transpose.doc_string
        attrs["transB"] = 1
    inputs = list(node.input)
    inputs[rule.weight_input] = decoder.input[0]
    if len(inputs) == 3 and not inputs[2]:
        inputs.pop()  # an omitted C (Gemm) or B (Conv)
    kept = _attribute_list(node, _GEMM_ATTRIBUTES)
    if kept:
        doc["attributes"] = kept
    if node.doc_string:
        doc["doc_string"] = node.doc_string
    fused = helper.make_node(rule.fused_type, inputs, list(node.output),
                             name=node.name or f"hyperonnx/{weight}/{rule.doc_key}", domain=DOMAIN,
                             doc_string=json.dumps(doc, sort_keys=True), **attrs)
    if rule.op_type == "Gemm":
        fused.attribute.extend(a for a in node.attribute if a.name in _GEMM_ATTRIBUTES)
    return fused


def fusable_weights(model: onnx.ModelProto) -> set[tuple[int, str]]:
    """(id(graph), name) of every value that :func:`fuse_model` would fuse into its reader once it is a 2-D weight
    decoded in call mode by a fusable codec: a MatMul's B (directly or through a 2-D Transpose), a Gemm's B, an
    axis-0 Gather's data. Read before compression (the converter's choice of codec: docs/fused.md)."""
    found: set[tuple[int, str]] = set()
    for scope in walk(model.graph):
        graph = scope.graph
        plain = [n for n in graph.node if n.domain in ("", "ai.onnx")]
        transposed = {n.output[0]: n.input[0] for n in plain if n.op_type == "Transpose" and len(n.input) == 1
                      and len(n.output) == 1 and list(_attributes(n).get("perm", (1, 0))) == [1, 0]}
        for node in plain:
            if node.op_type == "MatMul" and len(node.input) == 2 and node.input[0] != node.input[1]:
                found.add((id(graph), node.input[1]))
                if node.input[1] in transposed:
                    found.add((id(graph), transposed[node.input[1]]))
            elif node.op_type == "Gemm" and len(node.input) in (2, 3) and node.input[1] not in node.input[::2]:
                found.add((id(graph), node.input[1]))
            elif node.op_type == "Gather" and len(node.input) == 2 and _attributes(node).get("axis", 0) in (0, -2):
                found.add((id(graph), node.input[0]))
    return found


def _only_fused_read(name: str, outputs: set, reads: dict, fused_reads: dict) -> bool:
    """Whether fused nodes are all that read ``name`` (no other op, subgraph or graph output)."""
    return name not in outputs and len(reads.get(name, ())) == fused_reads.get(name, 0)


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
        transposes = {n.output[0]: n for n in original if _is_2d_transpose(n, decoders)}
        replaced: dict[int, onnx.NodeProto] = {}
        fused_reads: dict[str, int] = {}
        for node in original:
            transpose = _transposed_matmul(node, transposes)
            if transpose is not None:
                rule, decoder = _BY_OP["MatMul"], decoders[transpose.input[0]]
            else:
                rule = _rule_for(node, decoders, convs)
                if rule is None:
                    continue
                decoder = decoders[node.input[rule.weight_input]]
            read = node.input[rule.weight_input]  # the decoder's output, or the Transpose's
            replaced[id(node)] = _fused_node(node, rule, decoder, transpose)
            fused_reads[read] = fused_reads.get(read, 0) + 1
            if decoder.output[0] not in fused:
                fused.append(decoder.output[0])
        if not replaced:
            continue
        # A node stays when anything but the fused nodes reads its output (another op, a subgraph, an output):
        # first the Transposes, whose going counts as a fused read of their decoder, then the decoders.
        dead = {id(t) for name, t in transposes.items()
                if fused_reads.get(name) and _only_fused_read(name, outputs, reads, fused_reads)}
        for t in transposes.values():
            if id(t) in dead:
                fused_reads[t.input[0]] = fused_reads.get(t.input[0], 0) + 1
        dead |= {id(d) for name, d in decoders.items() if _only_fused_read(name, outputs, reads, fused_reads)}
        nodes = [replaced.get(id(n), n) for n in original if id(n) not in dead]
        graph.ClearField("node")
        graph.node.extend(nodes)
    return fused


def _standard_node(node: onnx.NodeProto, rule: _Rule, weight: str, doc: dict) -> onnx.NodeProto:
    """The original op reading ``weight`` (its name, attributes and doc string from ``doc``, which loses them)."""
    inputs = list(node.input)
    inputs[rule.weight_input] = weight
    standard = helper.make_node(rule.op_type, inputs, list(node.output), name=doc.pop(rule.doc_key, ""),
                                doc_string=doc.pop("doc_string", None))
    if rule.op_type == "Gemm":
        standard.attribute.extend(a for a in node.attribute if a.name in _GEMM_ATTRIBUTES)
    standard.attribute.extend(helper.make_attribute(name, value, attr_type=kind)
                              for name, value, kind in doc.pop("attributes", []))
    return standard


def _transpose_node(weight: str, recorded: object) -> onnx.NodeProto:
    """The Transpose a transB HyperMatMul was fused through (``recorded``: the doc string's ``transpose``; a
    HyperMatMul written by hand has none: then one named after the weight)."""
    info = recorded if isinstance(recorded, dict) else {}
    output = info.get("output") or f"{weight}/transposed"
    node = helper.make_node("Transpose", [weight], [output], name=info.get("name", f"hyperonnx/{weight}/transpose"),
                            doc_string=info.get("doc_string"))
    attributes = info.get("attributes", [["perm", [1, 0], onnx.AttributeProto.INTS]] if not info else [])
    node.attribute.extend(helper.make_attribute(name, value, attr_type=kind) for name, value, kind in attributes)
    return node


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
            doc = doc_json(node.doc_string)
            weight = doc.pop("weight", None)
            if not isinstance(weight, str) or not weight:
                raise ValueError(f"fused node {node.name!r} does not name its weight")
            read = weight
            transposed = rule.op_type == "MatMul" and _attributes(node).get("transB", 0) == 1
            if transposed:
                transpose = _transpose_node(weight, doc.pop("transpose", None))
                read = transpose.output[0]
                if read not in produced:
                    produced.add(read)
                    nodes.append(transpose)
            nodes.append(_standard_node(node, rule, read, doc))
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


__all__ = ["FUSABLE_CODECS", "fusable_weights", "fuse_model", "unfuse_model"]
