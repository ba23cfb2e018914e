"""The portable form (standard ONNX ops only, folded by ONNX Runtime at load) decodes bit for bit as the numpy
reference: codes bit-packed in planes (as small as the `ort` form's, every bit width, both ways of summing the planes:
uint8 from opset 14, the decoder's index type below), blocktcq's trellis parity in closed form (both graph forms),
odd and partial blocks, every weight dtype; `decompress`/`inspect` read it back (and refuse a layout they do not
know); and ONNX Runtime really folds the decoder away at session creation."""

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
from hyperonnx.passes.decompress import decompress_model
from hyperonnx.passes.ort_node import encoded_from_attributes
from hyperonnx.passes.portable import blocktcq as portable_blocktcq
from hyperonnx.passes.portable import layout
from hyperonnx.passes.portable.builder import Builder
from hyperonnx.passes.portable.emit import emit_portable
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


def _portable_model(enc: codec.Encoded, opset: int | None = None) -> onnx.ModelProto:
    """A model whose output ``y`` is one weight, rewritten as the portable decoder of ``enc``."""
    onnx_type = ONNX_TYPE[enc.dtype]
    zeros = np.zeros(enc.shape, dtype=STORAGE[enc.dtype])
    weight = helper.make_tensor("w", onnx_type, enc.shape, zeros.tobytes(), raw=True)
    graph = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "one_weight", [],
                              [helper.make_tensor_value_info("y", onnx_type, list(enc.shape))], [weight])
    # opset 11 is the portable form's floor; Cast to bfloat16 is opset 13's (a bfloat16 model has it anyway)
    opset = opset or (13 if enc.dtype == "bfloat16" else 11)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    (site,) = find_sites(model)
    emit.apply(model.graph, [emit_portable(site, emit.Namer(model.graph), enc, {}, opset)])
    onnx.checker.check_model(model, full_check=True)
    assert not any(n.domain for n in model.graph.node)  # standard ops only
    return model


def _stored_code_bytes(model: onnx.ModelProto, enc: codec.Encoded) -> int:
    """Bytes of the codes the portable model stores (its code planes, or its one-per-element codes)."""
    (decoder,) = find_decoders(model)
    inits = {t.name: t for t in model.graph.initializer}
    names = [p[0] for p in decoder.meta["planes"]] if "planes" in decoder.meta else [decoder.meta["codes"]]
    for name in names:
        assert inits[name].data_type == onnx.TensorProto.UINT8 or enc.bits >= 16
    return sum(numpy_helper.to_array(inits[name]).nbytes for name in names)


