"""Walking a model's graphs: the main graph and every subgraph (If/Loop/Scan bodies), recursively."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import onnx


@dataclass
class GraphScope:
    graph: onnx.GraphProto
    path: str  # "main", "main/If_0:then_branch", ...


def walk(graph: onnx.GraphProto, path: str = "main") -> Iterator[GraphScope]:
    yield GraphScope(graph, path)
    for index, node in enumerate(graph.node):
        for attr in node.attribute:
            label = f"{path}/{node.name or node.op_type + '_' + str(index)}:{attr.name}"
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from walk(attr.g, label)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for j, sub in enumerate(attr.graphs):
                    yield from walk(sub, f"{label}[{j}]")


def consumers(graph: onnx.GraphProto) -> dict[str, list[tuple[str, int]]]:
    """name → (op_type, input index) of every node reading it, subgraph nodes included (outer-scope reads)."""
    found: dict[str, list[tuple[str, int]]] = {}
    for scope in walk(graph):
        for node in scope.graph.node:
            for index, name in enumerate(node.input):
                if name:
                    found.setdefault(name, []).append((node.op_type, index))
    return found


def doc_json(doc: str) -> dict:
    """A node's doc_string as the JSON object a pass wrote there (statistics, a fused node's weight); {} where it
    holds none: empty, not JSON, or JSON but not an object."""
    try:
        value = json.loads(doc) if doc else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
