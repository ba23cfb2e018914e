"""tcq's native trellis search (custom_ops/src/encoders/tcq.cc: hx_tcq_levels) against numpy's ``viterbi``, the
specification, symbol for symbol: the library computes the coset distances, the walk back and the levels eight
blocks at a time where no weight of a chunk lies past ±250 steps, and the scalar forms where one does."""

from __future__ import annotations

import numpy as np
import pytest
from native_identity import needs_library

from hyperonnx.codec import native, tcq
from hyperonnx.codec.ecsq import ZERO

pytestmark = needs_library


def numpy_symbols(blocks: np.ndarray, steps: np.ndarray) -> np.ndarray:
    return ((tcq.viterbi(blocks, steps) >> 1) + ZERO).astype(np.uint8)


def assert_same_symbols(blocks: np.ndarray, steps: np.ndarray) -> None:
    blocks, steps = blocks.astype(np.float32), steps.astype(np.float32)
    got = native.tcq_levels(blocks, steps)
    assert got is not None, native.describe()
    want = numpy_symbols(blocks, steps)
    bad = np.argwhere(got != want)
    assert bad.size == 0, f"{bad.shape[0]} symbols differ, first at block/position {bad[0].tolist()}"


def hard_blocks(rng: np.random.Generator, rows: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Blocks whose scaled weights hit the search's corners, with unit steps (y = x) unless varied."""
    y = rng.standard_normal((rows, width)) * rng.choice([0.3, 3.0, 40.0], size=(rows, 1))
    kind = rng.integers(0, 6, size=rows)
    y[kind == 1] = 0.0  # all-zero blocks: every path ties
    ties = kind == 2  # halfway between two levels of a coset, and on levels: ties in the distances and the costs
    y[ties] = np.round(y[ties] * 2) / 2 + rng.choice([0.0, 0.5], size=(int(ties.sum()), width))
    neg = kind == 3
    y[neg] = -np.abs(y[neg])
    y[neg, ::3] = -0.0
    edge = kind == 4  # the last values the circular form takes (|y| ≤ 250), integers and quarter steps
    y[edge] = rng.choice([249.75, 250.0, -250.0, -249.5, 248.0, 2.0, -2.0, 1.0, 3.0], size=(int(edge.sum()), width))
    steps = rng.choice([1.0, 0.5, 0.375, 1e-3], size=rows)
    return (y * steps[:, None]).astype(np.float32), steps.astype(np.float32)


@pytest.mark.parametrize("width", [*range(1, 18), 31, 32, 33, 63, 64, 65, 96, 127, 128, 255, 256, 1024, 4096])
def test_every_block_size_matches_numpy(width):
    rng = np.random.default_rng(width)
    rows = max(3, min(29, (1 << 15) // width))  # not a multiple of 8: the last group has padding lanes
    assert_same_symbols(*hard_blocks(rng, rows, width))


@pytest.mark.parametrize("isa", ["128", "256", "512"])
def test_every_vector_width_matches_numpy(isa, monkeypatch):
    """HYPERONNX_ENCODERS_ISA caps the vector width: each one this CPU has, on the same corner blocks."""
    monkeypatch.setenv("HYPERONNX_ENCODERS_ISA", isa)
    rng = np.random.default_rng(7)
    for width in (1, 5, 64, 67):
        assert_same_symbols(*hard_blocks(rng, 45, width))


def test_clipped_chunks_and_extremes_match_numpy():
    """Weights past ±250 steps (the chunk takes numpy's clipped form, scalar in the library), at and past the level
    range's ends (±252…255), beside blocks of the same group that have none, and a lone outlier per chunk."""
    rng = np.random.default_rng(11)
    width = 64
    y = rng.standard_normal((40, width)) * 30
    y[3, 7] = 250.25  # just past the circular form's range
    y[5, :4] = [251.9, -252.1, 254.5, -253.5]
    y[6] = np.linspace(-300, 300, width)
    y[9, 0] = 3.4e38  # f32's largest: far past every level
    y[12, 1] = -1e30
    assert_same_symbols(y.astype(np.float32), np.ones(40, np.float32))
    # several chunks of numpy's (tcq.CHUNK_WEIGHTS): only the second holds an outlier
    rows = 3 * (tcq.CHUNK_WEIGHTS // width)
    x = rng.standard_normal((rows, width)).astype(np.float32)
    x[rows // 2, 3] = 600.0
    steps = np.full(rows, 2.5, np.float32)
    assert_same_symbols(x, steps)


def test_non_finite_values_go_back_to_numpy():
    """A weight or step that makes some y infinite or NaN: the library declines (numpy's int16 cast decides)."""
    x = np.ones((9, 8), np.float32)
    for blocks, steps in ((np.where(np.arange(72).reshape(9, 8) == 40, np.inf, x), np.ones(9)),
                          (np.where(np.arange(72).reshape(9, 8) == 3, np.nan, x), np.ones(9)),
                          (x, np.where(np.arange(9) == 4, 0.0, 1.0)),
                          (np.zeros((9, 8), np.float32), np.where(np.arange(9) == 8, 0.0, 1.0))):
        assert native.tcq_levels(blocks.astype(np.float32), steps.astype(np.float32)) is None
    # a step of 0 under all-zero weights is 0/0 (NaN) too; an infinite step makes every y 0: finite
    steps = np.where(np.arange(9) == 2, np.inf, 1.0).astype(np.float32)
    assert_same_symbols(x, steps)