def _check_code_bytes(model: onnx.ModelProto, enc: codec.Encoded) -> None:
    """The codes take ceil(count·bits/8) bytes, as in the `ort` form's blob, + the planes' padding to whole groups
    of up to 8 codes (less than ``bits`` bytes); 8- and 16-bit codes are stored one per element, unpadded."""
    exact = -(-enc.count * enc.bits // 8)
    stored = _stored_code_bytes(model, enc)
    assert exact <= stored < exact + max(enc.bits, 1) and (stored == exact or enc.bits not in (8, 16))
    if codec.decoder_for(enc.codec).block_headers:  # the headers: a byte per block for the scale, 2 bits per level set
        nblocks = -(-enc.numel // enc.ints["block"][0])
        (decoder,) = find_decoders(model)
        book = next(t for t in model.graph.initializer if t.name == decoder.meta["book_planes"][0][0])
        scale = next(t for t in model.graph.initializer if t.name.endswith("::scale_code"))
        assert np.prod(scale.dims) == nblocks and nblocks / 4 <= np.prod(book.dims) < nblocks / 4 + 1


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
    monkeypatch.setattr(portable_blocktcq, "PARITY_MATMUL_MAX_BLOCK", 4096 if form == "matmul" else 0)
    theta = np.random.default_rng(block).integers(0, 256, size=(24, block))
    b = Builder(emit.Namer(helper.make_graph([], "g", [], [])), "w")
    parity_half = portable_blocktcq.trellis_parity_half(b, b.const("theta", theta.astype(np.float32)), block)
    names = {n.op_type for n in b.nodes}
    assert ("MatMul" in names) == (form == "matmul") and ("CumSum" in names) == (form == "runs")
    b.nodes.append(helper.make_node("Identity", [parity_half], ["y"]))
    graph = helper.make_graph(b.nodes, "parity", [], [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT,
                                                                                     list(theta.shape))],
                              b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    assert np.array_equal(_session(model).run(None, {})[0] * 2, _walk_parity(theta))


# (bits, block, shape): bits 1 and 8; odd blocks (7, 33); partial last blocks (all but (5, 32, (64, 64)),
# (2, 7, (7, 21)), (4, 33, (33,)) and (8, 600, (1200,))); a tensor shorter than one block (5, 64, (20,)); blocks
# past PARITY_MATMUL_MAX_BLOCK (600, 1000, 4096: the running-sums form of the parity); at the largest matrix block,
# 7 bits (the uint16 index path from opset 14) and 8 bits (its parity sums would overflow uint16: float32).
CASES = [(1, 7, (10, 10)), (8, 33, (1000,)), (5, 32, (64, 64)), (3, 2, (999,)), (2, 7, (7, 21)), (4, 33, (33,)),
         (6, 130, (9, 111)), (5, 64, (20,)), (7, 512, (3, 512)), (8, 512, (1000,)), (8, 600, (1200,)),
         (6, 1000, (3, 1111)), (7, 4096, (3, 3001))]


@pytest.mark.parametrize("opset", [11, 17])
@pytest.mark.parametrize("bits, block, shape", CASES)
def test_portable_blocktcq_decodes_as_the_reference(bits, block, shape, opset):
    model = _check_decodes_as_the_reference("blocktcq", bits, block, shape, opset)
    ops = {n.op_type for n in model.graph.node}
    assert ("CumSum" in ops) == (block > portable_blocktcq.PARITY_MATMUL_MAX_BLOCK)
    # from opset 14 the row index is computed in uint16 (parity by Mod) where the parity sums fit it
    lean = opset >= 14 and block <= portable_blocktcq.PARITY_MATMUL_MAX_BLOCK and not (bits == 8 and block == 512)
    assert portable_blocktcq.lean_parity_fits(bits, block) == (block <= portable_blocktcq.PARITY_MATMUL_MAX_BLOCK
                                                               and not (bits == 8 and block == 512))
    assert ("Mod" in ops and "Floor" not in ops) == lean


@pytest.mark.parametrize("bits, shape, folded, wide", [(5, (64, 64), True, False), (6, (64, 64), False, False),
                                                      (6, (384, 384), True, True), (8, (1024, 520), True, True)])
def test_portable_blocktcq_folds_scales_into_the_table(bits, shape, folded, wide):
    """From opset 14 the block scales are folded into the Gather's table (no full-size scale Mul): with a uint16
    row index up to 5 bits, and above that with an int32 one once the table (256 × 4 × 2L rows) is no larger than
    the weight; bit-exact either way."""
    model = _check_decodes_as_the_reference("blocktcq", bits, 32, shape, opset=17)
    names = {n.output[0].split("::", 1)[-1] for n in model.graph.node}
    assert ("scaled_table" in names) == folded and ("values" not in names) == folded
    assert ("fine_i32" in names) == wide and ("rows_u16" in names) == (not wide)


# blockvq (even blocks, two weights a code): whole blocks; an odd count whose codes fill the blocks (3007 = 94·32
# − 1); partial blocks; a tensor shorter than one block.
@pytest.mark.parametrize("opset", [11, 17])
@pytest.mark.parametrize("bits, block, shape", [(5, 32, (64, 64)), (4, 32, (31, 97)), (2, 8, (1001,)),
                                                (8, 2, (5,)), (1, 64, (3, 50)), (3, 2, (7,))])
def test_portable_blockvq_decodes_as_the_reference(bits, block, shape, opset):
    _check_decodes_as_the_reference("blockvq", bits, block, shape, opset)


# Every code width of the block codecs (blockvq's pair codes: 2…16 bits) at both ways of summing the planes, on a
# tensor with a partial last block (the codes padded in the graph) and on whole blocks (a single Reshape).
@pytest.mark.parametrize("opset", [11, 14])
@pytest.mark.parametrize("codec_name", ["blocktcq", "blockvq"])
@pytest.mark.parametrize("bits", range(1, 9))
def test_portable_codes_are_bit_packed_at_every_width(codec_name, bits, opset):
    for shape in ((37, 29), (4, 64)):
        model = _check_decodes_as_the_reference(codec_name, bits, 32, shape, opset)
    enc_bits = bits * (2 if codec_name == "blockvq" else 1)
    planes = layout.code_planes(enc_bits)
    assert planes is None or sum(w for w, _ in planes) == enc_bits
    # Planes summed in uint8 (Add on uint8: opset 14), a byte of the code at a time; in the index type otherwise
    # and across the code's two bytes (blockvq's pair codes of 10 bits and more: a Mul by 256 after the Cast).
    adds = [n for n in model.graph.node if n.op_type == "Add" and "_u8" in n.output[0]]
    in_byte = [] if planes is None else [sum(1 for _, s in planes if s // 8 == b) for b in (0, 1)]
    assert len(adds) == (sum(max(n - 1, 0) for n in in_byte) if opset >= 14 else 0)
    scaled = any(n.op_type == "Mul" and "part_scaled" in n.output[0] for n in model.graph.node)
    assert scaled == (planes is not None and enc_bits > 8)


# The table codecs: paper's codes of 4, 7, 10 (paper-cnn's n) and 13 bits (its default; rings widen the codes),
# kronecker's 12.
@pytest.mark.parametrize("opset", [11, 14])
@pytest.mark.parametrize("codec_name, options", [("paper", {"n": 3}), ("paper", {"n": 24}), ("paper", {"n": 225}),
                                                 ("paper", {}), ("kronecker", {})])
def test_portable_table_codecs_are_bit_packed(codec_name, options, opset):
    x = (np.random.default_rng(7).laplace(size=(41, 27)) * 0.05).astype(np.float32)
    enc = codec.encode(x, codec_name, **options)
    model = _portable_model(enc, opset)
    _check_code_bytes(model, enc)
    expected = codec.decode(enc)
    assert _raw_output(model, enc.shape, "float32") == expected.tobytes()
    (decoder,) = find_decoders(model)
    assert decoder.decode().tobytes() == expected.tobytes()


def _check_decodes_as_the_reference(codec_name: str, bits: int, block: int, shape: tuple[int, ...], opset: int = 11):
    x = (np.random.default_rng(bits * block).laplace(size=shape) * 0.05).astype(np.float32)
    enc = codec.encode(x, codec_name, bits=bits, block=block)
    model = _portable_model(enc, opset)
    _check_code_bytes(model, enc)
    expected = codec.decode(enc)
    assert _raw_output(model, enc.shape, "float32") == expected.tobytes()
    (decoder,) = find_decoders(model)  # decompress / inspect: the codes and headers packed back into the blob
    assert decoder.form == "portable" and decoder.meta["codec"] == codec_name
    assert decoder.decode().tobytes() == expected.tobytes()
    return model


@pytest.mark.parametrize("codec_name", ["blocktcq", "blockvq"])
@pytest.mark.parametrize("drop", ["planes", "book_planes", "prefix"])
def test_a_decoder_without_its_layout_is_refused(codec_name, drop, tmp_path):
    """Readers know one layout (docs/format.md): a portable decoder whose tag lacks its code planes, its level-set
    plane or its prefix is malformed, and decompress says so in one line; it is never read as another layout."""
    x = (np.random.default_rng(5).laplace(size=(37, 29)) * 0.05).astype(np.float32)
    model = _portable_model(codec.encode(x, codec_name, bits=3, block=32))
    decompress_model(onnx.load_from_string(model.SerializeToString()))  # intact, it decodes
    gather = next(n for n in model.graph.node if n.doc_string.startswith(layout.TAG))
    meta = layout.read_tag(gather.doc_string)
    del meta[drop]
    gather.doc_string = layout.tag(meta)
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(hyperonnx.HyperonnxError, match="cannot decode") as info:
        hyperonnx.decompress(tmp_path / "m.onnx", tmp_path / "plain.onnx")
    assert "\n" not in str(info.value) and not (tmp_path / "plain.onnx").exists()


def test_malformed_code_planes_are_refused():
    """decoders.py checks the planes' sizes against the layout before unpacking them (inspect, decompress)."""
    x = (np.random.default_rng(0).laplace(size=(37, 29)) * 0.05).astype(np.float32)
    model = _portable_model(codec.encode(x, "blocktcq", bits=5, block=32))
    (decoder,) = find_decoders(model)
    plane = next(t for t in model.graph.initializer if t.name == decoder.meta["planes"][1][0])
    plane.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(plane)[:-1], plane.name))
    with pytest.raises(ValueError, match="malformed portable decoder"):
        decoder.decode()


def test_planes_round_trip_in_numpy():
    """pack_planes / unpack_planes: every width up to 15 bits, counts around the group size."""
    rng = np.random.default_rng(1)
    for bits in range(1, 16):
        planes = layout.code_planes(bits)
        if planes is None:
            assert bits == 8
            continue
        for count in (1, 7, 8, 9, 100):
            codes = rng.integers(0, 1 << bits, size=count).astype(np.uint32)
            arrays = layout.pack_planes(codes, planes)
            assert all(a.dtype == np.uint8 for a in arrays)
            assert sum(a.nbytes for a in arrays) == layout.plane_codes(count, planes) * bits // 8
            assert np.array_equal(layout.unpack_planes(arrays, planes, count), codes)


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


def test_portable_convert_inspect_and_decompress(tmp_path):
    """A converted portable model: its file holds the codes bit-packed (as the report and inspect count), and
    decompress writes the weights the portable graph computes, bit for bit."""
    src, out, plain = tmp_path / "toy.onnx", tmp_path / "portable.onnx", tmp_path / "plain.onnx"
    onnx.save(conv_mlp(), str(src))
    result = hyperonnx.convert(src, out, codec_name="blocktcq", runtime="portable", min_elements=1)
    info = hyperonnx.inspect(out)
    assert {t["name"] for t in info["tensors"]} == {t.name for t in result.report.tensors}
    by_name = {t["name"]: t for t in info["tensors"]}
    for tensor in result.report.tensors:
        assert by_name[tensor.name]["form"] == "portable"
        numel = int(np.prod(tensor.shape))
        if numel > 10000:  # 5-bit codes + 10-bit block headers, not a byte or two each (+ the graph's constants)
            assert tensor.bits_per_weight < 5.5 and by_name[tensor.name]["bytes_after"] < numel * 5.5 / 8 + 2048
    assert hyperonnx.decompress(out, plain) == len(result.report.tensors)
    optimized = tmp_path / "optimized.onnx"
    _session(onnx.load(str(out)), graph_optimization_level=ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
             optimized_model_filepath=str(optimized))
    folded = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(optimized)).graph.initializer}
    decoded = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(plain)).graph.initializer}
    for tensor in result.report.tensors:
        assert folded[tensor.name].tobytes() == decoded[tensor.name].tobytes()


