"""Exactness: every byte of a converted model that is not a compressed weight equals the input's,
across the real test models (benchmarks/realmodels.py) and the toy models.

The check is structural and byte-level: from the converted model remove what conversion added (HyperDecode
nodes, their θ-blob initializers, the ai.hyperonnx opset import); from the original remove what conversion
compressed (the initializers and Constant nodes named by the HyperDecode outputs). The two remainders are then
serialised and compared byte for byte: model metadata (ir_version, producer, doc_string, metadata_props,
opset imports, functions), graph inputs/outputs/value_info, every node with its attributes, names, domains and
doc strings, in order, in every subgraph, and every raw initializer's bytes.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import pytest
import toymodels

from hyperonnx import api

try:
    from . import realmodels as rm
except ImportError:
    import realmodels as rm

DOMAIN = "ai.hyperonnx"


def _graphs(graph: onnx.GraphProto):
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _graphs(g)


def _compressed_names(converted: onnx.ModelProto) -> set[str]:
    names = set()
    for graph in _graphs(converted.graph):
        for node in graph.node:
            if node.domain == DOMAIN:
                names.update(node.output)
    return names


def _strip_converted(model: onnx.ModelProto) -> onnx.ModelProto:
    model = copy.deepcopy(model)
    for graph in _graphs(model.graph):
        added_inputs = set()
        keep = []
        for node in graph.node:
            if node.domain == DOMAIN:
                added_inputs.update(node.input)
            else:
                keep.append(node)
        del graph.node[:]
        graph.node.extend(keep)
        inits = [t for t in graph.initializer if t.name not in added_inputs]
        del graph.initializer[:]
        graph.initializer.extend(inits)
    opsets = [o for o in model.opset_import if o.domain != DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(opsets)
    return model


def _strip_original(model: onnx.ModelProto, compressed: set[str]) -> onnx.ModelProto:
    model = copy.deepcopy(model)
    for graph in _graphs(model.graph):
        keep = [n for n in graph.node if not (n.op_type == "Constant" and n.domain in ("", "ai.onnx")
                                               and set(n.output) <= compressed)]
        del graph.node[:]
        graph.node.extend(keep)
        inits = [t for t in graph.initializer if t.name not in compressed]
        del graph.initializer[:]
        graph.initializer.extend(inits)
    return model


def _first_difference(a: onnx.ModelProto, b: onnx.ModelProto) -> str:
    for field in ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"):
        if getattr(a, field) != getattr(b, field):
            return f"model.{field}: {getattr(a, field)!r} != {getattr(b, field)!r}"
    for field in ("metadata_props", "opset_import", "functions"):
        if list(getattr(a, field)) != list(getattr(b, field)):
            return f"model.{field} differs"
    ga, gb = a.graph, b.graph
    for field in ("input", "output", "value_info", "sparse_initializer"):
        if list(getattr(ga, field)) != list(getattr(gb, field)):
            return f"graph.{field} differs"
    if len(ga.node) != len(gb.node):
        return f"{len(ga.node)} nodes != {len(gb.node)} nodes"
    for na, nb in zip(ga.node, gb.node):
        if na.SerializeToString() != nb.SerializeToString():
            return f"node {na.name!r} ({na.op_type}) differs: {str(na)[:300]} vs {str(nb)[:300]}"
    ia = {t.name: t for t in ga.initializer}
    ib = {t.name: t for t in gb.initializer}
    if set(ia) != set(ib):
        return f"initializers differ: only in original {sorted(set(ia) - set(ib))[:5]}, " \
               f"only in converted {sorted(set(ib) - set(ia))[:5]}"
    for name in ia:
        if ia[name].SerializeToString() != ib[name].SerializeToString():
            return f"initializer {name!r} bytes differ"
    return "graph-level field differs (name, doc_string or order)"


def _check_exact(source: Path, tmp_path: Path, **kwargs) -> int:
    out = tmp_path / (source.stem + ".hx.onnx")
    api.convert(source, out, jobs=2, **kwargs)
    original = onnx.load(str(source))
    converted = onnx.load(str(out))
    compressed = _compressed_names(converted)
    assert compressed, "nothing was compressed: the test would prove nothing"
    a = _strip_original(original, compressed)
    b = _strip_converted(converted)
    if a.SerializeToString(deterministic=True) != b.SerializeToString(deterministic=True):
        pytest.fail(f"{source.name}: non-compressed content changed: {_first_difference(a, b)}")
    # and the compressed tensors are the only ones missing: every one of them was an initializer or Constant
    names = {t.name for g in _graphs(original.graph) for t in g.initializer}
    names |= {o for g in _graphs(original.graph) for n in g.node if n.op_type == "Constant" for o in n.output}
    assert compressed <= names
    return len(compressed)


@pytest.mark.parametrize("make", [lambda: toymodels.conv_mlp(), lambda: toymodels.conv_mlp(dtype=np.float16),
                                  toymodels.constants_and_subgraphs], ids=["conv_mlp", "conv_mlp16", "subgraphs"])
@pytest.mark.parametrize("runtime, codec_name", [("ort", None), ("portable", "blockvq"), ("portable", "blocktcq")])
def test_toy_models_exact(make, runtime, codec_name, tmp_path):
    """ort with the default codec; portable with each block codec (decoders generated in the graph)."""
    src = tmp_path / "m.onnx"
    onnx.save(make(), src)
    if runtime == "ort":
        _check_exact(src, tmp_path, runtime=runtime)
    else:
        _check_exact_portable(src, tmp_path, codec_name)


def _check_exact_portable(src: Path, tmp_path: Path, codec_name: str | None = None) -> None:
    """Portable form: no HyperDecode node, so compare every original node/initializer that is not compressed."""
    out = tmp_path / "p.onnx"
    options = {} if codec_name is None else {"codec_name": codec_name}
    result = api.convert(src, out, runtime="portable", jobs=2, **options)
    assert result.report.tensors and all(codec_name in (None, t.codec) for t in result.report.tensors)
    compressed = {t.name for t in result.report.tensors}
    original = onnx.load(str(src))
    converted = onnx.load(str(out))
    conv_nodes = {n.SerializeToString() for g in _graphs(converted.graph) for n in g.node}
    conv_inits = {t.name: t.SerializeToString() for g in _graphs(converted.graph) for t in g.initializer}
    for g in _graphs(original.graph):
        for t in g.initializer:
            if t.name not in compressed:
                assert conv_inits.get(t.name) == t.SerializeToString(), t.name
        for n in g.node:
            if n.op_type == "Constant" and set(n.output) <= compressed:
                continue
            if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute):
                continue  # their bodies are compared node by node through _graphs
            assert n.SerializeToString() in conv_nodes, f"node {n.name!r} ({n.op_type}) changed"
    for field in ("ir_version", "producer_name", "producer_version", "doc_string", "metadata_props"):
        assert getattr(original, field) == getattr(converted, field), field


REAL = {
    "mobilenet_v2": lambda: rm.mobilenet_v2(),
    "terrain_unet": lambda: rm.terrain_unet(),
    "ppocr_rec": lambda: rm.ppocr("rec"),
    "ppocr_det": lambda: rm.ppocr("det"),
    "ppocr_cls": lambda: rm.ppocr("cls"),
    "silero_vad": lambda: rm.silero_vad(),
    "minilm": lambda: rm.minilm(),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_models_exact(name, tmp_path):
    try:
        source = REAL[name]()
    except Exception as exc:  # the model's package or exporter is not installed here
        pytest.skip(f"{name} not available: {type(exc).__name__}: {str(exc)[:200]}")
    count = _check_exact(source, tmp_path)
    print(f"{name}: {count} tensors compressed, everything else byte-identical")


@pytest.mark.parametrize("change", ["initializer-byte", "node-attribute", "metadata"])
def test_the_check_sees_a_one_byte_change(change, tmp_path):
    """The comparison is not vacuous: one changed byte outside the compressed weights is caught."""
    src = tmp_path / "m.onnx"
    onnx.save(toymodels.conv_mlp(), src)
    out = tmp_path / "m.hx.onnx"
    api.convert(src, out)
    converted = onnx.load(str(out))
    if change == "initializer-byte":
        bias = next(t for t in converted.graph.initializer if t.name == "conv.bias")
        raw = bytearray(bias.raw_data)
        raw[0] ^= 1
        bias.raw_data = bytes(raw)
    elif change == "node-attribute":
        gemm = next(n for n in converted.graph.node if n.op_type == "Gemm")
        next(a for a in gemm.attribute if a.name == "transB").i = 0
    else:
        converted.metadata_props[0].value += "!"
    original = onnx.load(str(src))
    a = _strip_original(original, _compressed_names(converted))
    b = _strip_converted(converted)
    assert a.SerializeToString(deterministic=True) != b.SerializeToString(deterministic=True)
