"""Concurrency: many processes converting into one folder at once give identical bytes and leave
nothing behind; many threads running one session of a whole converted model, in each decode mode, agree with
a serial run. (Single-op sessions under eight threads: tests/ops/test_ops_threads.py.)"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
import toymodels
from test_ops_decode import LIBRARY

from hyperonnx import api, runtime

ENV = {k: v for k, v in os.environ.items() if k != "HYPERONNX_DEBUG"}
PROCESSES = 8
THREADS = 16


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hyperonnx", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("src") / "conv_mlp.onnx"
    onnx.save(toymodels.conv_mlp(), path)
    return path


@pytest.mark.slow  # 8 conversions at once, as processes
@pytest.mark.parametrize("external", [False, True], ids=["inline", "external-data"])
def test_processes_same_output(model, tmp_path, external):
    """8 processes write the same OUT at once (different --jobs): every one succeeds, OUT (and OUT.data) end
    identical to a serial conversion, and no temporary folder remains."""
    extra = ["--external-data"] if external else []
    reference = tmp_path / "ref" / "out.onnx"
    reference.parent.mkdir()
    assert _start("convert", model, "-o", reference, "--json", *extra).wait(timeout=300) == 0
    shared = tmp_path / "shared"
    shared.mkdir()
    out = shared / "out.onnx"
    procs = [_start("convert", model, "-o", out, "--json", "--jobs", str(1 + i % 3), *extra) for i in range(PROCESSES)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    assert sorted(p.name for p in shared.iterdir()) == sorted(p.name for p in reference.parent.iterdir())
    for name in (p.name for p in reference.parent.iterdir()):
        assert _digest(shared / name) == _digest(reference.parent / name), name


@pytest.mark.slow  # 16 commands at once, as processes
def test_processes_distinct_outputs(model, tmp_path):
    """8 processes, 8 output names in one folder (convert, then decompress of each): all byte-identical."""
    procs = [_start("convert", model, "-o", tmp_path / f"c{i}.onnx", "--json", "--jobs", str(1 + i % 2))
             for i in range(PROCESSES)]
    assert [p.wait(timeout=300) for p in procs] == [0] * PROCESSES
    assert len({_digest(tmp_path / f"c{i}.onnx") for i in range(PROCESSES)}) == 1
    procs = [_start("decompress", tmp_path / f"c{i}.onnx", "-o", tmp_path / f"d{i}.onnx") for i in range(PROCESSES)]
    assert [p.wait(timeout=300) for p in procs] == [0] * PROCESSES
    assert len({_digest(tmp_path / f"d{i}.onnx") for i in range(PROCESSES)}) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".hyperonnx-")]


def test_threads_convert_in_process(model, tmp_path):
    """The Python API from 8 threads at once (one process): identical outputs."""
    def work(i: int) -> str:
        out = tmp_path / f"t{i}.onnx"
        api.convert(model, out, jobs=2)
        return _digest(out)

    with ThreadPoolExecutor(PROCESSES) as pool:
        assert len(set(pool.map(work, range(PROCESSES)))) == 1


@pytest.fixture(scope="module")
def converted(model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hx") / "conv_mlp.hx.onnx"
    api.convert(model, out)
    return out


@pytest.mark.skipif(LIBRARY is None, reason="op library not built")
@pytest.mark.parametrize("mode", ["load", "call", "init", None])
def test_threads_one_session_whole_model(converted, mode):
    """16 threads, one session, each thread its own inputs, 4 runs each: every result equals the serial run."""
    sess = runtime.session(converted, mode=mode)
    rng = np.random.default_rng(0)
    feeds = [rng.standard_normal((1 + i % 4, 8, 8, 8)).astype(np.float32) for i in range(THREADS)]
    expected = [sess.run(None, {"x": x})[0].tobytes() for x in feeds]

    def work(i: int) -> bool:
        return all(sess.run(None, {"x": feeds[i]})[0].tobytes() == expected[i] for _ in range(4))

    with ThreadPoolExecutor(THREADS) as pool:
        assert all(pool.map(work, range(THREADS)))


@pytest.mark.skipif(LIBRARY is None, reason="op library not built")
@pytest.mark.parametrize("mode", ["load", "call", "init"])
def test_threads_creating_sessions(converted, mode):
    """Sessions created from 8 threads at once (library registration, load-time decode): same outputs."""
    x = np.random.default_rng(1).standard_normal((2, 8, 8, 8)).astype(np.float32)

    def work(_: int) -> bytes:
        return runtime.session(converted, mode=mode).run(None, {"x": x})[0].tobytes()

    with ThreadPoolExecutor(PROCESSES) as pool:
        assert len(set(pool.map(work, range(PROCESSES)))) == 1
