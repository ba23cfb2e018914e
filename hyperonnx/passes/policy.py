"""The default conversion policy: a per-tensor weight-SQNR target, met with the fewest bytes, no data needed.

``hyperonnx convert model.onnx`` with no codec, no budget and no data lands here. Every selected tensor gets a
target signal-to-noise ratio of its weights (dB) from its shape and its place in the graph alone, so no input
distribution — generated or real — can make any tensor less precise than the target says:

- **floor** (:data:`FLOOR_DB`): no tensor goes below it, except a lookup table's rows (below).
- **matmul** (:data:`MATMUL_DB`): a weight that a MatMul reads (the linear layers of transformers, as exporters
  write them). A transformer stacks the same blocks, each adding its layers' noise to the residual stream that the
  next one reads: on all-MiniLM-L6-v2 the output noise grows fourfold from the first block to the last and its
  linear layers give 96 % of it.
- **lookup table** (:data:`LOOKUP_DB`): a tensor read only by Gather (an embedding). Each input reads a few of its
  rows, once, at the bottom of the model: on all-MiniLM-L6-v2 the word embeddings hold 52 % of the weights and give
  4 % of the output noise at the floor. The bytes this saves pay for the matmul target.
- **small-tensor**: ``BALANCE_DB − 10·log10(numel)``, above the floor for tensors under ~80 k weights. This is the
  allocation that minimises the sum of every tensor's relative weight noise for the bytes spent (each tensor
  counted alike, as the budget allocator does): a layer's relative weight noise becomes about the same relative
  noise in its output whatever its size, and a small tensor buys its decibels cheaply (+3 dB for half the
  weights). Depthwise kernels, the stem and the heads are small and sensitive; they come out fine here.
- **protected** (:data:`PROTECT_DB`): depthwise (one input channel per group) convolution kernels, and the first
  and the last weight tensor in graph order when they hold at most :data:`PROTECT_MAX_ELEMENTS` weights (a large
  embedding table or classifier would cost more than its protection buys).

The codec is ``tcq`` (entropy-coded trellis quantization: the least noise per byte hyperonnx has) in the ``ort``
form, ``blocktcq`` in the ``portable`` form (no entropy decoder there). A step is predicted from the target
(uniform-quantizer noise, step²/12 of each block's energy; the trellis gains about 1 dB), the tensor encoded, and
the step corrected from the measured SQNR when the target was missed, or overshot by the rank-1 term: one to
three encodings a tensor, not a whole ladder. Every tensor's report line and decoder node say its target and why
(``reason``). Constants and what they measured: docs/default.md.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import onnx

from hyperonnx import codec, model_io, workspace
from hyperonnx.codec import grid, rank1
from hyperonnx.passes import compress, fuse
from hyperonnx.passes.graphs import walk
from hyperonnx.passes.portable.emit import check_portable
from hyperonnx.passes.select import Selection, WeightSite, choose, find_sites

FLOOR_DB = 33.0
MATMUL_DB = 35.0
LOOKUP_DB = 31.0
PROTECT_DB = 42.0
BALANCE_DB = 82.0
CEILING_DB = 48.0  # about what tcq reaches on blocks with outliers (±127 levels): more only costs bytes
PROTECT_MAX_ELEMENTS = 1 << 18
# Tensors from this size up are compressed (4096 for the fixed-rate codecs): stored near the ceiling they still
# take 3× fewer bytes than raw, and on PP-OCRv4 det those of 1024-4095 weights are 12 % of the converted file.
MIN_ELEMENTS = 1024

# tcq's SQNR at a relative step s: 10·log10(12 / s²) + 1.0 dB (uniform noise of step s, the trellis's granular
# gain; measured on Gaussian weights: 29.8 dB at s = 0.125, 35.8 at 0.0625).
TCQ_GAIN_DB = 0.9
TOLERANCE_DB = 0.3  # a target counts as met this close: on real weights the prediction falls 0-0.3 dB short
STEP_RANGE = (0.01, 4.0)  # the entropy-coded codecs' accepted steps
OVERSHOOT_DB = 2.0  # above the target by this much (a rank-1 term took most of the energy): try a coarser step
SATURATED_DB = 0.5  # a finer step that gains less than this: the block's outliers cap its SQNR
SMALL_BLOCK = 16  # then blocks of 16 weights (fewer outliers per block scale; +1-2 bits a weight on them)
# Blocks of 64 for every tensor: the smallest of B in {64 … 4096} per tensor, at the same target, saves 1.0 % of
# the terrain UNet's θ bytes (0.5 % of MobileNetV2's, 1.3 % of PP-OCRv4 det's) for five encodings instead of one
# (benchmarks/tcq_blocks.py), and terrain needed 3.4 % to reach 4×.
BLOCK = 64
MAX_ENCODINGS = 4
# Why a weight on an exact grid was coded lossily (call mode, read by a fused op): the report's reason says so.
OFF_GRID_REASON = "off its exact grid: a fused op reads it in call mode"
# blocktcq (portable form): about 6 dB a bit, 29.6 dB at 5 bits on Gaussian weights.
BLOCKTCQ_DB_AT_5_BITS = 29.6
BLOCKTCQ_BITS = (2, 8)


@dataclass
class Target:
    sqnr_db: float
    reason: str


def targets(model: onnx.ModelProto, chosen: list[WeightSite]) -> list[Target]:
    """Each chosen tensor's SQNR target and why (one of floor, matmul, lookup table, small-tensor, protected: …)."""
    order = first_use(model)
    position = [order.get((id(site.graph), site.name), 0) for site in chosen]
    first = min(range(len(chosen)), key=lambda i: position[i]) if chosen else -1
    last = max(range(len(chosen)), key=lambda i: position[i]) if chosen else -1
    out = []
    for i, site in enumerate(chosen):
        sqnr, reason = _base(site)
        balanced = BALANCE_DB - 10.0 * math.log10(max(site.numel, 1))
        if balanced > sqnr:
            sqnr, reason = balanced, "small-tensor"
        why = _protection(site, i == first, i == last)
        if why and PROTECT_DB > sqnr:
            sqnr, reason = PROTECT_DB, f"protected: {why}"
        out.append(Target(round(min(sqnr, CEILING_DB), 2), reason))
    return out


