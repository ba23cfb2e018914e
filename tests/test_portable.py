"""The portable form (standard ONNX ops only, folded by ONNX Runtime at load) decodes bit for bit as the numpy
reference: blocktcq's trellis parity in closed form (both graph forms), odd and partial blocks, every weight dtype;
`decompress`/`inspect` read it back; and ONNX Runtime really folds the decoder away at session creation."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper
from toymodels import conv_mlp

import hyperonnx
from hyperonnx import codec
from hyperonnx.codec import blocktcq, tcq
from hyperonnx.codec.base import dtype_from_name
from hyperonnx.passes import emit
from hyperonnx.passes.decoders import find_decoders
from hyperonnx.passes.select import find_sites

ONNX_TYPE = {"float32": onnx.TensorProto.FLOAT, "float16": onnx.TensorProto.FLOAT16,
             "bfloat16": onnx.TensorProto.BFLOAT16, "float64": onnx.TensorProto.DOUBLE}
# numpy cannot hold bfloat16 in an ORT output: outputs are read into a buffer of the same width
STORAGE = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16, "float64": np.float64}


def _session(model: onnx.ModelProto, **options) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    for key, value in options.items():
        setattr(so, key, value)
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _raw_output(model: onnx.ModelProto, shape: tuple[int, ...], dtype: str) -> bytes:
    """Output ``y``'s bytes, bound to a buffer we own (works for bfloat16)."""
    sess = _session(model)
    buffer = np.full(shape, 0x55, dtype=STORAGE[dtype])
    binding = sess.io_binding()
    binding.bind_ortvalue_output("y", ort.OrtValue.ortvalue_from_numpy_with_onnx_type(buffer, ONNX_TYPE[dtype]))
    sess.run_with_iobinding(binding)
    return buffer.tobytes()


def _walk_parity(theta: np.ndarray) -> np.ndarray:
    """(state & 1) before each θ of each row (a block), by the sequential state walk of docs/format.md."""
    state = np.zeros(theta.shape[0], dtype=np.int64)
    parity = np.empty_like(theta)
    for t in range(theta.shape[1]):
        parity[:, t] = state & 1
        state = tcq.NEXT[state, (2 * theta[:, t] + (state & 1)) & 3]
    return parity


def _portable_model(enc: codec.Encoded) -> onnx.ModelProto:
    """A model whose output ``y`` is one weight, rewritten as the portable decoder of ``enc``."""
    onnx_type = ONNX_TYPE[enc.dtype]
    zeros = np.zeros(enc.shape, dtype=STORAGE[enc.dtype])
    weight = helper.make_tensor("w", onnx_type, enc.shape, zeros.tobytes(), raw=True)
    graph = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "one_weight", [],
                              [helper.make_tensor_value_info("y", onnx_type, list(enc.shape))], [weight])
    # opset 11 is the portable form's floor; Cast to bfloat16 is opset 13's (a bfloat16 model has it anyway)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13 if enc.dtype == "bfloat16" else 11)])
    model.ir_version = 7
    (site,) = find_sites(model)
    emit.apply(model.graph, [emit.emit_portable(site, emit.Namer(model.graph), enc, {})])
    onnx.checker.check_model(model, full_check=True)
    assert not any(n.domain for n in model.graph.node)  # standard ops only
    return model


@pytest.mark.parametrize("block", [2, 7, 8, 33, 4096])
def test_parity_closed_form_equals_the_state_walk(block):
    """docs/format.md: (state & 1) = (low bits of the block's θ @ parity_matrix(B)) mod 2, for any θ."""
    theta = np.random.default_rng(block).integers(0, 256, size=(32, block))
    closed = ((theta & 1).astype(np.float32) @ blocktcq.parity_matrix(block)).astype(np.int64) % 2
    assert np.array_equal(closed, _walk_parity(theta))


@pytest.mark.parametrize("form, block", [("matmul", b) for b in (2, 7, 8, 33, 128, 512)]
                         + [("runs", b) for b in (2, 7, 8, 33, 513, 4096)])
