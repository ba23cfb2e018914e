"""HyperConv (docs/fused.md), a 1×1 Conv read straight from θ: the kernel it regenerates is the reference's bit for
bit, outputs are within 1e-5 relative of decompress + Conv (2-D and 1-D, bias or none, batches, odd channel counts)
on the SIMD and the portable kernels; the fuse pass, asked to, fuses only the Convs that are a GEMM over the
positions and unfuse restores them exactly (the converter does not ask: HyperDecode + Conv measured faster); bad
input fails with one error naming the node."""

from __future__ import annotations

import copy

import fused_helpers as fh
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fused_helpers import ISAS, fused_attributes, random_weight, rel_error, run, session_error
from onnx import TensorProto, helper, numpy_helper
from test_ops_decode import LIBRARY

from hyperonnx import api, codec, runtime
from hyperonnx.passes.fuse import fuse_model, unfuse_model

pytestmark = pytest.mark.skipif(LIBRARY is None, reason="op library not built")


def kernel(m: int, c: int, rank: int = 4, seed: int = 0) -> np.ndarray:
    return random_weight(m, c, seed).reshape(m, c, *[1] * (rank - 2))


def conv_model(attrs: dict, blob: np.ndarray | None, x_shape: list, bias: np.ndarray | None = None,
               name: str = "cv") -> onnx.ModelProto:
    return fh.fused_model("HyperConv", ["X", "theta"] + (["B"] if bias is not None else []), attrs, blob,
                          [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)],
                          {} if bias is None else {"B": bias}, name=name)


def plain_conv(w: np.ndarray, x: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    return fh.plain_run([helper.make_node("Conv", ["X", "W"] + (["B"] if bias is not None else []), ["Y"])], {"X": x},
                        {"W": w} | ({} if bias is None else {"B": bias}))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("codec_name,options,m,c", [
    ("blocktcq", {}, 45, 37), ("blocktcq", {"bits": 2, "block": 16}, 20, 24), ("blockvq", {}, 33, 29)])
def test_regenerated_kernel_is_the_reference(codec_name, options, m, c, isa, monkeypatch):
    """X[0, c, 0, s] = δ(c, s): Y[0, :, 0, :] is the kernel as [M, C], exactly."""
    enc = codec.encode(kernel(m, c), codec_name, **options)
    x = np.eye(c, dtype=np.float32).reshape(1, c, 1, c)
    y = run(conv_model(fused_attributes(enc), enc.blob, [1, c, 1, c]), {"X": x}, isa, monkeypatch)
    assert np.array_equal(y[0, :, 0, :], codec.decode(enc).reshape(m, c))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("x_shape,m,with_bias", [
    ([2, 37, 5, 7], 45, True), ([1, 37, 9, 1], 70, False), ([3, 20, 11], 33, True), ([2, 16, 2, 3, 4], 8, True)])
def test_outputs_match_decompress_then_conv(x_shape, m, with_bias, isa, monkeypatch):
    c = x_shape[1]
    enc = codec.encode(kernel(m, c, len(x_shape), seed=1), "blocktcq")
    rng = np.random.default_rng(2)
    x = rng.standard_normal(x_shape).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32) if with_bias else None
    y = run(conv_model(fused_attributes(enc), enc.blob, x_shape, bias), {"X": x}, isa, monkeypatch)
    ref = plain_conv(codec.decode(enc), x, bias)
    assert y.shape == ref.shape and rel_error(y, ref) <= 1e-5


def test_threads_agree_and_real_kernel():
    """A trained 1×1 kernel of the terrain UNet (192 × 64: six work units), on 1 and 2 threads."""
    import realmodels

    try:
        model = onnx.load(str(realmodels.terrain_unet()))
    except Exception as exc:  # the package is missing: tests/requirements-model-packages.txt
        pytest.skip(f"terrain model not available ({exc})")
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    conv = next(n for n in model.graph.node if n.op_type == "Conv" and weights[n.input[1]].shape == (192, 64, 1, 1))
    w, bias = weights[conv.input[1]], weights[conv.input[2]]
    enc = codec.encode(w, "blocktcq")
    x = np.random.default_rng(3).standard_normal((2, 64, 16, 16)).astype(np.float32)
    fused = conv_model(fused_attributes(enc), enc.blob, list(x.shape), bias)
    y1, y2 = run(fused, {"X": x}, threads=1), run(fused, {"X": x}, threads=2)
    assert np.array_equal(y1, y2)
    assert rel_error(y1, plain_conv(codec.decode(enc), x, bias)) <= 1e-5


def test_schema_and_shape_inference():
    enc = codec.encode(kernel(24, 40), "blocktcq")
    model = conv_model(fused_attributes(enc), enc.blob, ["n", 40, 7, "w"], np.zeros(24, np.float32))
    fh.check_declared_output(model, ["n", 24, 7, "w"], True)
    fh.check_declared_output(model, ["n", 25, 7, "w"], False)


ENC = codec.encode(kernel(24, 40), "blocktcq")


