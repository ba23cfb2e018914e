"""HyperMatMul with transB (docs/fused.md): ``MatMul(A, Transpose(HyperDecode(θ)))``, a tied LM head reading its
embedding table, fused so the table is read as N × K straight from θ. The kernel regenerates Wᵀ bit for bit and its
products are within 1e-5 relative of decompress + Transpose + MatMul (batch dimensions, odd shapes, M ≤ 3 from
registers); `convert --decode call` of a tied-embedding model fuses the head and the embedding onto one θ,
`decompress` and `inspect` see the original graph; a weight on an exact grid that a fused op reads is coded with
blocktcq in call mode (the report says why); bad attributes and shapes fail with one error naming the node."""

from __future__ import annotations

import json

import fused_helpers as fh
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from fused_helpers import ISAS, fused_attributes, random_weight, rel_error, run, session_error
from onnx import TensorProto, helper, numpy_helper
from test_ops_decode import LIBRARY

import hyperonnx
from hyperonnx import codec, ops, runtime
from hyperonnx.cli import cli
from hyperonnx.passes.fuse import unfuse_model

pytestmark = pytest.mark.skipif(LIBRARY is None, reason="op library not built")


def nt_model(attrs: dict, blob: np.ndarray, a_shape: list, name: str = "head") -> onnx.ModelProto:
    """Y = HyperMatMul(A, θ) with transB = 1: the weight is stored [N, K]."""
    return fh.fused_model("HyperMatMul", ["A", "theta"], {"transB": 1, **attrs}, blob,
                          [helper.make_tensor_value_info("A", TensorProto.FLOAT, a_shape)], name=name)


def plain_nt(w: np.ndarray, a: np.ndarray) -> np.ndarray:
    """ONNX Runtime's MatMul(A, Transpose(W)) with the decoded weight a constant: decompress + the standard ops."""
    nodes = [helper.make_node("Transpose", ["W"], ["Wt"], perm=[1, 0]), helper.make_node("MatMul", ["A", "Wt"], ["Y"])]
    return fh.plain_run(nodes, {"A": a}, {"W": w})


# ---- the kernel ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("codec_name,options,shape", [
    ("blocktcq", {}, (70, 96)),                        # N × K, rows of whole blocks
    ("blocktcq", {"bits": 6}, (37, 100)),              # rows that end inside a block
    ("blockvq", {}, (41, 129)),
])
def test_transposed_weight_is_the_reference(codec_name, options, shape, isa, monkeypatch):
    """A = I (K × K) gives Y = Wᵀ exactly."""
    enc = codec.encode(random_weight(*shape), codec_name, **options)
    k = shape[1]
    y = run(nt_model(fused_attributes(enc), enc.blob, [k, k]), {"A": np.eye(k, dtype=np.float32)}, isa, monkeypatch)
    assert np.array_equal(y, codec.decode(enc).T)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("a_shape", [[1, 96], [1, 1, 96], [1, 3, 96], [96], [2, 1, 5, 96], [13, 96]])
def test_products_match_decompress_transpose_matmul(a_shape, isa, monkeypatch):
    """ONNX MatMul broadcasting with a 2-D B: every leading dimension of A is a row; M = 1-3 (registers on the VBMI
    kernel), 10 and 13 (the transposing tiles); N = 70 off every SIMD width."""
    enc = codec.encode(random_weight(70, 96, seed=3), "blocktcq", bits=6)
    a = np.random.default_rng(4).standard_normal(a_shape).astype(np.float32)
    y = run(nt_model(fused_attributes(enc), enc.blob, a_shape), {"A": a}, isa, monkeypatch)
    w = codec.decode(enc)
    ref = np.matmul(a.astype(np.float64), w.T.astype(np.float64))
    assert y.shape == ref.shape
    assert rel_error(y, ref) <= 1e-5
    assert rel_error(y, plain_nt(w, a)) <= 1e-5


def test_threads_agree():
    """Each unit writes its own columns: one and two intra-op threads give the same bits."""
    enc = codec.encode(random_weight(300, 160, seed=5), "blocktcq")
    for m in (1, 9):
        a = np.random.default_rng(m).standard_normal((m, 160)).astype(np.float32)
        model = nt_model(fused_attributes(enc), enc.blob, [m, 160])
        y1, y2 = run(model, {"A": a}, threads=1), run(model, {"A": a}, threads=2)
        assert np.array_equal(y1, y2)
        assert rel_error(y1, a.astype(np.float64) @ codec.decode(enc).T.astype(np.float64)) <= 1e-5


