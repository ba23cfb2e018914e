"""`tcq`: entropy-coded trellis-coded quantization — ecsq's streams, levels chosen along an 8-state trellis.

A scalar quantizer gives every weight its nearest level on its own. Trellis-coded quantization (Marcellin &
Fischer) doubles the level grid and splits it into four cosets D0..D3 (level j is in D_(j mod 4)); an 8-state
trellis allows each weight only the half of the grid (D0∪D2 or D1∪D3) that its state permits, and the coset it
takes moves the state on. θ is the level's index within that half — one symbol per weight, as for ecsq — so the
stored rate is that of ecsq at the same ``step``, while the encoder, a Viterbi search per block, picks the
sequence of levels with the least squared error over the whole block. That buys the granular gain ecsq cannot
have: about 1 dB more SQNR at the same size on every distribution (uniform included), measured in
benchmarks/codec.py. The decoder is a table walk: one lookup per weight.

Layout (docs/format.md, ``tcq``): ecsq's blob, block scales and segments exactly; ``f_scale`` holds the fine
step (half the union step ``step`` × RMS). Per block, the state starts at 0; for each symbol:
    j = 2 · (symbol − 127) + (state & 1);  state = NEXT[state][j & 3];  value = f32(j) · scale[k_b]
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from hyperonnx.codec import native
from hyperonnx.codec.ecsq import ZERO, EcsqCodec

# NEXT[state][coset]: the state after a level of coset j & 3 (only the cosets of the state's parity occur).
NEXT = np.array([[0, -1, 1, -1], [-1, 2, -1, 3], [5, -1, 4, -1], [-1, 7, -1, 6],
                 [1, -1, 0, -1], [-1, 3, -1, 2], [4, -1, 5, -1], [-1, 6, -1, 7]], dtype=np.int64)
STATES = NEXT.shape[0]


def _entering_branches() -> tuple[np.ndarray, np.ndarray]:
    """For each state, the two (state, coset) branches that enter it: (states, cosets), each STATES × 2."""
    states, cosets = [[] for _ in range(STATES)], [[] for _ in range(STATES)]
    for s in range(STATES):
        for k in np.flatnonzero(NEXT[s] >= 0):
            states[NEXT[s, k]].append(s)
            cosets[NEXT[s, k]].append(int(k))
    assert all(len(e) == 2 for e in states), "every state of the trellis is entered by two branches"
    return np.array(states, dtype=np.int64), np.array(cosets, dtype=np.int64)


PRED_STATE, PRED_COSET = _entering_branches()
# Levels run over j ∈ −254…255 (symbols 0…254); the extreme levels of each coset.
LEVEL_LO = np.array([-252, -251, -254, -253], dtype=np.float64)
LEVEL_HI = np.array([252, 253, 254, 255], dtype=np.float64)
CHUNK_WEIGHTS = 1 << 18  # weights per Viterbi pass: its working arrays stay in cache (measured fastest)
COSETS = np.arange(4.0)[:, None]
# The Viterbi search's add-compare-select: state n is entered from (A_STATE[n], coset A_COSET[n]) or (B_…).
A_STATE, A_COSET = PRED_STATE[:, 0].copy(), PRED_COSET[:, 0].copy()
B_STATE, B_COSET = PRED_STATE[:, 1].copy(), PRED_COSET[:, 1].copy()
# The structure trellis_forward's slices rely on: state 2i + j comes from i through coset i (j = 0) or i ^ 2
# (j = 1), or from i + 4 through the other one.
_I, _J = np.arange(STATES) // 2, np.arange(STATES) % 2
assert (A_STATE == _I).all() and (B_STATE == _I + 4).all()
assert (A_COSET == np.where(_J == 0, _I, _I ^ 2)).all() and (B_COSET == A_COSET ^ 2).all()


def _nearest(y: np.ndarray, coset: int | np.ndarray) -> np.ndarray:
    """The level of ``coset`` nearest each scaled weight ``y`` (float64), inside the level range."""
    j = 4.0 * np.rint((y - coset) / 4.0) + coset
    return np.clip(j, LEVEL_LO[coset], LEVEL_HI[coset])


def _coset_distances(yt: np.ndarray, clipped: bool, r: np.ndarray, d: np.ndarray, spare: np.ndarray) -> None:
    """d[c] = squared distance from each ``yt`` to the nearest level of coset c (all in float64, exactly)."""
    if clipped:  # some weight near the level range's ends: clip each coset's level
        for c in range(4):
            np.subtract(yt, _nearest(yt, c), out=d[c])
    else:  # the distance to coset c is the circular distance of y mod 4 to c (exact: integers are subtracted)
        np.multiply(yt, 0.25, out=r)
        np.floor(r, out=r)
        np.multiply(r, -4.0, out=r)
        r += yt
        np.subtract(r[None], COSETS, out=d)
        np.abs(d, out=d)
        np.subtract(4.0, d, out=spare)
        np.minimum(d, spare, out=d)
    np.square(d, out=d)


def trellis_path(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The coset path of least total distance through the trellis, each row starting in state 0.

    ``d`` (positions × 4 × rows, float64): the squared distance from each weight to the nearest level of each
    coset. Returns the coset taken at each position (positions × rows, int64) and each row's total distance.
    Shared by ``tcq`` (uniform levels) and ``blocktcq`` (a block's level set).
    """
    took, cost = trellis_forward(d)
    state = np.argmin(cost, axis=0)
    total = cost[state, np.arange(state.size)]
    return trellis_backtrack(took, state, np.arange(state.size)), total


