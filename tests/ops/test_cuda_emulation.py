"""The CUDA kernel bodies, emulated on the host over every golden case (custom_ops/tests/cuda_emulation_test.cc).

Built by the plain CPU build (no CUDA toolkit needed): ``cmake --build build``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXE = ROOT / "build" / "custom_ops" / "tests" / "hyperonnx_cuda_emulation_test"


@pytest.mark.skipif(not EXE.exists(), reason=f"{EXE} not built (cmake -S . -B build && cmake --build build)")
def test_emulated_cuda_kernels_match_golden_and_cpu():
    proc = subprocess.run([str(EXE), str(ROOT / "custom_ops" / "tests" / "golden")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "PASS" in proc.stdout
