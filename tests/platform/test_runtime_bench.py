"""benchmarks/runtime.py as a user runs it on their own pair of models (--model/--converted/--inputs --json), on a
toy model: every configuration that applies gets one JSON line with positive, finite ratios. No figure is judged
here (timings belong to the benchmark's own runs)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from toymodels import conv_mlp

import hyperonnx

ROOT = Path(__file__).resolve().parents[2]
# benchmarks/ is not a package and its module names (runtime, codec, tune) are too generic for sys.path.
_spec = importlib.util.spec_from_file_location("runtime_bench", ROOT / "benchmarks" / "runtime.py")
runtime_bench = sys.modules["runtime_bench"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(runtime_bench)

KEYS = ("config", "latency_x", "rss_after_load_x", "rss_peak_x", "create_x")


@pytest.fixture(scope="module")
def toy_pair(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("runtime-bench")
    paths = {"model": tmp / "toy.onnx", "converted": tmp / "toy.hx.onnx", "portable": tmp / "toy.portable.onnx",
             "inputs": tmp / "x.npz"}
    onnx.save(conv_mlp(), str(paths["model"]))
    hyperonnx.convert(paths["model"], paths["converted"], min_elements=1000)
    hyperonnx.convert(paths["model"], paths["portable"], min_elements=1000, runtime="portable")
    np.savez(paths["inputs"], x=np.random.default_rng(0).standard_normal((2, 8, 8, 8)).astype(np.float32))
    return paths


def run_bench(*args: str) -> list[dict]:
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "runtime.py"), "--quick", "--json", *args],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def check_ratios(line: dict, keys=KEYS[1:]) -> None:
    assert set(KEYS) <= set(line), line
    for key in keys:
        assert isinstance(line[key], float) and math.isfinite(line[key]) and line[key] > 0, (key, line)


def test_json_lines_for_a_given_pair(toy_pair):
    lines = run_bench("--cpp-sample", "none", *(f"--{k}={v}" for k, v in toy_pair.items()))
    assert [line["config"] for line in lines] == ["original", "portable", "ort-load", "ort-call", "python-fast"]
    for line in lines:
        check_ratios(line)
        assert line["model"] == "toy" and line["baseline"] == "original" and line["runs"] == 5
    assert all(lines[0][key] == 1.0 for key in KEYS[1:])
    assert "register_custom_ops_library" in lines[2]["via"] and "hyperonnx" in lines[4]["via"]


@pytest.mark.skipif(not runtime_bench.DEFAULT_SAMPLE.is_file(), reason="C++ sample not built (tests/platform/test_samples.py)")
def test_cpp_rows_from_the_sample(toy_pair):
    lines = run_bench("--configs", "original,cpp-original,cpp-fast",
                      *(f"--{k}={v}" for k, v in toy_pair.items() if k != "portable"))
    assert [line["config"] for line in lines] == ["original", "cpp-original", "cpp-fast"]
    for line in lines[1:]:
        check_ratios(line, ("latency_x", "rss_peak_x", "create_x"))  # RSS after load: where the sample prints it
        assert line["via"].startswith("onnxruntime ")
    assert lines[2]["baseline"] == "cpp-original"


def test_sample_output_parsing():
    """The C++ rows come from the sample's printed timing line; RSS from the line where it has it, else the
    process's peak (and RSS after load unknown)."""
    out = ("onnxruntime 1.21.0\nregistration: dynamic /x/libhyperonnx_ops.so\ninput 0 x float32 [1,3]\n"
           "timing: register_ms 0.5 session_create_ms 10.5 first_run_ms 2.0 median_run_ms 1.25 min_run_ms 1.0 "
           "runs 5\n")
    row = runtime_bench.parse_sample_output(out, maxrss_kib=2048)
    assert (row["create_ms"], row["first_run_ms"], row["latency_ms"]) == (11.0, 2.0, 1.25)
    assert row["rss_peak_mib"] == 2.0 and row["rss_after_load_mib"] is None
    assert row["via"] == "onnxruntime 1.21.0; registration: dynamic /x/libhyperonnx_ops.so"
    row = runtime_bench.parse_sample_output(out.replace("runs 5", "runs 5 rss_after_load_kib 3072 rss_peak_kib 4096"),
                                            maxrss_kib=2048)
    assert row["rss_after_load_mib"] == 3.0 and row["rss_peak_mib"] == 4.0
