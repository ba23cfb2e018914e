"""Work a conversion does once per tensor, not once per encoding: the rank-1 fit shared by a tensor's encodings
(rank1.reuse), and a size budget's held encodings counted at their real size, so fewer chosen rungs are encoded
again. Neither changes a byte."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import hyperonnx
import hyperonnx.codec as codec
from hyperonnx.codec import rank1
from hyperonnx.passes import compress


def _low_rank(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    return (np.outer(rng.standard_normal(rows), rng.standard_normal(cols)) + 0.05 * rng.standard_normal((rows, cols))
            ).astype(np.float32)


def test_reuse_fits_a_tensor_once_and_changes_no_byte(monkeypatch):
    x = _low_rank(np.random.default_rng(0), 64, 80)
    alone = [codec.encode(x, "tcq", step=s).blob.tobytes() for s in (0.5, 0.2, 0.1)]
    assert codec.encode(x, "tcq", step=0.5).format_version == 2  # the tensor takes the term
    calls = []
    real = rank1._fit
    monkeypatch.setattr(rank1, "_fit", lambda a: calls.append(1) or real(a))
    with rank1.reuse(x):
        shared = [codec.encode(x, "tcq", step=s).blob.tobytes() for s in (0.5, 0.2, 0.1)]
        codec.encode(x.copy(), "ecsq")  # another array (same values): fitted on its own
    assert shared == alone and len(calls) == 2
    codec.encode(x, "tcq")  # outside the block: fitted again
    assert len(calls) == 3


def _chain(folder, rng) -> str:
    """Four MatMul weights: the first on an exact float16 grid (its ladder stops at the grid's size), then a
    Gaussian, a nearly rank-1 and a Gaussian one."""
    from test_grid import gguf_like

    shapes = [(96, 128), (128, 64), (64, 160), (160, 48)]
    inits, nodes, prev = [], [], "x"
    for i, shape in enumerate(shapes):
        weight = gguf_like(*shape) if i == 0 else _low_rank(rng, *shape) if i == 2 else rng.standard_normal(shape)
        inits.append(numpy_helper.from_array(weight.astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"]))
        prev = f"h{i}"
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 96])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["N", 48])], inits)
    path = str(folder / "chain.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_held_encodings_are_counted_at_their_real_size(tmp_path, monkeypatch):
    """Room for the grid tensor's real (short) ladder and one Gaussian tensor's estimated one (5 bytes a weight):
    counted at its estimate, the grid tensor would leave no room for the third tensor; counted at its real size, it
    does. Fewer tensors are encoded again, and the file is the one every encoding held writes."""
    from hyperonnx.passes import budget

    src = _chain(tmp_path, np.random.default_rng(1))
    settings = dict(codec_name="tcq", target_bpw=5.5, min_elements=16, jobs=1)
    hyperonnx.convert(src, tmp_path / "all.onnx", **settings)
    weights = [numpy_helper.to_array(t) for t in onnx.load(src).graph.initializer]
    rungs = budget.ladder("tcq", "tcq", {}, "a test")
    real = sum(c.payload[0].blob.nbytes for c in compress.encode_candidates(weights[0], "tcq", rungs, "ort",
                                                                          exact_grids=True))
    estimate = [w.size * compress._LADDER_BYTES_PER_WEIGHT for w in weights]
    assert real < estimate[0] + estimate[3] - estimate[2]  # at its estimate, tensor 0 would leave room for none
    again = []
    encode_choice = compress._encode_choice
    monkeypatch.setattr(compress, "_encode_choice", lambda *a: again.append(a[0]) or encode_choice(*a))
    monkeypatch.setattr(compress, "HELD_CANDIDATE_BYTES", real + estimate[2])
    hyperonnx.convert(src, tmp_path / "some.onnx", **settings)
    # held: tensor 0, and tensor 2 in the room tensor 0's real size left (tensor 1 was submitted before that was
    # known: one job, two tensors in flight); tensor 3 no longer fits
    assert len(again) == 2
    assert (tmp_path / "some.onnx").read_bytes() == (tmp_path / "all.onnx").read_bytes()


def test_an_exact_grid_encoding_is_kept_when_the_rungs_are_not(tmp_path, monkeypatch):
    """Past HELD_CANDIDATE_BYTES a ladder's encodings are dropped, but its exact grid encoding (about a byte a
    weight, not five) is kept while it fits in HELD_EXACT_BYTES: a chosen grid is then not detected a second time.
    One byte less room and it is detected again. The same file every way."""
    from hyperonnx.codec import grid

    src = _chain(tmp_path, np.random.default_rng(1))
    settings = dict(codec_name="tcq", target_bpw=8.0, min_elements=16, jobs=1)
    held = hyperonnx.convert(src, tmp_path / "all.onnx", **settings)
    assert held.report.tensors[0].codec == "grid"  # the grid tensor's top candidate, chosen
    weights = [numpy_helper.to_array(t) for t in onnx.load(src).graph.initializer]
    grid_bytes = grid.detect(weights[0]).blob.nbytes
    assert grid_bytes < min(w.size for w in weights) * compress._LADDER_BYTES_PER_WEIGHT  # no ladder fits
    detected = []
    real_detect = grid.detect
    monkeypatch.setattr(grid, "detect", lambda a, *r: detected.append(a.shape) or real_detect(a, *r))
    monkeypatch.setattr(compress, "HELD_CANDIDATE_BYTES", 0)
    for room, detections in ((grid_bytes, 1), (grid_bytes - 1, 2)):
        detected.clear()
        monkeypatch.setattr(compress, "HELD_EXACT_BYTES", room)
        hyperonnx.convert(src, tmp_path / "some.onnx", **settings)
        assert detected.count(weights[0].shape) == detections
        assert (tmp_path / "some.onnx").read_bytes() == (tmp_path / "all.onnx").read_bytes()


def test_leftover_bisection_guesses_change_no_byte(tmp_path, monkeypatch):
    """With two jobs, the leftover bisection (compress._spend_leftover) encodes the point it predicts it takes next
    beside the one it needs (compress._Bisection): right guesses, forced wrong ones and one job give the same file.
    Each tensor's rank-1 fit is made once, by its ladder: the bisection and its workers make the residual again
    from the ladder's term."""
    src = _chain(tmp_path, np.random.default_rng(1))
    shapes = sorted(tuple(t.dims) for t in onnx.load(src).graph.initializer)
    settings = dict(codec_name="tcq", target_bpw=4.5, min_elements=16)
    fits = []
    real_fit = rank1._fit
    monkeypatch.setattr(rank1, "_fit", lambda a: fits.append(tuple(a.shape)) or real_fit(a))
    hyperonnx.convert(src, tmp_path / "one.onnx", jobs=1, **settings)
    assert sorted(s for s in fits if s in shapes) == shapes
    expected = (tmp_path / "one.onnx").read_bytes()

    fits.clear()
    started = []
    start = compress._Bisection._start
    monkeypatch.setattr(compress._Bisection, "_start", lambda self, mid: started.append(mid) or start(self, mid))
    hyperonnx.convert(src, tmp_path / "two.onnx", jobs=2, **settings)
    assert (tmp_path / "two.onnx").read_bytes() == expected
    assert sorted(s for s in fits if s in shapes) == shapes
    # every round but the last also started its guess, and each guess was the next round's point: no encode wasted
    rounds = len(set(started))
    assert rounds >= 5 and len(started) == 2 * rounds - 1, started

    for guess in (float("inf"), float("-inf")):  # the guess always "does not fit", then always "fits"
        started.clear()
        monkeypatch.setattr(compress._Bisection, "_predicted", lambda self, mid, guess=guess: guess)
        hyperonnx.convert(src, tmp_path / "wrong.onnx", jobs=2, **settings)
        assert len(set(started)) > rounds  # some guesses were wasted
        assert (tmp_path / "wrong.onnx").read_bytes() == expected

    # nothing held: every chosen setting is encoded again (compress._encode_choice), from the ladder's term too
    monkeypatch.setattr(compress, "HELD_CANDIDATE_BYTES", 0)
    monkeypatch.setattr(compress, "HELD_EXACT_BYTES", 0)
    fits.clear()
    hyperonnx.convert(src, tmp_path / "again.onnx", jobs=2, **settings)
    assert (tmp_path / "again.onnx").read_bytes() == expected
    assert sorted(s for s in fits if s in shapes) == shapes


