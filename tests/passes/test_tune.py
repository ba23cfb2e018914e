"""convert --target-cosine: the smallest model that meets an output-cosine target, searched and validated."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from toymodels import constants_and_subgraphs, conv_mlp

import hyperonnx
from hyperonnx import codec, runtime
from hyperonnx.errors import HyperonnxError
from hyperonnx.passes import budget, compress

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def hx(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("HYPERONNX_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "hyperonnx", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


def one_line_error(result, *needles):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def toy(tmp_path):
    path = tmp_path / "toy.onnx"
    onnx.save(conv_mlp(), str(path))
    return path


@pytest.fixture
def inputs(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, x=np.random.default_rng(7).standard_normal((24, 8, 8, 8)).astype(np.float32))
    return path


def measured_cosine(original, converted, feeds) -> float:
    """The metric, computed independently: per-sample cosine of the output, averaged over the samples."""
    a = ort.InferenceSession(str(original), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    b = ort.InferenceSession(str(converted), runtime.session_options(),
                             providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).mean())


def test_the_target_is_met_and_reported(toy, inputs, tmp_path):
    out = tmp_path / "out.onnx"
    result = hyperonnx.convert(toy, out, min_elements=1000, target_cosine=0.995, inputs=str(inputs))
    tuned = result.as_dict()["tune"]
    feeds = dict(np.load(inputs))
    achieved = measured_cosine(toy, out, feeds)
    assert achieved >= 0.995
    assert tuned["cosine"] == pytest.approx(achieved, abs=1e-6)
    assert tuned["samples"] == 24 and tuned["target_cosine"] == 0.995
    assert 1 <= len(tuned["evaluations"]) <= 15
    assert result.bytes_after == out.stat().st_size


def test_a_looser_target_gives_a_smaller_file(toy, inputs, tmp_path):
    loose = hyperonnx.convert(toy, tmp_path / "loose.onnx", min_elements=1000, target_cosine=0.98,
                              inputs=str(inputs))
    tight = hyperonnx.convert(toy, tmp_path / "tight.onnx", min_elements=1000, target_cosine=0.9995,
                              inputs=str(inputs))
    assert loose.bytes_after < tight.bytes_after
    feeds = dict(np.load(inputs))
    assert measured_cosine(toy, tmp_path / "loose.onnx", feeds) >= 0.98
    assert measured_cosine(toy, tmp_path / "tight.onnx", feeds) >= 0.9995


def test_weights_in_constants_and_subgraphs_with_generated_inputs(tmp_path):
    src, out = tmp_path / "sub.onnx", tmp_path / "out.onnx"
    onnx.save(constants_and_subgraphs(), str(src))
    result = hyperonnx.convert(src, out, min_elements=1, target_cosine=0.99)
    tuned = result.as_dict()["tune"]
    assert len(result.report.tensors) == 3 and tuned["cosine"] >= 0.99
    assert "generated" in tuned["inputs"]
    rng = np.random.default_rng(3)
    for flag in (True, False):
        feeds = {"x": rng.standard_normal((4, 64)).astype(np.float32), "flag": np.array(flag)}
        assert measured_cosine(src, out, feeds) > 0.98


@pytest.mark.slow  # a fidelity search through the command
def test_cli_reports_the_achieved_cosine(toy, inputs, tmp_path):
    out = tmp_path / "out.onnx"
    result = hx("convert", toy, "-o", out, "--min-elements", "1000", "--target-cosine", "0.99", "--inputs", inputs)
    assert result.returncode == 0, result.stderr
    assert "fidelity: cosine" in result.stdout and ">= target 0.99" in result.stdout
    data = json.loads(hx("convert", toy, "-o", out, "--min-elements", "1000", "--target-cosine", "0.99",
                         "--json").stdout)
    assert data["tune"]["cosine"] >= 0.99 and data["tune"]["metric"].startswith("min over float outputs")


@pytest.mark.slow  # a fidelity search through the command
def test_an_unreachable_target_fails_with_one_line_and_no_file(toy, tmp_path):
    out = tmp_path / "out.onnx"
    one_line_error(hx("convert", toy, "-o", out, "--min-elements", "1000", "--target-cosine", "1.0"),
                   "out of reach")
    assert not out.exists()


def test_a_codec_with_one_setting_cannot_reach_a_tight_target(toy, tmp_path, monkeypatch):
    monkeypatch.setitem(budget.BUDGET_OPTIONS, codec.DEFAULT_CODEC, [{"bits": 2}])
    out = tmp_path / "out.onnx"
    with pytest.raises(HyperonnxError, match="out of reach"):
        hyperonnx.convert(toy, out, min_elements=1000, target_cosine=0.999)
    assert not out.exists()
    hyperonnx.convert(toy, out, min_elements=1000, target_cosine=0.5)  # the one setting is enough for this
    assert out.exists()


@pytest.mark.slow  # a command run per bad combination
def test_bad_inputs_and_option_combinations(toy, tmp_path):
    out = tmp_path / "out.onnx"
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, image=np.zeros((2, 8, 8, 8), np.float32))
    one_line_error(hx("convert", toy, "-o", out, "--target-cosine", "0.99", "--inputs", wrong),
                   "['image']", "['x']")
    one_line_error(hx("convert", toy, "-o", out, "--target-cosine", "0.99", "--target-bpw", "4"),
                   "--target-cosine", "not both")
    one_line_error(hx("convert", toy, "-o", out, "--target-cosine", "1.5"), "--target-cosine")
    one_line_error(hx("convert", toy, "-o", out, "--inputs", wrong), "--inputs")
    one_line_error(hx("convert", toy, "-o", out, "--target-cosine", "0.99", "--inputs", tmp_path / "no.npz"),
                   "no.npz")
    assert not out.exists()


def test_allocate_spends_bytes_where_the_weight_says():
    def ladder():
        return [budget.Candidate(100, 0.1, None), budget.Candidate(200, 0.01, None)]

    assert budget.allocate([ladder(), ladder()], 300, [1.0, 5.0]) == [0, 1]
    assert budget.allocate([ladder(), ladder()], 300, [5.0, 1.0]) == [1, 0]
    with pytest.raises(ValueError):
        budget.allocate([ladder()], 300, [1.0, 2.0])


# ---- size budgets spent by measured sensitivity (--target-bpw/--max-size with --sensitivity or --inputs) ----

def _two_branches(tmp_path):
    """out = x·A + 0.001·(x·B): the same kind of weights, but B barely reaches the output."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    a, b = (numpy_helper.from_array(rng.standard_normal((64, 64)).astype(np.float32), n) for n in ("A", "B"))
    small = numpy_helper.from_array(np.array(1e-3, np.float32), "small")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "A"], ["ya"]), helper.make_node("MatMul", ["x", "B"], ["yb"]),
         helper.make_node("Mul", ["yb", "small"], ["yb_small"]), helper.make_node("Add", ["ya", "yb_small"], ["y"])],
        "two_branches", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 64])], [a, b, small])
    path = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _bpw(result) -> dict[str, float]:
    return {t.name: t.bits_per_weight for t in result.report.tensors}


