"""The compression pass: encode each selected weight and rewrite it as a decoder.

Two public steps, which :func:`compress_model` chains and the fidelity search (:mod:`hyperonnx.tune`) drives
itself: :func:`encode_tensor` / :func:`encode_candidates` (one tensor at one setting, or at every rung of a budget
ladder), then :class:`GraphRewriter` (each selected tensor's encoding, or the reason it stays raw, into the graph).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from hyperonnx import codec, model_io, workspace
from hyperonnx.codec import grid, native, rank1
from hyperonnx.ops import DOMAIN, OPSET_VERSION, register_schemas
from hyperonnx.passes import budget, emit, fuse, ort_node
from hyperonnx.passes.portable.emit import check_portable, emit_portable, portable_bytes
from hyperonnx.passes.select import Selection, Skipped, WeightSite, choose, find_sites

FORMS = ("ort", "portable")  # what a decoder is made of: the op library's node, or standard ONNX ops (--runtime)
MODES = ("load", "call")  # when the op library decodes: once per session, or on every run (--decode)

# One tensor's encoding and its SQNR in dB (where a str stands beside it: the reason the tensor stays raw).
Encoding = tuple[codec.Encoded, float]


@dataclass
class TensorReport:
    name: str
    graph: str
    shape: tuple[int, ...]
    dtype: str
    codec: str
    bits_per_weight: float
    sqnr_db: float
    bytes_before: int
    bytes_after: int
    target_db: float | None = None  # the default policy's weight-SQNR target (passes/policy.py)
    reason: str | None = None  # and why the tensor got it

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__, shape=list(self.shape))
        return {k: v for k, v in out.items() if v is not None or k not in ("target_db", "reason")}


@dataclass
class CompressReport:
    tensors: list[TensorReport] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0
    budget: dict[str, Any] | None = None
    policy: dict[str, Any] | None = None  # the default policy's constants, when it chose the settings


def sqnr_db(original: np.ndarray, decoded: np.ndarray, chunk: int = 1 << 20) -> float:
    # The library sums the same terms in the same order (numpy's pairwise sums, in these chunks) without copies.
    sums = native.sqnr_sums(original, decoded) if chunk == 1 << 20 else None
    if sums is not None:
        signal, noise = sums
    else:  # in chunks: float64 copies of a whole large tensor would double the converter's peak memory
        x_all, y_all = original.reshape(-1), decoded.reshape(-1)
        signal = noise = 0.0
        for start in range(0, x_all.size, chunk):
            x = x_all[start : start + chunk].astype(np.float64)
            noise += float(((x - y_all[start : start + chunk].astype(np.float64)) ** 2).sum())
            signal += float((x**2).sum())
    if noise == 0.0:
        return float("inf")
    return 10.0 * np.log10(max(signal, 1e-300) / noise)


def check_form_and_mode(form: str, mode: str) -> None:
    """ValueError for a decoder form or decode mode that does not exist."""
    if form not in FORMS:
        raise ValueError(f"unknown runtime {form!r} (choose from {', '.join(FORMS)})")
    if mode not in MODES:
        raise ValueError(f"unknown decode mode {mode!r} (choose from {', '.join(MODES)})")


def encode_tensor(values: Callable[[], np.ndarray] | np.ndarray, codec_name: str,
                  options: dict, exact_grids: bool = False) -> Encoding | str:
    """One tensor (or a reader of it) encoded with ``options``, with its SQNR; an exact `grid` encoding first
    when ``exact_grids`` and the weight lies on one; the codec's refusal as a string."""
    array = values() if callable(values) else values  # a file read raises HyperonnxError: not a skip
    if exact_grids:
        exact = grid.detect(array)
        if exact is not None:
            return exact, float("inf")
    try:
        enc = codec.encode(array, codec_name, **options)
    except ValueError as exc:
        return str(exc)
    # the library's decoder: the same bits as numpy's, 2.5-60x faster (one thread); into scratch memory, as it is
    # only summed
    dtype = codec.base.dtype_from_name(enc.dtype)
    decoded = native.decode(enc, workspace.array("decoded", enc.numel, dtype))
    return enc, sqnr_db(array, codec.decode(enc) if decoded is None else decoded)


