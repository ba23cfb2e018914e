"""The compression pass: encode each selected weight and rewrite it as a decoder."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from hyperonnx import codec, model_io
from hyperonnx.codec import grid
from hyperonnx.ops import DOMAIN, OPSET_VERSION, register_schemas
from hyperonnx.passes import budget, emit
from hyperonnx.passes.select import Selection, Skipped, WeightSite, choose, find_sites

RUNTIMES = ("ort", "portable")
DECODE_MODES = ("load", "call")


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
    # In chunks: float64 copies of a whole large tensor would double the converter's peak memory.
    x_all, y_all = original.reshape(-1), decoded.reshape(-1)
    signal = noise = 0.0
    for start in range(0, x_all.size, chunk):
        x = x_all[start : start + chunk].astype(np.float64)
        noise += float(((x - y_all[start : start + chunk].astype(np.float64)) ** 2).sum())
        signal += float((x**2).sum())
    if noise == 0.0:
        return float("inf")
    return 10.0 * np.log10(max(signal, 1e-300) / noise)


def _encode_one(values: Callable[[], np.ndarray] | np.ndarray, codec_name: str,
                options: dict, exact_grids: bool = False) -> tuple[codec.Encoded, float] | str:
    array = values() if callable(values) else values  # a file read raises HyperonnxError: not a skip
    if exact_grids:
        exact = grid.detect(array)
        if exact is not None:
            return exact, float("inf")
    try:
        enc = codec.encode(array, codec_name, **options)
    except ValueError as exc:
        return str(exc)
    return enc, sqnr_db(array, codec.decode(enc))


def compress_model(
    model: onnx.ModelProto,
    codec_name: str = codec.DEFAULT_CODEC,
    options: dict | None = None,
    selection: Selection | None = None,
    runtime: str = "ort",
    decode_mode: str = "load",
    jobs: int | None = None,
    progress: Callable[[str], None] | None = None,
    target_bpw: float | None = None,
    max_bytes: int | None = None,
    input_bytes: int | None = None,
    base_dir: str | os.PathLike | None = None,
    exact_grids: bool = True,
    tensor_weights: list[float] | None = None,
    floor_db: float | None = None,
) -> CompressReport:
    """Compress ``model`` in place. Raises ValueError for an unknown codec/option/runtime/mode.

    Weights may still be in external data (a model from :func:`model_io.load_lazy`; ``base_dir``: its folder):
    each is read by the worker that encodes it, so only the tensors being encoded are in memory.

    With ``target_bpw`` (bits per compressed weight, everything stored counted) or ``max_bytes`` (the whole
    output file; needs ``input_bytes``, the input's size), each tensor's setting is chosen by
    :func:`budget.allocate` among the codec's budget options.

    ``exact_grids``: a weight that already lies on a float16 block grid (dequantized from a llama.cpp
    checkpoint) is stored exactly with the `grid` codec (``ort`` runtime only); under a budget, that exact
    encoding competes with the codec's settings as the top one.

    ``tensor_weights`` (one per selected tensor, in selection order; :func:`hyperonnx.tune.measure_sensitivity`)
    scale each tensor's relative noise in the budget allocation; without them every tensor counts alike.

    ``floor_db``: under a budget, no tensor gets a setting whose weight SQNR is below it (the default policy's
    floor, for allocations weighted by sensitivity measured on generated inputs).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r} (choose from {', '.join(RUNTIMES)})")
    if decode_mode not in DECODE_MODES:
        raise ValueError(f"unknown decode mode {decode_mode!r} (choose from {', '.join(DECODE_MODES)})")
    options = dict(options or {})
    codec.check_options(codec_name, options)  # validate options and their values before any work
    register_schemas()
    started = time.perf_counter()
    chosen, skipped = choose(find_sites(model), selection or Selection())
    report = CompressReport(skipped=skipped)
    jobs = max(1, jobs or os.cpu_count() or 1)

    # Tensors are encoded in parallel threads (numpy releases the GIL) but the graph is rewritten in order,
    # one tensor at a time, so the result does not depend on --jobs. At most jobs + 1 tensors are in flight.
    opset = emit.model_opset(model)
    if runtime == "portable":
        emit.check_portable(opset, chosen)
    namer = emit.Namer(model.graph)  # one for the whole model: names stay unique across subgraphs
    rewrites: dict[int, tuple[onnx.GraphProto, list[emit.Rewrite]]] = {}
    budgeted = target_bpw is not None or max_bytes is not None
    if budgeted:
        option_sets = budget.ladder(codec_name, codec.get_codec(codec_name).family, options, "a size budget")
    exact_grids = exact_grids and runtime == "ort"  # rANS streams have no standard-op form
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        if budgeted:
            if tensor_weights is not None and len(tensor_weights) != len(chosen):
                raise ValueError(f"{len(tensor_weights)} tensor weights for {len(chosen)} selected tensors")
            finished = _encode_budgeted(pool, chosen, codec_name, option_sets, runtime, jobs, target_bpw, max_bytes,
                                        input_bytes, report, base_dir, exact_grids, tensor_weights, floor_db)
        else:
            finished = _stream(pool, chosen, codec_name, options, jobs, base_dir, exact_grids)
        for item in finished:
            _finish(item, report, runtime, decode_mode, namer, rewrites, progress, opset)
    # Subgraphs first: rewriting a parent graph copies its nodes, and with them their subgraph attributes.
    for graph, graph_rewrites in reversed(list(rewrites.values())):
        emit.apply(graph, graph_rewrites)

    if report.tensors and runtime == "ort" and not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(DOMAIN, OPSET_VERSION))
    report.seconds = time.perf_counter() - started
    return report


