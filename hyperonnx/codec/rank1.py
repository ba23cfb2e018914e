"""The rank-1 term of the entropy-coded codecs (``ecsq``, ``tcq``; format version 2, docs/format.md).

Some trained tensors are nearly one outer product: every row a multiple of one pattern. In the terrain UNet, 79 of
241 tensors take the term (time-embedding and attention output projections, about half to 97 % rank one; the
largest, 53 % of the model's weight energy, is 98 %); in MobileNetV2 one depthwise layer does (960 kernels of
3×3 sharing one spatial profile; the smaller ones cannot pay for the term's bytes). A per-weight quantizer pays
for that shared structure in every block; storing the outer product once (u and v in float16, 2·(R + C) bytes)
and coding only the residual leaves the same relative step to code an energy 2–300 times smaller.

The tensor is seen as a matrix of R = shape[0] rows and C = numel / R columns (row-major). The term adds
``f32(u[r]) · f32(v[c])``: a product of two float16 values is exact in float32 (11 + 11 significant bits, exponents
well inside range), so every decoder computes it bit-identically with no rounding at all.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator

import numpy as np

FORMAT_VERSION = 2  # a blob that starts with the term; format 1 blobs have none
# Used only where the residual's energy gain beats what the term's bytes would buy at ~6 dB a bit a weight,
# with this much to spare (the coders' dB per bit falls below 6 at low rates).
MARGIN_DB = 0.5
POWER_ITERATIONS = 12  # the top singular pair; a term worth storing has a wide gap, so few suffice
# After this many iterations, a tensor whose best direction so far holds under half the energy the term needs is
# given up: most tensors hold no such term, and this makes the search 5× cheaper for them (4 products, not 25).
EARLY_EXIT_ITERATIONS = 2


_reused = threading.local()  # per thread: the array whose fit is kept (reuse) and the fit, once made


_UNMADE = object()


@contextlib.contextmanager
def reuse(x: np.ndarray, fitted: object = _UNMADE) -> Iterator[None]:
    """Within the block, :func:`fit` of this very array object (unchanged meanwhile) runs once: the encodings of one
    tensor at several settings (a budget's ladder, the default policy's step corrections) share its term, which
    depends on the values alone. Per thread, so parallel jobs keep their own; ``fitted`` (what :func:`fit` gave for
    ``x`` in another thread) hands one thread's fit to another."""
    previous = getattr(_reused, "entry", None)
    made = fitted is not _UNMADE
    _reused.entry = [x, fitted if made else None, made]  # the array, its fit, whether made
    try:
        yield
    finally:
        _reused.entry = previous


def kept(x: np.ndarray) -> tuple[bool, tuple[np.ndarray, np.ndarray] | None]:
    """Inside :func:`reuse` of ``x``: (whether its fit was made, the term it found or None). The term is all a later
    encoding of the same values needs: :func:`residual` gives the rest, to the bit (``reuse(x, (term, residual))``)."""
    entry = getattr(_reused, "entry", None)
    if entry is None or entry[0] is not x or not entry[2]:
        return False, None
    return True, None if entry[1] is None else entry[1][0]


def fit(x: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray] | None:
    """float16 (u, v) whose outer product takes most of ``x``'s energy when that pays for its bytes, with the
    residual the streams then code (flat float32); else None."""
    entry = getattr(_reused, "entry", None)
    if entry is not None and entry[0] is x:
        if not entry[2]:
            entry[1:] = [_fit_guarded(x), True]
        return entry[1]
    return _fit_guarded(x)


def _fit_guarded(x: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray] | None:
    with np.errstate(all="ignore"):  # extreme magnitudes overflow float32 products: caught as non-finite below
        return _fit(x)


def _fit(x: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray] | None:
    if x.ndim < 2:
        return None
    rows = int(x.shape[0])
    cols = x.size // rows if rows else 0
    if rows < 2 or cols < 2:
        return None
    m = np.asarray(x, dtype=np.float32).reshape(rows, cols)
    column_energy = np.einsum("ij,ij->j", m, m, dtype=np.float64)  # one pass for the total and the start below
    energy = float(column_energy.sum())
    if not math.isfinite(energy) or energy == 0.0:
        return None
    cost_db = 6.02 * 16.0 * (rows + cols) / x.size
    needed = 1.0 - 10.0 ** (-(cost_db + MARGIN_DB) / 10.0)  # the energy fraction the term must take out
    v = np.sqrt(column_energy).astype(np.float32)  # column norms: a fair start
    v /= float(np.linalg.norm(v)) or 1.0
    for i in range(POWER_ITERATIONS):
        w = m @ v
        captured = float(np.dot(w.astype(np.float64), w.astype(np.float64)))  # ≤ σ1², ‖v‖ = 1
        if i == EARLY_EXIT_ITERATIONS and captured < 0.5 * needed * energy:
            return None
        v = m.T @ w
        norm = float(np.linalg.norm(v))
        if not math.isfinite(norm) or norm == 0.0:
            return None
        v /= norm
    u = m @ v
    sigma = float(np.linalg.norm(u))
    if not math.isfinite(sigma) or sigma == 0.0:
        return None
    # Balanced magnitudes (both √σ) keep float16 away from its range limits; u is then refitted to the rounded v.
    v16 = (v * math.sqrt(sigma)).astype(np.float16)
    v32 = v16.astype(np.float32)
    vv = float(v32.astype(np.float64) @ v32.astype(np.float64))
    if not np.isfinite(v32).all() or vv == 0.0:
        return None
    u16 = ((m @ v32).astype(np.float64) / vv).astype(np.float16)
    if not np.isfinite(u16).all():
        return None
    left = residual(x, (u16, v16))
    left_energy = float(np.einsum("i,i->", left, left, dtype=np.float64))
    if not math.isfinite(left_energy):
        return None
    gain_db = 10.0 * math.log10(energy / left_energy) if left_energy > 0 else math.inf
    return ((u16, v16), left) if gain_db > cost_db + MARGIN_DB else None


def outer(term: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The term's values, flat float32 (row-major): exact products of two float16 values."""
    u, v = term
    return (u.astype(np.float32)[:, None] * v.astype(np.float32)[None, :]).reshape(-1)


def residual(x: np.ndarray, term: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """What the streams code: ``x`` minus the term, flat float32."""
    return np.asarray(x, dtype=np.float32).reshape(-1) - outer(term)


def to_bytes(term: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The blob's prefix: u then v, float16 little-endian."""
    u, v = term
    return np.concatenate([u.astype("<f2"), v.astype("<f2")]).view(np.uint8)


def parse(blob: np.ndarray, shape: tuple[int, ...], codec: str) -> tuple[np.ndarray, int]:
    """The term's flat float32 values and the offset after it; ValueError for a short blob or a bad value."""
    if len(shape) == 0 or int(shape[0]) == 0:
        raise ValueError(f"{codec} codec: a rank-1 term needs a non-empty first dimension")
    rows = int(shape[0])
    cols = math.prod(shape) // rows
    size = 2 * (rows + cols)
    if blob.size < size:
        raise ValueError(f"{codec} codec: blob of {blob.size} bytes is shorter than its rank-1 term ({size} bytes)")
    halves = blob[:size].view("<f2")
    if not np.isfinite(halves).all():
        raise ValueError(f"{codec} codec: the rank-1 term holds a non-finite value")
    return outer((halves[:rows], halves[rows:])), size


__all__ = ["FORMAT_VERSION", "fit", "outer", "parse", "residual", "reuse", "to_bytes"]
