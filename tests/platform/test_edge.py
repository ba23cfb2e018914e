"""aarch64: cross-compile the op library, its decode tests and the C++ samples with Debian 12's
g++-aarch64-linux-gnu (cmake/aarch64-linux-gnu.cmake), run the decode and fused-kernel tests (blocktcq's NEON
kernel among them) and both samples under qemu-aarch64-static against Debian 13's arm64 libonnxruntime 1.21, and
compare with Python's x86_64 output. Everything comes from tools/edge/fetch.sh (Debian packages unpacked into
.cache/edge, nothing installed); tools/edge/run_aarch64.sh is the same flow as a script. Measured: ~45 s first
fetch (all sysroots), ~70 s cross build on 2 cores, ~4 min of C++ tests (fused_random 2.5 min of it) and ~5 s per
sample run under qemu.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from test_samples import (  # noqa: E402
    EDGE,
    EDGE_TOOLS,
    check_against_python,
    cmake_build,
    external_data_copy,
    fetch,
    have_debian_tools,
    run_sample,
)

BUILD = EDGE / "build-aarch64"
pytestmark = [pytest.mark.skipif(not have_debian_tools(), reason="needs apt-get, dpkg and cmake (Debian/Ubuntu)"),
              pytest.mark.slow]  # a cross build and qemu runs: about a minute with the packages cached


@pytest.fixture(scope="module")
def cross_build() -> Path:
    fetch("aarch64")
    cmake_build(BUILD, f"-DCMAKE_TOOLCHAIN_FILE={ROOT / 'cmake' / 'aarch64-linux-gnu.cmake'}",
                f"-DONNXRUNTIME_ROOT={EDGE / 'sysroot-arm64'}", "-DHX_SAMPLE_ALLOW_SHLIB_UNDEFINED=ON",
                "-DHYPERONNX_BUILD_TESTS=ON", "-DCMAKE_BUILD_TYPE=Release")
    return BUILD


def elf_machine(path: Path) -> str:
    out = subprocess.run(["readelf", "-h", str(path)], capture_output=True, text=True, check=True).stdout
    return next(line.split(":", 1)[1].strip() for line in out.splitlines() if "Machine:" in line)


def test_cross_compiles_for_aarch64(cross_build):
    for rel in ("hyperonnx_sample", "hyperonnx_sample_static", "hyperonnx/libhyperonnx_ops.so",
                "hyperonnx/custom_ops/tests/hyperonnx_decode_test"):
        assert elf_machine(cross_build / rel) == "AArch64", rel
    syms = subprocess.run([str(EDGE / "bin" / "aarch64-linux-gnu-nm"), "-D", "--defined-only",
                           str(cross_build / "hyperonnx" / "libhyperonnx_ops.so")],
                          capture_output=True, text=True, check=True).stdout
    assert "RegisterCustomOps" in syms and "hyperonnx_register_ops" in syms


def test_decode_unit_tests_under_qemu(cross_build):
    r = subprocess.run(["ctest", "--test-dir", str(cross_build / "hyperonnx"), "--output-on-failure", "-V"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-2000:]
    assert "qemu-aarch64" in r.stdout  # really emulated (CMAKE_CROSSCOMPILING_EMULATOR)
    assert "golden:" in r.stdout and ", 0 failures" in r.stdout
    # blocktcq's NEON kernel was the one the fused and decode tests ran (ctest fused_dispatch), so fused_golden,
    # fused_random and decode_golden compared it with the numpy reference and the codec's scalar decoder.
    assert "fused dispatch: neon, 0 failures" in r.stdout


def test_decode_benchmark_runs_under_qemu(cross_build):
    r = subprocess.run([str(EDGE_TOOLS / "run.sh"), "aarch64",
                        str(cross_build / "hyperonnx" / "custom_ops" / "tests" / "hyperonnx_decode_bench"),
                        "262144", "2", "paper", "1", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "ns/code" in r.stdout, r.stdout + r.stderr


@pytest.fixture(scope="module")
def sample_model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("edge-model")
    subprocess.run([sys.executable, str(ROOT / "samples" / "cpp" / "make_model.py"), str(out)], check=True,
                   capture_output=True)
    return out / "model.hx.onnx"


@pytest.mark.parametrize("exe", ["hyperonnx_sample", "hyperonnx_sample_static"])
def test_sample_under_qemu_matches_python(cross_build, sample_model, exe, tmp_path):
    out = run_sample("aarch64", cross_build / exe, sample_model, "--save", str(tmp_path), "--runs", "2")
    parsed = check_against_python(sample_model, out, tmp_path)  # decoded weight bit-exact, logits rtol 1e-5
    assert parsed["ort_version"] == "1.21.0"


def test_fast_path_under_qemu_external_data(cross_build, sample_model, tmp_path):
    """The C API's fast path (the sample's default) on aarch64: a model with external data, inline and through the
    in-memory external file (decoded weights over the inline limit); outputs equal hyperonnx.session()'s, and
    --plain (the HyperDecode kernels) gives the same decoded weight."""
    model = external_data_copy(sample_model, tmp_path / "ext")
    for args in ([], ["--config", "hyperonnx.fast_inline_limit=4096"]):
        out = run_sample("aarch64", cross_build / "hyperonnx_sample_static", model, "--save", str(tmp_path),
                         "--runs", "1", *args)
        parsed = check_against_python(sample_model, out, tmp_path, mode=None)
        assert "fast path" in parsed["registration"]


@pytest.mark.slow
def test_mobilenet_v2_under_qemu_matches_python(cross_build, tmp_path):
    """The real MobileNetV2 (benchmarks/realmodels.py), converted, end to end under qemu (slow: ~1 min)."""
    import realmodels as rm

    import hyperonnx

    src = rm.mobilenet_v2()
    model = tmp_path / "mobilenet_v2.hx.onnx"
    hyperonnx.convert(src, model)
    out = run_sample("aarch64", cross_build / "hyperonnx_sample", model, "--save", str(tmp_path), "--runs", "1",
                     timeout=900)
    check_against_python(model, out, tmp_path, mode=None)  # the fast path (the sample's default) vs session()


def test_run_aarch64_script_is_documented():
    text = (ROOT / "docs" / "edge.md").read_text()
    assert "tools/edge/run_aarch64.sh" in text
    assert os.access(EDGE_TOOLS / "run_aarch64.sh", os.X_OK)
