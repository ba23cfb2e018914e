"""The default policy (passes/policy.py): `hyperonnx convert model.onnx`, no flags and no data.

Fast checks on toy models here; the real-model acceptance (task metrics at the default) is in
tests/test_models_convert.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import hyperonnx
from hyperonnx import api
from hyperonnx.passes import compress, policy
from hyperonnx.passes.select import Selection, choose, find_sites

try:
    from . import toymodels
except ImportError:
    import toymodels


def _cnn(rng: np.random.Generator) -> onnx.ModelProto:
    """A stem conv, a depthwise conv, a large pointwise conv and a small head, in that graph order."""
    weights = {
        "stem": rng.standard_normal((32, 3, 3, 3)) * 0.2,  # 864: below the policy's 1024, kept raw
        "stem2": rng.standard_normal((2048, 32, 1, 1)) * 0.2,  # the first compressed tensor: protected
        "dw": rng.standard_normal((2048, 1, 3, 3)) * 0.2,  # depthwise: protected
        "pw": rng.standard_normal((64, 2048, 1, 1)) * 0.05,  # 131072 weights: the floor
        "head": rng.standard_normal((1000, 64)) * 0.05,  # the last layer, small: protected
    }
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    inits.append(numpy_helper.from_array(np.array([-1, 64], np.int64), "shape"))
    nodes = [
        helper.make_node("Conv", ["x", "stem"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["a", "stem2"], ["b"]),
        helper.make_node("Conv", ["b", "dw"], ["c"], group=2048, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c", "pw"], ["d"]),
        helper.make_node("GlobalAveragePool", ["d"], ["e"]),
        helper.make_node("Reshape", ["e", "shape"], ["f"]),
        helper.make_node("Gemm", ["f", "head"], ["y"], transB=1),
    ]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT,
                                                                            ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 1000])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    path = tmp_path_factory.mktemp("default") / "cnn.onnx"
    onnx.save(_cnn(np.random.default_rng(0)), path)
    return path


def test_targets_say_why(cnn):
    model = onnx.load(str(cnn))
    chosen, _ = choose(find_sites(model), Selection(policy.MIN_ELEMENTS))
    plan = {site.name: t for site, t in zip(chosen, policy.targets(model, chosen))}
    assert set(plan) == {"stem2", "dw", "pw", "head"}
    assert plan["stem2"].reason == "protected: first layer" and plan["stem2"].sqnr_db == policy.PROTECT_DB
    assert plan["dw"].reason == "protected: depthwise" and plan["dw"].sqnr_db == policy.PROTECT_DB
    assert plan["head"].reason == "protected: last layer" and plan["head"].sqnr_db == policy.PROTECT_DB
    assert plan["pw"].reason == "floor" and plan["pw"].sqnr_db == policy.FLOOR_DB
    assert all(policy.FLOOR_DB <= t.sqnr_db <= policy.CEILING_DB for t in plan.values())


def test_matmul_weights_and_lookup_tables_get_their_own_targets():
    """A MatMul's weight is held above the floor and a table read only by Gather below it; a table that a MatMul
    also reads (tied embeddings) is no lookup table. The tables are too large to be protected as the first layer."""
    rng = np.random.default_rng(2)
    init = [onnx.numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
            for name, shape in [("table", (1000, 384)), ("tied", (1000, 384)), ("w", (384, 384)), ("w2", (384, 1000))]]
    nodes = [onnx.helper.make_node("Gather", ["table", "ids"], ["e"]),
             onnx.helper.make_node("Gather", ["tied", "ids"], ["t"]),
             onnx.helper.make_node("Add", ["e", "t"], ["s"]),
             onnx.helper.make_node("MatMul", ["s", "w"], ["h"]),
             onnx.helper.make_node("MatMul", ["h", "w2"], ["y"]),
             onnx.helper.make_node("Transpose", ["tied"], ["tied_t"]),
             onnx.helper.make_node("MatMul", ["h", "tied_t"], ["z"])]
    graph = onnx.helper.make_graph(
        nodes, "g", [onnx.helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, [1, 8])],
        [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in ("y", "z")], init)
    model = onnx.helper.make_model(graph)
    chosen, _ = choose(find_sites(model), Selection(policy.MIN_ELEMENTS))
    plan = {site.name: t for site, t in zip(chosen, policy.targets(model, chosen))}
    assert (plan["table"].reason, plan["table"].sqnr_db) == ("lookup table", policy.LOOKUP_DB)
    assert (plan["w"].reason, plan["w"].sqnr_db) == ("matmul", policy.MATMUL_DB)
    assert plan["tied"].reason != "lookup table" and plan["tied"].sqnr_db >= policy.FLOOR_DB
    assert policy.LOOKUP_DB < policy.FLOOR_DB < policy.MATMUL_DB


@pytest.mark.parametrize("target, tail, encodings", [(32.0, None, 2), (44.0, None, 2), (38.0, 5, 2), (44.0, 5, 3)])
def test_encode_meets_the_target_with_few_encodings(target, tail, encodings, monkeypatch):
    """Predicted from the step, corrected at most once; heavy tails at a high target (outliers past the ±127
    levels of a 64-weight block) take blocks of 16 once more."""
    calls = []
    real = compress.encode_tensor
    monkeypatch.setattr(compress, "encode_tensor", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    rng = np.random.default_rng(1)
    x = ((rng.standard_t(tail, size=(256, 384)) if tail else rng.standard_normal((256, 384))) * 0.02).astype(np.float32)
    enc, sqnr = policy.encode_to_target(x, target)
    assert enc.codec == "tcq" and sqnr >= target - policy.TOLERANCE_DB
    assert sqnr < target + 1.5  # no bytes wasted far above it
    assert len(calls) <= encodings


def test_encode_to_target_block_size(monkeypatch):
    """The default codes blocks of policy.BLOCK weights; ``block`` (benchmarks/tcq_blocks.py) picks another and
    meets the same target, and a saturated tensor still falls back to blocks of 16, never up from a smaller one."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((128, 256)) * 0.02).astype(np.float32)
    enc, _ = policy.encode_to_target(x, 33.0)
    assert enc.ints["block"] == (policy.BLOCK,) == (64,)
    enc, sqnr = policy.encode_to_target(x, 33.0, block=512)
    assert enc.ints["block"] == (512,) and sqnr >= 33.0 - policy.TOLERANCE_DB
    heavy = (rng.standard_t(5, size=(256, 384)) * 0.02).astype(np.float32)
    assert policy.encode_to_target(heavy, 44.0, block=256)[0].ints["block"] == (policy.SMALL_BLOCK,)
    blocks = []
    real = compress.encode_tensor
    monkeypatch.setattr(compress, "encode_tensor", lambda *a, **k: blocks.append(a[2]["block"]) or real(*a, **k))
    policy.encode_to_target(heavy, 44.0, block=8)
    assert set(blocks) == {8}


