"""Bit allocation to a size budget: each tensor gets the setting that buys the most fidelity per byte.

Every tensor is encoded at each candidate setting; then, starting from the cheapest setting everywhere, the
upgrade with the largest drop in relative noise (noise/signal, every tensor weighted alike) per extra byte is
taken, while the total stays within the budget. Weighting tensors alike, not by size, favours small tensors
(depthwise and first/last layers), which hold few bytes and whose errors matter out of proportion to their size.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from hyperonnx import codec

# Settings tried per codec family when a size or fidelity budget is given, from the codec traits (each ladder runs
# from the smallest encoding to the largest; compress._candidates stops below an exact grid's).
BUDGET_OPTIONS = {family: [dict(rung) for rung in c.budget_ladder] for family, c in codec.families().items()
                  if c.budget_ladder}
# Options that vary continuously: after allocation, what the ladder's steps leave of the budget is spent on
# settings between a tensor's choice and its next rung (``between``).
CONTINUOUS_OPTIONS = {family: c.continuous_option for family, c in codec.families().items() if c.continuous_option}


def ladder(codec_name: str, family: str, options: dict, needs: str) -> list[dict]:
    """The codec family's budget settings, smallest encoding first, each merged over the user's ``options``;
    ValueError naming what ``needs`` them when the family has none."""
    rungs = BUDGET_OPTIONS.get(family)
    if not rungs:
        raise ValueError(f"{needs} needs a codec with candidate settings, a bits option or a step "
                         f"({', '.join(sorted(BUDGET_OPTIONS))}), not {codec_name!r}")
    return [dict(options, **rung) for rung in rungs]


REFINE_ROUNDS = 5  # bisection rounds between two rungs: 1/32 of a rung's bytes left unspent at most


def between(low: float, high: float, t: float) -> float:
    """The setting a fraction ``t`` of the way from rung ``low`` (t = 0) to rung ``high`` (t = 1), geometrically."""
    return low * (high / low) ** t


def upgrade_order(candidates: list[list[Candidate]], choice: list[int],
                  weights: list[float] | None = None) -> list[int]:
    """Tensors whose next rung exists, by (weighted) noise saved per extra byte (the allocator's own criterion),
    best first."""
    scored = []
    for t, (cands, i) in enumerate(zip(candidates, choice)):
        if i + 1 < len(cands):
            gain = (cands[i].rel_noise - cands[i + 1].rel_noise) * (1.0 if weights is None else weights[t])
            scored.append((-gain / max(cands[i + 1].nbytes - cands[i].nbytes, 1), t))
    return [t for _, t in sorted(scored)]


@dataclass
class Candidate:
    nbytes: int
    rel_noise: float  # noise energy / signal energy
    payload: object  # what the caller needs to emit this choice (the Encoded, its SQNR); None: not held
    options: dict | None = None  # the codec options that made it (None: not a ladder setting, e.g. an exact grid)
    encoded_bytes: int | None = None  # the encoding's own size, to check one made again
    # the tensor's rank-1 term as its ladder found it ((u, v), or None: no term pays); False: not fitted
    rank1_term: object = False


def allocate(candidates: list[list[Candidate]], budget_bytes: float,
             weights: list[float] | None = None) -> list[int]:
    """Index of the chosen candidate per tensor. Candidates of a tensor must be sorted by size.

    ``weights`` (one per tensor, default all 1) scales each tensor's relative noise, e.g. by its measured effect
    on the model's outputs (:mod:`hyperonnx.tune`), so the upgrades that buy the most output fidelity per byte
    come first. Returns the cheapest choice everywhere when even that exceeds the budget (the caller reports it).
    """
    if weights is not None and len(weights) != len(candidates):
        raise ValueError(f"{len(weights)} weights for {len(candidates)} tensors")
    choice = [0] * len(candidates)
    total = sum(c[0].nbytes for c in candidates)
    heap: list[tuple[float, int, int]] = []

    def push(t: int) -> None:
        i = choice[t]
        if i + 1 < len(candidates[t]):
            here, there = candidates[t][i], candidates[t][i + 1]
            gain = (here.rel_noise - there.rel_noise) * (1.0 if weights is None else weights[t])
            cost = max(there.nbytes - here.nbytes, 1)
            heapq.heappush(heap, (-gain / cost, t, i))

    for t in range(len(candidates)):
        push(t)
    while heap:
        _, t, i = heapq.heappop(heap)
        if choice[t] != i:
            continue
        step = candidates[t][i + 1].nbytes - candidates[t][i].nbytes
        if total + step > budget_bytes:
            continue  # this upgrade does not fit; a cheaper one elsewhere still might
        choice[t] = i + 1
        total += step
        push(t)
    return choice