def test_decoder_names_are_short_and_unique_across_conversions(tmp_path):
    """A decoder's ~40 value and node names use a short prefix (hx0, hx1, …), not the weight's name (which can be
    long, and cost MobileNetV2's portable file 7 % when repeated in each); a second conversion of the converted
    model (the weights the first left raw) picks fresh prefixes: the model stays valid and every decoder still
    decodes as the reference."""
    src, first, second = tmp_path / "toy.onnx", tmp_path / "first.onnx", tmp_path / "second.onnx"
    onnx.save(conv_mlp(), str(src))
    r1 = hyperonnx.convert(src, first, runtime="portable", min_elements=4096)
    r2 = hyperonnx.convert(first, second, runtime="portable", min_elements=1)
    weights = {t.name for t in r1.report.tensors} | {t.name for t in r2.report.tensors}
    assert r1.report.tensors and r2.report.tensors
    model = onnx.load(str(second))
    onnx.checker.check_model(model, full_check=True)
    decoders = list(find_decoders(model))
    assert {d.output for d in decoders} == weights
    prefixes = [d.meta["prefix"] for d in decoders]
    assert len(set(prefixes)) == len(prefixes) and all(p.startswith("hx") for p in prefixes)
    for node in model.graph.node:
        if node.name.startswith("hyperonnx/"):
            assert not any(w in name for w in weights for name in [node.name, *node.input, *node.output]
                           if name != w), node.name
    optimized = tmp_path / "optimized.onnx"
    _session(model, graph_optimization_level=ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
             optimized_model_filepath=str(optimized))
    folded = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(optimized)).graph.initializer}
    for decoder in decoders:
        assert folded[decoder.output].tobytes() == decoder.decode().tobytes()


