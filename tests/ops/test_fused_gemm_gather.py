"""HyperGemm and HyperGather (docs/fused.md) in ONNX Runtime: the weights they regenerate are the numpy reference's
bit for bit; Gemm's products (alpha, beta, transA, transB, every broadcast of C) are within 1e-5 relative of decompress
+ Gemm on the SIMD and the portable kernels; Gather reads exactly the requested rows (int32/int64, negative indices,
any index shape); bad attributes, blobs, shapes and indices fail with one error naming the node; the fast path leaves
call-mode fused nodes alone."""

from __future__ import annotations

import fused_helpers as fh
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fused_helpers import ISAS, fused_attributes, random_weight, rel_error, run, session_error
from onnx import TensorProto, helper, numpy_helper
from test_ops_decode import LIBRARY

import hyperonnx
from hyperonnx import api, codec, fastpath, runtime
from hyperonnx.passes.fuse import unfuse_model

pytestmark = pytest.mark.skipif(LIBRARY is None, reason="op library not built")


def gemm_model(attrs: dict, blob: np.ndarray | None, a_shape: list, c: np.ndarray | None = None, name: str = "gm",
               **gemm: float) -> onnx.ModelProto:
    """Y = HyperGemm(A, θ, C); ``blob=None``: θ is a graph input fed at run time; C a constant when given."""
    return fh.fused_model("HyperGemm", ["A", "theta"] + (["C"] if c is not None else []), {**attrs, **gemm}, blob,
                          [helper.make_tensor_value_info("A", TensorProto.FLOAT, a_shape)],
                          {} if c is None else {"C": c}, name=name)


def gather_model(attrs: dict, blob: np.ndarray | None, index_shape: list, index_type: int = TensorProto.INT64,
                 name: str = "ga") -> onnx.ModelProto:
    return fh.fused_model("HyperGather", ["theta", "I"], attrs, blob,
                          [helper.make_tensor_value_info("I", index_type, index_shape)], name=name)


def plain_gemm(w: np.ndarray, a: np.ndarray, c: np.ndarray | None, **gemm) -> np.ndarray:
    """ONNX Runtime's own Gemm with the decoded weight as a constant: decompress + the standard op."""
    inputs = ["A", "W"] + (["C"] if c is not None else [])
    return fh.plain_run([helper.make_node("Gemm", inputs, ["Y"], **gemm)], {"A": a},
                        {"W": w} | ({} if c is None else {"C": c}))


# ---- HyperGemm -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("codec_name,options,shape", [
    ("blocktcq", {}, (70, 100)),                        # K and N off every block and SIMD width
    ("blocktcq", {"bits": 3, "block": 64}, (40, 130)),  # blocks longer than 32
    ("blocktcq", {"bits": 2, "block": 16}, (33, 48)),   # blocks the SIMD path does not take
    ("blockvq", {}, (37, 129)),
])
def test_gemm_regenerates_the_reference_weight(codec_name, options, shape, isa, monkeypatch):
    """A = I: Y = W (transB = 0) and Y = Wᵀ (transB = 1, the tile decoder transposes) exactly."""
    enc = codec.encode(random_weight(*shape), codec_name, **options)
    w = codec.decode(enc)
    for trans_b, k in ((0, shape[0]), (1, shape[1])):
        model = gemm_model(fused_attributes(enc), enc.blob, [k, k], transB=trans_b)
        y = run(model, {"A": np.eye(k, dtype=np.float32)}, isa, monkeypatch)
        assert np.array_equal(y, w.T if trans_b else w)


C_SHAPES = [None, "N", "1", "MN", "M1", "1N", "scalar"]


def bias(kind: str | None, m: int, n: int) -> np.ndarray | None:
    shapes = {"N": (n,), "1": (1,), "MN": (m, n), "M1": (m, 1), "1N": (1, n), "scalar": ()}
    return None if kind is None else np.random.default_rng(9).standard_normal(shapes[kind]).astype(np.float32)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("m", [1, 13])  # transB = 0: row slices (M ≤ 8) and column tiles
