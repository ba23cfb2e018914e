"""The compression pass: encode each selected weight and rewrite it as a decoder."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from hyperonnx import codec
from hyperonnx.ops import DOMAIN, OPSET_VERSION, register_schemas
from hyperonnx.passes import emit
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

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__, shape=list(self.shape))


@dataclass
class CompressReport:
    tensors: list[TensorReport] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0


def sqnr_db(original: np.ndarray, decoded: np.ndarray) -> float:
    x = original.astype(np.float64).ravel()
    noise = float(((x - decoded.astype(np.float64).ravel()) ** 2).sum())
    signal = float((x**2).sum())
    if noise == 0.0:
        return float("inf")
    return 10.0 * np.log10(max(signal, 1e-300) / noise)


def _encode_one(array: np.ndarray, codec_name: str, options: dict) -> tuple[codec.Encoded, float] | str:
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
) -> CompressReport:
    """Compress ``model`` in place. Raises ValueError for an unknown codec/option/runtime/mode."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r} (choose from {', '.join(RUNTIMES)})")
    if decode_mode not in DECODE_MODES:
        raise ValueError(f"unknown decode mode {decode_mode!r} (choose from {', '.join(DECODE_MODES)})")
    options = dict(options or {})
    codec.get_codec(codec_name).params(options)  # validate options before any work
    register_schemas()
    started = time.perf_counter()
    chosen, skipped = choose(find_sites(model), selection or Selection())
    report = CompressReport(skipped=skipped)
    jobs = max(1, jobs or os.cpu_count() or 1)

    # Tensors are encoded in parallel threads (numpy releases the GIL) but the graph is rewritten in order,
    # one tensor at a time, so the result does not depend on --jobs. At most 2·jobs tensors are in flight.
    namers: dict[int, emit.Namer] = {}
    rewrites: dict[int, tuple[onnx.GraphProto, list[emit.Rewrite]]] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        pending = []
        for site in chosen:
            pending.append((site, pool.submit(_encode_one, _values(site), codec_name, options)))
            if len(pending) >= 2 * jobs:
                _finish(pending.pop(0), report, runtime, decode_mode, namers, rewrites, progress)
        while pending:
            _finish(pending.pop(0), report, runtime, decode_mode, namers, rewrites, progress)
    # Subgraphs first: rewriting a parent graph copies its nodes, and with them their subgraph attributes.
    for graph, graph_rewrites in reversed(list(rewrites.values())):
        emit.apply(graph, graph_rewrites)

    if report.tensors and runtime == "ort" and not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(DOMAIN, OPSET_VERSION))
    report.seconds = time.perf_counter() - started
    return report


def _values(site: WeightSite) -> np.ndarray:
    # Read in the calling thread: protobuf messages are only touched from one thread.
    return numpy_helper.to_array(site.tensor)


def _finish(item, report: CompressReport, runtime: str, mode: str, namers, rewrites, progress) -> None:
    site, future = item
    result = future.result()
    namer = namers.setdefault(id(site.graph), emit.Namer(site.graph))
    if isinstance(result, str):
        report.skipped.append(Skipped(site.name, result))
    else:
        enc, sqnr = result
        bytes_before = site.numel * np.dtype(codec.base.dtype_from_name(enc.dtype)).itemsize
        stats = {"sqnr_db": round(sqnr, 3) if np.isfinite(sqnr) else None, "bytes_before": bytes_before}
        if runtime == "ort":
            rewrite = emit.emit_ort(site, namer, enc, mode, stats)
            after = enc.nbytes
        else:
            rewrite = emit.emit_portable(site, namer, enc, stats)
            after = _portable_bytes(enc)
        rewrites.setdefault(id(site.graph), (site.graph, []))[1].append(rewrite)
        # The original values are no longer needed: drop them now so memory stays at one model, not two.
        for field_name in ("raw_data", "float_data", "int32_data", "double_data"):
            site.tensor.ClearField(field_name)
        report.tensors.append(TensorReport(site.name, site.graph_path, enc.shape, enc.dtype, enc.codec,
                                           8.0 * after / enc.numel, sqnr, bytes_before, after))
    if progress:
        progress(site.name)


def _portable_bytes(enc: codec.Encoded) -> int:
    """Bytes the portable form stores: byte-aligned codes plus what the codec's table needs."""
    per_code = 1 if enc.bits <= 8 else 2 if enc.bits <= 16 else 4
    side = 4 * sum(len(v) for v in enc.floats.values()) + 8 * (len(enc.shape) + 3)
    if enc.codec == "blockvq":
        side += 2 * -(-enc.numel // enc.ints["block"][0])  # scale code + codebook id per block, a byte each
    elif enc.codec != "paper":  # stored table
        side += codec.table(enc).nbytes
    return enc.count * per_code + side