def test_parity_graph_equals_the_state_walk(form, block, monkeypatch):
    """Both graph forms of the parity (the matrix product, the running sums) on θ up to 255, in ONNX Runtime."""
    monkeypatch.setattr(emit, "PARITY_MATMUL_MAX_BLOCK", 4096 if form == "matmul" else 0)
    theta = np.random.default_rng(block).integers(0, 256, size=(24, block))
    inits: list = []
    nodes: list = []
    const, node = emit._builders(emit.Namer(helper.make_graph([], "g", [], [])), "w", inits, nodes)
    parity_half = emit._trellis_parity_half(const("theta", theta.astype(np.float32)), block, const, node)
    names = {n.op_type for n in nodes}
    assert ("MatMul" in names) == (form == "matmul") and ("CumSum" in names) == (form == "runs")
    nodes.append(helper.make_node("Identity", [parity_half], ["y"]))
    graph = helper.make_graph(nodes, "parity", [], [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT,
                                                                                   list(theta.shape))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    assert np.array_equal(_session(model).run(None, {})[0] * 2, _walk_parity(theta))


# (bits, block, shape): bits 1 and 8; odd blocks (7, 33); partial last blocks (all but (5, 32, (64, 64)),
# (2, 7, (7, 21)), (4, 33, (33,)) and (8, 600, (1200,))); a tensor shorter than one block (5, 64, (20,)); blocks
# past PARITY_MATMUL_MAX_BLOCK (600, 1000, 4096: the running-sums form of the parity).
CASES = [(1, 7, (10, 10)), (8, 33, (1000,)), (5, 32, (64, 64)), (3, 2, (999,)), (2, 7, (7, 21)), (4, 33, (33,)),
         (6, 130, (9, 111)), (5, 64, (20,)), (8, 600, (1200,)), (6, 1000, (3, 1111)), (7, 4096, (3, 3001))]


@pytest.mark.parametrize("bits, block, shape", CASES)
def test_portable_blocktcq_decodes_as_the_reference(bits, block, shape):
    model = _check_decodes_as_the_reference("blocktcq", bits, block, shape)
    assert any(n.op_type == "CumSum" for n in model.graph.node) == (block > emit.PARITY_MATMUL_MAX_BLOCK)


# blockvq (even blocks, two weights a code): whole blocks; an odd count whose codes fill the blocks (3007 = 94·32
# − 1); partial blocks; a tensor shorter than one block.
@pytest.mark.parametrize("bits, block, shape", [(5, 32, (64, 64)), (4, 32, (31, 97)), (2, 8, (1001,)),
                                                (8, 2, (5,)), (1, 64, (3, 50))])
def test_portable_blockvq_decodes_as_the_reference(bits, block, shape):
    _check_decodes_as_the_reference("blockvq", bits, block, shape)


def _check_decodes_as_the_reference(codec_name: str, bits: int, block: int, shape: tuple[int, ...]):
    x = (np.random.default_rng(bits * block).laplace(size=shape) * 0.05).astype(np.float32)
    enc = codec.encode(x, codec_name, bits=bits, block=block)
    model = _portable_model(enc)
    codes = next(t for t in model.graph.initializer if t.name == "w::codes")
    assert codes.data_type == (onnx.TensorProto.UINT8 if enc.bits <= 8 else onnx.TensorProto.UINT16)
    assert np.prod(codes.dims) == enc.count  # byte-aligned, not padded
    expected = codec.decode(enc)
    assert _raw_output(model, enc.shape, "float32") == expected.tobytes()
    (decoder,) = find_decoders(model)  # decompress / inspect: the codes and headers packed back into the blob
    assert decoder.form == "portable" and decoder.meta["codec"] == codec_name
    assert decoder.decode().tobytes() == expected.tobytes()
    return model


def test_portable_blocktcq_of_zeros():
    enc = codec.encode(np.zeros((5, 13), dtype=np.float32), "blocktcq", bits=3, block=8)
    assert _raw_output(_portable_model(enc), enc.shape, "float32") == codec.decode(enc).tobytes()


@pytest.mark.parametrize("codec_name", ["blockvq", "blocktcq"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_portable_block_codecs_keep_the_weight_dtype(codec_name, dtype):
    """The decoder computes in float32 as the format does, then casts once to the weight's dtype (as numpy)."""
    x = (np.random.default_rng(3).standard_normal((31, 97)) * 0.05).astype(dtype_from_name(dtype))
    enc = codec.encode(x, codec_name, bits=4, block=32)
    model = _portable_model(enc)
    expected = codec.decode(enc)
    assert expected.dtype == x.dtype
    assert _raw_output(model, enc.shape, dtype) == np.ascontiguousarray(expected).tobytes()
    (decoder,) = find_decoders(model)
    assert decoder.decode().tobytes() == np.ascontiguousarray(expected).tobytes()


@pytest.mark.parametrize("codec_name", ["blockvq", "blocktcq"])
def test_onnxruntime_folds_the_decoder_at_session_creation(codec_name, tmp_path):
    """ORT's constant folding (basic level, on by default) replaces every decoder node by its output: the optimized
    model holds the decoded weights as initializers and exactly the original model's nodes."""
    src, out, optimized = tmp_path / "toy.onnx", tmp_path / "portable.onnx", tmp_path / "optimized.onnx"
    onnx.save(conv_mlp(), str(src))
    result = hyperonnx.convert(src, out, codec_name=codec_name, runtime="portable", min_elements=1)
    assert {t.codec for t in result.report.tensors} == {codec_name}
    model = onnx.load(str(out))
    assert sum(n.name.startswith("hyperonnx/") for n in model.graph.node) > 20  # the decoders are there to fold
    _session(model, graph_optimization_level=ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
             optimized_model_filepath=str(optimized))
    folded = onnx.load(str(optimized))
    assert [n.op_type for n in folded.graph.node] == [n.op_type for n in onnx.load(str(src)).graph.node]
    weights = {t.name: numpy_helper.to_array(t) for t in folded.graph.initializer}
    for decoder in find_decoders(model):
        assert weights[decoder.output].tobytes() == decoder.decode().tobytes()
