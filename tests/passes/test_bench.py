"""``hyperonnx bench`` driven the way a user runs it, on the toy Conv→MatMul→Gemm model.

Through ``python -m hyperonnx bench`` once hyperonnx/cli.py registers the command; until then through the command
object itself with click's CliRunner (same options, same output).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import toymodels
from click.testing import CliRunner

from hyperonnx import bench as bench_module
from hyperonnx import cli
from hyperonnx.cli_bench import bench_command
from hyperonnx.errors import HyperonnxError

ROOT = Path(__file__).resolve().parents[2]
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
IMPOSSIBLE = "ort-nbits:bits=3"  # MatMulNBitsQuantizer supports 2, 4 and 8 bits only


def run_bench(*args: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``hyperonnx bench ARGS``."""
    if "bench" in cli.cli.commands:
        proc = subprocess.run([sys.executable, "-m", "hyperonnx", "bench", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=600)
        return proc.returncode, proc.stdout, proc.stderr
    result = CliRunner().invoke(bench_command, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "toy.onnx"
    onnx.save(toymodels.conv_mlp(), str(path))
    return path


@pytest.fixture(scope="module")
def quick_run(toy: Path) -> tuple[int, str, str, Path]:
    out = toy.parent / "out"
    code, stdout, stderr = run_bench(str(toy), "--out", str(out), "--quick", "--codecs", f"quick,{IMPOSSIBLE}")
    return code, stdout, stderr, out


def test_quick_run_writes_table_json_and_plot(quick_run) -> None:
    code, stdout, stderr, out = quick_run
    assert code == 0, stderr
    assert (out / "bench.md").read_text() in stdout  # the printed table is the file's table
    assert "| variant |" in stdout
    data = json.loads((out / "bench.json").read_text())
    assert data["float_weights"] == sum(v.size for v in (np.empty((16, 8, 3, 3)), np.empty(16), np.empty((576, 65)),
                                                          np.empty((10, 65)), np.empty(10), np.empty(65)))
    if HAVE_MATPLOTLIB:
        assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert not (out / "bench.png").exists()
        assert "matplotlib is not installed" in stderr


def test_every_variant_has_sizes_and_fidelity(quick_run) -> None:
    _, _, _, out = quick_run
    rows = json.loads((out / "bench.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["fp32", *bench_module.QUICK, IMPOSSIBLE]
    fp32 = rows[0]
    assert fp32["cosine_min"] == 1.0 and fp32["top1_agreement"] == 1.0
    for row in rows[1:-1]:
        assert "error" not in row, row
        assert row["bytes"] > 0 and row["bits_per_weight"] == pytest.approx(8 * row["bytes"] / 39333)
        assert 0.99 < row["cosine_min"] <= 1.0 + 1e-9
        assert row["top1_agreement"] is not None  # the toy's [N, 10] output is classifier-shaped
        assert row["latency_s"] > 0 and row["load_s"] > 0
    for row in rows:
        if row["kind"] == "hyperonnx":
            assert row["bytes"] < fp32["bytes"]
            assert row["tensors"] >= 1


def test_impossible_baseline_is_an_error_row(quick_run) -> None:
    _, stdout, _, out = quick_run
    row = json.loads((out / "bench.json").read_text())["rows"][-1]
    assert row["variant"] == IMPOSSIBLE and row["kind"] == "ort"
    assert "bits=3" in row["error"] and "bytes" not in row
    assert f"| {IMPOSSIBLE} |" in stdout and "error:" in stdout


def test_codec_that_compresses_nothing_is_an_error_row(tmp_path: Path) -> None:
    # every weight under --min-elements: convert() keeps everything raw, which is a failure, not a perfect codec
    small = tmp_path / "small.onnx"
    weight = onnx.numpy_helper.from_array(np.eye(8, dtype=np.float32), "w")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 8])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 8])], [weight])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), small)
    result = bench_module.bench(small, codecs=["blockvq"], repeats=1, min_seconds=0)
    assert "compressed no tensor (no eligible weights)" in result["rows"][1]["error"]
    assert result["files"] == {}  # no out_dir: nothing written
    # a value the codec refuses (it used to reject it tensor by tensor, giving such a row) fails before any work
    with pytest.raises(HyperonnxError, match="bits must be in 1..8, got 9"):
        bench_module.bench(small, codecs=["blockvq:bits=9"])


def test_given_inputs_and_batch_one_latency(toy: Path, tmp_path: Path) -> None:
    npz = tmp_path / "x.npz"
    np.savez(npz, x=np.random.default_rng(1).standard_normal((6, 8, 8, 8)).astype(np.float32))
    result = bench_module.bench(toy, inputs=npz, codecs=["blockvq:bits=5"], repeats=1, min_seconds=0)
    assert result["input_shapes"] == {"x": [6, 8, 8, 8]}
    assert result["settings"]["latency_feeds"] == "batch 1"
    assert result["rows"][1]["top1_agreement"] is not None


def test_bad_variant_and_inputs_fail_before_work(toy: Path, tmp_path: Path) -> None:
    with pytest.raises(HyperonnxError, match="unknown variant"):
        bench_module.bench(toy, codecs=["gzip"])
    with pytest.raises(HyperonnxError, match="unknown option"):
        bench_module.bench(toy, codecs=["ort-nbits:blok=32"])
    npz = tmp_path / "wrong.npz"
    np.savez(npz, y=np.zeros((1, 8, 8, 8), np.float32))
    with pytest.raises(HyperonnxError, match="do not match"):
        bench_module.bench(toy, inputs=npz, codecs=["blockvq"])


def test_variant_groups_expand_once() -> None:
    specs = [v.spec for v in bench_module.parse_variants(["hyperonnx,blocktcq:bits=3", "ort"])]
    assert specs == [*bench_module.HYPERONNX_DEFAULT, *bench_module.ORT_DEFAULT]
    assert bench_module.parse_variant("paper-cnn:n=100").options == {"n": "100"}


def test_generated_inputs_skip_nan_and_given_nan_or_empty_inputs_fail(tmp_path: Path) -> None:
    """Fidelity needs finite fp32 outputs: generated inputs on which the model is NaN (a negative noise level)
    are replaced by the next seed's, and given inputs with NaN or no sample at all fail in one line (they gave a
    table of NaN cosines, or RuntimeWarnings, before)."""
    from test_tune import _noise_level_model

    src = _noise_level_model(tmp_path, flipped=True)  # NaN on generated seed 0
    result = bench_module.bench(src, codecs=["blocktcq"], repeats=1, min_seconds=0)
    seed = int(result["inputs"].rsplit("seed ", 1)[1].rstrip(")"))
    assert seed > 0 and np.isfinite(result["rows"][1]["cosine_min"])
    with pytest.raises(HyperonnxError, match="not finite on any of"):
        bench_module.bench(_noise_level_model(tmp_path, log_x=True), codecs=["blocktcq"])
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    np.savez(tmp_path / "nan.npz", x=x, sigma=np.full((4, 1), 1.0, np.float32))  # sqrt(-1) in this model
    with pytest.raises(HyperonnxError, match="not finite"):
        bench_module.bench(src, inputs=tmp_path / "nan.npz", codecs=["blocktcq"])
    np.savez(tmp_path / "empty.npz", x=x[:0], sigma=np.ones((0, 1), np.float32))
    with pytest.raises(HyperonnxError, match="empty"):
        bench_module.bench(src, inputs=tmp_path / "empty.npz", codecs=["blocktcq"])