@pytest.mark.parametrize("opset", [12, 13])
def test_bfloat16_weights_need_opset_13_in_the_portable_form(opset, tmp_path):
    """Cast to bfloat16 exists from opset 13: below it the portable form refuses a bfloat16 weight in one line
    (the ort form has no such limit)."""
    table = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)
    bf16 = (table.view(np.uint32) >> 16).astype(np.uint16)
    weight = helper.make_tensor("emb", onnx.TensorProto.BFLOAT16, table.shape, bf16.tobytes(), raw=True)
    graph = helper.make_graph([helper.make_node("Gather", ["emb", "ids"], ["y"])], "g",
                              [helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, [3])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.BFLOAT16, [3, 16])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    src = tmp_path / "bf16.onnx"
    onnx.save(model, str(src))
    if opset < 13:
        with pytest.raises(hyperonnx.HyperonnxError, match="bfloat16 weight needs opset 13") as info:
            hyperonnx.convert(src, tmp_path / "p.onnx", runtime="portable", min_elements=1)
        assert "\n" not in str(info.value)
    else:
        result = hyperonnx.convert(src, tmp_path / "p.onnx", runtime="portable", min_elements=1)
        assert [t.dtype for t in result.report.tensors] == ["bfloat16"]
    assert hyperonnx.convert(src, tmp_path / "o.onnx", min_elements=1).report.tensors  # ort: no opset limit