def _base(site: WeightSite) -> tuple[float, str]:
    readers = {op for op, _ in site.used_by}
    if "MatMul" in readers:
        return MATMUL_DB, "matmul"
    if readers == {"Gather"}:
        return LOOKUP_DB, "lookup table"
    return FLOOR_DB, "floor"


def _protection(site: WeightSite, first: bool, last: bool) -> str | None:
    dims = list(site.tensor.dims)
    if any(op in ("Conv", "ConvTranspose") and slot == 1 for op, slot in site.used_by) and len(dims) >= 3 \
            and dims[1] == 1:
        return "depthwise"
    if site.numel <= PROTECT_MAX_ELEMENTS:
        if first:
            return "first layer"
        if last:
            return "last layer"
    return None


def first_use(model: onnx.ModelProto) -> dict[tuple[int, str], int]:
    """(graph, tensor name) → position of the first node that reads it, counting nodes over every graph in walk
    order (subgraphs after their parents)."""
    order: dict[tuple[int, str], int] = {}
    position = 0
    for scope in walk(model.graph):
        for node in scope.graph.node:
            for name in node.input:
                order.setdefault((id(scope.graph), name), position)
            position += 1
    return order


def predicted_step(target_db: float) -> float:
    step = math.sqrt(12.0) * 10.0 ** (-(target_db - TCQ_GAIN_DB) / 20.0)
    return min(max(step, STEP_RANGE[0]), STEP_RANGE[1])


def encode_to_target(array: np.ndarray, target_db: float, form: str = "ort", exact_grids: bool = True,
                     fixed_rate: bool = False, block: int = BLOCK) -> tuple[codec.Encoded, float] | str:
    """The smallest encoding found whose weight SQNR reaches ``target_db`` (within :data:`TOLERANCE_DB`):
    (Encoded, SQNR), or the reason the codec cannot encode the tensor. A weight on an exact float16 grid is stored
    exactly (``ort`` form). Where no step reaches the target (blocks whose outliers need more than the ±127 levels
    the format holds), the best SQNR found is kept. ``fixed_rate`` (and the portable form): blocktcq instead of
    tcq. ``block``: tcq's block of weights per scale code (1…4096), until finer steps stop helping: then
    :data:`SMALL_BLOCK` where that is smaller."""
    if exact_grids and form == "ort":
        exact = grid.detect(array)
        if exact is not None:
            return exact, float("inf")
    if form != "ort" or fixed_rate:
        return _blocktcq_to_target(array, target_db)
    goal = target_db - TOLERANCE_DB
    step, tried = predicted_step(target_db), []
    options = {"step": round(step, 6), "block": block}
    for _ in range(MAX_ENCODINGS):
        result = compress.encode_tensor(array, "tcq", options)
        if isinstance(result, str):
            return result
        tried.append(result)
        sqnr = result[1]
        if not np.isfinite(sqnr) or goal <= sqnr < target_db + OVERSHOOT_DB:
            break
        if len(tried) > 1 and sqnr < goal and sqnr < tried[-2][1] + SATURATED_DB:
            if options["block"] <= SMALL_BLOCK:
                break
            options = dict(options, block=SMALL_BLOCK)  # saturated: smaller blocks reach past the outliers
            continue
        # Off by (sqnr − target) dB: move the step by that much, with a little to spare on the way down.
        step = min(max(step * 10.0 ** ((sqnr - target_db - 0.25) / 20.0), STEP_RANGE[0]), STEP_RANGE[1])
        if step == options["step"]:
            break
        options = dict(options, step=round(step, 6))
    met = [r for r in tried if r[1] >= goal]
    if met:
        return min(met, key=lambda r: r[0].nbytes)
    return max(tried, key=lambda r: r[1])  # as close as the codec gets