def compress_model(
    model: onnx.ModelProto,
    *,
    codec_name: str = codec.DEFAULT_CODEC,
    options: dict | None = None,
    selection: Selection | None = None,
    form: str = "ort",
    mode: str = "load",
    jobs: int | None = None,
    progress: Callable[[str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    target_bpw: float | None = None,
    max_bytes: int | None = None,
    input_bytes: int | None = None,
    base_dir: str | os.PathLike | None = None,
    exact_grids: bool = True,
    tensor_weights: list[float] | None = None,
    floor_db: float | None = None,
    spool: model_io.BlobSpool | None = None,
) -> CompressReport:
    """Compress ``model`` in place. Raises ValueError for an unknown codec/option/form/mode.

    ``on_start`` is told how many tensors will be encoded, before the first; ``progress`` then receives the name
    of each tensor as it is written.

    Weights may still be in external data (a model from :func:`model_io.load_lazy`; ``base_dir``: its folder):
    each is read by the worker that encodes it, so only the tensors being encoded are in memory.

    With ``target_bpw`` (bits per compressed weight, everything stored counted) or ``max_bytes`` (the whole
    output file; needs ``input_bytes``, the input's size), each tensor's setting is chosen by
    :func:`budget.allocate` among its candidates: the tensor encoded at each rung of the codec's budget ladder.

    ``exact_grids``: a weight that already lies on a float16 block grid (dequantized from a llama.cpp
    checkpoint) is stored exactly with the `grid` codec (``ort`` runtime only); under a budget, that exact
    encoding competes with the ladder's rungs as the top candidate.

    ``tensor_weights`` (one per selected tensor, in selection order; :func:`hyperonnx.sensitivity.measure`)
    scale each tensor's relative noise in the budget allocation; without them every tensor counts alike.

    ``floor_db``: under a budget, no tensor gets a setting whose weight SQNR is below it (the default policy's
    floor, for allocations weighted by sensitivity measured on generated inputs).

    ``spool``: each tensor's θ blob goes there as soon as it is rewritten (:class:`GraphRewriter`); the model must
    then be saved with it (:func:`model_io.save`).
    """
    check_form_and_mode(form, mode)
    options = dict(options or {})
    codec.check_options(codec_name, options)  # validate options and their values before any work
    started = time.perf_counter()
    chosen, skipped = choose(find_sites(model), selection or Selection())
    rewriter = GraphRewriter(model, form, mode, skipped, progress, spool)
    jobs = max(1, jobs or os.cpu_count() or 1)

    # Tensors are encoded in parallel threads (numpy releases the GIL) but the graph is rewritten in order,
    # one tensor at a time, so the result does not depend on --jobs. At most jobs + 1 tensors are in flight.
    if form == "portable":
        check_portable(rewriter.opset, chosen)
    if on_start:
        on_start(len(chosen))
    budgeted = target_bpw is not None or max_bytes is not None
    if budgeted:
        rungs = budget.ladder(codec_name, codec.get_codec(codec_name).family, options, "a size budget")
    exact_grids = exact_grids and form == "ort"  # rANS streams have no standard-op form
    with ThreadPoolExecutor(max_workers=jobs, initializer=workspace.keep) as pool:
        if budgeted:
            if tensor_weights is not None and len(tensor_weights) != len(chosen):
                raise ValueError(f"{len(tensor_weights)} tensor weights for {len(chosen)} selected tensors")
            finished = _encode_budgeted(pool, chosen, codec_name, rungs, form, jobs, target_bpw, max_bytes,
                                        input_bytes, rewriter.report, base_dir, exact_grids, tensor_weights,
                                        floor_db)
        else:
            finished = _stream(pool, chosen, codec_name, options, jobs, base_dir, exact_grids)
        for site, result in finished:
            rewriter.add(site, result)
    report = rewriter.finish()
    report.seconds = time.perf_counter() - started
    return report


class GraphRewriter:
    """Rewrites ``model``'s selected tensors, in selection order, each from its encoding (into a decoder of the
    ``form``) or its skip reason (kept raw, and reported), then :meth:`finish` applies the rewrites.

    With a ``spool`` (:class:`model_io.BlobSpool`) each decoder's large initializers (θ blobs) are written there as
    the tensor is added, so the rewriter holds only small ones: a conversion's memory does not grow with the
    model (the encoders keep at most jobs + 1 tensors in flight)."""

    def __init__(self, model: onnx.ModelProto, form: str, mode: str, skipped: list[Skipped] | None = None,
                 progress: Callable[[str], None] | None = None, spool: model_io.BlobSpool | None = None):
        check_form_and_mode(form, mode)
        register_schemas()
        self.model, self.form, self.mode, self.progress, self.spool = model, form, mode, progress, spool
        self.report = CompressReport(skipped=list(skipped or []))
        self.opset = emit.model_opset(model)
        self.namer = emit.Namer(model.graph)  # one for the whole model: names stay unique across subgraphs
        self.rewrites: dict[int, tuple[onnx.GraphProto, list[emit.Rewrite]]] = {}

    def add(self, site: WeightSite, result: Encoding | str, target_db: float | None = None,
            reason: str | None = None) -> None:
        """One selected tensor: its encoding, or the reason it stays raw. ``target_db`` and ``reason``: the
        default policy's weight-SQNR target for it and why (recorded in the decoder, so ``inspect`` shows them)."""
        if isinstance(result, str):
            self.report.skipped.append(Skipped(site.name, result))
        else:
            enc, sqnr = result
            bytes_before = site.numel * np.dtype(codec.base.dtype_from_name(enc.dtype)).itemsize
            stats = {"sqnr_db": round(sqnr, 3) if np.isfinite(sqnr) else None, "bytes_before": bytes_before}
            if target_db is not None:
                stats.update(target_db=target_db, reason=reason)
            if self.form == "ort":
                rewrite = ort_node.emit_ort(site, self.namer, enc, self.mode, stats, self.spool)
                after = enc.nbytes
            else:
                rewrite = emit_portable(site, self.namer, enc, stats, self.opset)
                after = portable_bytes(enc)
            if self.spool is not None:
                rewrite.initializers = [self.spool.take(tensor) for tensor in rewrite.initializers]
            self.rewrites.setdefault(id(site.graph), (site.graph, []))[1].append(rewrite)
            # The original values are no longer needed: drop them now so memory stays at one model, not two.
            for field_name in ("raw_data", "float_data", "int32_data", "double_data"):
                site.tensor.ClearField(field_name)
            self.report.tensors.append(TensorReport(site.name, site.graph_path, enc.shape, enc.dtype, enc.codec,
                                                    8.0 * after / enc.numel, sqnr, bytes_before, after,
                                                    target_db, reason))
        if self.progress:
            self.progress(site.name)

    def finish(self) -> CompressReport:
        """Apply the rewrites to the graphs and declare the op domain when a node of it was added."""
        # Subgraphs first: rewriting a parent graph copies its nodes, and with them their subgraph attributes.
        for graph, graph_rewrites in reversed(list(self.rewrites.values())):
            emit.apply(graph, graph_rewrites)
        self.rewrites = {}
        model = self.model
        if self.form == "ort" and self.mode == "call":
            fuse.fuse_model(model)  # HyperDecode → MatMul pairs become HyperMatMul (docs/fused.md)
        if self.report.tensors and self.form == "ort" and not any(o.domain == DOMAIN for o in model.opset_import):
            model.opset_import.append(onnx.helper.make_opsetid(DOMAIN, OPSET_VERSION))
        return self.report


def _stream(pool, chosen, codec_name, options, jobs, base_dir, exact_grids=False):
    """(site, encoding or skip reason) in order, with at most jobs + 1 tensors in flight (memory: one working set
    per worker; a tensor in external data is read only when a worker starts on it)."""
    pending = []
    for site in chosen:
        pending.append((site, pool.submit(encode_tensor, tensor_values(site, base_dir), codec_name, options, exact_grids)))
        if len(pending) > jobs:
            site_done, future = pending.pop(0)
            yield site_done, future.result()
    for site, future in pending:
        yield site, future.result()


# A size budget encodes every tensor at every rung of its ladder, about 5 bytes per weight in all (the rungs' bits
# add up to ~40), more than the fp32 model itself. Up to this many bytes of those encodings are held for the
# emit step; beyond it only each rung's size and noise are kept, and the chosen rung is encoded again (the
# encoders are deterministic), so a budgeted conversion's memory stays bounded like a plain one's.
HELD_CANDIDATE_BYTES = 256 << 20
# Of the ladders not held, the exact grid encodings (about a byte a weight) are still kept up to this many bytes: a
# chosen grid is otherwise detected again, which costs what detecting it did. SmolLM2's budget: its embedding's
# rungs fill HELD_CANDIDATE_BYTES, and 154 of its 211 weights lie on grids (3.6 of 36 CPU-s detected twice).
HELD_EXACT_BYTES = 128 << 20
FLOOR_SLACK_DB = 1.5  # a budget ladder's rung this far below a floor still counts as on it (rungs are 3 dB apart)
_LADDER_BYTES_PER_WEIGHT = 5


def encode_candidates(values: Callable[[], np.ndarray] | np.ndarray, codec_name: str, rungs: list[dict],
                      form: str, name: str | None = None, exact_grids: bool = False,
                      hold: bool = True, floor_db: float | None = None,
                      pool: ThreadPoolExecutor | None = None) -> list[budget.Candidate] | str:
    """One tensor encoded at every rung of a budget ladder: its candidates, cheapest first (or the codec's
    refusal). With ``name`` (a whole-file budget, ``ort`` form), sizes are the serialized bytes of the decoder and
    its blob, so the file size can be predicted exactly. An exact grid encoding (``exact_grids``) is the top
    candidate (``options`` None); rungs larger than it are dropped (it dominates them). ``hold`` False: the
    candidates keep their size and noise, not their encoding (payload None; :func:`_encode_choice` makes it
    again), except the exact grid encoding, which the caller may keep (it is small, and detecting it again costs
    as much as detecting it). ``floor_db``: rungs more than :data:`FLOOR_SLACK_DB` below that weight SQNR are
    dropped (the finest one stays when none reaches it). ``pool``: a tensor of SHARED_LADDER_WEIGHTS or more offers its rungs to that
    pool's idle workers (:class:`_SharedRungs`); the candidates are the same."""
    array = values() if callable(values) else values
    exact = grid.detect(array) if exact_grids else None
    out = [] if exact is None else [_candidate((exact, float("inf")), None, form, name)]

    def make(opts: dict) -> budget.Candidate | str:
        result = encode_tensor(array, codec_name, opts)
        return result if isinstance(result, str) else _candidate(result, opts, form, name, hold)

    def last(candidate: budget.Candidate | str) -> bool:  # no finer rung is made after this one
        # a refusal ends the ladder; so does a setting larger than the exact encoding (every finer one is too)
        return isinstance(candidate, str) or (exact is not None and candidate.nbytes > out[0].nbytes)

    with rank1.reuse(array):  # every rung codes the same tensor: one rank-1 fit
        if pool is not None and array.size >= SHARED_LADDER_WEIGHTS:
            fits = any(_uses_rank1(codec_name, opts) for opts in rungs)
            made_rungs = _SharedRungs(make, last, rungs).run(pool, array, fits)
        else:
            made_rungs = []
            for opts in rungs:  # the rungs go from the smallest encoding to the largest
                made_rungs.append(make(opts))
                if last(made_rungs[-1]):
                    break
        if made_rungs and isinstance(made_rungs[-1], str):
            return made_rungs[-1]
        out.extend(made_rungs)
        made, term = rank1.kept(array)
    if made:  # kept for _spend_leftover: the term alone (bytes), the residual is made again from it
        for c in out:
            c.rank1_term = term
    out.sort(key=lambda c: c.nbytes)
    if exact is not None:
        top = next(i for i, c in enumerate(out) if c.options is None)
        out = out[: top + 1]
    if floor_db is not None:
        floor = 10.0 ** (-(floor_db - FLOOR_SLACK_DB) / 10.0)
        out = [c for c in out if c.rel_noise <= floor] or out[-1:]
    return out


# A ladder this large (weights) offers its rungs to idle workers: SmolLM2's 28 M-weight embedding took 12 rungs on
# one worker while the other ran out of tensors (the ladder phase's critical path).
SHARED_LADDER_WEIGHTS = 1 << 22


class _SharedRungs:
    """One tensor's ladder, its rungs taken in order by the worker that owns the tensor and by a helper task on the
    pool, which starts only when a worker is free (FIFO: after the tensors queued before it). Each rung is made once
    by whichever takes it; once a rung ends the ladder (``last``), no finer one is handed out, so the rungs kept
    are the sequential loop's, in its order. The helper shares the owner's rank-1 fit. The owner waits at most for
    the one rung the helper is making, never for a task still queued (it cancels that one): no deadlock."""

    def __init__(self, make: Callable[[dict], budget.Candidate | str],
                 last: Callable[[budget.Candidate | str], bool], rungs: list[dict]):
        self.make, self.last, self.rungs = make, last, rungs
        self.next, self.stop = 0, len(rungs)
        self.done: dict[int, budget.Candidate | str] = {}
        self.lock = threading.Lock()

    def run(self, pool: ThreadPoolExecutor, array: np.ndarray, fits: bool) -> list[budget.Candidate | str]:
        """The rungs made up to the one that ends the ladder (inside the owner's rank1.reuse of ``array``);
        ``fits``: some rung fits a rank-1 term (made here first, for both)."""
        shared = (array, rank1.fit(array)) if fits else (array,)
        helper = pool.submit(self._help, shared)
        self._take()
        if not helper.cancel():
            helper.result()
        return [self.done[i] for i in range(self.stop)]

    def _help(self, shared: tuple) -> None:
        with rank1.reuse(*shared):
            self._take()

    def _take(self) -> None:
        while True:
            with self.lock:
                if self.next >= self.stop:
                    return
                i, self.next = self.next, self.next + 1
            try:
                candidate = self.make(self.rungs[i])
            except BaseException:
                with self.lock:  # an error ends the ladder: the other thread takes no further rung
                    self.stop = self.next = 0
                raise
            with self.lock:
                self.done[i] = candidate
                if self.last(candidate):
                    self.stop = min(self.stop, i + 1)


def _encode_choice(values, codec_name: str, chosen: budget.Candidate) -> Encoding:
    """The encoding of a candidate made without holding it: the same setting encoded again, checked to be the
    same size (a different one would mean an encoder that is not deterministic, and a broken budget)."""
    array = values() if callable(values) else values
    if chosen.options is None:
        result = grid.detect(array), float("inf")
    else:
        with rank1.reuse(array, *_ladder_fit(array, chosen)):
            result = encode_tensor(array, codec_name, chosen.options)
    if isinstance(result, str) or result[0] is None or result[0].nbytes != chosen.encoded_bytes:
        raise RuntimeError(f"encoding again with {chosen.options} did not give the same encoding "
                           f"({chosen.encoded_bytes} bytes before)")
    return result


def _candidate(result: Encoding, options: dict | None, form: str, name: str | None,
               hold: bool = True) -> budget.Candidate:
    enc, sqnr = result
    if name is not None and form == "ort":
        nbytes = _serialized_bytes(name, enc, sqnr)
    else:
        nbytes = enc.nbytes if form == "ort" else portable_bytes(enc)
    rel = 0.0 if not np.isfinite(sqnr) else 10.0 ** (-sqnr / 10.0)
    return budget.Candidate(nbytes, rel, result if hold else None, options, enc.nbytes)


def _spend_leftover(kept, choice, limit, codec_name, form, max_bytes, base_dir, attempts: int = 8,
                    gains: list[float] | None = None, pool: ThreadPoolExecutor | None = None, jobs: int = 1):
    """Spend what the ladder's discrete rungs left of the budget: for the tensors whose next upgrade did not
    fit (best noise-per-byte first), bisect a continuous option (budget.CONTINUOUS_OPTIONS) between their choice
    and the next rung for the finest setting that fits. Returns {tensor index: Candidate}.

    With a ``pool`` of ``jobs`` > 1 workers, the bisection point after the one being encoded is encoded beside it,
    on the outcome the sizes measured so far predict (:class:`_Bisection`); the bisection itself still takes
    each step from the encoding of its own point, so the result is the sequential one whatever the guesses."""
    key = budget.CONTINUOUS_OPTIONS.get(codec.get_codec(codec_name).family)
    cands = [c for _, c in kept]
    total = sum(c[i].nbytes for c, i in zip(cands, choice))
    better: dict[int, budget.Candidate] = {}
    if key is None:
        return better
    for t in budget.upgrade_order(cands, choice, gains)[:attempts]:
        here, there = cands[t][choice[t]], cands[t][choice[t] + 1]
        room = limit - total
        if here.options is None or there.options is None or there.nbytes <= here.nbytes:
            continue
        # Bytes grow about linearly along the way: skip a tensor whose first bisection step cannot fit, and
        # bisect only up to a little past where the leftover runs out.
        reach = min(1.0, 1.5 * room / (there.nbytes - here.nbytes))
        if reach < 0.5 ** budget.REFINE_ROUNDS:
            continue
        site = kept[t][0]
        array = tensor_values(site, base_dir)
        array = array() if callable(array) else array
        name = site.name if max_bytes is not None else None

        def make(mid: float, array=array, here=here, there=there, name=name) -> budget.Candidate | str:
            opts = dict(here.options, **{key: budget.between(here.options[key], there.options[key], mid)})
            result = encode_tensor(array, codec_name, opts)
            if isinstance(result, str):
                return result
            candidate = _candidate(result, opts, form, name, hold=here.payload is not None)
            candidate.rank1_term = here.rank1_term  # the same tensor: _encode_choice may make it again
            return candidate

        with rank1.reuse(array, *_ladder_fit(array, here)):
            shared = None  # the workers code the same tensor: they share this thread's fit (the ladder's, or made here)
            if jobs > 1 and pool is not None:
                shared = (array, rank1.fit(array) if _uses_rank1(codec_name, here.options) else None)
            bisection = _Bisection(make, here.nbytes, there.nbytes, room, pool if shared else None, shared)
            low, high, found = 0.0, reach, None
            for round_ in range(budget.REFINE_ROUNDS):
                mid = (low + high) / 2
                candidate = bisection.at(mid, low, high, guess=round_ + 1 < budget.REFINE_ROUNDS)
                if isinstance(candidate, str):
                    break
                if total - here.nbytes + candidate.nbytes <= limit:  # a finer step that fits
                    low, found = mid, candidate
                else:
                    high = mid
            bisection.close()
        if found is not None:
            total += found.nbytes - here.nbytes
            better[t] = found
    return better


def _ladder_fit(array: np.ndarray, candidate: budget.Candidate) -> tuple:
    """rank1.reuse's ``fitted`` argument from the term the tensor's ladder found, when it fitted one: the residual
    made again from the term is the fit's own to the bit (SmolLM2's embedding: 0.1 s, against 0.8 s for the power
    iterations); () where the ladder made no fit."""
    term = candidate.rank1_term
    if term is False:
        return ()
    return (None if term is None else (term, rank1.residual(array, term)),)


def _uses_rank1(codec_name: str, options: dict) -> bool:
    """Whether the codec's encoding at ``options`` fits a rank-1 term (ecsq, tcq: the rank1 option)."""
    return bool({**codec.get_codec(codec_name).defaults, **options}.get("rank1", 0))


class _Bisection:
    """One tensor's bisection points, each encoded once (``make``: the candidate at a fraction of the way to the
    next rung). With a ``pool``, :meth:`at` also starts the point the bisection takes next if the size at this
    one turns out as a straight line through the sizes known so far predicts: on SmolLM2's tied embedding
    (28 M weights, all 5 rounds) the idle core then encodes the next point while this one is encoded. A wrong
    guess only costs the idle core's work."""

    def __init__(self, make: Callable[[float], budget.Candidate | str], low_bytes: int, high_bytes: int,
                 room: float, pool: ThreadPoolExecutor | None, shared: tuple = ()):
        self.make, self.room, self.pool = make, room, pool
        self.sizes = {0.0: 0, 1.0: high_bytes - low_bytes}  # bytes over the tensor's choice, at known points
        self.low_bytes = low_bytes
        self.started: dict[float, Future] = {}
        self.shared = shared  # (array, its rank-1 fit or None): the workers' rank1.reuse

    def at(self, mid: float, low: float, high: float, guess: bool = True) -> budget.Candidate | str:
        """The candidate at ``mid`` of the interval (``low``, ``high``); ``guess``: a next round follows."""
        if self.pool is None:
            return self.make(mid)
        future = self._start(mid)
        if guess:
            guess_fits = self._predicted(mid) <= self.room
            self._start((mid + high) / 2 if guess_fits else (low + mid) / 2)
        candidate = future.result()
        if not isinstance(candidate, str):
            self.sizes[mid] = candidate.nbytes - self.low_bytes
        return candidate

    def close(self) -> None:
        """Drop the guesses no step took (one already running finishes on its worker, unread)."""
        for future in self.started.values():
            future.cancel()
        self.started = {}

    def _start(self, mid: float) -> Future:
        if mid not in self.started:
            self.started[mid] = self.pool.submit(self._run, mid)
        return self.started[mid]

    def _run(self, mid: float) -> budget.Candidate | str:
        with rank1.reuse(*self.shared):
            return self.make(mid)

    def _predicted(self, mid: float) -> float:
        below = max(p for p in self.sizes if p <= mid)
        above = min(p for p in self.sizes if p >= mid)
        if above == below:
            return self.sizes[below]
        w = (mid - below) / (above - below)
        return (1 - w) * self.sizes[below] + w * self.sizes[above]


def _serialized_bytes(name: str, enc: codec.Encoded, sqnr: float) -> int:
    from onnx import helper

    from hyperonnx.ops import OP_TYPE

    stats = {"sqnr_db": round(sqnr, 3) if np.isfinite(sqnr) else None, "bytes_before": 0}
    node = helper.make_node(OP_TYPE, [f"{name}::theta"], [name], name=f"hyperonnx/{name}", domain=DOMAIN,
                            doc_string=json.dumps(stats, sort_keys=True), **ort_node.node_attributes(enc, "load"))
    blob = numpy_helper.from_array(enc.blob, f"{name}::theta")
    return node.ByteSize() + blob.ByteSize() + 8  # + the repeated-field tags of the node and the initializer


def _encode_budgeted(pool, chosen, codec_name, rungs, form, jobs, target_bpw, max_bytes, input_bytes,
                     report, base_dir, exact_grids=False, tensor_weights=None, floor_db=None):
    """Encode every tensor at every rung, allocate the budget, yield (site, chosen encoding or skip reason) (those
    not held, encoded again, at most jobs + 1 in flight)."""
    pending, results = [], []
    held = 0  # bytes of the held encodings, with an estimate for those still being made
    held_exact = 0  # bytes of the exact grid encodings kept of ladders not held (HELD_EXACT_BYTES)

    def collect(site, estimate, future) -> None:
        nonlocal held, held_exact
        candidates = future.result()
        results.append((site, candidates))
        held -= estimate
        if isinstance(candidates, str):
            return
        if estimate:
            # the real size replaces the estimate (a ladder cut short by an exact grid holds far less), so more of
            # the following tensors are held and fewer encoded again
            held += sum(c.payload[0].blob.nbytes for c in candidates if c.payload is not None)
        else:
            held_exact += _held_exact(candidates, HELD_EXACT_BYTES - held_exact)

    for site in chosen:
        name = site.name if max_bytes is not None else None
        estimate = site.numel * _LADDER_BYTES_PER_WEIGHT
        hold = held + estimate <= HELD_CANDIDATE_BYTES
        held += estimate if hold else 0
        pending.append((site, estimate if hold else 0,
                        pool.submit(encode_candidates, tensor_values(site, base_dir), codec_name, rungs, form, name,
                                    exact_grids, hold, floor_db, pool if jobs > 1 else None)))
        if len(pending) > jobs and _enough_behind(pending, jobs):
            collect(*pending.pop(0))
    for item in pending:
        collect(*item)
    kept = [(site, c) for site, c in results if not isinstance(c, str)]
    gains = None
    if tensor_weights is not None:
        gains = [w for w, (_, c) in zip(tensor_weights, results) if not isinstance(c, str)]
    weights = sum(site.numel for site, _ in kept)
    if target_bpw is not None:
        limit = target_bpw * weights / 8.0
    else:
        # What the compressed tensors free: their serialized bytes (a Constant node's too) in the input.
        raw = sum(_inline_bytes(site) + 8 for site, _ in kept)
        limit = max_bytes - (input_bytes - raw) - 64  # 64: the added opset import, with room to spare
    choice = budget.allocate([c for _, c in kept], limit, gains)
    picked = [c[i] for (_, c), i in zip(kept, choice)]
    for t, candidate in _spend_leftover(kept, choice, limit, codec_name, form, max_bytes, base_dir,
                                        gains=gains, pool=pool, jobs=jobs).items():
        picked[t] = candidate
    report.budget = {"limit_bytes": limit, "weights": weights, "chosen_bytes": sum(c.nbytes for c in picked)}
    chosen_by_site = {id(site): c for (site, _), c in zip(kept, picked)}
    # the unchosen rungs' encodings go now, before any chosen one is encoded again
    results = [(site, c if isinstance(c, str) else None) for site, c in results]
    del kept, picked
    in_flight: list[tuple[WeightSite, Future | Encoding | str]] = []
    for site, c in results:
        if c is not None:  # not encodable: the reason
            in_flight.append((site, c))
        else:
            pick = chosen_by_site.pop(id(site))
            payload = pick.payload
            in_flight.append((site, payload if payload is not None else
                              pool.submit(_encode_choice, tensor_values(site, base_dir), codec_name, pick)))
        if len(in_flight) > jobs:
            yield _resolved(*in_flight.pop(0))
    for item in in_flight:
        yield _resolved(*item)


# Weights submitted behind the first tensor in flight, per other worker, in units of its own, before the caller
# waits for it (_enough_behind). SmolLM2's first tensor, its 28 M-weight embedding, takes 12 full tcq rungs;
# most tensors behind it lie on exact grids and stop their ladders early. A worker sat idle 11 s of the 24 s
# ladder phase with jobs + 1 tensors in flight, 6 s with 1× its weights behind it, 1.4 s with 2× (2 jobs).
WINDOW_WEIGHTS = 2


def _held_exact(candidates: list[budget.Candidate], room: int) -> int:
    """The bytes of the exact grid encoding kept among ``candidates`` whose rungs are not held: kept when it fits
    in ``room``, else dropped (it is then detected again if chosen)."""
    for c in candidates:
        if c.options is None and c.payload is not None:
            if c.payload[0].blob.nbytes <= room:
                return c.payload[0].blob.nbytes
            c.payload = None
    return 0


def _enough_behind(pending: list, jobs: int) -> bool:
    """Whether the tensors submitted behind the first one in flight hold enough weights to keep the other jobs − 1
    workers busy while it is encoded (WINDOW_WEIGHTS): only then does the caller wait for it. With tensors alike in
    size this is the plain rule, jobs + 1 in flight. A tensor waiting in the queue holds at most its values
    (external data: nothing until a worker reads it), and held encodings stay within HELD_CANDIDATE_BYTES as
    before; the result does not depend on it."""
    behind = sum(site.numel for site, *_ in pending[1:])
    return behind >= WINDOW_WEIGHTS * (jobs - 1) * pending[0][0].numel


def _resolved(site: WeightSite, result: Future | Encoding | str) -> tuple[WeightSite, Encoding | str]:
    return site, result.result() if isinstance(result, Future) else result


def tensor_values(site: WeightSite, base_dir) -> np.ndarray | Callable[[], np.ndarray]:
    """The tensor's values, or for one in external data a reader the worker calls. The protobuf message is read
    here, in the calling thread: protobuf messages are only touched from one thread."""
    if not model_io.is_external(site.tensor):
        return numpy_helper.to_array(site.tensor)
    ref = model_io.external_ref(site.tensor, base_dir)
    data_type, dims = site.tensor.data_type, tuple(site.tensor.dims)
    return lambda scratch=False: model_io.read_array(ref, data_type, dims, scratch)


def _inline_bytes(site: WeightSite) -> int:
    """Serialized bytes of the weight (of its Constant node, for one) as if its data were inline: what the input
    file holds for it, external data included. (The enclosing length prefixes' growth is not counted.)"""
    message = site.constant_node or site.tensor
    size = message.ByteSize()
    if model_io.is_external(site.tensor):
        header = onnx.TensorProto()
        header.CopyFrom(site.tensor)  # small: the data is external
        del header.external_data[:]
        header.data_location = onnx.TensorProto.DEFAULT
        length = site.numel * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(site.tensor.data_type)).itemsize
        size += header.ByteSize() + 1 + _varint_size(length) + length - site.tensor.ByteSize()  # 1: raw_data's tag
    return size


def _varint_size(value: int) -> int:
    return max(1, -(-value.bit_length() // 7))