def test_a_size_budget_goes_where_the_outputs_feel_it(tmp_path):
    src = _two_branches(tmp_path)
    # 6.5 bits: room above the default policy's floor, which generated inputs cannot take B below
    plain = hyperonnx.convert(src, tmp_path / "plain.onnx", codec_name="ecsq", target_bpw=6.5)
    weighted = hyperonnx.convert(src, tmp_path / "weighted.onnx", codec_name="ecsq", target_bpw=6.5,
                                 sensitivity=True)
    assert abs(_bpw(plain)["A"] - _bpw(plain)["B"]) < 0.75  # alike without measurements
    assert _bpw(weighted)["A"] > _bpw(weighted)["B"] + 0.5  # B is 1000x quieter at the output: A gets the bits
    floor = weighted.extra["floor_db"] - compress.FLOOR_SLACK_DB
    assert all(t.sqnr_db >= floor for t in weighted.report.tensors)
    for result in (plain, weighted):
        assert result.report.budget["chosen_bytes"] <= result.report.budget["limit_bytes"]
    assert weighted.extra["sensitivity"]["inputs"] == "8 generated inputs"
    feeds = {"x": np.random.default_rng(9).standard_normal((32, 64)).astype(np.float32)}
    assert measured_cosine(src, tmp_path / "weighted.onnx", feeds) > measured_cosine(src, tmp_path / "plain.onnx",
                                                                                      feeds)