def test_default_convert_reports_reasons_and_decodes_exactly(cnn, tmp_path):
    out = tmp_path / "cnn.hx.onnx"
    result = hyperonnx.convert(cnn, out)
    data = result.as_dict()
    assert data["policy"]["floor_db"] == policy.FLOOR_DB
    tensors = {t["name"]: t for t in data["tensors"]}
    assert set(tensors) == {"stem2", "dw", "pw", "head"}
    for t in tensors.values():
        assert t["reason"] and t["sqnr_db"] >= min(t["target_db"], 40.0) - policy.TOLERANCE_DB
    assert tensors["pw"]["codec"] == "tcq"
    inspected = {t["name"]: t for t in api.inspect(out)["tensors"]}
    assert {n: (t["reason"], t["target_db"]) for n, t in inspected.items()} == \
        {n: (t["reason"], t["target_db"]) for n, t in tensors.items()}
    plain = tmp_path / "plain.onnx"
    hyperonnx.decompress(out, plain)
    import onnxruntime as ort

    x = {"x": np.random.default_rng(2).standard_normal((2, 3, 8, 8)).astype(np.float32)}
    want = ort.InferenceSession(str(plain), providers=["CPUExecutionProvider"]).run(None, x)[0]
    np.testing.assert_array_equal(hyperonnx.session(out).run(None, x)[0], want)


def test_portable_default_uses_blocktcq_bits(cnn, tmp_path):
    result = hyperonnx.convert(cnn, tmp_path / "cnn.portable.onnx", runtime="portable")
    assert {t.codec for t in result.report.tensors} == {"blocktcq"}
    assert all(t.reason for t in result.report.tensors)
    for t in result.report.tensors:
        assert t.sqnr_db >= t.target_db - policy.TOLERANCE_DB or t.bits_per_weight > 8


def test_an_explicit_codec_keeps_the_old_behaviour(tmp_path):
    src = tmp_path / "toy.onnx"
    onnx.save(toymodels.conv_mlp(), src)
    result = hyperonnx.convert(src, tmp_path / "toy.hx.onnx", codec_name="blocktcq")
    assert "policy" not in result.as_dict() and all(t.reason is None for t in result.report.tensors)
    assert [t.name for t in result.report.tensors] == ["fc1.weight"]  # min elements 4096 as before


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "hyperonnx", *map(str, args)], capture_output=True, text=True)


def test_generated_inputs_warn_and_keep_the_floor(cnn, tmp_path):
    report = tmp_path / "r.json"
    run = _cli("convert", cnn, "-o", tmp_path / "t.onnx", "--target-cosine", "0.9", "--codec", "tcq",
               "--report", report)
    assert run.returncode == 0, run.stderr
    warnings = [line for line in run.stderr.splitlines() if "generated inputs" in line]
    assert len(warnings) == 1 and "may not represent real data" in warnings[0] and "33 dB floor" in warnings[0]
    data = json.loads(report.read_text())
    assert data["floor_db"] == policy.FLOOR_DB
    # cosine 0.9 on generated inputs alone would pick far coarser steps; the floor (to within half a ladder rung)
    # holds every tensor
    assert all(t["sqnr_db"] >= policy.FLOOR_DB - compress.FLOOR_SLACK_DB for t in data["tensors"])
    assert min(t["sqnr_db"] for t in data["tensors"]) < policy.FLOOR_DB + 3  # and the search still went down to it
    plain = _cli("convert", cnn, "-o", tmp_path / "d.onnx")
    assert plain.returncode == 0 and "generated inputs" not in plain.stderr
    assert "protected: depthwise (42.0 dB)" in plain.stdout