@pytest.mark.parametrize("change,x_shape,bias_shape,message", [
    ({"shape": [24, 40, 3, 3]}, [1, 40, 4, 4], None, "1×1 kernel"),
    ({"shape": [24, 40]}, [1, 40, 4, 4], None, "1×1 kernel"),
    ({"codec": "ecsq"}, [1, 40, 4, 4], None, "fused ops read the blocktcq and blockvq codecs only"),
    ({}, [1, 39, 4, 4], None, "input 0 (X)"),
    ({}, [1, 40, 4], None, "input 0 (X)"),
    ({}, [1, 40, 4, 4], [23], "input 2 (B)"),
])
def test_bad_input(change, x_shape, bias_shape, message):
    attrs = {**fused_attributes(ENC), **change}
    bias = None if bias_shape is None else np.zeros(bias_shape, np.float32)
    model = conv_model(attrs, ENC.blob, [None] * len(x_shape), bias)
    feeds = {"X": np.zeros(x_shape, np.float32)}
    if bias is not None:
        fh.feed_at_run_time(model, "B", feeds, bias)
    error = session_error(model, feeds)
    assert "HyperConv node 'cv'" in error and message in error and error.count("\n") <= 1


@pytest.mark.parametrize("fed", [False, True])
def test_bad_blob_length(fed):
    blob = np.concatenate([ENC.blob, [0]]).astype(np.uint8)
    feeds = {"X": np.zeros((1, 40, 2, 2), np.float32)} | ({"theta": blob} if fed else {})
    error = session_error(conv_model(fused_attributes(ENC), None if fed else blob, [1, 40, 2, 2]), feeds)
    assert "HyperConv node 'cv'" in error and "bytes" in error and error.count("\n") <= 1


def conv_net() -> onnx.ModelProto:
    """1×1 Convs that are GEMMs (explicit default attributes, bias; none, no bias) and three that are not (stride 2,
    group 2, 3×3), each weight large enough to compress."""
    rng = np.random.default_rng(4)
    w = {"pw1": kernel(48, 32, seed=5), "pw2": kernel(32, 48, seed=6), "strided": kernel(40, 32, seed=7),
         "grouped": kernel(32, 16, seed=8), "k3": rng.standard_normal((32, 32, 3, 3)).astype(np.float32) * 0.1,
         "pw1.bias": rng.standard_normal(48).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "pw1", "pw1.bias"], ["a"], name="pw1", kernel_shape=[1, 1], strides=[1, 1],
                              pads=[0, 0, 0, 0], dilations=[1, 1], group=1, auto_pad="NOTSET", doc_string="first"),
             helper.make_node("Conv", ["a", "pw2"], ["b"], name="pw2"),
             helper.make_node("Conv", ["b", "grouped"], ["g"], name="grouped", group=2),
             helper.make_node("Conv", ["g", "k3"], ["k"], name="k3", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["k", "strided"], ["y"], name="strided", strides=[2, 2])]
    graph = helper.make_graph(nodes, "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 32, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 40, 3, 3])],
                              [numpy_helper.from_array(v, k) for k, v in w.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_fuse_pass_takes_pointwise_convs_only_when_asked(tmp_path):
    src, out = tmp_path / "convs.onnx", tmp_path / "convs.hx.onnx"
    onnx.save(conv_net(), str(src))
    api.convert(src, out, codec_name="blocktcq", min_elements=500, decode="call")
    model = onnx.load(str(out))
    assert not any(n.op_type == "HyperConv" for n in model.graph.node)  # the converter leaves Convs alone
    plain_call = copy.deepcopy(model)
    assert fuse_model(model, convs=True) == ["pw1", "pw2"]
    onnx.checker.check_model(model, full_check=True)
    kinds = {n.name: n.op_type for n in model.graph.node}
    assert kinds["pw1"] == kinds["pw2"] == "HyperConv"
    assert kinds["grouped"] == kinds["k3"] == kinds["strided"] == "Conv"
    x = np.random.default_rng(9).standard_normal((2, 32, 6, 6)).astype(np.float32)
    y = ort.InferenceSession(model.SerializeToString(), runtime.session_options()).run(None, {"x": x})[0]
    ref = ort.InferenceSession(plain_call.SerializeToString(), runtime.session_options()).run(None, {"x": x})[0]
    assert rel_error(y, ref) <= 1e-5
    assert unfuse_model(model) == ["pw1", "pw2"]
    key = lambda m: sorted(n.SerializeToString(deterministic=True) for n in m.graph.node)  # noqa: E731
    assert key(model) == key(plain_call)  # attributes, doc strings and names restored exactly
    onnx.save(model, str(out))
    api.decompress(out, tmp_path / "plain.onnx")
    plain, original = onnx.load(str(tmp_path / "plain.onnx")), conv_net()
    key = lambda m: [(n.name, n.op_type, list(n.input), n.doc_string, list(n.attribute)) for n in m.graph.node]  # noqa: E731
    assert key(plain) == key(original)
