"""The graph pass and the API: what is compressed, what stays byte-identical, both runtime forms."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from toymodels import constants_and_subgraphs, conv_mlp

import hyperonnx
from hyperonnx import codec
from hyperonnx.passes.decoders import find_decoders


def _save(model: onnx.ModelProto, path) -> str:
    onnx.save(model, str(path))
    return str(path)


def _run(path, feeds):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def _feeds(seed=0):
    return {"x": np.random.default_rng(seed).standard_normal((2, 8, 8, 8)).astype(np.float32)}


@pytest.fixture
def toy(tmp_path):
    return _save(conv_mlp(), tmp_path / "toy.onnx")


def test_ort_form_selects_weights_and_keeps_the_rest_byte_identical(toy, tmp_path):
    out = tmp_path / "toy.hx.onnx"
    result = hyperonnx.convert(toy, out, min_elements=1000)
    assert sorted(t.name for t in result.report.tensors) == ["conv.weight", "fc1.weight"]
    skipped = {s.name: s.reason for s in result.report.skipped}
    assert "fc2.weight" in skipped and "min-elements" in skipped["fc2.weight"]  # 650 elements
    original, converted = onnx.load(toy), onnx.load(str(out))
    onnx.checker.check_model(converted, full_check=True)
    # Every node of the original survives unchanged and in order; decoders come first.
    kept = [n for n in converted.graph.node if n.domain != "ai.hyperonnx"]
    assert [n.SerializeToString() for n in kept] == [n.SerializeToString() for n in original.graph.node]
    assert [n.op_type for n in converted.graph.node[:2]] == ["HyperDecode", "HyperDecode"]
    # Uncompressed initializers are byte-identical; metadata, docs, value_info and opsets are preserved.
    before = {t.name: t.SerializeToString() for t in original.graph.initializer}
    after = {t.name: t.SerializeToString() for t in converted.graph.initializer}
    for name in ("conv.bias", "fc2.weight", "fc2.bias", "scale", "flat_shape"):
        assert after[name] == before[name]
    assert "conv.weight" not in after and "fc1.weight" not in after
    assert converted.metadata_props == original.metadata_props
    assert converted.doc_string == original.doc_string and converted.producer_name == original.producer_name
    assert list(converted.graph.value_info) == list(original.graph.value_info)
    assert list(converted.graph.input) == list(original.graph.input)
    assert list(converted.graph.output) == list(original.graph.output)
    assert [(o.domain, o.version) for o in converted.opset_import] == [("", 17), ("ai.hyperonnx", 1)]
    inferred = onnx.shape_inference.infer_shapes(converted, strict_mode=True)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.value_info}
    assert shapes["conv.weight"] == [16, 8, 3, 3] and shapes["fc1.weight"] == [576, 65]


def test_min_elements_default_skips_small_tensors_and_biases(toy, tmp_path):
    result = hyperonnx.convert(toy, tmp_path / "a.onnx")
    # the default policy compresses from 1024 weights: fc1 (37440) and conv (1152), not fc2 (650)
    assert [t.name for t in result.report.tensors] == ["conv.weight", "fc1.weight"]
    result = hyperonnx.convert(toy, tmp_path / "a4.onnx", codec_name="blocktcq")
    assert [t.name for t in result.report.tensors] == ["fc1.weight"]  # an explicit codec: from 4096, as before
    result = hyperonnx.convert(toy, tmp_path / "b.onnx", min_elements=1)
    names = {t.name for t in result.report.tensors}
    assert names == {"conv.weight", "fc1.weight", "fc2.weight"}  # biases and the Mul vector are not weights
    result = hyperonnx.convert(toy, tmp_path / "c.onnx", min_elements=1, all_ops=True)
    assert {"scale", "conv.bias", "fc2.bias"} <= {t.name for t in result.report.tensors}


def test_include_and_exclude_globs(toy, tmp_path):
    result = hyperonnx.convert(toy, tmp_path / "a.onnx", min_elements=1, exclude=("fc*",))
    assert [t.name for t in result.report.tensors] == ["conv.weight"]
    result = hyperonnx.convert(toy, tmp_path / "b.onnx", min_elements=1, include=("fc2.*",))
    assert {t.name for t in result.report.tensors} == {"fc2.weight", "fc2.bias"}


def test_decoded_weights_equal_the_codec_reference(toy, tmp_path):
    out = tmp_path / "toy.hx.onnx"
    hyperonnx.convert(toy, out, codec_name=codec.DEFAULT_CODEC, min_elements=1)  # the codec's own defaults
    original = {t.name: numpy_helper.to_array(t) for t in onnx.load(toy).graph.initializer}
    for decoder in find_decoders(onnx.load(str(out))):
        expected = codec.decode(codec.encode(original[decoder.output]))
        np.testing.assert_array_equal(decoder.decode(), expected)


@pytest.mark.parametrize("codec_name", ["paper", "paper-cnn", "blockvq", "blocktcq", "kronecker"])
def test_portable_form_runs_in_plain_onnxruntime_bit_exactly(toy, tmp_path, codec_name):
    out, plain = tmp_path / "toy.portable.onnx", tmp_path / "toy.plain.onnx"
    hyperonnx.convert(toy, out, codec_name=codec_name, runtime="portable", min_elements=1)
    converted = onnx.load(str(out))
    onnx.checker.check_model(converted, full_check=True)
    assert not any(n.domain for n in converted.graph.node)  # standard ops only
    assert hyperonnx.decompress(out, plain) == 3
    feeds = _feeds()
    portable_out, plain_out = _run(out, feeds)[0], _run(plain, feeds)[0]
    np.testing.assert_array_equal(portable_out, plain_out)
    reference = _run(toy, feeds)[0]
    cos = float((portable_out * reference).sum() / np.linalg.norm(portable_out) / np.linalg.norm(reference))
    assert cos > 0.98  # paper-cnn: ~20 dB SQNR per weight


def test_decompress_of_ort_form_gives_a_plain_model(toy, tmp_path):
    out, plain = tmp_path / "toy.hx.onnx", tmp_path / "plain.onnx"
    hyperonnx.convert(toy, out, min_elements=1)
    assert hyperonnx.decompress(out, plain) == 3
    model = onnx.load(str(plain))
    assert not any(n.domain == "ai.hyperonnx" for n in model.graph.node)
    assert [o.domain for o in model.opset_import] == [""]
    assert np.isfinite(_run(plain, _feeds())[0]).all()


def test_constant_nodes_and_subgraph_weights_are_found(tmp_path):
    src = _save(constants_and_subgraphs(), tmp_path / "sub.onnx")
    for runtime in ("ort", "portable"):
        out = tmp_path / f"sub.{runtime}.onnx"
        result = hyperonnx.convert(src, out, runtime=runtime, min_elements=1000)
        assert {t.name for t in result.report.tensors} == {"w_main", "w_then", "w_else"}
        onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    plain = tmp_path / "sub.plain.onnx"
    hyperonnx.decompress(tmp_path / "sub.portable.onnx", plain)
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    for flag in (True, False):
        feeds = {"x": x, "flag": np.array(flag)}
        np.testing.assert_array_equal(_run(tmp_path / "sub.portable.onnx", feeds)[0], _run(plain, feeds)[0])


def test_float16_weights_keep_their_dtype(tmp_path):
    src = _save(conv_mlp(dtype=np.float16), tmp_path / "half.onnx")
    out = tmp_path / "half.hx.onnx"
    hyperonnx.convert(src, out, min_elements=1, runtime="portable")
    plain = tmp_path / "half.plain.onnx"
    hyperonnx.decompress(out, plain)
    types = {t.name: t.data_type for t in onnx.load(str(plain)).graph.initializer}
    assert types["fc1.weight"] == onnx.TensorProto.FLOAT16
    feeds = {"x": _feeds()["x"].astype(np.float16)}
    np.testing.assert_array_equal(_run(out, feeds)[0], _run(plain, feeds)[0])


def test_jobs_do_not_change_the_output(toy, tmp_path):
    hyperonnx.convert(toy, tmp_path / "j1.onnx", min_elements=1, jobs=1)
    hyperonnx.convert(toy, tmp_path / "j2.onnx", min_elements=1, jobs=2)
    assert (tmp_path / "j1.onnx").read_bytes() == (tmp_path / "j2.onnx").read_bytes()


def test_external_data_round_trip(toy, tmp_path):
    external = tmp_path / "ext" / "model.onnx"
    external.parent.mkdir()
    onnx.save(onnx.load(toy), str(external), save_as_external_data=True, location="model.onnx.data",
              size_threshold=0)
    out = tmp_path / "ext" / "model.hx.onnx"
    hyperonnx.convert(external, out, min_elements=1, runtime="portable")
    assert (tmp_path / "ext" / "model.hx.onnx.data").exists()  # input had external data: so does output
    feeds = _feeds()
    a = _run(out, feeds)[0]
    hyperonnx.decompress(out, tmp_path / "ext" / "plain.onnx", external_data=False)
    np.testing.assert_array_equal(a, _run(tmp_path / "ext" / "plain.onnx", feeds)[0])
    assert not [p for p in (tmp_path / "ext").iterdir() if p.name.startswith(".hyperonnx-")]  # no temp leftovers


def test_inspect_reports_every_compressed_tensor(toy, tmp_path):
    out = tmp_path / "toy.hx.onnx"
    hyperonnx.convert(toy, out, min_elements=1, codec_name="paper")
    data = hyperonnx.inspect(out)
    assert {t["name"] for t in data["tensors"]} == {"conv.weight", "fc1.weight", "fc2.weight"}
    fc1 = next(t for t in data["tensors"] if t["name"] == "fc1.weight")
    assert fc1["shape"] == [576, 65] and fc1["dtype"] == "float32" and fc1["codec"] == "paper"
    assert 6.4 < fc1["bits_per_weight"] < 7.0 and 25 < fc1["sqnr_db"] < 32
    assert fc1["bytes_before"] == 576 * 65 * 4
    totals = data["totals"]
    assert totals["ratio"] == pytest.approx(totals["bytes_before"] / totals["bytes_after"])
    assert totals["ratio"] > 4.5


def test_input_file_is_never_modified(toy, tmp_path):
    before = open(toy, "rb").read()
    hyperonnx.convert(toy, tmp_path / "a.onnx", min_elements=1)
    hyperonnx.convert(toy, tmp_path / "b.onnx", min_elements=1, runtime="portable")
    assert open(toy, "rb").read() == before


def test_external_data_is_chosen_automatically_past_the_protobuf_limit(toy, tmp_path, monkeypatch):
    from hyperonnx import model_io

    monkeypatch.setattr(model_io, "PROTOBUF_LIMIT", 10_000)  # stands in for 2 GiB: the toy model is ~28 KB
    out = tmp_path / "big.onnx"
    hyperonnx.convert(toy, out, min_elements=10**9)  # compress nothing: the output stays large
    assert (tmp_path / "big.onnx.data").exists()
    assert out.stat().st_size < 10_000
    feeds = _feeds()
    np.testing.assert_array_equal(_run(out, feeds)[0], _run(toy, feeds)[0])


@pytest.mark.parametrize("target", [3.0, 4.5, 6.0])
def test_target_bpw_allocates_bits_to_meet_the_budget(toy, tmp_path, target):
    result = hyperonnx.convert(toy, tmp_path / "b.onnx", codec_name="blockvq", min_elements=1, target_bpw=target)
    weights = sum(int(np.prod(t.shape)) for t in result.report.tensors)
    stored = sum(t.bytes_after for t in result.report.tensors)
    assert stored * 8 / weights <= target  # the budget holds, all stored bytes counted
    assert stored * 8 / weights > target - 1.5  # and is used: the next step up would not fit
    assert result.as_dict()["budget"]["chosen_bytes"] == stored


def test_a_target_bpw_out_of_reach_is_reported(toy, tmp_path):
    """Below the smallest setting of every tensor (here blockvq's 2 bits plus its block scales) the conversion
    still writes the smallest model, and says it missed the target instead of missing it silently."""
    result = hyperonnx.convert(toy, tmp_path / "b.onnx", codec_name="blockvq", min_elements=1, target_bpw=1.5)
    budget = result.report.budget
    assert budget["chosen_bytes"] > budget["limit_bytes"]
    assert "over --target-bpw 1.5" in result.as_dict()["warning"]
    roomy = hyperonnx.convert(toy, tmp_path / "r.onnx", codec_name="blockvq", min_elements=1, target_bpw=4.5)
    assert "warning" not in roomy.as_dict()


def test_budget_spends_more_bits_for_more_fidelity(toy, tmp_path):
    low = hyperonnx.convert(toy, tmp_path / "lo.onnx", codec_name="blockvq", min_elements=1, target_bpw=3)
    high = hyperonnx.convert(toy, tmp_path / "hi.onnx", codec_name="blockvq", min_elements=1, target_bpw=7)
    assert high.bytes_after > low.bytes_after
    for hi, lo in zip(high.report.tensors, low.report.tensors):
        assert hi.name == lo.name and hi.sqnr_db >= lo.sqnr_db
    assert sum(t.sqnr_db for t in high.report.tensors) > sum(t.sqnr_db for t in low.report.tensors) + 20


def test_max_size_fits_the_whole_file(toy, tmp_path):
    out = tmp_path / "m.onnx"
    for limit in (16_000, 20_000, 30_000):
        result = hyperonnx.convert(toy, out, codec_name="blockvq", min_elements=1, max_size=limit)
        assert 0.9 * limit < out.stat().st_size <= limit and "warning" not in result.as_dict()
    tight = hyperonnx.convert(toy, tmp_path / "t.onnx", codec_name="blockvq", min_elements=1, max_size=100)
    assert "over --max-size" in tight.as_dict()["warning"]


def test_a_budget_needs_a_codec_with_bits(toy, tmp_path):
    with pytest.raises(hyperonnx.HyperonnxError, match="bits option"):
        hyperonnx.convert(toy, tmp_path / "x.onnx", codec_name="paper", target_bpw=5)
    with pytest.raises(hyperonnx.HyperonnxError, match="not both"):
        hyperonnx.convert(toy, tmp_path / "x.onnx", codec_name="blockvq", target_bpw=5, max_size=10_000)


def test_strip_debug_info_drops_only_exporter_debug_data(tmp_path):
    model = conv_mlp()
    for node in model.graph.node:
        onnx.helper.set_metadata_props(node, {"pkg.torch.onnx.stack_trace": "File x.py, line 1"})
    src = _save(model, tmp_path / "debug.onnx")
    kept = onnx.load(str(hyperonnx.convert(src, tmp_path / "kept.onnx", min_elements=1).output))
    stripped = onnx.load(str(hyperonnx.convert(src, tmp_path / "s.onnx", min_elements=1,
                                               strip_debug_info=True).output))
    assert all(n.metadata_props for n in kept.graph.node if n.domain != "ai.hyperonnx")
    assert not any(n.metadata_props for n in stripped.graph.node)
    assert [n.op_type for n in stripped.graph.node] == [n.op_type for n in kept.graph.node]
    assert stripped.graph.initializer == kept.graph.initializer
    assert stripped.metadata_props == kept.metadata_props


def test_portable_form_needs_opset_11(tmp_path):
    model = conv_mlp()
    model.opset_import[0].version = 10
    src = _save(model, tmp_path / "old.onnx")
    with pytest.raises(hyperonnx.HyperonnxError, match="opset 11"):
        hyperonnx.convert(src, tmp_path / "p.onnx", runtime="portable", min_elements=1)
    hyperonnx.convert(src, tmp_path / "o.onnx", min_elements=1)  # the ort form has no such limit


@pytest.mark.slow  # every tensor encoded at every rung, twice
@pytest.mark.parametrize("budget_kind", ["target_bpw", "max_size"])
def test_budget_leftover_is_spent_between_ladder_rungs(tmp_path, monkeypatch, budget_kind):
    """ecsq's step is continuous: what the ladder's half-bit rungs leave of a budget goes to settings between a
    tensor's choice and its next rung, and the budget still holds."""
    from hyperonnx.passes import budget

    src = tmp_path / "m.onnx"
    onnx.save(conv_mlp(), src)
    rungs = hyperonnx.convert(src, tmp_path / "probe.onnx", codec_name="ecsq", target_bpw=4.6)
    size = (tmp_path / "probe.onnx").stat().st_size
    limit = {"target_bpw": {"target_bpw": 4.6}, "max_size": {"max_size": size + 500}}[budget_kind]

    def run(name: str):
        result = hyperonnx.convert(src, tmp_path / name, codec_name="ecsq", **limit)
        return result, (tmp_path / name).stat().st_size

    monkeypatch.setattr(budget, "CONTINUOUS_OPTIONS", {})
    plain, plain_size = run("plain.onnx")
    monkeypatch.undo()
    filled, filled_size = run("filled.onnx")
    assert filled.report.budget["chosen_bytes"] > plain.report.budget["chosen_bytes"]
    assert filled.report.budget["chosen_bytes"] <= filled.report.budget["limit_bytes"]
    if budget_kind == "max_size":
        assert filled_size <= limit["max_size"]
    else:
        weights = filled.report.budget["weights"]
        assert 8 * sum(t.bytes_after for t in filled.report.tensors) / weights <= 4.6
    assert rungs.report.budget["chosen_bytes"] <= filled.report.budget["limit_bytes"]


@pytest.mark.slow  # each budget conversion run twice
@pytest.mark.parametrize("codec_name,limit", [("blocktcq", {"target_bpw": 4.5}), ("tcq", {"max_size": 21_000}),
                                              ("ecsq", {"target_bpw": 6.0})])
def test_budget_without_held_encodings_writes_the_same_file(tmp_path, monkeypatch, codec_name, limit):
    """A size budget holds every rung's encoding only up to HELD_CANDIDATE_BYTES; past it, only sizes and noise are
    kept and the chosen rung is encoded again. Both ways write the same bytes, an exact grid weight included (its
    re-detection), and the re-encoding is checked, not trusted: a size that differs is an error."""
    from test_grid import gguf_like

    from hyperonnx.passes import budget, compress

    model = conv_mlp()
    model.graph.initializer.append(numpy_helper.from_array(gguf_like(96, 64), "grid_weight"))
    model.graph.node.append(onnx.helper.make_node("MatMul", ["grid_x", "grid_weight"], ["grid_y"]))
    model.graph.input.append(onnx.helper.make_tensor_value_info("grid_x", onnx.TensorProto.FLOAT, [1, 96]))
    model.graph.output.append(onnx.helper.make_tensor_value_info("grid_y", onnx.TensorProto.FLOAT, [1, 64]))
    src = tmp_path / "m.onnx"
    onnx.save(model, src)
    kwargs = dict(codec_name=codec_name, min_elements=1, jobs=2, **limit)
    held = hyperonnx.convert(src, tmp_path / "held.onnx", **kwargs)
    assert held.report.budget["chosen_bytes"] <= held.report.budget["limit_bytes"]
    monkeypatch.setattr(compress, "HELD_CANDIDATE_BYTES", 0)
    monkeypatch.setattr(compress, "HELD_EXACT_BYTES", 0)
    again = []
    real_encode_choice = compress._encode_choice
    monkeypatch.setattr(compress, "_encode_choice", lambda *a: again.append(a[2].options) or real_encode_choice(*a))
    redone = hyperonnx.convert(src, tmp_path / "redone.onnx", **kwargs)
    assert len(again) == len(redone.report.tensors)  # every chosen rung was encoded a second time
    assert (tmp_path / "redone.onnx").read_bytes() == (tmp_path / "held.onnx").read_bytes()
    if codec_name == "ecsq":  # at 6 bits a weight the exact grid (6.25) beats ecsq's rungs: detected again
        assert None in again and {t.codec for t in redone.report.tensors} >= {"grid"}

    weight = numpy_helper.to_array(model.graph.initializer[0])
    first = compress.encode_candidates(weight, codec_name, budget.ladder(codec_name, codec_name, {}, "a test"),
                                       "ort", hold=False)[0]
    assert first.payload is None
    wrong = dataclasses.replace(first, encoded_bytes=first.encoded_bytes + 1)
    with pytest.raises(RuntimeError, match="did not give the same encoding"):
        real_encode_choice(weight, codec_name, wrong)


@pytest.mark.slow  # two budget conversions with every rung encoded
def test_tcq_meets_a_budget_with_less_noise_than_ecsq(tmp_path):
    """The trellis codec through convert: ``--target-bpw`` holds, every weight is stored as tcq, each tensor's SQNR
    is ahead of ecsq's at the same budget, and the op library's outputs equal the decompressed model's exactly."""
    src = tmp_path / "m.onnx"
    onnx.save(conv_mlp(), src)
    reports = {}
    for family in ("ecsq", "tcq"):
        result = hyperonnx.convert(src, tmp_path / f"{family}.onnx", codec_name=family, target_bpw=4.5)
        assert {t.codec for t in result.report.tensors} == {family}
        weights = result.report.budget["weights"]
        assert 8 * sum(t.bytes_after for t in result.report.tensors) / weights <= 4.5
        reports[family] = {t.name: t.sqnr_db for t in result.report.tensors}
    assert all(reports["tcq"][name] > reports["ecsq"][name] + 0.5 for name in reports["tcq"])
    hyperonnx.decompress(tmp_path / "tcq.onnx", tmp_path / "plain.onnx")
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 8, 8, 8)).astype(np.float32)}
    ours = hyperonnx.session(tmp_path / "tcq.onnx").run(None, feeds)[0]
    plain = ort.InferenceSession(tmp_path / "plain.onnx", providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    assert ours.tobytes() == plain.tobytes()