def trellis_forward(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Viterbi search's add-compare-select over ``d`` (as for ``trellis_path``): which branch entered each
    state at each position (positions × STATES × rows, True for the B branch) and each state's final cost.

    The trellis's structure turns the branch gathers into slices: state n = 2i + j (i < 4) is entered from
    state i (the A branch) or i + 4 (B), through coset i (A when j = 0, B when j = 1) or coset i ^ 2 (the other),
    so every step is eight element-wise operations on 4 × rows halves.
    """
    width, _, rows = d.shape
    swapped = np.empty_like(d)  # swapped[t, i] = d[t, i ^ 2] (two slice copies: faster than a gather)
    swapped[:, 0:2], swapped[:, 2:4] = d[:, 2:4], d[:, 0:2]
    cost = np.full((4, 2, rows), np.inf)  # cost[i, j]: state 2i + j
    cost[0, 0] = 0.0
    spare = np.empty_like(cost)
    took = np.empty((width, 4, 2, rows), dtype=np.bool_)
    a, b = np.empty((4, rows)), np.empty((4, rows))
    for t in range(width):
        low, high = cost[0:2].reshape(4, rows), cost[2:4].reshape(4, rows)  # states 0–3 and 4–7
        for j, (via_a, via_b) in enumerate(((d[t], swapped[t]), (swapped[t], d[t]))):
            np.add(low, via_a, out=a)
            np.add(high, via_b, out=b)
            np.less(b, a, out=took[t, :, j])
            np.minimum(a, b, out=spare[:, j])
        cost, spare = spare, cost
    return took.reshape(width, STATES, rows), cost.reshape(STATES, rows)


# Backtracking tables indexed by 2 · state + branch (0: A, 1: B): the state before and the coset taken.
_PREVIOUS = np.stack([A_STATE, B_STATE], axis=1).reshape(-1)
_TAKEN = np.stack([A_COSET, B_COSET], axis=1).reshape(-1)


def trellis_backtrack(took: np.ndarray, state: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The cosets (positions × len(rows), int64) of the paths that end in ``state`` for the given ``rows`` of
    ``trellis_forward``'s branch record."""
    width, _, total_rows = took.shape
    cosets = np.empty((width, rows.size), dtype=np.int64)
    state = np.asarray(state, dtype=np.int64).copy()
    for t in range(width - 1, -1, -1):
        step = 2 * state + took[t].reshape(-1)[state * total_rows + rows]
        cosets[t] = _TAKEN[step]
        state = _PREVIOUS[step]
    return cosets


def viterbi(blocks: np.ndarray, block_steps: np.ndarray) -> np.ndarray:
    """Levels j (int16, blocks × B) of least squared error along the trellis, each block starting in state 0."""
    nb, width = blocks.shape
    out = np.empty((nb, width), dtype=np.int16)
    rows_per = max(1, CHUNK_WEIGHTS // width)
    for r0 in range(0, nb, rows_per):
        steps = block_steps[r0 : r0 + rows_per, None].astype(np.float64)
        y = np.ascontiguousarray((blocks[r0 : r0 + rows_per].astype(np.float64) / steps).T)  # positions × rows
        rows = y.shape[1]
        clipped = bool(np.abs(y).max() > 250)
        d = np.empty((width, 4, rows))
        r, spare = np.empty(rows), np.empty((4, rows))
        for t in range(width):
            _coset_distances(y[t], clipped, r, d[t], spare)
        cosets, _ = trellis_path(d)
        out[r0 : r0 + rows] = _nearest(y, cosets).T
    return out


class TcqCodec(EcsqCodec):
    name: ClassVar[str] = "tcq"
    family: ClassVar[str] = "tcq"
    summary: ClassVar[str] = "entropy-coded trellis-coded θ: ecsq's streams, levels searched along an 8-state trellis"
    fine: ClassVar[float] = 0.5  # the trellis's levels are half the union step apart
    reach: ClassVar[int] = 2 * ZERO

    def levels(self, blocks: np.ndarray, block_steps: np.ndarray) -> np.ndarray:
        symbols = native.tcq_levels(blocks, block_steps)
        if symbols is not None:
            return symbols
        j = viterbi(blocks, block_steps)  # numpy: the specification, and the fallback without the library
        return ((j >> 1) + ZERO).astype(np.uint8)

    def values(self, symbols: np.ndarray, block: int) -> np.ndarray:
        n = symbols.size
        nb = -(-n // block)
        padded = np.full(nb * block, ZERO, dtype=np.int64)
        padded[:n] = symbols
        index = padded.reshape(nb, block) - ZERO
        j = np.empty_like(index)
        state = np.zeros(nb, dtype=np.int64)
        for t in range(block):
            j[:, t] = 2 * index[:, t] + (state & 1)
            state = NEXT[state, j[:, t] & 3]
        return j.reshape(-1)[:n].astype(np.float32)


__all__ = ["NEXT", "TcqCodec", "trellis_backtrack", "trellis_forward", "trellis_path", "viterbi"]