@pytest.mark.slow  # sensitivity runs the model per tensor
def test_budget_with_inputs_from_the_command_line(tmp_path):
    src = _two_branches(tmp_path)
    data = tmp_path / "x.npz"
    np.savez(data, x=np.random.default_rng(5).standard_normal((16, 64)).astype(np.float32))
    out = tmp_path / "out.onnx"
    result = hx("convert", src, "-o", out, "--codec", "ecsq", "--target-bpw", "4.5", "--inputs", data, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["sensitivity"]["inputs"] == str(data) and report["sensitivity"]["samples"] == 16
    bits = {t["name"]: t["bits_per_weight"] for t in report["tensors"]}
    assert bits["A"] > bits["B"] + 2
    one_line_error(hx("convert", src, "-o", tmp_path / "x.onnx", "--sensitivity"), "--sensitivity")
    assert not (tmp_path / "x.onnx").exists()


def test_generated_indices_stay_inside_the_tables_they_index(tmp_path):
    """Generated token ids index the embedding tables (a 2-row token-type table gets 0/1), masks are ones."""
    from onnx import TensorProto, helper, numpy_helper

    from hyperonnx import evaluate

    tables = [numpy_helper.from_array(np.ones((n, 4), np.float32), f"t{n}") for n in (2, 500)]
    graph = helper.make_graph(
        [helper.make_node("Cast", ["types"], ["types64"], to=TensorProto.INT64),
         helper.make_node("Gather", ["t2", "types64"], ["a"]), helper.make_node("Gather", ["t500", "ids"], ["b"]),
         helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
         helper.make_node("Add", ["a", "b"], ["ab"]), helper.make_node("Unsqueeze", ["m", "axes"], ["m3"]),
         helper.make_node("Mul", ["ab", "m3"], ["y"])],
        "lookup", [helper.make_tensor_value_info(n, TensorProto.INT32 if n == "types" else TensorProto.INT64,
                                                 ["b", "s"]) for n in ("ids", "types", "attention_mask")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [*tables, numpy_helper.from_array(np.array([2], np.int64), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = evaluate.generated_inputs(session, 0, model)
    assert set(np.unique(feeds["types"])) <= {0, 1} and 100 <= feeds["ids"].max() < 500
    assert (feeds["attention_mask"] == 1).all()
    session.run(None, feeds)  # and the model runs on them


def _noise_level_model(tmp_path, log_x: bool = False, flipped: bool = False):
    """y = sqrt(sigma) · (x @ W): a negative generated noise level gives NaN outputs, as a diffusion UNet's does.
    ``log_x``: x @ W reads log(x) instead, NaN on every generated input (some x is negative in each).
    ``flipped``: sqrt(−sigma), NaN on the generated inputs where the other is finite (seed 0 among them)."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(3).standard_normal((64, 96)).astype(np.float32)
    first = [helper.make_node("Log", ["x"], ["xin"])] if log_x else [helper.make_node("Identity", ["x"], ["xin"])]
    level = [helper.make_node("Neg", ["sigma"], ["level"])] if flipped else [
        helper.make_node("Identity", ["sigma"], ["level"])]
    graph = helper.make_graph(
        [*first, *level, helper.make_node("MatMul", ["xin", "W"], ["h"]), helper.make_node("Sqrt", ["level"], ["s"]),
         helper.make_node("Mul", ["h", "s"], ["y"])],
        "noise_level", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64]),
                        helper.make_tensor_value_info("sigma", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 96])], [numpy_helper.from_array(w, "W")])
    path = tmp_path / ("always_nan.onnx" if log_x else "flipped.onnx" if flipped else "noise_level.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.slow  # fidelity searches on two models
def test_generated_inputs_on_which_the_model_gives_nan_are_skipped(tmp_path):
    """Data-free --target-cosine on a model whose outputs are NaN for part of the generated inputs (negative noise
    levels): those samples measure nothing and are replaced by others, so the target is met instead of being
    'out of reach' at cosine ≈ 0.5; a model that is NaN on every generated input is one clear line."""
    from hyperonnx import evaluate

    src = _noise_level_model(tmp_path)
    session = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    samples = evaluate.load_samples(session, None, onnx.load(str(src)))
    assert samples.count == evaluate.GENERATED_SAMPLES
    assert all((feeds["sigma"] >= 0).all() for feeds, _ in samples.groups)
    out = tmp_path / "out.onnx"
    result = hyperonnx.convert(src, out, codec_name="tcq", target_cosine=0.999, min_elements=1)
    tuned = result.as_dict()["tune"]
    assert tuned["cosine"] >= 0.999 and tuned["samples"] == evaluate.GENERATED_SAMPLES
    feeds = {"x": np.random.default_rng(1).standard_normal((16, 64)).astype(np.float32),
             "sigma": np.full((16, 1), 0.5, np.float32)}
    assert measured_cosine(src, out, feeds) >= 0.998

    bad = _noise_level_model(tmp_path, log_x=True)
    result = hx("convert", bad, "-o", tmp_path / "bad.out.onnx", "--target-cosine", "0.99", "--min-elements", "1")
    one_line_error(result, "not finite on any of", "--inputs")