def _stream(pool, chosen, codec_name, options, jobs, base_dir, exact_grids=False):
    """(site, future) in order, with at most jobs + 1 tensors in flight (memory: one working set per worker;
    a tensor in external data is read only when a worker starts on it)."""
    pending = []
    for site in chosen:
        pending.append((site, pool.submit(_encode_one, _values(site, base_dir), codec_name, options, exact_grids)))
        if len(pending) > jobs:
            yield pending.pop(0)
    yield from pending


class _Done:
    """A finished result in the shape of a future."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


# A size budget encodes every tensor at every rung of its ladder, about 5 bytes per weight in all (the rungs' bits
# add up to ~40), more than the fp32 model itself. Up to this many bytes of those encodings are held for the
# emit step; beyond it only each rung's size and noise are kept, and the chosen rung is encoded again (the
# encoders are deterministic), so a budgeted conversion's memory stays bounded like a plain one's.
HELD_CANDIDATE_BYTES = 256 << 20
FLOOR_SLACK_DB = 1.5  # a budget ladder's rung this far below a floor still counts as on it
_LADDER_BYTES_PER_WEIGHT = 5


def _candidates(values, codec_name: str, option_sets: list[dict], runtime: str, name: str | None,
                exact_grids: bool = False, hold: bool = True, floor_db: float | None = None):
    """Every budget setting of one tensor, cheapest first. With ``name`` (a whole-file budget), sizes are the
    serialized bytes of the decoder and its blob, so the file size can be predicted exactly. An exact grid
    encoding (``exact_grids``) is the top candidate (``options`` None); settings larger than it are dropped (it
    dominates them). ``hold`` False: the candidates keep their size and noise, not their encoding (payload
    None; :func:`_encode_choice` makes it again). ``floor_db``: settings more than :data:`FLOOR_SLACK_DB` below
    that weight SQNR are dropped (the finest one stays when none reaches it)."""
    array = values() if callable(values) else values
    exact = grid.detect(array) if exact_grids else None
    out = [] if exact is None else [_candidate((exact, float("inf")), None, runtime, name, hold)]
    for opts in option_sets:  # the settings go from the smallest encoding to the largest
        result = _encode_one(array, codec_name, opts)
        if isinstance(result, str):
            return result
        out.append(_candidate(result, opts, runtime, name, hold))
        if exact is not None and out[-1].nbytes > out[0].nbytes:
            break  # the exact encoding is smaller than this setting and every finer one: no need to make them
    out.sort(key=lambda c: c.nbytes)
    if exact is not None:
        top = next(i for i, c in enumerate(out) if c.options is None)
        out = out[: top + 1]
    if floor_db is not None:  # to within half a rung: the ladder's steps are 3 dB apart
        floor = 10.0 ** (-(floor_db - FLOOR_SLACK_DB) / 10.0)
        out = [c for c in out if c.rel_noise <= floor] or out[-1:]
    return out


def _encode_choice(values, codec_name: str, chosen: budget.Candidate) -> tuple[codec.Encoded, float]:
    """The encoding of a candidate made without holding it: the same setting encoded again, checked to be the
    same size (a different one would mean an encoder that is not deterministic, and a broken budget)."""
    array = values() if callable(values) else values
    if chosen.options is None:
        result = grid.detect(array), float("inf")
    else:
        result = _encode_one(array, codec_name, chosen.options)
    if isinstance(result, str) or result[0] is None or result[0].nbytes != chosen.encoded_bytes:
        raise RuntimeError(f"encoding again with {chosen.options} did not give the same encoding "
                           f"({chosen.encoded_bytes} bytes before)")
    return result


def _candidate(result: tuple[codec.Encoded, float], options: dict | None, runtime: str,
               name: str | None, hold: bool = True) -> budget.Candidate:
    enc, sqnr = result
    if name is not None and runtime == "ort":
        nbytes = _serialized_bytes(name, enc, sqnr)
    else:
        nbytes = enc.nbytes if runtime == "ort" else _portable_bytes(enc)
    rel = 0.0 if not np.isfinite(sqnr) else 10.0 ** (-sqnr / 10.0)
    return budget.Candidate(nbytes, rel, result if hold else None, options, enc.nbytes)


def _spend_leftover(kept, choice, limit, codec_name, runtime, max_bytes, base_dir, attempts: int = 8,
                    gains: list[float] | None = None):
    """Spend what the ladder's discrete rungs left of the budget: for the tensors whose next upgrade did not
    fit (best noise-per-byte first), bisect a continuous option (budget.CONTINUOUS_OPTIONS) between their choice
    and the next rung for the finest setting that fits. Returns {tensor index: Candidate}."""
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
        array = _values(site, base_dir)
        array = array() if callable(array) else array
        name = site.name if max_bytes is not None else None
        low, high, found = 0.0, reach, None
        for _ in range(budget.REFINE_ROUNDS):
            mid = (low + high) / 2
            opts = dict(here.options, **{key: budget.between(here.options[key], there.options[key], mid)})
            result = _encode_one(array, codec_name, opts)
            if isinstance(result, str):
                break
            candidate = _candidate(result, opts, runtime, name, hold=here.payload is not None)
            if total - here.nbytes + candidate.nbytes <= limit:  # a finer step that fits
                low, found = mid, candidate
            else:
                high = mid
        if found is not None:
            total += found.nbytes - here.nbytes
            better[t] = found
    return better


def _serialized_bytes(name: str, enc: codec.Encoded, sqnr: float) -> int:
    from onnx import helper

    from hyperonnx.ops import OP_TYPE

    stats = {"sqnr_db": round(sqnr, 3) if np.isfinite(sqnr) else None, "bytes_before": 0}
    node = helper.make_node(OP_TYPE, [f"{name}::theta"], [name], name=f"hyperonnx/{name}", domain=DOMAIN,
                            doc_string=json.dumps(stats, sort_keys=True), **emit.node_attributes(enc, "load"))
    blob = numpy_helper.from_array(enc.blob, f"{name}::theta")
    return node.ByteSize() + blob.ByteSize() + 8  # + the repeated-field tags of the node and the initializer


def _encode_budgeted(pool, chosen, codec_name, option_sets, runtime, jobs, target_bpw, max_bytes, input_bytes,
                     report, base_dir, exact_grids=False, tensor_weights=None, floor_db=None):
    """Encode every tensor at every budget setting, allocate the budget, yield the chosen encodings (those not
    held, encoded again, at most jobs + 1 in flight)."""
    pending, results = [], []
    held = 0
    for site in chosen:
        name = site.name if max_bytes is not None else None
        hold = held + site.numel * _LADDER_BYTES_PER_WEIGHT <= HELD_CANDIDATE_BYTES
        held += site.numel * _LADDER_BYTES_PER_WEIGHT if hold else 0
        pending.append((site, pool.submit(_candidates, _values(site, base_dir), codec_name, option_sets, runtime,
                                          name, exact_grids, hold, floor_db)))
        if len(pending) > jobs:
            site_done, future = pending.pop(0)
            results.append((site_done, future.result()))
    results += [(site, future.result()) for site, future in pending]
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
    for t, candidate in _spend_leftover(kept, choice, limit, codec_name, runtime, max_bytes, base_dir,
                                        gains=gains).items():
        picked[t] = candidate
    report.budget = {"limit_bytes": limit, "weights": weights, "chosen_bytes": sum(c.nbytes for c in picked)}
    chosen_by_site = {id(site): c for (site, _), c in zip(kept, picked)}
    # the unchosen rungs' encodings go now, before any chosen one is encoded again
    results = [(site, c if isinstance(c, str) else None) for site, c in results]
    del kept, picked
    in_flight = []
    for site, c in results:
        if c is not None:  # not encodable: the reason
            in_flight.append((site, _Done(c)))
        else:
            pick = chosen_by_site.pop(id(site))
            payload = pick.payload
            in_flight.append((site, _Done(payload) if payload is not None else
                              pool.submit(_encode_choice, _values(site, base_dir), codec_name, pick)))
        if len(in_flight) > jobs:
            yield in_flight.pop(0)
    yield from in_flight


def _values(site: WeightSite, base_dir) -> np.ndarray | Callable[[], np.ndarray]:
    """The tensor's values, or for one in external data a reader the worker calls. The protobuf message is read
    here, in the calling thread: protobuf messages are only touched from one thread."""
    if not model_io.is_external(site.tensor):
        return numpy_helper.to_array(site.tensor)
    ref = model_io.external_ref(site.tensor, base_dir)
    data_type, dims = site.tensor.data_type, tuple(site.tensor.dims)
    return lambda: model_io.read_array(ref, data_type, dims)


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


def _finish(item, report: CompressReport, runtime: str, mode: str, namer: emit.Namer, rewrites, progress,
            opset: int, extra: dict[str, Any] | None = None) -> None:
    site, future = item
    result = future.result()
    if isinstance(result, str):
        report.skipped.append(Skipped(site.name, result))
    else:
        enc, sqnr = result
        bytes_before = site.numel * np.dtype(codec.base.dtype_from_name(enc.dtype)).itemsize
        stats = {"sqnr_db": round(sqnr, 3) if np.isfinite(sqnr) else None, "bytes_before": bytes_before,
                 **(extra or {})}  # the default policy's target and reason: inspect shows them
        if runtime == "ort":
            rewrite = emit.emit_ort(site, namer, enc, mode, stats)
            after = enc.nbytes
        else:
            rewrite = emit.emit_portable(site, namer, enc, stats, opset)
            after = _portable_bytes(enc)
        rewrites.setdefault(id(site.graph), (site.graph, []))[1].append(rewrite)
        # The original values are no longer needed: drop them now so memory stays at one model, not two.
        for field_name in ("raw_data", "float_data", "int32_data", "double_data"):
            site.tensor.ClearField(field_name)
        report.tensors.append(TensorReport(site.name, site.graph_path, enc.shape, enc.dtype, enc.codec,
                                           8.0 * after / enc.numel, sqnr, bytes_before, after, **(extra or {})))
    if progress:
        progress(site.name)


def _portable_bytes(enc: codec.Encoded) -> int:
    """Bytes the portable form stores: bit-planed codes (and block headers) plus what the codec's table needs."""
    side = 4 * sum(len(v) for v in enc.floats.values()) + 8 * (len(enc.shape) + 3)
    if enc.codec not in ("blockvq", "blocktcq", "paper"):  # stored table
        side += codec.table(enc).nbytes
    return emit.portable_code_bytes(enc) + side
