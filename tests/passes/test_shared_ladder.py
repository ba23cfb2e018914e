"""A large tensor's budget ladder shared with idle workers (compress._SharedRungs): the candidates, the early stop
at an exact grid, a codec's refusal and the converted file are the sequential ladder's."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from test_grid import gguf_like

import hyperonnx
from hyperonnx.codec import rank1
from hyperonnx.passes import budget, compress

RUNGS = budget.ladder("tcq", "tcq", {}, "a test")


def _fields(candidates):
    if isinstance(candidates, str):
        return candidates
    return [(c.nbytes, c.rel_noise, c.options, c.encoded_bytes, c.payload[0].blob.tobytes(),
             None if c.rank1_term is None or c.rank1_term is False else [t.tobytes() for t in c.rank1_term])
            for c in candidates]


@pytest.fixture
def slow_rungs(monkeypatch):
    """Every rung takes a little longer, so the helper task surely takes some; the threads that made rungs."""
    makers = []
    real = compress.encode_tensor

    def encode_tensor(*args, **kwargs):
        makers.append(threading.current_thread().name)
        time.sleep(0.01)
        return real(*args, **kwargs)

    monkeypatch.setattr(compress, "encode_tensor", encode_tensor)
    monkeypatch.setattr(compress, "SHARED_LADDER_WEIGHTS", 1)
    return makers


@pytest.mark.parametrize("kind", ["gaussian", "low rank", "grid", "refused"])
def test_shared_rungs_are_the_sequential_ladder(kind, slow_rungs, monkeypatch):
    rng = np.random.default_rng(5)
    rungs = RUNGS
    if kind == "grid":  # the ladder stops at the first rung larger than the exact encoding
        x = gguf_like(96, 64)
    elif kind == "low rank":  # a rank-1 term: made once, shared with the helper
        x = (np.outer(rng.standard_normal(80), rng.standard_normal(70)) + 0.05 * rng.standard_normal((80, 70)))
    else:
        x = rng.standard_normal((90, 70))
    if kind == "refused":  # a setting the codec refuses, mid-ladder: the same refusal, nothing after it
        rungs = [*RUNGS[:5], {"step": 9.0}, *RUNGS[5:]]
    x = x.astype(np.float32)
    alone = compress.encode_candidates(x, "tcq", rungs, "ort", exact_grids=True)
    made_alone = len(slow_rungs)
    slow_rungs.clear()
    fits = []
    real_fit = rank1._fit
    monkeypatch.setattr(rank1, "_fit", lambda a: fits.append(1) or real_fit(a))
    with ThreadPoolExecutor(max_workers=2) as pool:
        shared = pool.submit(compress.encode_candidates, x, "tcq", rungs, "ort", None, True, pool=pool).result()
    assert _fields(shared) == _fields(alone)
    helpers = set(slow_rungs) - {slow_rungs[0]}
    assert helpers, slow_rungs  # the other worker made some rungs
    assert len(fits) == 1  # one rank-1 fit for both workers
    if kind == "grid":
        assert shared[-1].options is None and len(shared) < len(RUNGS)
    if kind == "refused":
        assert "step must be in" in shared and made_alone == 6
    # at most one rung beyond where the sequential ladder stopped (the other worker's one in flight)
    assert len(slow_rungs) <= made_alone + 1


def test_conversions_are_the_same_files_with_shared_ladders(tmp_path, monkeypatch):
    from test_encode_reuse import _chain

    src = _chain(tmp_path, np.random.default_rng(2))
    settings = dict(codec_name="tcq", target_bpw=4.5, min_elements=16, jobs=2)
    hyperonnx.convert(src, tmp_path / "alone.onnx", **settings)
    monkeypatch.setattr(compress, "SHARED_LADDER_WEIGHTS", 1)
    hyperonnx.convert(src, tmp_path / "shared.onnx", **settings)
    assert (tmp_path / "shared.onnx").read_bytes() == (tmp_path / "alone.onnx").read_bytes()


def test_an_encoder_error_stops_the_ladder(slow_rungs, monkeypatch):
    """An encoder error on either thread propagates, and neither takes a rung after it."""
    made = []
    real = compress.encode_tensor

    def failing(array, codec_name, opts, *rest):
        made.append(threading.current_thread().name)
        if len(made) == 3:
            raise RuntimeError("encoder failed")
        return real(array, codec_name, opts, *rest)

    monkeypatch.setattr(compress, "encode_tensor", failing)
    x = np.random.default_rng(6).standard_normal((90, 70)).astype(np.float32)
    with ThreadPoolExecutor(max_workers=2) as pool:
        future = pool.submit(compress.encode_candidates, x, "tcq", RUNGS, "ort", pool=pool)
        with pytest.raises(RuntimeError, match="encoder failed"):
            future.result()
    assert len(made) <= 4  # the rung that failed, and at most the other thread's one in flight