def test_gemm_matches_decompress_then_gemm(trans_a, trans_b, m, isa, monkeypatch):
    k, n = 100, 70
    enc = codec.encode(random_weight(n, k, seed=2) if trans_b else random_weight(k, n, seed=2), "blocktcq")
    w = codec.decode(enc)
    a = np.random.default_rng(3).standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    for kind in C_SHAPES:
        c = bias(kind, m, n)
        gemm = {"alpha": 0.75, "beta": -1.5, "transA": trans_a, "transB": trans_b}
        y = run(gemm_model(fused_attributes(enc), enc.blob, list(a.shape), c, **gemm), {"A": a}, isa, monkeypatch)
        ref = plain_gemm(w, a, c, **gemm)
        assert y.shape == ref.shape == (m, n), kind
        assert rel_error(y, ref) <= 1e-5, kind
        a64 = (a.T if trans_a else a).astype(np.float64)
        exact = 0.75 * a64 @ (w.T if trans_b else w).astype(np.float64) + (0 if c is None else -1.5 * c)
        assert rel_error(y, exact) <= 1e-5, kind


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("bits,block,k,n", [(5, 32, 160, 37), (6, 32, 96, 9), (4, 96, 288, 11), (3, 64, 320, 6)])
def test_gemm_trans_b_small_batches_from_registers(bits, block, k, n, isa, monkeypatch):
    """transB = 1 with rows of W ([N, K]) of whole blocks at M ≤ 3: dot products straight from registers (AVX-512
    VBMI). Rows of the identity give Wᵀ's rows bit for bit; random A is within 1e-5 of float64."""
    enc = codec.encode(random_weight(n, k, seed=bits), "blocktcq", bits=bits, block=block)
    w = codec.decode(enc)
    for rows in ([0, 1, 2], [k - 1], [k // 2, 3]):
        a = np.eye(k, dtype=np.float32)[rows]
        model = gemm_model(fused_attributes(enc), enc.blob, list(a.shape), None, transB=1)
        assert np.array_equal(run(model, {"A": a}, isa, monkeypatch), w.T[rows])
    a = np.random.default_rng(bits).standard_normal((3, k)).astype(np.float32)
    y = run(gemm_model(fused_attributes(enc), enc.blob, [3, k], None, transB=1), {"A": a}, isa, monkeypatch)
    assert rel_error(y, a.astype(np.float64) @ w.T.astype(np.float64)) <= 1e-5


def test_gemm_defaults_and_threads():
    """No alpha/beta/trans attributes is Gemm's defaults; the transposing tiles (17 units of 32 columns) and the
    column tiles give the same bits on 1 and 2 intra-op threads."""
    for trans_b in (0, 1):
        enc = codec.encode(random_weight(520, 300, seed=5) if trans_b else random_weight(300, 520, seed=5), "blocktcq")
        a = np.random.default_rng(6).standard_normal((9, 300)).astype(np.float32)
        model = gemm_model(fused_attributes(enc), enc.blob, [9, 300], **({"transB": 1} if trans_b else {}))
        y1, y2 = run(model, {"A": a}, threads=1), run(model, {"A": a}, threads=2)
        assert np.array_equal(y1, y2)
        w = codec.decode(enc).astype(np.float64)
        assert rel_error(y1, a.astype(np.float64) @ (w.T if trans_b else w)) <= 1e-5


def test_gemm_real_weight():
    """A trained Linear layer as torch exports it to Gemm (weight [out, in], transB = 1, bias): exact weight,
    products within 1e-5 of decompress + Gemm."""
    w = fh.minilm_tensor("encoder.layer.0.intermediate.dense.weight")  # [1536, 384]
    b = fh.minilm_tensor("encoder.layer.0.intermediate.dense.bias")
    enc = codec.encode(w, "blocktcq")
    k = w.shape[1]
    eye = run(gemm_model(fused_attributes(enc), enc.blob, [k, k], transB=1), {"A": np.eye(k, dtype=np.float32)})
    assert np.array_equal(eye, codec.decode(enc).T)
    a = np.random.default_rng(7).standard_normal((5, k)).astype(np.float32)
    y = run(gemm_model(fused_attributes(enc), enc.blob, [5, k], b, transB=1), {"A": a})
    assert rel_error(y, plain_gemm(codec.decode(enc), a, b, transB=1)) <= 1e-5


def test_gemm_schema_and_shape_inference():
    enc = codec.encode(random_weight(24, 40), "blocktcq")  # W [N = 24, K = 40] with transB
    for n, ok in ((24, True), (25, False)):
        model = gemm_model(fused_attributes(enc), enc.blob, [40, "m"], np.zeros(24, np.float32), transA=1, transB=1)
        fh.check_declared_output(model, ["m", n], ok)


ENC = codec.encode(random_weight(40, 24), "blocktcq")


@pytest.mark.parametrize("change,message", [
    ({"codec": "paper"}, "fused ops read the blocktcq and blockvq codecs only"),
    ({"shape": [2, 20, 24]}, "2-D weight"),
    ({"bits": 9}, "bits"),
    ({"transB": 2}, "transA and transB must be 0 or 1"),
])
def test_gemm_bad_attributes(change, message):
    attrs = {**fused_attributes(ENC), **change}
    gemm = {k: attrs.pop(k) for k in ("transB",) if k in attrs}
    error = session_error(gemm_model(attrs, ENC.blob, [2, 40], **gemm), {"A": np.zeros((2, 40), np.float32)})
    assert "HyperGemm node 'gm'" in error and message in error


@pytest.mark.parametrize("fed", [False, True])
@pytest.mark.parametrize("cut", [-1, 1, None])
def test_gemm_bad_blob_length(fed, cut):
    blob = fh.cut_blob(ENC.blob, cut)
    feeds = {"A": np.zeros((2, 40), np.float32)}
    if fed:
        feeds["theta"] = blob.astype(np.uint8)
    error = session_error(gemm_model(fused_attributes(ENC), None if fed else blob, [2, 40]), feeds)
    assert "HyperGemm node 'gm'" in error and "bytes" in error
    assert error.count("\n") <= 1


@pytest.mark.parametrize("a_shape,c_shape,what", [
    ([2, 39], None, "input 0 (A)"), ([40], None, "input 0 (A)"), ([1, 2, 40], None, "input 0 (A)"),
    ([2, 40], [3], "input 2 (C)"), ([2, 40], [3, 24], "input 2 (C)"), ([2, 40], [1, 1, 24], "input 2 (C)"),
])
def test_gemm_bad_shapes(a_shape, c_shape, what):
    c = None if c_shape is None else np.zeros(c_shape, np.float32)
    model = gemm_model(fused_attributes(ENC), ENC.blob, [None] * len(a_shape), c)
    feeds = {"A": np.zeros(a_shape, np.float32)}
    if c is not None:
        fh.feed_at_run_time(model, "C", feeds, c)
    error = session_error(model, feeds)
    assert "HyperGemm node 'gm'" in error and what in error


# ---- HyperGather ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("codec_name,options,shape", [
    ("blocktcq", {}, (50, 64)),                         # rows of whole blocks: the SIMD path
    ("blocktcq", {"bits": 7}, (41, 70)),                # rows that start and end inside blocks
    ("blocktcq", {"bits": 3, "block": 64}, (30, 96)),   # a block spans rows
    ("blockvq", {}, (37, 45)),
])
def test_gather_reads_exactly_the_requested_rows(codec_name, options, shape, isa, monkeypatch):
    enc = codec.encode(random_weight(*shape, seed=4), codec_name, **options)
    w = codec.decode(enc)
    v = shape[0]
    cases = [np.array(3), np.array([0, v - 1, -1, -v, 7, 7]), np.arange(-v, v).reshape(2, v, 1),
             np.zeros((0, 3), np.int64)]
    for idx in cases:
        for index_type, dtype in ((TensorProto.INT64, np.int64), (TensorProto.INT32, np.int32)):
            model = gather_model(fused_attributes(enc), enc.blob, list(idx.shape), index_type)
            y = run(model, {"I": idx.astype(dtype)}, isa, monkeypatch)
            assert y.shape == (*idx.shape, shape[1]) and np.array_equal(y, w[idx])


