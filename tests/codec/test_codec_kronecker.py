"""The kronecker codec: the documented decode, δ choice, normalisation edge cases and the bucket-grid search."""

from __future__ import annotations

import numpy as np
import pytest

import hyperonnx.codec as codec
from hyperonnx.codec import bitpack, kronecker


def reference_table(alphas: list[int], levels: int, mu: float, width: float) -> np.ndarray:
    """docs/format.md ``### kronecker``, written independently with Python integers and float32 scalars."""
    f32 = np.float32
    rows = []
    for k in range(levels):
        row = []
        for a in alphas:
            u24 = ((k * (a % (1 << 64))) % (1 << 64)) >> 40
            u = f32(u24) * f32(2.0**-24)
            row.append((u - f32(0.5)) * f32(width) + f32(mu))
        rows.append(row)
    return np.array(rows, dtype=f32)


@pytest.mark.parametrize("group, levels", [(2, 4096), (3, 512), (4, 256), (2, 2)])
def test_table_follows_the_format(group, levels):
    x = np.random.default_rng(group).standard_normal(3 * levels) * 0.02 + 0.3
    enc = codec.encode(x.astype(np.float32), "kronecker", N=group, U=levels)
    assert enc.codec == "kronecker" and enc.group == group and enc.bits == (levels - 1).bit_length()
    assert enc.ints["levels"] == (levels,) and len(enc.ints["alpha"]) == group
    mu, width = enc.floats["offset"][0], enc.floats["width"][0]
    expected = reference_table(list(enc.ints["alpha"]), levels, mu, width)
    assert np.array_equal(codec.table(enc).view(np.uint32), expected.view(np.uint32))


def test_increments_are_pinned():
    """δ is chosen by a deterministic, platform-exact sweep: the choice must never drift silently."""
    assert kronecker.weyl_increments(2, 4096) == (13789174991016821326, 12351707533807666125)
    assert kronecker.weyl_increments(2, 256) == (7617214148501044499, 2585306600285158845)


def test_alpha_is_stored_as_signed_int64():
    enc = codec.encode(np.linspace(-1, 1, 100), "kronecker")
    assert all(-(1 << 63) <= a < 1 << 63 for a in enc.ints["alpha"])
    assert tuple(a % (1 << 64) for a in enc.ints["alpha"]) == kronecker.weyl_increments(2, 4096)


def test_normalisation_covers_the_tensor_even_far_from_zero():
    """A large mean and a tiny spread: float32 rounding of mu must not push values out of [0,1]."""
    x = 1000.0 + np.random.default_rng(3).standard_normal(5000) * 1e-3
    enc = codec.encode(x, "kronecker")
    mu, width = enc.floats["offset"][0], enc.floats["width"][0]
    assert np.abs(x - mu).max() <= width / 2
    out = codec.decode(enc).astype(np.float64)
    assert np.abs(out - x).max() < 0.05 * (x.max() - x.min())


def test_constant_tensor_has_zero_width():
    enc = codec.encode(np.full(9, 2.5, np.float32), "kronecker", N=3)
    assert enc.floats["width"] == (0.0,) and enc.floats["offset"] == (2.5,)
    assert np.array_equal(codec.decode(enc), np.full(9, 2.5, np.float32))


def test_range_beyond_float32_is_rejected():
    with pytest.raises(ValueError, match="exceeds float32"):
        codec.encode(np.array([-1e39, 1e39]), "kronecker")


@pytest.mark.parametrize("options, message", [({"N": 5}, "N must be"), ({"N": 1}, "N must be"),
                                              ({"U": 1}, "U must be"), ({"U": (1 << 20) + 1}, "U must be")])
def test_bad_options_are_rejected(options, message):
    with pytest.raises(ValueError, match=message):
        codec.encode(np.ones(8), "kronecker", **options)


@pytest.mark.parametrize("group, levels", [(2, 4096), (2, 64), (3, 512), (4, 256)])
def test_bucket_grid_is_exact_including_cell_edges(group, levels):
    alphas = kronecker.weyl_increments(group, levels)
    grid = kronecker.bucket_grid(group, levels, alphas)
    rng = np.random.default_rng(levels)
    edges = rng.integers(0, grid.side + 1, size=(500, group)) / grid.side  # on cell boundaries and cube faces
    y = np.concatenate([rng.random((3000, group)), np.clip(edges, 0, 1), np.eye(group), 1 - np.eye(group)])
    points = kronecker.codewords(alphas, levels)
    d = np.zeros((y.shape[0], levels))
    for j in range(group):
        d += (points[None, :, j] - y[:, None, j]) ** 2
    got = grid.nearest(y)
    assert np.array_equal(d[np.arange(y.shape[0]), got], d.min(axis=1))


def test_chunking_does_not_change_the_codes(monkeypatch):
    x = np.random.default_rng(5).standard_normal(10_001).astype(np.float32)
    whole = codec.encode(x, "kronecker")
    monkeypatch.setattr(kronecker, "CHUNK_GROUPS", 77)
    assert np.array_equal(codec.encode(x, "kronecker").blob, whole.blob)


def test_codes_stay_below_levels():
    levels = 300  # not a power of two: the top codes of the bit width are never used
    enc = codec.encode(np.random.default_rng(6).uniform(-1, 1, 20_000), "kronecker", U=levels)
    assert int(bitpack.unpack(enc.blob, enc.count, enc.bits).max()) < levels


def test_laplace_quality():
    x = np.random.default_rng(7).laplace(size=1 << 18) / np.sqrt(2)
    out = codec.decode(codec.encode(x, "kronecker"))
    assert 10 * np.log10((x**2).sum() / ((x - out) ** 2).sum()) > 19.5  # measured 20.2 dB at 2^20 samples