def test_schema_and_shape_inference():
    """checker (strict shape inference) accepts transB; Y is [..., N] with N the weight's first dimension."""
    ops.register_schemas()
    enc = codec.encode(random_weight(24, 40), "blocktcq")  # N = 24, K = 40
    for n, ok in ((24, True), (40, False)):
        fh.check_declared_output(nt_model(fused_attributes(enc), enc.blob, ["batch", 6, 40]), ["batch", 6, n], ok)


def test_bad_trans_b_and_shapes():
    enc = codec.encode(random_weight(24, 40), "blocktcq")
    model = nt_model(fused_attributes(enc), enc.blob, [2, 40])
    next(a for a in model.graph.node[0].attribute if a.name == "transB").i = 2
    error = session_error(model, {"A": np.zeros((2, 40), np.float32)})
    assert "HyperMatMul node 'head'" in error and "transB must be 0 or 1, got 2" in error
    model = nt_model(fused_attributes(enc), enc.blob, [2, None])
    error = session_error(model, {"A": np.zeros((2, 24), np.float32)})  # N where K belongs
    assert "HyperMatMul node 'head'" in error and "input 0 (A)" in error and "40 columns" in error
    assert error.count("\n") <= 1
    error = session_error(nt_model(fused_attributes(enc), enc.blob[:-1], [2, 40]), {"A": np.zeros((2, 40), np.float32)})
    assert "HyperMatMul node 'head'" in error and "bytes" in error


# ---- conversion: a tied embedding --------------------------------------------------------------------------------
V, D = 1000, 64