def test_gather_threads_and_real_table():
    """all-MiniLM-L6-v2's word embedding (30522 × 384) at the default codec settings: 300 token ids (5 work units),
    the same bits on 1 and 2 threads, each row the reference's."""
    w = fh.minilm_tensor("embeddings.word_embeddings.weight")
    enc = codec.encode(w, "blocktcq")
    idx = np.random.default_rng(8).integers(-w.shape[0], w.shape[0], (3, 100))
    model = gather_model(fused_attributes(enc), enc.blob, [3, 100])
    y1, y2 = run(model, {"I": idx}, threads=1), run(model, {"I": idx}, threads=2)
    assert np.array_equal(y1, y2)
    rows = np.unique(idx % w.shape[0])
    ref = codec.decode(enc)
    assert np.array_equal(y1, ref[idx]) and rel_error(ref[rows], w[rows]) < 0.1  # and the codec kept the table


def test_gather_schema_and_shape_inference():
    enc = codec.encode(random_weight(40, 24), "blocktcq")
    model = gather_model(fused_attributes(enc), enc.blob, ["b", 5], TensorProto.INT32)
    fh.check_declared_output(model, ["b", 5, 24], True)
    fh.check_declared_output(model, ["b", 5, 25], False)
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT  # float indices: refused by the schema
    with pytest.raises(onnx.shape_inference.InferenceError, match="tind"):
        onnx.checker.check_model(model, full_check=True)


@pytest.mark.parametrize("idx", [[0, 40], [-41], [2**40], [-(2**62)]])
def test_gather_index_out_of_range(idx):
    error = session_error(gather_model(fused_attributes(ENC), ENC.blob, [len(idx)]), {"I": np.array(idx)})
    assert "HyperGather node 'ga'" in error and f"index {idx[-1]} at position {len(idx) - 1} is out of range" in error
    assert error.count("\n") <= 1