def test_doc_string_floats_are_short_and_exact(tmp_path):
    """The portable decoder's JSON writes its float32 side information (blocktcq's stored levels) as the shortest
    decimal that reads back to the same float32, and readers rebuild exactly the encoder's floats."""
    import json
    import re

    src, out = tmp_path / "m.onnx", tmp_path / "out.onnx"
    onnx.save(conv_mlp(), src)
    hyperonnx.convert(src, out, codec_name="blocktcq", runtime="portable", min_elements=1)
    model = onnx.load(str(out))
    weights = {t.name: numpy_helper.to_array(t) for t in conv_mlp().graph.initializer}
    decoders = list(find_decoders(model))
    assert decoders
    for decoder in decoders:
        tag = next(n.doc_string for n in decoder.nodes if n.doc_string.startswith(layout.TAG))
        text = json.dumps(layout.read_tag(tag)["f_books"])
        assert max(len(t) for t in re.findall(r"[-0-9.e+]+", text)) <= 15  # float32 needs 9 digits, not 17
        enc = codec.encode(weights[decoder.output], codec.DEFAULT_CODEC)
        assert encoded_from_attributes(decoder.meta, np.zeros(0, np.uint8)).floats == enc.floats
        assert decoder.decode().tobytes() == codec.decode(enc).tobytes()