def _blocktcq_to_target(array: np.ndarray, target_db: float) -> tuple[codec.Encoded, float] | str:
    low, high = BLOCKTCQ_BITS
    bits = min(max(5 + math.ceil((target_db - BLOCKTCQ_DB_AT_5_BITS) / 6.0), low), high)
    result = compress.encode_tensor(array, "blocktcq", {"bits": bits})
    while not isinstance(result, str) and result[1] < target_db and bits < high:
        bits += 1
        result = compress.encode_tensor(array, "blocktcq", {"bits": bits})
    return result


def compress_default(
    model: onnx.ModelProto,
    *,
    selection: Selection | None = None,
    form: str = "ort",
    mode: str = "load",
    jobs: int | None = None,
    progress: Callable[[str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    base_dir: str | os.PathLike | None = None,
    exact_grids: bool = True,
    spool: model_io.BlobSpool | None = None,
) -> compress.CompressReport:
    """Compress ``model`` in place by the default policy; the report names each tensor's target and reason.
    ``on_start``, ``progress`` and ``spool`` as for :func:`compress.compress_model`."""
    compress.check_form_and_mode(form, mode)
    started = time.perf_counter()
    chosen, skipped = choose(find_sites(model), selection or Selection())
    plan = targets(model, chosen)
    rewriter = compress.GraphRewriter(model, form, mode, skipped, progress, spool)
    jobs = max(1, jobs or os.cpu_count() or 1)
    if form == "portable":
        check_portable(rewriter.opset, chosen)
    if on_start:
        on_start(len(chosen))
    # call mode decodes on every run: blocktcq, which the fused kernels multiply from directly (HyperMatMul),
    # where tcq's rANS streams decode sequentially and fuse with nothing
    fixed_rate = form != "ort" or mode == "call"
    exact = exact_grids and form == "ort"
    relaxed = [False] * len(chosen)
    if exact and mode == "call":
        # Nor does the exact grid codec fuse: a weight on a GGUF grid that a fused op would read is coded with
        # blocktcq at its target instead, or call mode decodes it whole on every run (SmolLM2-135M: 40x fp32)
        fused = fuse.fusable_weights(model)
        relaxed = [len(s.tensor.dims) == 2 and (id(s.graph), s.name) in fused for s in chosen]
    with ThreadPoolExecutor(max_workers=jobs, initializer=workspace.keep) as pool:
        stream = _stream(pool, chosen, plan, form, jobs, base_dir, exact, relaxed, fixed_rate)
        for (site, result, off_grid), target in zip(stream, plan):
            reason = f"{target.reason}, {OFF_GRID_REASON}" if off_grid else target.reason
            rewriter.add(site, result, target.sqnr_db, reason)
    report = rewriter.finish()
    report.seconds = time.perf_counter() - started
    report.policy = {"name": "default", "floor_db": FLOOR_DB, "matmul_db": MATMUL_DB, "lookup_db": LOOKUP_DB,
                     "protect_db": PROTECT_DB, "balance_db": BALANCE_DB,
                     "codec": "blocktcq" if fixed_rate else "tcq"}
    return report


def _stream(pool, chosen, plan, form, jobs, base_dir, exact_grids, relaxed,
            fixed_rate) -> Iterator[tuple[WeightSite, object, bool]]:
    """(site, encoding or skip reason, whether it lies on an exact grid it was not stored on) in order, at most
    jobs + 1 tensors in flight (a tensor in external data is read by its worker). ``relaxed``: per site, whether
    call mode codes it lossily even on an exact grid (then checked, for the report's reason)."""
    def work(values, target, off):
        # read into the worker's scratch (hyperonnx.workspace): nothing made here keeps the array past this call
        array = values(scratch=True) if callable(values) else values
        with rank1.reuse(array):  # its step corrections code the same tensor: one rank-1 fit
            result = encode_to_target(array, target, form, exact_grids and not off, fixed_rate)
        return result, off and grid.detect(array) is not None

    pending = []
    for site, target, off in zip(chosen, plan, relaxed):
        pending.append((site, pool.submit(work, compress.tensor_values(site, base_dir), target.sqnr_db, off)))
        if len(pending) > jobs:
            site_done, future = pending.pop(0)
            yield (site_done, *future.result())
    for site, future in pending:
        yield (site, *future.result())


__all__ = ["FLOOR_DB", "LOOKUP_DB", "MATMUL_DB", "PROTECT_DB", "Target", "compress_default", "encode_to_target", "first_use", "targets"]
