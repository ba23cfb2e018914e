"""Turn a converted model back into a plain ONNX model (decoded weights as initializers)."""

from __future__ import annotations

import onnx
from onnx import numpy_helper

from hyperonnx.ops import DOMAIN
from hyperonnx.passes.decoders import find_decoders
from hyperonnx.passes.fuse import unfuse_model


def decompress_model(model: onnx.ModelProto) -> int:
    """Replace every decoder by its decoded initializer, in place; returns how many were replaced."""
    unfuse_model(model)  # fused ops (docs/fused.md) back to HyperDecode + their standard op
    decoders = list(find_decoders(model))
    by_graph: dict[int, list] = {}
    for decoder in decoders:
        by_graph.setdefault(id(decoder.graph), []).append(decoder)
    for group in by_graph.values():
        graph = group[0].graph
        dead_nodes = {id(n) for d in group for n in d.nodes}
        replace = {d.initializers[0]: numpy_helper.from_array(d.decode(), d.output) for d in group}
        dead_inits = {name for d in group for name in d.initializers} - set(replace)
        kept = []
        for tensor in graph.initializer:
            if tensor.name in replace:
                kept.append(replace[tensor.name])
            elif tensor.name not in dead_inits:
                kept.append(tensor)
        nodes = [n for n in graph.node if id(n) not in dead_nodes]
        graph.ClearField("initializer")
        graph.initializer.extend(kept)
        graph.ClearField("node")
        graph.node.extend(nodes)
    if decoders:
        remaining = [o for o in model.opset_import if o.domain != DOMAIN]
        model.ClearField("opset_import")
        model.opset_import.extend(remaining)
    return len(decoders)
