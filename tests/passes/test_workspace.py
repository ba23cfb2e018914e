"""Scratch memory reused by a conversion's workers (hyperonnx.workspace): a kept thread gets the same memory again
for the same purpose, every other thread new memory, and conversions that reuse it write the files that fresh
arrays would."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hyperonnx
from hyperonnx import model_io, workspace


def _in_thread(work):
    out = []
    thread = threading.Thread(target=lambda: out.append(work()))
    thread.start()
    thread.join()
    return out[0]


def test_a_kept_thread_gets_its_memory_again():
    def work():
        workspace.keep()
        a = workspace.array("a", (3, 4), np.float64)
        again = workspace.array("a", 12, np.float32)  # smaller, another dtype: the same bytes
        other = workspace.array("b", 12, np.float64)
        larger = workspace.array("a", 1000, np.float64)
        return a, again, other, larger

    a, again, other, larger = _in_thread(work)
    assert a.shape == (3, 4) and a.dtype == np.float64 and a.flags.c_contiguous
    assert again.shape == (12,) and again.dtype == np.float32
    assert np.shares_memory(a, again)
    assert not np.shares_memory(a, other)
    assert larger.size == 1000 and not np.shares_memory(a, larger)  # outgrown: new memory


def test_arrays_over_the_cap_are_not_kept():
    def work():
        workspace.keep()
        kept = workspace.array("a", 16, np.float64)
        over = workspace.array("a", workspace.MAX_KEPT // 8 + 1, np.float64)
        again = workspace.array("a", 16, np.float64)
        over_again = workspace.array("a", workspace.MAX_KEPT // 8 + 1, np.float64)
        return kept, over, again, over_again

    kept, over, again, over_again = _in_thread(work)
    assert np.shares_memory(kept, again)  # the kept one survived the large request
    assert not np.shares_memory(over, over_again) and not np.shares_memory(over, kept)


def test_other_threads_get_new_memory():
    def work():
        return workspace.array("a", 8, np.float64), workspace.array("a", 8, np.float64)

    first, second = _in_thread(work)
    assert not np.shares_memory(first, second)


def test_scratch_reads_are_the_tensor(tmp_path):
    values = np.arange(4096, dtype=np.float32).reshape(64, 64) / 7
    tensor = numpy_helper.from_array(values, "w")
    onnx.save(helper.make_model(helper.make_graph([], "g", [], [], [tensor])), tmp_path / "m.onnx",
              save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    model = onnx.load(tmp_path / "m.onnx", load_external_data=False)
    ref = model_io.external_ref(model.graph.initializer[0], tmp_path)

    def work():
        workspace.keep()
        first = model_io.read_array(ref, TensorProto.FLOAT, (64, 64), scratch=True).copy()
        second = model_io.read_array(ref, TensorProto.FLOAT, (64, 64), scratch=True)
        return first, second

    first, second = _in_thread(work)
    assert np.array_equal(first, values) and np.array_equal(second, values)


def _model(folder: Path) -> Path:
    """Tensors of three sizes and a rank-1 one in external data: scratch arrays grow and shrink between them."""
    rng = np.random.default_rng(4)
    shapes = [(256, 512), (64, 64), (512, 256), (128, 128), (96, 300)]
    weights = [rng.standard_normal(s, dtype=np.float32) * np.float32(0.02) for s in shapes]
    weights[3] = np.outer(rng.standard_normal(128), rng.standard_normal(128)).astype(np.float32) + weights[3] * 0.01
    inits = [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(weights)]
    nodes = [helper.make_node("Identity", [f"w{i}"], [f"y{i}"]) for i in range(len(weights))]
    outputs = [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, list(s)) for i, s in enumerate(shapes)]
    model = helper.make_model(helper.make_graph(nodes, "g", [], outputs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "m.onnx"
    onnx.save(model, path, save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    return path


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("settings", [{}, {"codec_name": "tcq", "target_bpw": 4.0}], ids=["default", "budget"])
def test_conversions_with_scratch_write_the_same_files(tmp_path, monkeypatch, settings):
    src = _model(tmp_path)
    reused, fresh = tmp_path / "reused", tmp_path / "fresh"
    reused.mkdir()
    fresh.mkdir()
    hyperonnx.convert(src, reused / "out.onnx", jobs=2, min_elements=1024, **settings)
    with monkeypatch.context() as patch:
        patch.setattr(workspace, "keep", lambda: None)  # every scratch array new
        hyperonnx.convert(src, fresh / "out.onnx", jobs=2, min_elements=1024, **settings)
    assert _digest(reused) == _digest(fresh)
    assert len(_digest(reused)) == 2  # OUT and OUT.data: the blobs went through the spool
