"""`convert --decode call` fuses HyperDecode → MatMul / Gemm / Gather pairs into HyperMatMul / HyperGemm / HyperGather
(docs/fused.md); other consumers keep HyperDecode; inspect marks the fused tensors; decompress and the portable form are unchanged."""

from __future__ import annotations

import copy
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_cli import hx
from test_ops_decode import LIBRARY
from toymodels import constants_and_subgraphs, conv_mlp

from hyperonnx import api, runtime
from hyperonnx.passes.fuse import fuse_model, unfuse_model

pytestmark = pytest.mark.skipif(LIBRARY is None, reason="op library not built")


def ops(model: onnx.ModelProto) -> dict[str, str]:
    """Main-graph node name → op type."""
    return {n.name: n.op_type for n in model.graph.node}


def run(model: onnx.ModelProto | str, feeds: dict) -> list[np.ndarray]:
    data = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(data, runtime.session_options()).run(None, feeds)


def test_cli_convert_call_fuses_matmul_and_gemm(tmp_path):
    src, out = tmp_path / "toy.onnx", tmp_path / "toy.hx.onnx"
    onnx.save(conv_mlp(), str(src))
    result = hx("convert", src, "-o", out, "--min-elements", "500", "--decode", "call")
    assert result.returncode == 0, result.stderr
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    kinds = ops(model)
    assert kinds["fc1"] == "HyperMatMul"  # MatMul(f, fc1.weight)
    assert kinds["fc2"] == "HyperGemm"  # Gemm(hs, fc2.weight, fc2.bias), transB = 1
    assert kinds["conv"] == "Conv" and kinds["hyperonnx/conv.weight"] == "HyperDecode"  # a 3×3 Conv keeps it
    assert "hyperonnx/fc1.weight" not in kinds and "hyperonnx/fc2.weight" not in kinds
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 8)).astype(np.float32)
    unfused = onnx.load(str(out))
    assert unfuse_model(unfused) == ["fc1.weight", "fc2.weight"]
    fc2 = next(n for n in unfused.graph.node if n.name == "fc2")
    assert fc2.op_type == "Gemm" and fc2.doc_string == "head" and helper.get_attribute_value(fc2.attribute[0]) == 1
    y_fused, y_unfused = run(str(out), {"x": x})[0], run(unfused, {"x": x})[0]
    assert np.abs(y_fused - y_unfused).max() <= 1e-5 * np.abs(y_unfused).max()

    listing = hx("inspect", out)
    assert listing.returncode == 0, listing.stderr
    fused_lines = [line for line in listing.stdout.splitlines() if line.rstrip().endswith("fused")]
    assert sorted(line.split()[0] for line in fused_lines) == ["fc1.weight", "fc2.weight"]
    data = json.loads(hx("inspect", out, "--json").stdout)
    assert {t["name"]: t["fused"] for t in data["tensors"]} == {"conv.weight": False, "fc1.weight": True,
                                                                "fc2.weight": True}


def test_decompress_of_a_fused_model_is_the_plain_model(tmp_path):
    src = tmp_path / "toy.onnx"
    onnx.save(conv_mlp(), str(src))
    for mode in ("load", "call"):
        api.convert(src, tmp_path / f"{mode}.onnx", codec_name="blocktcq", min_elements=500, decode=mode)
        api.decompress(tmp_path / f"{mode}.onnx", tmp_path / f"{mode}.plain.onnx")
    load, call = (onnx.load(str(tmp_path / f"{m}.plain.onnx")) for m in ("load", "call"))
    assert [n.op_type for n in call.graph.node] == [n.op_type for n in conv_mlp().graph.node]
    arrays = {t.name: numpy_helper.to_array(t) for t in load.graph.initializer}
    for t in call.graph.initializer:
        assert np.array_equal(numpy_helper.to_array(t), arrays[t.name])
    assert not any(o.domain == "ai.hyperonnx" for o in call.opset_import)


