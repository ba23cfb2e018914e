"""HyperMatMul (docs/fused.md) in ONNX Runtime: the weight it regenerates is the numpy reference's bit for bit, its
products are within 1e-5 relative of decompress + MatMul (batch dimensions, broadcasting, odd shapes), on the SIMD
and the portable kernels; bad attributes, blobs and inputs fail with one error naming the node."""

from __future__ import annotations

import dataclasses

import fused_helpers as fh
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fused_helpers import ISAS, fused_attributes, random_weight, rel_error, run, session_error
from onnx import TensorProto, helper
from test_ops_decode import LIBRARY

from hyperonnx import codec, ops, runtime
from hyperonnx.codec import bitpack

pytestmark = pytest.mark.skipif(LIBRARY is None, reason="op library not built")


def matmul_model(attrs: dict, blob: np.ndarray | None, a_shape: list, name: str = "mm") -> onnx.ModelProto:
    """Y = HyperMatMul(A, θ); ``blob=None``: θ is a graph input fed at run time."""
    return fh.fused_model("HyperMatMul", ["A", "theta"], attrs, blob,
                          [helper.make_tensor_value_info("A", TensorProto.FLOAT, a_shape)], name=name)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("codec_name,options,shape", [
    ("blocktcq", {}, (64, 96)),                          # the default: 5 bits, blocks of 32, whole blocks per row
    ("blocktcq", {"bits": 3, "block": 64}, (40, 128)),   # blocks longer than 32: the parity carries across
    ("blocktcq", {"bits": 7}, (33, 77)),                 # rows that end inside a block
    ("blocktcq", {"bits": 2, "block": 16}, (20, 48)),    # blocks the SIMD path does not take
    ("blockvq", {}, (37, 129)),
])
def test_regenerated_weight_is_the_reference(codec_name, options, shape, isa, monkeypatch):
    """A = I gives Y = W exactly (each output is 1·w plus zeros), so Y shows the weight the kernel decoded."""
    enc = codec.encode(random_weight(*shape), codec_name, **options)
    y = run(matmul_model(fused_attributes(enc), enc.blob, list(shape[:1]) * 2), {"A": np.eye(shape[0], dtype=np.float32)},
            isa, monkeypatch)
    assert np.array_equal(y, codec.decode(enc))


@pytest.mark.parametrize("bits", range(1, 9))
def test_every_code_width_is_exact(bits, monkeypatch):
    """Random θ and headers (every level set, scale codes across the range) at every width, N a multiple of 32."""
    k, n = 24, 256
    enc = codec.encode(random_weight(4, 64), "blocktcq", bits=bits)
    rng = np.random.default_rng(bits)
    nblocks = k * n // 32
    headers = rng.integers(0, 256, nblocks, dtype=np.uint64) | (rng.integers(0, 4, nblocks, dtype=np.uint64) << 8)
    blob = np.concatenate([bitpack.pack(rng.integers(0, 1 << bits, k * n, dtype=np.uint64), bits),
                           bitpack.pack(headers, 10)])
    enc = dataclasses.replace(enc, shape=(k, n), blob=blob)
    y = run(matmul_model(fused_attributes(enc), blob, [k, k]), {"A": np.eye(k, dtype=np.float32)}, "best", monkeypatch)
    assert np.array_equal(y, codec.decode(enc))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("a_shape", [[1, 100], [7, 100], [2, 3, 100], [100], [2, 1, 5, 100]])
