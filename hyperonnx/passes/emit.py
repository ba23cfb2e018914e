"""Rewriting weights as decoders: fresh names in a model, what replaces one weight, and applying a graph's
rewrites in one pass. The decoders themselves: the ``ort`` form's ``HyperDecode`` node (:mod:`.ort_node`) and the
``portable`` form's standard ops (:mod:`.portable`).

The decoder's output keeps the weight's name, so every consumer is untouched; nothing else in the graph
changes (see ``apply``).
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from hyperonnx.passes.graphs import walk
from hyperonnx.passes.select import WeightSite


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
    # Appending copies a message: each rewrite's own θ initializer is emptied right after its copy, so the blobs are
    # held twice one at a time, never all at once (at 1 B weights that is ~0.7 GB more at the peak).
    own = {id(t) for r in rewrites for t in r.initializers}
    for tensor in initializers:
        graph.initializer.append(tensor)
        if id(tensor) in own:
            tensor.Clear()
    graph.ClearField("node")
    graph.node.extend(nodes)


def model_opset(model: onnx.ModelProto) -> int:
    """The model's default-domain opset (17 when it declares none)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