def test_a_large_first_tensor_does_not_starve_the_other_workers(tmp_path, monkeypatch):
    """A budget waits for the first tensor in flight only once the tensors behind it hold WINDOW_WEIGHTS times its
    weights per other worker (compress._enough_behind): more tensors are then in flight behind a large one, and
    the file is the same whatever the window."""
    from types import SimpleNamespace

    def pending(*sizes):
        return [(SimpleNamespace(numel=n), 0, None) for n in sizes]

    assert compress._enough_behind(pending(100, 10), 1)  # one job: the plain rule
    assert not compress._enough_behind(pending(100, 60, 60, 70), 2)  # 190 behind a tensor of 100: keep going
    assert compress._enough_behind(pending(100, 60, 60, 80), 2)
    assert compress._enough_behind(pending(10, 10, 10), 2)  # alike in size: jobs + 1 in flight, as before
    src = _chain(tmp_path, np.random.default_rng(1))
    settings = dict(codec_name="tcq", target_bpw=4.5, min_elements=16, jobs=2)
    files = []
    for window in (0, 2, 100):
        monkeypatch.setattr(compress, "WINDOW_WEIGHTS", window)
        hyperonnx.convert(src, tmp_path / f"w{window}.onnx", **settings)
        files.append((tmp_path / f"w{window}.onnx").read_bytes())
    assert files[0] == files[1] == files[2]