def test_products_match_decompress_then_matmul(a_shape, isa, monkeypatch):
    """Batch dimensions and broadcasting as ONNX MatMul with a 2-D B; K, N off every block and SIMD width."""
    enc = codec.encode(random_weight(100, 70, seed=3), "blocktcq")
    a = np.random.default_rng(4).standard_normal(a_shape).astype(np.float32)
    y = run(matmul_model(fused_attributes(enc), enc.blob, a_shape), {"A": a}, isa, monkeypatch)
    w = codec.decode(enc)
    ref = np.matmul(a.astype(np.float64), w.astype(np.float64))
    assert y.shape == ref.shape
    assert rel_error(y, ref) <= 1e-5
    assert rel_error(y, fh.plain_run([helper.make_node("MatMul", ["A", "W"], ["Y"])], {"A": a}, {"W": w})) <= 1e-5


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("bits,block,k,n", [
    (5, 32, 37, 192),  # the default code width: groups of four rows and a remainder
    (6, 32, 9, 160),   # 6-bit codes (the policy's call-mode width at its floor); five 32-weight halves a row
    (4, 96, 11, 288),  # blocks of 96: 64-weight steps that straddle two blocks
    (3, 64, 6, 320),   # blocks of 64: the parity carries from one step to the next
])
def test_small_batches_multiply_from_registers(bits, block, k, n, isa, monkeypatch):
    """M ≤ 3 with rows of whole blocks: the AVX-512 VBMI kernel multiplies the decoded weights from registers
    (no decoded row in memory). Rows of the identity give W's rows bit for bit; random A is within 1e-5."""
    enc = codec.encode(random_weight(k, n, seed=bits), "blocktcq", bits=bits, block=block)
    w = codec.decode(enc)
    for rows in ([0, 1, 2], [k - 2, k - 1], [k // 2]):
        a = np.eye(k, dtype=np.float32)[rows]
        y = run(matmul_model(fused_attributes(enc), enc.blob, list(a.shape)), {"A": a}, isa, monkeypatch)
        assert np.array_equal(y, w[rows])
    a = np.random.default_rng(bits).standard_normal((3, k)).astype(np.float32)
    y = run(matmul_model(fused_attributes(enc), enc.blob, [3, k]), {"A": a}, isa, monkeypatch)
    assert rel_error(y, a.astype(np.float64) @ w.astype(np.float64)) <= 1e-5


@pytest.mark.parametrize("m", [1, 9])  # row slices with partial sums (M <= 8), column tiles
def test_work_units_and_threads_agree(m):
    """Several work units and K steps, 1 and 2 intra-op threads: each unit is one thread's and the partial sums are
    added in a fixed order, so the bits agree."""
    enc = codec.encode(random_weight(300, 520, seed=5), "blocktcq")
    a = np.random.default_rng(6).standard_normal((m, 300)).astype(np.float32)
    model = matmul_model(fused_attributes(enc), enc.blob, [m, 300])
    y1, y2 = run(model, {"A": a}, threads=1), run(model, {"A": a}, threads=2)
    assert np.array_equal(y1, y2)
    assert rel_error(y1, a.astype(np.float64) @ codec.decode(enc).astype(np.float64)) <= 1e-5


def minilm_ffn_weight() -> np.ndarray:
    """all-MiniLM-L6-v2's first FFN weight as MatMul reads it (384 × 1536), from the model package's safetensors."""
    return np.ascontiguousarray(fh.minilm_tensor("encoder.layer.0.intermediate.dense.weight").T)


def test_real_weight():
    """A trained layer at the default codec settings: exact weight, products within 1e-5."""
    w = minilm_ffn_weight()
    enc = codec.encode(w, "blocktcq")
    k = w.shape[0]
    model = matmul_model(fused_attributes(enc), enc.blob, [None, k])
    assert np.array_equal(run(model, {"A": np.eye(k, dtype=np.float32)}), codec.decode(enc))
    a = np.random.default_rng(7).standard_normal((3, k)).astype(np.float32)
    assert rel_error(run(model, {"A": a}), a.astype(np.float64) @ codec.decode(enc).astype(np.float64)) <= 1e-5


def test_schema_and_shape_inference():
    """onnx.checker (with strict shape inference) accepts the node; inference gives Y [..., N], so a graph that
    declares another N is refused."""
    ops.register_schemas()  # importing the API registers them too; this file alone does not
    enc = codec.encode(random_weight(40, 24), "blocktcq")
    for n, ok in ((24, True), (25, False)):
        model = matmul_model(fused_attributes(enc), enc.blob, ["batch", 6, 40])
        fh.check_declared_output(model, ["batch", 6, n], ok)
    model.graph.ClearField("output")
    model.graph.output.append(helper.make_value_info("Y", onnx.TypeProto()))
    dims = onnx.shape_inference.infer_shapes(model).graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 6, 24]


# ---- bad input: one error naming the node ------------------------------------------------------------------
ENC = codec.encode(random_weight(40, 24), "blocktcq")


@pytest.mark.parametrize("change,message", [
    ({"codec": "paper"}, "fused ops read the blocktcq and blockvq codecs only"),
    ({"shape": [2, 20, 24]}, "2-D weight"),
    ({"dtype": 10}, "float32 weight"),
    ({"i_block": [1]}, "block"),
    ({"bits": 9}, "bits"),
    ({"f_books": [0.5]}, "books"),
    ({"format": 7}, "format"),
    ({"shape": [40, -24]}, "shape"),
])
def test_bad_attributes(change, message):
    attrs = {**fused_attributes(ENC), **change}
    error = session_error(matmul_model(attrs, ENC.blob, [2, 40]), {"A": np.zeros((2, 40), np.float32)})
    assert "HyperMatMul node 'mm'" in error and message in error


@pytest.mark.parametrize("fed", [False, True])
@pytest.mark.parametrize("cut", [-1, 1, None])
def test_bad_blob_length(fed, cut):
    """Constant θ fails session creation; θ fed at run time fails that run. Empty, short and long blobs."""
    blob = fh.cut_blob(ENC.blob, cut)
    feeds = {"A": np.zeros((2, 40), np.float32)}
    if fed:
        feeds["theta"] = blob.astype(np.uint8)
    error = session_error(matmul_model(fused_attributes(ENC), None if fed else blob, [2, 40]), feeds)
    assert "HyperMatMul node 'mm'" in error and "bytes" in error
    assert error.count("\n") <= 1


@pytest.mark.parametrize("a_shape", [[2, 39], [40, 2], [3]])
def test_bad_a_shape(a_shape):
    model = matmul_model(fused_attributes(ENC), ENC.blob, [None] * len(a_shape))
    error = session_error(model, {"A": np.zeros(a_shape, np.float32)})
    assert "HyperMatMul node 'mm'" in error and "input 0 (A)" in error


def test_blob_fed_at_run_time_decodes_each_run():
    model = matmul_model(fused_attributes(ENC), None, [40, 40])
    sess = ort.InferenceSession(model.SerializeToString(), runtime.session_options())
    eye = np.eye(40, dtype=np.float32)
    assert np.array_equal(sess.run(None, {"A": eye, "theta": ENC.blob})[0], codec.decode(ENC))
    other = dataclasses.replace(ENC, blob=codec.encode(random_weight(40, 24, seed=9), "blocktcq").blob)
    assert np.array_equal(sess.run(None, {"A": eye, "theta": other.blob})[0], codec.decode(other))
