"""The fast load path (docs/ops.md, "Fast path"): the op library's ONNX rewriter (include/hyperonnx/fast.h) and
hyperonnx.session() on it. The C/C++ API (include/hyperonnx/session.h) is driven by the C++ sample in
tests/platform/test_samples.py and tests/platform/test_edge.py."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_ops_decode import LIBRARY, attributes, save

import hyperonnx
from hyperonnx import codec, fastpath, runtime

pytestmark = pytest.mark.skipif(LIBRARY is None, reason="op library not built")

W1 = np.linspace(-1, 1, 6 * 5, dtype=np.float32).reshape(6, 5)
W2 = np.cos(np.arange(5 * 4, dtype=np.float32)).reshape(5, 4)


def decode_node(enc: codec.Encoded, blob: str, out: str, mode: str = "load", name: str | None = None):
    return helper.make_node("HyperDecode", [blob], [out], domain="ai.hyperonnx", name=name or f"decode_{out}",
                            **attributes(enc, mode))


def blob_init(enc: codec.Encoded, name: str):
    return numpy_helper.from_array(np.asarray(enc.blob, np.uint8).reshape(-1), name)


def three_node_model(enc1, enc2, call_mode: bool = True) -> onnx.ModelProto:
    """x -> MatMul(W1 decoded, load) -> MatMul(W2 decoded, call) -> + HyperDecode(run-time blob) -> y."""
    nodes = [decode_node(enc1, "blob1", "W1"), decode_node(enc2, "blob2", "W2", "call" if call_mode else "load"),
             decode_node(enc2, "blob_rt", "W3"),
             helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("MatMul", ["h", "W2"], ["y0"]),
             helper.make_node("MatMul", ["h", "W3"], ["y1"]), helper.make_node("Add", ["y0", "y1"], ["y"])]
    graph = helper.make_graph(
        nodes, "fast", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6]),
                        helper.make_tensor_value_info("blob_rt", TensorProto.UINT8, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        initializer=[blob_init(enc1, "blob1"), blob_init(enc2, "blob2")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.hyperonnx", 1)],
                             ir_version=8)


@pytest.fixture(scope="module")
def encs():
    return codec.encode(W1, "paper", n=17, rings=0), codec.encode(W2, "blocktcq")


def feeds(enc2) -> dict:
    return {"x": np.arange(12, dtype=np.float32).reshape(2, 6) / 7, "blob_rt": np.asarray(enc2.blob, np.uint8)}


def rewritten(path: str, flags: int = 0) -> tuple[onnx.ModelProto, fastpath.FastModel]:
    plan = fastpath.FastModel(path, flags)
    model = onnx.load_from_string(plan.model_bytes())
    return model, plan


def test_rewrite_replaces_constant_load_nodes_only(tmp_path, encs):
    enc1, enc2 = encs
    path = save(three_node_model(enc1, enc2), tmp_path)
    model, plan = rewritten(path)
    assert plan.info.decoded_nodes == 1 and plan.info.ops_remain == 1
    kept = [n.name for n in model.graph.node if n.op_type == "HyperDecode"]
    assert kept == ["decode_W2", "decode_W3"]  # the call-mode node and the run-time blob stay kernels
    inits = {t.name: t for t in model.graph.initializer}
    assert "blob1" not in inits and "blob2" in inits  # θ nothing reads any more is left out
    assert numpy_helper.to_array(inits["W1"]).tobytes() == codec.decode(enc1).tobytes()  # bit-exact
    assert any(o.domain == "ai.hyperonnx" for o in model.opset_import)
    # everything else is copied byte for byte
    original = onnx.load(path)
    assert [n.SerializeToString() for n in original.graph.node if n.name != "decode_W1"] == \
        [n.SerializeToString() for n in model.graph.node]
    assert original.graph.input == model.graph.input and original.graph.output == model.graph.output

    model, plan = rewritten(path, fastpath.DECODE_CALL_NODES)
    assert plan.info.decoded_nodes == 2
    assert [n.name for n in model.graph.node if n.op_type == "HyperDecode"] == ["decode_W3"]


def test_session_equals_plain_ort_load(tmp_path, encs):
    enc1, enc2 = encs
    path = save(three_node_model(enc1, enc2), tmp_path)
    plain = ort.InferenceSession(path, runtime.session_options(), providers=["CPUExecutionProvider"])
    want = plain.run(None, feeds(enc2))[0]
    for mode in (None, "init"):
        got = runtime.session(path, mode=mode).run(None, feeds(enc2))[0]
        assert got.tobytes() == want.tobytes(), mode


def test_session_takes_inference_session_arguments(tmp_path, encs):
    enc1, enc2 = encs
    path = save(three_node_model(enc1, enc2, call_mode=False), tmp_path)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = runtime.session(path, so, ["CPUExecutionProvider"], [{}])
    assert isinstance(sess, fastpath.FastSession) and sess._model_bytes is None  # no decoded copy kept
    want = sess.run(None, feeds(enc2))[0]
    sess.set_providers(["CPUExecutionProvider"])  # ORT rebuilds the session: the model is rewritten again
    assert sess._model_bytes is None
    assert sess.run(None, feeds(enc2))[0].tobytes() == want.tobytes()
    with pytest.raises(ValueError, match="either"):
        runtime.session(path, so, options=ort.SessionOptions())
    top = hyperonnx.session(path, ort.SessionOptions(), ["CPUExecutionProvider"], [{}])  # the package's own too
    assert isinstance(top, fastpath.FastSession)
    assert top.run(None, feeds(enc2))[0].tobytes() == want.tobytes()


def subgraph_model(enc1, enc2) -> onnx.ModelProto:
    """An If whose branches decode their weight from an outer-scope θ (branch 1) and a branch initializer (2)."""
    then_graph = helper.make_graph(
        [decode_node(enc1, "blob1", "Wt"), helper.make_node("MatMul", ["x", "Wt"], ["yt"])], "then", [],
        [helper.make_tensor_value_info("yt", TensorProto.FLOAT, None)])
    else_graph = helper.make_graph(
        [decode_node(enc1, "blob_in", "We"), helper.make_node("MatMul", ["x", "We"], ["ye"]),
         helper.make_node("Neg", ["ye"], ["ye2"])], "else", [],
        [helper.make_tensor_value_info("ye2", TensorProto.FLOAT, None)], initializer=[blob_init(enc1, "blob_in")])
    nodes = [helper.make_node("If", ["cond"], ["y"], then_branch=then_graph, else_branch=else_graph)]
    graph = helper.make_graph(
        nodes, "sub", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6]),
                       helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[blob_init(enc1, "blob1")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.hyperonnx", 1)],
                             ir_version=8)


def test_subgraph_nodes_are_decoded(tmp_path, encs):
    enc1, _ = encs
    path = save(subgraph_model(enc1, None), tmp_path)
    model, plan = rewritten(path)
    assert plan.info.decoded_nodes == 2 and plan.info.ops_remain == 0
    assert not any(o.domain == "ai.hyperonnx" for o in model.opset_import)
    assert not model.graph.initializer  # the outer θ went with its last reader
    branches = {a.name: a.g for a in model.graph.node[0].attribute}
    for name, weight in (("then_branch", "Wt"), ("else_branch", "We")):
        inits = {t.name: t for t in branches[name].initializer}
        assert set(inits) == {weight}, name
        assert numpy_helper.to_array(inits[weight]).tobytes() == codec.decode(enc1).tobytes()
    plain = ort.InferenceSession(path, runtime.session_options(), providers=["CPUExecutionProvider"])
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    for cond in (True, False):
        f = {"x": x, "cond": np.array(cond)}
        assert runtime.session(path).run(None, f)[0].tobytes() == plain.run(None, f)[0].tobytes()


def external_model(tmp_path, encs) -> str:
    """The three-node model (all load mode) saved with every tensor, θ included, as external data."""
    enc1, enc2 = encs
    model = three_node_model(enc1, enc2, call_mode=False)
    model.graph.initializer.append(numpy_helper.from_array(np.full((2, 4), 0.5, np.float32), "bias"))
    model.graph.node[-1].output[0] = "y_nobias"
    model.graph.node.append(helper.make_node("Add", ["y_nobias", "bias"], ["y"]))
    path = tmp_path / "ext" / "model.onnx"
    path.parent.mkdir()
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="model.data",
              size_threshold=0)
    return str(path)


def test_external_data(tmp_path, encs):
    _, enc2 = encs
    path = external_model(tmp_path, encs)
    plan = fastpath.FastModel(path)
    assert plan.info.decoded_nodes == 2 and plan.info.external_refs == 1  # the bias stays external
    plain = ort.InferenceSession(path, runtime.session_options(), providers=["CPUExecutionProvider"])
    want = plain.run(None, feeds(enc2))[0]
    assert runtime.session(path).run(None, feeds(enc2))[0].tobytes() == want.tobytes()
    (tmp_path / "ext" / "model.data").rename(tmp_path / "ext" / "gone.data")
    with pytest.raises(RuntimeError, match="hyperonnx: .*initializer 'blob1': cannot open external data file"):
        runtime.session(path)


def test_large_models_move_decoded_weights_out_of_the_protobuf(tmp_path, encs):
    """Above the inline limit (2 GiB by default) the main graph's decoded tensors go to an external buffer; the
    Python path then falls back to add_external_initializers (the C path: tests/platform/test_samples.py)."""
    enc1, enc2 = encs
    path = save(three_node_model(enc1, enc2, call_mode=False), tmp_path)
    inline = fastpath.FastModel(path).info.model_bytes
    plan = fastpath.FastModel(path, inline_limit=inline - 1)
    assert plan.info.external_bytes >= (W1.size + W2.size) * 4
    assert plan.info.model_bytes < inline  # stubs with external-data entries instead of the bytes
    with pytest.raises(RuntimeError, match="too large for protobuf"):
        fastpath.FastModel(path, inline_limit=64)
    with pytest.raises(ValueError, match="2 GiB"):
        plan.model_bytes()


@pytest.mark.parametrize("content", [b"", b"not an onnx model at all", b"\x08\x08\x3a\xff\xff\xff\xff\x0f"])
def test_bad_files(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(RuntimeError, match="hyperonnx: .*not an ONNX model") as info:
        runtime.session(path)
    assert "\n" not in str(info.value)


def test_truncated_and_corrupt_models_never_crash(tmp_path, encs):
    enc1, enc2 = encs
    data = three_node_model(enc1, enc2).SerializeToString()
    path = tmp_path / "cut.onnx"
    rng = np.random.default_rng(0)
    for cut in [*range(1, len(data), max(1, len(data) // 97))]:
        path.write_bytes(data[:cut])
        try:
            fastpath.FastModel(str(path)).model_bytes()
        except RuntimeError as e:
            assert str(e).startswith("hyperonnx: ") and "\n" not in str(e)
    for _ in range(200):
        flipped = bytearray(data)
        flipped[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(flipped))
        try:
            fastpath.FastModel(str(path)).model_bytes()
        except RuntimeError as e:
            assert str(e).startswith("hyperonnx: ")


def test_malformed_theta_is_one_clear_error(tmp_path, encs):
    enc1, enc2 = encs
    model = three_node_model(enc1, enc2)
    model.graph.initializer[0].raw_data = model.graph.initializer[0].raw_data[:-1]
    path = save(model, tmp_path)
    with pytest.raises(RuntimeError, match="HyperDecode node 'decode_W1': .*bytes"):
        runtime.session(path)
    model = three_node_model(enc1, enc2)
    model.graph.initializer[0].data_type = TensorProto.INT8
    path = save(model, tmp_path)
    with pytest.raises(RuntimeError, match="decode_W1.*must be a uint8 tensor"):
        runtime.session(path)
