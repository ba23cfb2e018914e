"""The paper's codec, as its official code implements it (arXiv 2409.00592, its official scheme).

Weights are taken in adjacent pairs. Each pair is matched to the nearest of n+1 codewords: the pairs'
centroid c plus a sheared m×m lattice (m = ceil(sqrt(n))) of points k·(L/m², L/m) mod L filling a square of
side L around c. Pairs outside the square are pulled in by one of C radial ring factors (C ≤ ``rings``,
chosen per tensor by mean absolute error as the official encoder does) and stored with code
``idx + (n+1)·ring``, packed at the bit width of the largest code.

Differences from the official code, each deliberate: L is relative to the tensor's standard deviation
(the official absolute L = 0.1 is ≈5σ of LLaMA-like weights and meaningless for other layers); lattice
coordinates come from integers (k div m, k mod m) so no codeword wraps to the opposite edge; the codebook is
evaluated in float32 with a fixed operation order, and the encoder finds the exact nearest codeword in O(1)
per pair by lattice rounding instead of a KD-tree.

Decoded value of code θ (all float32 operations, in this order; see docs/format.md):
    ring = θ div (n+1);  idx = θ mod (n+1);  k = idx − 1;  row = k mod m
    dx, dy = 0, 0                                   if idx = 0 (the centroid)
    dx = f32(k)·step_x − half;  dy = f32(row)·step_y − half   otherwise
    pair = (cx + dx·scale[ring], cy + dy·scale[ring])
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from hyperonnx.codec import bitpack
from hyperonnx.codec.base import Codec, Encoded

CHUNK_PAIRS = 1 << 20  # bounds the encoder's working set to a few tens of MB whatever the tensor size


def lattice_side(n: int) -> int:
    return math.isqrt(n - 1) + 1 if n > 1 else 1


class PaperCodec(Codec):
    name: ClassVar[str] = "paper"
    family: ClassVar[str] = "paper"
    defaults: ClassVar[dict[str, Any]] = {"n": 1600, "rings": 3, "L": 5.0}
    summary: ClassVar[str] = "official Hyper-Compression scheme: sheared-lattice pair codebook + outlier rings"
    int_keys: ClassVar[tuple[str, ...]] = ("n", "rings")
    float_keys: ClassVar[tuple[str, ...]] = ("center", "half", "step", "scale")
    portable: ClassVar[str | None] = "paper"  # the table generated in the graph from the side information

    # -- encoding -------------------------------------------------------------------------------------
    def encode(self, x: np.ndarray, params: dict[str, Any]) -> Encoded:
        n, max_rings, rel_side = int(params["n"]), int(params["rings"]), float(params["L"])
        if n < 1 or n > 1 << 24:
            raise ValueError(f"paper codec: n must be in 1..{1 << 24}, got {n}")
        if not 0 <= max_rings <= 255:
            raise ValueError(f"paper codec: rings must be in 0..255, got {max_rings}")
        if not rel_side > 0:
            raise ValueError(f"paper codec: L must be positive, got {rel_side}")
        flat = np.asarray(x, dtype=np.float64).reshape(-1)
        if flat.size % 2:
            flat = np.append(flat, flat.mean())  # the official pad value
        pairs = flat.reshape(-1, 2)
        center = pairs.mean(axis=0).astype(np.float32)
        std = float(flat.std())
        side = rel_side * std if std > 0 else 1.0
        m = lattice_side(n)
        half = np.float32(side / 2)
        step_x = np.float32(side / (m * m))
        step_y = np.float32(side / m)
        lattice = Lattice(n, m, float(half), float(step_x), float(step_y))
        c64 = center.astype(np.float64)

        codes = np.empty(pairs.shape[0], dtype=np.uint32)
        outer_parts = []
        far = 0.0
        for start in range(0, pairs.shape[0], CHUNK_PAIRS):
            rel = pairs[start : start + CHUNK_PAIRS] - c64
            # Column-wise ops instead of reductions over a length-2 axis: the same values, several times faster.
            inner = np.maximum(np.abs(rel[:, 0]), np.abs(rel[:, 1])) <= float(half)
            codes[start : start + rel.shape[0]] = lattice.nearest(rel)  # outer codes are overwritten below
            outer = np.flatnonzero(~inner)
            if outer.size:
                outer_parts.append(outer + start)
                far = max(far, float(np.sqrt((rel[outer] ** 2).sum(axis=1)).max()))
        outer = np.concatenate(outer_parts) if outer_parts else np.empty(0, dtype=np.int64)

        rings = 0
        scales = np.ones(1, dtype=np.float32)
        if outer.size and max_rings > 0:
            rings, scales = self._choose_rings(pairs, outer, c64, lattice, float(half), far, max_rings)
            for start in range(0, outer.size, CHUNK_PAIRS):
                sel = outer[start : start + CHUNK_PAIRS]
                ring, idx, _ = _encode_outer(pairs[sel] - c64, lattice, scales, float(half), far, rings)
                codes[sel] = idx + (n + 1) * ring
        bits = max(1, int(codes.max()).bit_length())
        return Encoded(
            codec=self.family,
            shape=tuple(int(d) for d in np.shape(x)),
            dtype=np.asarray(x).dtype.name,
            group=2,
            bits=bits,
            blob=bitpack.pack(codes, bits),
            ints={"n": (n,), "rings": (rings,)},
            floats={
                "center": (float(center[0]), float(center[1])),
                "half": (float(half),),
                "step": (float(step_x), float(step_y)),
                "scale": tuple(float(s) for s in scales),
            },
        )

    def _choose_rings(self, pairs, outer, c64, lattice, half, far, max_rings):
        """The official rule: the ring count 1..max_rings with the lowest mean absolute error (ties: larger)."""
        best = None
        for rings in range(1, max_rings + 1):
            scales = ring_scales(half, far, rings)
            err = 0.0
            for start in range(0, outer.size, CHUNK_PAIRS):
                rel = pairs[outer[start : start + CHUNK_PAIRS]] - c64
                _, _, recon = _encode_outer(rel, lattice, scales, half, far, rings)
                err += float(np.abs(recon - rel).sum())
            if best is None or err <= best[0]:
                best = (err, rings, scales)
        return best[1], best[2]

    # -- decoding -------------------------------------------------------------------------------------
    def table(self, enc: Encoded) -> np.ndarray:
        try:  # wrong lengths fail the unpacking: a malformed node, not an IndexError deep in the table
            (n,), (rings,), (half,) = enc.ints["n"], enc.ints["rings"], enc.floats["half"]
            (_, _), (_, _) = enc.floats["center"], enc.floats["step"]
        except ValueError:
            raise ValueError("paper codec: side information of the wrong length") from None
        if n < 1 or rings < 0 or len(enc.floats["scale"]) != rings + 1:
            raise ValueError("paper codec: inconsistent side information")
        return paper_table(n, enc.floats["center"], half, enc.floats["step"], enc.floats["scale"])


def ring_scales(half: float, far: float, rings: int) -> np.ndarray:
    """float32 scale of each ring: r_j / (L/2), r_j = L/2 + j·(R_far − L/2)/C; ring 0 is the square (1)."""
    radii = half + np.arange(rings + 1, dtype=np.float64) * (far - half) / rings
    radii[-1] = far
    scales = (radii / half).astype(np.float32)
    scales[0] = 1.0
    return scales


def _encode_outer(rel, lattice, scales, half, far, rings):
    """Ring, lattice index and reconstruction (relative to c) of pairs lying outside the square."""
    dist = np.sqrt(rel[:, 0] ** 2 + rel[:, 1] ** 2)
    radii = half * scales.astype(np.float64)
    ring = np.searchsorted(radii[1:], dist, side="left") + 1  # smallest ring j ≥ 1 with dist ≤ r_j
    ring = np.minimum(ring, rings)
    factor = scales.astype(np.float64)[ring]
    idx = lattice.nearest(rel / factor[:, None])
    recon = lattice.points(idx) * factor[:, None]
    return ring.astype(np.uint32), idx, recon


class Lattice:
    """The n+1 codewords relative to c, with an exact O(1) nearest-codeword search."""

    def __init__(self, n: int, m: int, half: float, step_x: float, step_y: float):
        self.n, self.m, self.half, self.step_x, self.step_y = n, m, half, step_x, step_y
        # Full rows (n a perfect square) leave the nearest point in one of the two rows around the target;
        # a ragged last column can push it one row further, so then two more rows are checked.
        self.row_offsets = (0, 1) if n == m * m else (-1, 0, 1, 2)

    def points(self, idx: np.ndarray) -> np.ndarray:
        """Codewords (float64, relative to c) of indices ``idx``; index 0 is the centroid."""
        k = idx.astype(np.int64) - 1
        row = np.mod(k, self.m)
        pts = np.stack([k * self.step_x - self.half, row * self.step_y - self.half], axis=1)
        pts[idx == 0] = 0.0
        return pts

    def nearest(self, rel: np.ndarray) -> np.ndarray:
        """Index (0..n) of the nearest codeword to each row of ``rel`` (pairs relative to c)."""
        m, n = self.m, self.n
        ux = rel[:, 0] + self.half
        uy = rel[:, 1] + self.half
        base_row = np.floor(uy / self.step_y).astype(np.int64)
        best_d = rel[:, 0] ** 2 + rel[:, 1] ** 2  # the centroid, index 0
        best_k = np.full(rel.shape[0], -1, dtype=np.int64)
        col_pitch = self.step_x * m
        for off in self.row_offsets:
            row = np.clip(base_row + off, 0, m - 1)
            last_col = (n - 1 - row) // m
            col = np.rint((ux - row * self.step_x) / col_pitch)
            col = np.clip(col, 0, last_col).astype(np.int64)
            k = col * m + row
            d = (k * self.step_x - ux) ** 2 + (row * self.step_y - uy) ** 2
            better = d < best_d
            best_d = np.where(better, d, best_d)
            best_k = np.where(better, k, best_k)
        return (best_k + 1).astype(np.uint32)


def paper_table(n, center, half, step, scale) -> np.ndarray:
    """The decode table, (n+1)·(rings+1) rows of float32 pairs, built with the format's float32 operations."""
    f32 = np.float32
    k = np.arange(-1, n, dtype=np.int64)  # idx − 1 for idx = 0..n
    row = np.mod(k, lattice_side(n))
    dx = k.astype(f32) * f32(step[0]) - f32(half)
    dy = row.astype(f32) * f32(step[1]) - f32(half)
    dx[0] = dy[0] = f32(0)
    s = np.asarray(scale, dtype=f32)[:, None]
    x = f32(center[0]) + dx[None, :] * s
    y = f32(center[1]) + dy[None, :] * s
    return np.stack([x.reshape(-1), y.reshape(-1)], axis=1).astype(f32)


class PaperCnnCodec(PaperCodec):
    """The official UNet / CNN setting (n = 225)."""

    name: ClassVar[str] = "paper-cnn"
    defaults: ClassVar[dict[str, Any]] = {"n": 225, "rings": 3, "L": 5.0}
    summary: ClassVar[str] = "paper codec at the official CNN setting (n = 225)"
