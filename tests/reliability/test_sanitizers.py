"""The C++ tests (ctest: golden vectors, malformed input, casts, threads, CUDA-kernel emulation, the fused kernels,
the rANS reader's vector loops, the fast path's ONNX rewriter over seed models, truncations and bit flips) built
once with AddressSanitizer + UndefinedBehaviorSanitizer, in build-asan/. Only the test programs are built
(not the ORT plugin), so this costs about a minute and a half on two cores."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build-asan"
TARGETS = ["hyperonnx_decode_test", "hyperonnx_cuda_emulation_test", "hyperonnx_fused_test", "hyperonnx_fast_test",
           "hyperonnx_rans_test"]
FLAGS = "-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"


def _ort_headers() -> str | None:
    """Reuse the headers the main build found (no second download)."""
    cache = ROOT / "build" / "CMakeCache.txt"
    if cache.exists():
        m = re.search(r"^ONNXRUNTIME_INCLUDE_DIR:PATH=(.+)$", cache.read_text(), re.M)
        if m and Path(m.group(1), "onnxruntime_cxx_api.h").exists():
            return m.group(1)
    return os.environ.get("ONNXRUNTIME_INCLUDE_DIR") or None


@pytest.mark.slow  # a second build of the C++ tests with sanitizers
@pytest.mark.skipif(not shutil.which("cmake") or not shutil.which("c++"), reason="cmake or a C++ compiler missing")
def test_ctest_under_asan_ubsan():
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    if (BUILD / "CMakeCache.txt").exists() and not (BUILD / "build.ninja").exists() and generator:
        shutil.rmtree(BUILD)  # an earlier configure with another generator
    configure = ["cmake", "-S", str(ROOT), "-B", str(BUILD), *generator, "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                 f"-DCMAKE_CXX_FLAGS={FLAGS}", f"-DCMAKE_EXE_LINKER_FLAGS={FLAGS}", "-DHYPERONNX_BUILD_TESTS=ON",
                 "-DHYPERONNX_CUDA=OFF"]
    headers = _ort_headers()
    if headers:
        configure.append(f"-DONNXRUNTIME_INCLUDE_DIR={headers}")
    proc = subprocess.run(configure, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    proc = subprocess.run(["cmake", "--build", str(BUILD), "-j2", "--target", *TARGETS], capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
    proc = subprocess.run(["ctest", "--test-dir", str(BUILD), "--output-on-failure", "-j2", "-E", "cuda_golden"],
                          capture_output=True, text=True, timeout=900, env=env)
    print(proc.stdout[-1500:])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "tests passed" in proc.stdout
    assert "runtime error" not in proc.stdout and "AddressSanitizer" not in proc.stdout