@pytest.mark.parametrize("change,message", [
    ({"codec": "paper"}, "fused ops read the blocktcq and blockvq codecs only"),
    ({"dtype": 10}, "float32 weight"),
    ({"shape": [40, -24]}, "shape"),
])
def test_gather_bad_attributes(change, message):
    attrs = {**fused_attributes(ENC), **change}
    error = session_error(gather_model(attrs, ENC.blob, [2]), {"I": np.zeros(2, np.int64)})
    assert "HyperGather node 'ga'" in error and message in error


@pytest.mark.parametrize("fed", [False, True])
def test_gather_bad_blob_length(fed):
    blob = ENC.blob[:-1]
    feeds = {"I": np.zeros(2, np.int64)} | ({"theta": blob} if fed else {})
    error = session_error(gather_model(fused_attributes(ENC), None if fed else blob, [2]), feeds)
    assert "HyperGather node 'ga'" in error and "bytes" in error and error.count("\n") <= 1


# ---- conversion and the fast path ------------------------------------------------------------------------------
def embedding_mlp() -> onnx.ModelProto:
    """Gather(table, ids) → Gemm(transB, bias) → MatMul, each weight large enough to compress, plus a Gather on axis
    1 that must keep its decoder."""
    rng = np.random.default_rng(11)
    weights = {"table": rng.standard_normal((300, 64)) * 0.1, "fc.weight": rng.standard_normal((48, 64)) * 0.1,
               "fc.bias": rng.standard_normal(48) * 0.1, "proj": rng.standard_normal((48, 40)) * 0.1,
               "cols": rng.standard_normal((40, 100)) * 0.1}
    nodes = [helper.make_node("Gather", ["table", "ids"], ["e"], name="embed", axis=0),
             helper.make_node("Gemm", ["e", "fc.weight", "fc.bias"], ["h"], name="fc", transB=1, alpha=0.5),
             helper.make_node("MatMul", ["h", "proj"], ["p"], name="proj"),
             helper.make_node("Gather", ["cols", "col_ids"], ["g"], name="pick_cols", axis=1),
             helper.make_node("MatMul", ["p", "g"], ["y"], name="out")]
    graph = helper.make_graph(nodes, "embedding_mlp",
                              [helper.make_tensor_value_info("ids", TensorProto.INT64, [6]),
                               helper.make_tensor_value_info("col_ids", TensorProto.INT64, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [6, 3])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_convert_fuses_gather_and_gemm_and_the_fast_path_keeps_them(tmp_path):
    src, out = tmp_path / "emb.onnx", tmp_path / "emb.hx.onnx"
    onnx.save(embedding_mlp(), str(src))
    api.convert(src, out, codec_name="blocktcq", min_elements=1000, decode="call")
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    kinds = {n.name: n.op_type for n in model.graph.node}
    assert kinds["embed"] == "HyperGather" and kinds["fc"] == "HyperGemm" and kinds["proj"] == "HyperMatMul"
    assert kinds["pick_cols"] == "Gather" and kinds["hyperonnx/cols"] == "HyperDecode"  # axis 1 keeps its decoder
    feeds = {"ids": np.array([0, 299, -1, 5, 5, 17]), "col_ids": np.array([0, 99, 50])}
    y = ort.InferenceSession(str(out), runtime.session_options()).run(None, feeds)[0]
    unfused = onnx.load(str(out))
    assert sorted(unfuse_model(unfused)) == ["fc.weight", "proj", "table"]
    ref = ort.InferenceSession(unfused.SerializeToString(), runtime.session_options()).run(None, feeds)[0]
    assert rel_error(y, ref) <= 1e-5
    # The fast path decodes HyperDecode nodes only, also with call-mode nodes included (mode="init").
    for flags in (0, fastpath.DECODE_CALL_NODES):
        rewritten = onnx.load_from_string(fastpath.FastModel(str(out), flags).model_bytes())
        after = {n.name: n.op_type for n in rewritten.graph.node}
        assert {k: v for k, v in after.items() if v.startswith("HyperG") or v == "HyperMatMul"} == {
            "embed": "HyperGather", "fc": "HyperGemm", "proj": "HyperMatMul"}
        assert ("hyperonnx/cols" in after) == (flags == 0)
    for mode in (None, "init"):
        assert rel_error(hyperonnx.session(out, mode=mode).run(None, feeds)[0], ref) <= 1e-5
    api.decompress(out, tmp_path / "plain.onnx")
    plain = onnx.load(str(tmp_path / "plain.onnx"))
    assert [(n.name, n.op_type) for n in plain.graph.node] == [(n.name, n.op_type) for n in embedding_mlp().graph.node]
    assert [list(n.attribute) for n in plain.graph.node] == [list(n.attribute) for n in embedding_mlp().graph.node]