def shared_weight_model() -> onnx.ModelProto:
    """W read by two MatMuls as B, by a MatMul as A, and by an Add; V read only as B."""
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((64, 64)) * 0.1).astype(np.float32)
    v = (rng.standard_normal((64, 40)) * 0.1).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["a"], name="mm_a"),
             helper.make_node("MatMul", ["a", "W"], ["b"], name="mm_b"),
             helper.make_node("MatMul", ["W", "b"], ["c"], name="mm_w_left"),
             helper.make_node("Add", ["c", "W"], ["d"], name="add_w"),
             helper.make_node("MatMul", ["d", "V"], ["y"], name="mm_v")]
    graph = helper.make_graph(nodes, "shared", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 40])],
                              [numpy_helper.from_array(w, "W"), numpy_helper.from_array(v, "V")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_other_consumers_keep_the_decoder(tmp_path):
    src, out = tmp_path / "shared.onnx", tmp_path / "shared.hx.onnx"
    onnx.save(shared_weight_model(), str(src))
    api.convert(src, out, min_elements=100, decode="call")
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    kinds = ops(model)
    assert kinds["mm_a"] == kinds["mm_b"] == kinds["mm_v"] == "HyperMatMul"
    assert kinds["mm_w_left"] == "MatMul" and kinds["add_w"] == "Add"
    assert kinds["hyperonnx/W"] == "HyperDecode" and "hyperonnx/V" not in kinds
    thetas = [n.input[1] for n in model.graph.node if n.op_type == "HyperMatMul"]
    assert len({t.name for t in model.graph.initializer}) == 2 and set(thetas) <= {t.name for t in
                                                                                  model.graph.initializer}
    x = np.random.default_rng(2).standard_normal((64, 64)).astype(np.float32)
    unfused = copy.deepcopy(model)
    assert sorted(unfuse_model(unfused)) == ["V", "W"]
    y, ref = run(model, {"x": x})[0], run(unfused, {"x": x})[0]
    assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()
    assert sorted(ops(unfused).values()).count("HyperDecode") == 2  # W's decoder is not duplicated


def test_subgraph_weights_are_fused(tmp_path):
    src, out = tmp_path / "sub.onnx", tmp_path / "sub.hx.onnx"
    onnx.save(constants_and_subgraphs(), str(src))
    api.convert(src, out, min_elements=100, decode="call")
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    fused_types = [n.op_type for g in (model.graph, *[a.g for n in model.graph.node for a in n.attribute
                                                      if a.type == onnx.AttributeProto.GRAPH]) for n in g.node]
    assert fused_types.count("HyperMatMul") >= 2
    feeds = {i.name: np.random.default_rng(3).standard_normal(
        [d.dim_value or 2 for d in i.type.tensor_type.shape.dim]).astype(np.float32)
        for i in model.graph.input if i.type.tensor_type.elem_type == TensorProto.FLOAT}
    feeds.update({i.name: np.array(True) for i in model.graph.input if i.type.tensor_type.elem_type == TensorProto.BOOL})
    unfused = copy.deepcopy(model)
    unfuse_model(unfused)
    for y, ref in zip(run(model, feeds), run(unfused, feeds)):
        assert np.abs(y - ref).max() <= 1e-5 * max(np.abs(ref).max(), 1e-30)


def test_fuse_then_unfuse_is_the_identity():
    """On the pass level: unfuse(fuse(m)) has m's nodes, attributes and doc strings."""
    model = shared_weight_model()
    from hyperonnx.passes.compress import compress_model
    from hyperonnx.passes.select import Selection

    compress_model(model, mode="call", selection=Selection(min_elements=100))
    reference = copy.deepcopy(model)
    unfuse_model(reference)  # compress_model fused it; this is the plain call-mode graph
    again = copy.deepcopy(reference)
    assert fuse_model(again) == ["W", "V"]
    unfuse_model(again)
    key = lambda m: sorted(n.SerializeToString(deterministic=True) for n in m.graph.node)  # noqa: E731
    assert key(again) == key(reference)