def tied_lm(table: np.ndarray | None = None, extra_reader: bool = False) -> onnx.ModelProto:
    """ids [1, T] → Gather(table) → MatMul(proj) → MatMul(·, Transpose(table)) → logits [1, T, V]: the LM head reads
    the embedding table through a Transpose, as SmolLM2's export does. ``extra_reader``: the transposed table is also
    a graph output (so the Transpose must stay)."""
    rng = np.random.default_rng(21)
    table = (rng.standard_normal((V, D)) * 0.1).astype(np.float32) if table is None else table
    proj = (rng.standard_normal((D, D)) * 0.1).astype(np.float32)
    nodes = [helper.make_node("Gather", ["table", "ids"], ["e"], name="embed"),
             helper.make_node("MatMul", ["e", "proj"], ["h"], name="proj"),
             helper.make_node("Transpose", ["table"], ["table_t"], name="tie", perm=[1, 0], doc_string="lm head"),
             helper.make_node("MatMul", ["h", "table_t"], ["logits"], name="lm_head")]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "T", V])]
    if extra_reader:
        outputs.append(helper.make_tensor_value_info("table_t", TensorProto.FLOAT, [D, V]))
    graph = helper.make_graph(nodes, "tied", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, "T"])],
                              outputs, [numpy_helper.from_array(table, "table"), numpy_helper.from_array(proj, "proj")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def convert_cli(src, dst, *flags: str) -> dict:
    result = CliRunner().invoke(cli, ["convert", str(src), "-o", str(dst), "--decode", "call", "--json", *flags])
    assert result.exit_code == 0, result.output
    return json.loads(result.output[result.output.index("{"):])


def test_convert_fuses_a_tied_head_onto_the_embedding_theta(tmp_path):
    src, out = tmp_path / "tied.onnx", tmp_path / "tied.hx.onnx"
    onnx.save(tied_lm(), str(src))
    convert_cli(src, out, "--codec", "blocktcq")
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    nodes = {n.name: n for n in model.graph.node}
    assert [n.op_type for n in model.graph.node] == ["HyperGather", "HyperMatMul", "HyperMatMul"]
    head = nodes["lm_head"]
    assert {a.name: helper.get_attribute_value(a) for a in head.attribute}["transB"] == 1
    # one θ initializer, read by the embedding and the head; no fp32 table, no Transpose, no HyperDecode
    assert head.input[1] == nodes["embed"].input[0]
    assert [t.name for t in model.graph.initializer].count(head.input[1]) == 1
    assert len(model.graph.initializer) == 2
    ids = np.array([[0, 999, 5, 5, 17, 640, 3]], dtype=np.int64)
    y = ort.InferenceSession(str(out), runtime.session_options()).run(None, {"ids": ids})[0]
    unfused = onnx.load(str(out))
    assert sorted(unfuse_model(unfused)) == ["proj", "table"]
    assert [n.op_type for n in unfused.graph.node] == ["HyperDecode", "HyperDecode", "Gather", "MatMul",
                                                       "Transpose", "MatMul"]
    ref = ort.InferenceSession(unfused.SerializeToString(), runtime.session_options()).run(None, {"ids": ids})[0]
    assert y.shape == (1, 7, V) and rel_error(y, ref) <= 1e-5
    fp32 = ort.InferenceSession(str(src)).run(None, {"ids": ids})[0]
    cosine = float(np.dot(y.ravel(), fp32.ravel()) / (np.linalg.norm(y) * np.linalg.norm(fp32)))
    assert cosine > 0.995  # the codec's noise (5 bits), not a wrong product
    assert rel_error(hyperonnx.session(out).run(None, {"ids": ids})[0], ref) <= 1e-5
    # decompress writes the original graph back: names, order, attributes and doc strings
    hyperonnx.decompress(out, tmp_path / "plain.onnx")
    plain = onnx.load(str(tmp_path / "plain.onnx"))
    original = tied_lm()
    assert [(n.name, n.op_type, list(n.input), list(n.output), n.doc_string) for n in plain.graph.node] == \
        [(n.name, n.op_type, list(n.input), list(n.output), n.doc_string) for n in original.graph.node]
    assert [list(n.attribute) for n in plain.graph.node] == [list(n.attribute) for n in original.graph.node]
    # inspect lists the table once, fused
    shown = CliRunner().invoke(cli, ["inspect", str(out)])
    assert shown.exit_code == 0, shown.output
    rows = [line for line in shown.output.splitlines() if line.startswith("table ")]
    assert len(rows) == 1 and rows[0].rstrip().endswith("fused")


def test_a_transpose_with_another_reader_stays(tmp_path):
    """The transposed table is also a graph output: the Transpose and its HyperDecode stay beside the fused head,
    all on the one θ; unfusing does not write the Transpose twice."""
    src, out = tmp_path / "tied.onnx", tmp_path / "tied.hx.onnx"
    onnx.save(tied_lm(extra_reader=True), str(src))
    hyperonnx.convert(src, out, codec_name="blocktcq", decode="call")
    model = onnx.load(str(out))
    kinds = [n.op_type for n in model.graph.node]
    assert sorted(kinds) == ["HyperDecode", "HyperGather", "HyperMatMul", "HyperMatMul", "Transpose"]
    thetas = {n.input[0] for n in model.graph.node if n.op_type in ("HyperDecode", "HyperGather")}
    assert len(thetas) == 1 and thetas <= {n.input[1] for n in model.graph.node if n.name == "lm_head"}
    ids = np.array([[1, 2, 998]], dtype=np.int64)
    logits, table_t = ort.InferenceSession(str(out), runtime.session_options()).run(None, {"ids": ids})
    unfuse_model(model)
    assert [n.op_type for n in model.graph.node].count("Transpose") == 1
    ref = ort.InferenceSession(model.SerializeToString(), runtime.session_options()).run(None, {"ids": ids})
    assert rel_error(logits, ref[0]) <= 1e-5 and np.array_equal(table_t, ref[1])


def gguf_table() -> np.ndarray:
    from test_grid import gguf_like

    return gguf_like(V, D, symmetric=True, transposed=False)  # Q8_0 along the rows, as an embedding table


def test_call_mode_codes_a_grid_table_for_the_fused_ops(tmp_path):
    """A table on an exact GGUF grid: the default policy stores it exactly (grid) in load mode; in call mode, where
    the fused ops read it, it is coded with blocktcq at its target and the report says why. With an explicit codec
    and the grid kept, the CLI warns once, pointing at --no-exact-grids."""
    from test_grid import gguf_like

    src = tmp_path / "tied.onnx"
    model = tied_lm(gguf_table())  # plus a grid weight no fused op reads: a Gather on axis 1 keeps its decoder
    model.graph.initializer.append(numpy_helper.from_array(gguf_like(64, 96, seed=3), "cols"))
    model.graph.node.append(helper.make_node("Gather", ["cols", "col_ids"], ["picked"], name="pick", axis=1))
    model.graph.input.append(helper.make_tensor_value_info("col_ids", TensorProto.INT64, [2]))
    model.graph.output.append(helper.make_tensor_value_info("picked", TensorProto.FLOAT, [64, 2]))
    onnx.save(model, str(src))
    for kind, codec_name in (("ort", "grid"), ("portable", "blocktcq")):  # portable: no grid codec
        done = hyperonnx.convert(src, tmp_path / f"{kind}.onnx", runtime=kind)
        assert all("off its exact grid" not in t.reason for t in done.report.tensors)
        assert {t.name: t.codec for t in done.report.tensors}["table"] == codec_name
    report = convert_cli(src, tmp_path / "call.onnx")
    tensors = {t["name"]: t for t in report["tensors"]}
    table = tensors["table"]
    assert table["codec"] == "blocktcq" and "off its exact grid" in table["reason"]
    assert table["sqnr_db"] >= table["target_db"] - 0.3
    assert tensors["cols"]["codec"] == "grid" and "off its exact grid" not in tensors["cols"]["reason"]
    assert "warning" not in report
    kinds = [n.op_type for n in onnx.load(str(tmp_path / "call.onnx")).graph.node]
    assert kinds.count("HyperMatMul") == 2 and kinds.count("HyperDecode") == 1  # the one for cols
    result = CliRunner().invoke(cli, ["convert", str(src), "-o", str(tmp_path / "grid.onnx"), "--decode", "call",
                                       "--codec", "blocktcq"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "--no-exact-grids" in warnings[0] and "1 weight(s)" in warnings[0] and "(table)" in warnings[0]
    # tcq fuses with nothing anyway: no warning about grids
    quiet = CliRunner().invoke(cli, ["convert", str(src), "-o", str(tmp_path / "tcq.onnx"), "--decode", "call",
                                     "--codec", "tcq"])
    assert quiet.exit_code == 0 and "warning" not in quiet.output, quiet.output


def test_two_heads_on_one_transpose_and_a_hand_written_node():
    """Two MatMuls read one Transpose: both fuse, the Transpose goes and comes back once, before the first of them.
    A transB HyperMatMul written by hand (no Transpose recorded) unfuses to a Transpose of its own."""
    from hyperonnx.passes.fuse import fuse_model

    enc = codec.encode(random_weight(V, D, seed=8), "blocktcq")
    decoder = helper.make_node("HyperDecode", ["theta"], ["table"], name="hyperonnx/table", domain="ai.hyperonnx",
                               **{**fused_attributes(enc), "mode": "call"})
    nodes = [decoder, helper.make_node("Transpose", ["table"], ["table_t"], name="tie"),
             helper.make_node("MatMul", ["x", "table_t"], ["y1"], name="head1"),
             helper.make_node("MatMul", ["x", "table_t"], ["y2"], name="head2")]
    graph = helper.make_graph(nodes, "heads", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, D])],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, [2, V]) for y in ("y1", "y2")],
                              [numpy_helper.from_array(enc.blob, "theta")])
    model = helper.make_model(graph, opset_imports=fh.OPSETS, ir_version=8)
    assert fuse_model(model) == ["table"]
    assert [(n.name, n.op_type) for n in model.graph.node] == [("head1", "HyperMatMul"), ("head2", "HyperMatMul")]
    x = np.random.default_rng(9).standard_normal((2, D)).astype(np.float32)
    y1, y2 = ort.InferenceSession(model.SerializeToString(), runtime.session_options()).run(None, {"x": x})
    ref = plain_nt(codec.decode(enc), x)
    assert rel_error(y1, ref) <= 1e-5 and np.array_equal(y1, y2)
    unfuse_model(model)
    assert [(n.name, n.op_type) for n in model.graph.node] == [
        ("hyperonnx/table", "HyperDecode"), ("tie", "Transpose"), ("head1", "MatMul"), ("head2", "MatMul")]
    hand = nt_model(fused_attributes(enc), enc.blob, [2, D])
    hand.graph.node[0].doc_string = json.dumps({"weight": "W"})
    unfuse_model(hand)
    assert [n.op_type for n in hand.graph.node] == ["HyperDecode", "Transpose", "MatMul"]
    y = ort.InferenceSession(hand.SerializeToString(), runtime.session_options()).run(None, {"A": x})[0]
    assert rel_error(y, ref) <= 1e-5
