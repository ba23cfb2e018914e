"""Start-up cost: what ``import hyperonnx``, ``library_path()`` and ``session()`` load, asserted in a fresh
interpreter through ``sys.modules`` (not timed: timings belong to benchmarks/, and these module sets are what
make the 1.7 s -> 0.03 s difference, ml_dtypes alone being most of it)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import onnx
import pytest
from toymodels import conv_mlp

import hyperonnx

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("numpy", "onnx", "onnxruntime", "ml_dtypes", "click", "google.protobuf")
CONVERTER = ("hyperonnx.api", "hyperonnx.codec", "hyperonnx.passes", "hyperonnx.tune", "hyperonnx.bench",
             "hyperonnx.cli")


def loaded_after(code: str) -> set[str]:
    """Modules (top-level heavy packages and every hyperonnx module) in ``sys.modules`` after ``code`` runs in a
    fresh interpreter started from the repository root."""
    script = textwrap.dedent(code) + textwrap.dedent(f"""
        import json, sys
        heavy = {HEAVY!r}
        print(json.dumps(sorted(m for m in sys.modules
                                if m.startswith("hyperonnx") or any(m == h or m.startswith(h + ".") for h in heavy))))
        """)
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stdout.strip().splitlines()[-1]))


def test_import_loads_only_the_standard_library():
    assert loaded_after("import hyperonnx") == {"hyperonnx", "hyperonnx.interrupts", "hyperonnx.errors"}


def test_library_path_loads_only_the_runtime_helpers():
    assert loaded_after("import hyperonnx; assert hyperonnx.library_path()") == {
        "hyperonnx", "hyperonnx.interrupts", "hyperonnx.errors", "hyperonnx.library"}


def test_session_loads_no_converter(tmp_path):
    out = tmp_path / "toy.hx.onnx"
    onnx.save(conv_mlp(), str(tmp_path / "toy.onnx"))
    hyperonnx.convert(tmp_path / "toy.onnx", out, min_elements=1000)
    modules = loaded_after(f"""
        import hyperonnx
        sess = hyperonnx.session({str(out)!r})
        assert [o.name for o in sess.get_outputs()] == ["y"]
        """)
    assert "onnxruntime" in modules
    assert not [m for m in modules if m.startswith(CONVERTER)], sorted(modules)


def test_public_names_resolve_on_first_use():
    modules = loaded_after("""
        import hyperonnx
        from hyperonnx import HyperonnxError, codec
        assert hyperonnx.convert is hyperonnx.api.convert and hyperonnx.ConvertResult is hyperonnx.api.ConvertResult
        assert codec.decode is hyperonnx.codec.decode
        assert set(hyperonnx.__all__) <= set(dir(hyperonnx))
        namespace = {}
        exec("from hyperonnx import *", namespace)
        assert set(hyperonnx.__all__) <= set(namespace)
        import onnx
        assert onnx.defs.has("HyperDecode", "ai.hyperonnx")  # the API's import registered the schema
        try:
            hyperonnx.no_such_name
        except AttributeError as exc:
            assert "no_such_name" in str(exc)
        else:
            raise AssertionError("unknown attribute resolved")
        """)
    assert "hyperonnx.api" in modules
    assert "hyperonnx.tune" not in modules  # the tuner loads when a tuning option asks for it


def test_bfloat16_alone_imports_ml_dtypes():
    modules = loaded_after("""
        from hyperonnx.codec import base
        assert str(base.dtype_from_name("float32")) == "float32"
        import sys
        assert "ml_dtypes" not in sys.modules
        assert str(base.dtype_from_name("bfloat16")) == "bfloat16"
        """)
    assert "ml_dtypes" in modules and "onnx" not in modules


@pytest.mark.parametrize("module", ["hyperonnx.runtime", "hyperonnx.library", "hyperonnx.codec.base"])
def test_module_level_imports_stay_light(module):
    assert not {"onnx", "onnxruntime", "ml_dtypes"} & loaded_after(f"import {module}")
