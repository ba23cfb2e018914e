"""Find the weight tensors worth compressing: initializers and Constant-node tensors, in every graph."""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field

import onnx

from hyperonnx.ops.names import FLOAT_TYPES
from hyperonnx.passes.graphs import consumers, walk

# The inputs of each op that hold weights (not biases, not normalisation parameters); None = every input.
WEIGHT_INPUTS: dict[str, set[int] | None] = {
    "Conv": {1},
    "ConvTranspose": {1},
    "MatMul": {0, 1},
    "Gemm": {0, 1},
    "Gather": {0},
    "LSTM": {1, 2},
    "GRU": {1, 2},
    "RNN": {1, 2},
    "Einsum": None,
}


@dataclass
class Selection:
    min_elements: int = 4096
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    all_ops: bool = False


@dataclass
class WeightSite:
    """A tensor in a graph: an initializer, or the ``value`` of a Constant node."""

    graph: onnx.GraphProto
    graph_path: str
    name: str
    tensor: onnx.TensorProto
    constant_node: onnx.NodeProto | None
    used_by: list[tuple[str, int]] = field(default_factory=list)

    @property
    def numel(self) -> int:
        return math.prod(self.tensor.dims)

    @property
    def kind(self) -> str:
        return "constant" if self.constant_node is not None else "initializer"


@dataclass
class Skipped:
    name: str
    reason: str


def find_sites(model: onnx.ModelProto) -> list[WeightSite]:
    """Every float tensor that is a candidate weight, in graph order. The constants of decoders an earlier
    conversion wrote (nodes named hyperonnx/…: a portable decoder's scale and level tables) are not weights:
    compressing them would change the weight they decode."""
    sites: list[WeightSite] = []
    for scope in walk(model.graph):
        graph = scope.graph
        users = consumers(graph)
        inputs = {value.name for value in graph.input}
        inputs |= {name for node in graph.node if node.name.startswith("hyperonnx/") for name in node.input}
        for tensor in graph.initializer:
            if tensor.data_type in FLOAT_TYPES and tensor.name not in inputs:
                sites.append(WeightSite(graph, scope.path, tensor.name, tensor, None, users.get(tensor.name, [])))
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.output) == 1:
                for attr in node.attribute:
                    if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                        if attr.t.data_type in FLOAT_TYPES:
                            name = node.output[0]
                            sites.append(WeightSite(graph, scope.path, name, attr.t, node, users.get(name, [])))
    return sites


def feeds_weight_input(site: WeightSite) -> bool:
    for op_type, index in site.used_by:
        slots = WEIGHT_INPUTS.get(op_type, set())
        if slots is None or index in slots:
            return True
    return False


def choose(sites: list[WeightSite], selection: Selection) -> tuple[list[WeightSite], list[Skipped]]:
    """Split candidates into those to compress and those kept raw (with the reason)."""
    chosen: list[WeightSite] = []
    skipped: list[Skipped] = []
    for site in sites:
        name = site.name
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in selection.exclude):
            skipped.append(Skipped(name, "excluded by --exclude"))
        elif site.numel < selection.min_elements:
            skipped.append(Skipped(name, f"{site.numel} elements < --min-elements {selection.min_elements}"))
        elif any(fnmatch.fnmatchcase(name, pattern) for pattern in selection.include):
            chosen.append(site)
        elif selection.include and not selection.all_ops:
            skipped.append(Skipped(name, "not matched by --include"))
        elif selection.all_ops or feeds_weight_input(site):
            chosen.append(site)
        else:
            # op types come from the file: undecodable bytes must not break the message
            ops = sorted({op if isinstance(op, str) else repr(op) for op, _ in site.used_by}) or ["no consumer"]
            skipped.append(Skipped(name, f"not a weight input (used by {', '.join(ops)})"))
    return chosen, skipped
