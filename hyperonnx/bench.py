"""``hyperonnx bench``: hyperonnx codecs against the quantizers a user would pick instead, in one run.

For one model, every *variant* — a hyperonnx codec at some budget, or an ONNX Runtime quantizer — is produced,
run in a plain ONNX Runtime CPU session with the same session options as the fp32 original, and measured on the
same inputs: whole-file bytes (external data included), bits per float weight of the original, fidelity against
the original (minimum cosine over outputs, top-1 agreement for classifier-shaped outputs), session load time and
median latency. A variant that fails (a quantizer that rejects the model, an option it refuses) becomes a row
with the error, never a crash of the whole sweep. See docs/bench.md.

Variants are written ``NAME[:KEY=VALUE[:KEY=VALUE…]]``:

* any hyperonnx codec (``blocktcq:bits=4``, ``blockvq:bits=4``, ``tcq:step=0.25``, ``ecsq:step=0.25``, ``paper``, ``paper-cnn:n=100``, ``kronecker``); options as in
  ``convert --codec-opt``;
* ``ort-int8``: ``onnxruntime.quantization.quantize_dynamic`` at its defaults (QInt8 weights, per-tensor; uint8
  dynamic activations); options ``per_channel=1``, ``reduce_range=1``, ``weight=uint8``, ``ops=MatMul+Conv``;
* ``ort-nbits``: ``MatMulNBitsQuantizer`` (weight-only, MatMul only); options ``bits`` (4), ``block`` (32),
  ``algo`` (``rtn`` = ORT's DEFAULT, or ``hqq``), ``symmetric`` (0);
* groups: ``default``, ``quick``, ``hyperonnx`` (the default hyperonnx sweep), ``ort`` (the default baselines).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from hyperonnx import api, codec, evaluate, jsonout, model_io
from hyperonnx.errors import HyperonnxError, short_reason
from hyperonnx.passes.select import FLOAT_TYPES

# The entropy-coded points are tcq's (ecsq's streams with the trellis: ~1 dB better at the same size).
# blocktcq is the default (fixed rate, decodes everywhere); one blockvq point shows what its trellis buys.
HYPERONNX_DEFAULT = ("blocktcq:bits=3", "blocktcq:bits=4", "blocktcq:bits=5", "blocktcq:bits=6", "blockvq:bits=4",
                     "tcq:step=0.35", "tcq:step=0.25", "tcq:step=0.18", "tcq:step=0.125", "paper", "paper-cnn")
ORT_DEFAULT = ("ort-int8", "ort-int8:per_channel=1", "ort-nbits:algo=rtn:block=32", "ort-nbits:algo=rtn:block=128",
               "ort-nbits:algo=hqq:block=32", "ort-nbits:algo=hqq:block=128",
               "ort-nbits:algo=rtn:block=32:ops=MatMul+Gather", "ort-nbits:algo=rtn:block=128:ops=MatMul+Gather")
# --quick: one point per family that finishes in seconds on a small model (paper's n=1600 search is the slow one).
QUICK = ("blocktcq:bits=4", "blocktcq:bits=6", "paper-cnn", "ort-int8", "ort-nbits:algo=rtn:block=32")
GROUPS: dict[str, tuple[str, ...]] = {
    "default": HYPERONNX_DEFAULT + ORT_DEFAULT,
    "quick": QUICK,
    "hyperonnx": HYPERONNX_DEFAULT,
    "ort": ORT_DEFAULT,
}
ORT_OPTIONS: dict[str, set[str]] = {
    "ort-int8": {"per_channel", "reduce_range", "weight", "ops"},
    "ort-nbits": {"bits", "block", "algo", "symmetric", "ops"},
}
REFERENCE = "fp32"
DEFAULT_THREADS = 2  # the same as benchmarks/models.py; small devices rarely have more cores to give one model


@dataclass(frozen=True)
class Variant:
    """One thing to measure: ``kind`` is "hyperonnx" (a codec) or "ort" (a quantizer)."""

    spec: str
    kind: str
    name: str
    options: dict[str, str] = field(default_factory=dict)


def parse_variant(spec: str) -> Variant:
    """``NAME[:KEY=VALUE…]`` → :class:`Variant`; unknown names and option keys fail before any work is done."""
    name, *pairs = [part.strip() for part in spec.strip().split(":")]
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise HyperonnxError(f"variant {spec!r}: expected NAME:KEY=VALUE, got {pair!r}")
        options[key.strip()] = value.strip()
    if name in ORT_OPTIONS:
        unknown = sorted(set(options) - ORT_OPTIONS[name])
        if unknown:
            raise HyperonnxError(f"variant {spec!r}: unknown option(s) {', '.join(unknown)} "
                                 f"(known: {', '.join(sorted(ORT_OPTIONS[name]))})")
        return Variant(spec.strip(), "ort", name, options)
    if name in codec.CODECS:
        known = codec.CODECS[name].defaults
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise HyperonnxError(f"variant {spec!r}: unknown option(s) {', '.join(unknown)} "
                                 f"(known: {', '.join(sorted(known))})")
        try:
            codec.check_options(name, options)  # a value out of range: now, not as an error row after the run
        except ValueError as exc:
            raise HyperonnxError(f"variant {spec!r}: {exc}") from None
        return Variant(spec.strip(), "hyperonnx", name, options)
    raise HyperonnxError(f"unknown variant {name!r} (codecs: {', '.join(sorted(codec.CODECS))}; baselines: "
                         f"{', '.join(ORT_OPTIONS)}; groups: {', '.join(GROUPS)})")


def parse_variants(specs: Iterable[str] | None, quick: bool = False) -> list[Variant]:
    """Expand groups and comma-separated lists; duplicates are measured once, in first-seen order."""
    if not specs:
        specs = ["quick" if quick else "default"]
    flat: list[str] = []
    for item in specs:
        for spec in item.split(","):
            spec = spec.strip()
            if spec:
                flat.extend(GROUPS.get(spec, (spec,)))
    variants = [parse_variant(spec) for spec in dict.fromkeys(flat)]
    if not variants:
        raise HyperonnxError("no variants to measure")
    return variants


# ----------------------------------------------------------------------------------------------------------------
# measuring
# ----------------------------------------------------------------------------------------------------------------


def count_float_weights(model: onnx.ModelProto) -> int:
    """Float elements stored in the model: initializers and ``Constant`` tensors, subgraphs included."""

    def walk(graph: onnx.GraphProto) -> int:
        total = sum(math.prod(t.dims) for t in graph.initializer if t.data_type in FLOAT_TYPES)
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR and node.op_type == "Constant":
                    total += math.prod(attr.t.dims) if attr.t.data_type in FLOAT_TYPES else 0
                elif attr.type == onnx.AttributeProto.GRAPH:
                    total += walk(attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    total += sum(walk(g) for g in attr.graphs)
        return total

    return walk(model.graph)


def session_options(threads: int | None):
    """The options every session of a run gets, so latencies compare like with like."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    # ORT's workers spin after a run by default; with two sessions interleaved (see _latencies) one session's
    # spinning threads would steal the cores the other is timed on
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _plain_session(path: Path, threads: int | None):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])


def fidelity(reference: list[np.ndarray], test: list[np.ndarray]) -> dict[str, Any]:
    """Minimum cosine over outputs; top-1 agreement (minimum) over classifier-shaped outputs, as ``verify``
    (:mod:`hyperonnx.evaluate`'s metrics: rows with NaN or inf do not count for top-1)."""
    cosines, top1 = [], []
    for a, b in zip(reference, test):
        cosines.append(evaluate.cosine(a, b))
        agreement = evaluate.top1_agreement(a, b)
        if agreement is not None:
            top1.append(agreement)
    # NaN (a variant that produced inf/NaN) must win the minimum, not vanish in it
    cos_min = float("nan") if any(math.isnan(c) for c in cosines) else min(cosines, default=1.0)
    return {"cosine_min": cos_min, "cosines": cosines, "top1_agreement": min(top1) if top1 else None}


GENERATED_SEEDS = 32  # generated inputs tried for one on which the fp32 model is finite


def _generated_feeds(reference, model: onnx.ModelProto) -> tuple[dict[str, np.ndarray], list[np.ndarray], str]:
    """Generated feeds (evaluate.generated_inputs) of the first seed on which the fp32 model's outputs are
    finite: a random input outside the model's domain (a negative noise level, say) gives NaN, which measures
    nothing."""
    for seed, feeds, outputs in evaluate.finite_generated(reference, model, 1, GENERATED_SEEDS):
        return feeds, outputs, f"generated (evaluate.generated_inputs, seed {seed})"
    raise HyperonnxError(f"the fp32 model's outputs are not finite on any of {GENERATED_SEEDS} generated inputs: "
                         "give real ones with --inputs FILE.npz")


def _latencies(sessions: list[Any], feeds: dict[str, np.ndarray], repeats: int, min_seconds: float) -> list[float]:
    """Median latency of each session, runs interleaved (a, b, a, b, …) so that drift in clock speed or in the
    load of other processes hits every session alike; at least ``repeats`` rounds and ``min_seconds``."""
    for session in sessions:
        session.run(None, feeds)  # warm-up: first-run allocations and MatMul prepacking are not latency
    times: list[list[float]] = [[] for _ in sessions]
    start = time.perf_counter()
    while len(times[0]) < repeats or (time.perf_counter() - start < min_seconds and len(times[0]) < 10_000):
        for session, acc in zip(sessions, times):
            t0 = time.perf_counter()
            session.run(None, feeds)
            acc.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def _latency_feeds(session, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str]:
    """Batch-1 feeds when every input is a batch along a free first axis (per-request latency on a device is
    what matters); otherwise the feeds as given."""
    firsts = {v.shape[0] if v.ndim else None for v in feeds.values()}
    free = all(a.shape and not (isinstance(a.shape[0], int) and a.shape[0] > 0) for a in session.get_inputs())
    if len(firsts) == 1 and None not in firsts and firsts.pop() > 1 and free:
        one = {k: v[:1] for k, v in feeds.items()}
        try:
            session.run(None, one)
            return one, "batch 1"
        except Exception:  # e.g. a model whose graph fixes the batch after all
            pass
    return feeds, "as given"


# ----------------------------------------------------------------------------------------------------------------
# producing variants
# ----------------------------------------------------------------------------------------------------------------


def _flag(value: str) -> bool:
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected 0/1, got {value!r}")


class _QuietQuantizers:
    """ORT's quantizers log a pre-processing hint and per-node chatter at WARNING/INFO, and HQQ triggers a torch
    warning; a sweep shows them once per variant, which buries the table. Errors still surface as exceptions."""

    def __enter__(self) -> _QuietQuantizers:
        self._root = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        return self

    def __exit__(self, *exc: object) -> None:
        self._warnings.__exit__(*exc)
        logging.getLogger().setLevel(self._root)


def _ort_int8(source: Path, target: Path, options: dict[str, str], external: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    weight = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[options.get("weight", "int8").lower()]
    ops = options.get("ops")
    with _QuietQuantizers():
        quantize_dynamic(source, target, op_types_to_quantize=ops.split("+") if ops else None,
                         per_channel=_flag(options.get("per_channel", "0")),
                         reduce_range=_flag(options.get("reduce_range", "0")), weight_type=weight,
                         use_external_data_format=external)


def _ort_nbits(source: Path, target: Path, options: dict[str, str], external: bool) -> None:
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        HQQWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    bits, block = int(options.get("bits", "4")), int(options.get("block", "32"))
    symmetric = _flag(options.get("symmetric", "0"))
    algo = options.get("algo", "rtn").lower()
    # ORT's default is MatMul only; "MatMul+Gather" also quantizes embedding tables (GatherBlockQuantized),
    # which is what hyperonnx compresses too. Gather is quantized along its last axis (features).
    ops = tuple(options.get("ops", "MatMul").split("+"))
    axes = tuple((op, {"MatMul": 0, "Gather": 1}[op]) for op in ops if op in ("MatMul", "Gather"))
    if algo == "rtn":
        config = DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=symmetric, bits=bits,
                                              op_types_to_quantize=ops, quant_axes=axes)
    elif algo == "hqq":
        config = HQQWeightOnlyQuantConfig(block_size=block, bits=bits, op_types_to_quantize=ops, quant_axes=axes)
    else:
        raise ValueError(f"algo must be rtn or hqq, got {algo!r}")
    with _QuietQuantizers():
        # the quantizer asserts on bits it does not support; make that a readable row, not "AssertionError"
        try:
            quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), bits=bits, block_size=block,
                                             is_symmetric=symmetric, algo_config=config)
        except AssertionError as exc:
            raise ValueError(f"MatMulNBitsQuantizer refused bits={bits}, block={block} ({exc})") from None
        quantizer.process()
        quantizer.model.save_model_to_file(str(target), external)


def _hyperonnx_session(path: Path, decoded: Path, threads: int | None) -> tuple[Any, str]:
    """The ``ort`` form through the op library (weights decoded once at load); when the library is missing or
    does not know the codec yet, the numpy-decoded model in a plain session — the same bits (docs/format.md)."""
    from hyperonnx import runtime

    try:
        return runtime.session(path, options=session_options(threads)), "op library, decoded at load"
    except Exception:
        api.decompress(path, decoded)
        return _plain_session(decoded, threads), "numpy-decoded, plain session (op library cannot run it)"


# ----------------------------------------------------------------------------------------------------------------
# the sweep
# ----------------------------------------------------------------------------------------------------------------


def bench(
    model_path: str | os.PathLike,
    inputs: str | os.PathLike | dict[str, np.ndarray] | None = None,
    out_dir: str | os.PathLike | None = None,
    codecs: Iterable[str] | None = None,
    quick: bool = False,
    progress: Callable[[str], None] | None = None,
    threads: int | None = DEFAULT_THREADS,
    repeats: int | None = None,
    keep_models: bool = False,
    min_seconds: float | None = None,
) -> dict[str, Any]:
    """Measure every variant of ``codecs`` (default: the ``default`` group, ``quick`` with ``quick=True``)
    against the fp32 model; with ``out_dir``, write bench.md, bench.json and bench.png there.

    Returns ``{"model", "inputs", "float_weights", "settings", "rows", "markdown", "files"}``; each row has
    ``variant``, ``kind`` and either the measurements or ``error``.
    """
    import onnxruntime as ort

    source = Path(model_path)
    say = progress or (lambda _line: None)
    variants = parse_variants(codecs, quick)  # bad names fail here, before minutes of work
    probe = model_io.load(source, load_external_data=False)
    external = bool(model_io.external_files(source)) or model_io.file_size(source) > model_io.PROTOBUF_LIMIT
    float_weights = count_float_weights(probe)  # the graph stays: it bounds generated indices
    if float_weights == 0:
        raise HyperonnxError(f"{source}: has no float weights to compress")
    repeats = repeats if repeats is not None else (5 if quick else 20)
    min_seconds = min_seconds if min_seconds is not None else (0.2 if quick else 1.0)
    if repeats < 1:
        raise HyperonnxError(f"repeats must be at least 1, got {repeats}")

    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        if out.exists() and not out.is_dir():
            raise HyperonnxError(f"{out}: exists and is not a directory")
        out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hyperonnx-bench-"))
    keep = out / "models" if keep_models and out is not None else None
    if keep is not None:
        keep.mkdir(exist_ok=True)

    # A failing op-library session logs an error line of its own before the fallback; the row says what ran.
    ort.set_default_logger_severity(3)
    try:
        start = time.perf_counter()
        try:
            reference = _plain_session(source, threads)
        except Exception as exc:
            raise HyperonnxError(f"{source}: onnxruntime cannot load it ({short_reason(exc, typed=True)})") from None
        ref_load = time.perf_counter() - start
        if inputs is None:
            feeds, ref_out, inputs_note = _generated_feeds(reference, probe)
        else:
            feeds, inputs_note = evaluate.given_inputs(inputs)
            evaluate.check_input_names(feeds, reference)
            ref_out = evaluate.run(reference, feeds, what="the fp32 model")
        evaluate.check_reference_outputs(ref_out, inputs_note)
        lat_feeds, lat_note = _latency_feeds(reference, feeds)
        ref_bytes = model_io.file_size(source)
        rows: list[dict[str, Any]] = [{
            "variant": REFERENCE, "kind": "reference", "bytes": ref_bytes,
            "bits_per_weight": 8 * ref_bytes / float_weights, "float_weights_left": 1.0,
            "cosine_min": 1.0, "cosines": [1.0] * len(ref_out),
            "top1_agreement": fidelity(ref_out, ref_out)["top1_agreement"],
            "load_s": ref_load, "latency_s": _latencies([reference], lat_feeds, repeats, min_seconds)[0],
            "latency_vs_fp32": 1.0, "prepare_s": 0.0, "runs_as": "plain session (the original)",
        }]
        for i, variant in enumerate(variants, 1):
            say(f"[{i}/{len(variants)}] {variant.spec}")
            row = _measure(variant, source, work, external, threads, feeds, lat_feeds, ref_out, repeats,
                           min_seconds, reference, float_weights, ref_bytes)
            if keep is not None and row.get("path"):
                for f in Path(row["path"]).parent.glob(Path(row["path"]).name + "*"):
                    shutil.move(str(f), keep / f.name)
                row["path"] = str(keep / Path(row["path"]).name)
            else:
                row.pop("path", None)  # the work folder goes away at the end
            rows.append(row)
            if "error" in row:
                say(f"    error: {row['error']}")
            else:
                top1 = f", top-1 {row['top1_agreement']:.4f}" if row["top1_agreement"] is not None else ""
                say(f"    {row['bytes'] / 1e6:.3f} MB, {row['bits_per_weight']:.2f} bits/weight, "
                    f"cosine {row['cosine_min']:.6f}{top1}")
    finally:
        ort.set_default_logger_severity(2)  # ORT's default
        shutil.rmtree(work, ignore_errors=True)

    _mark_frontier(rows)
    result: dict[str, Any] = {
        "model": str(source),
        "inputs": inputs_note,
        "input_shapes": {k: list(v.shape) for k, v in feeds.items()},
        "float_weights": float_weights,
        "settings": {"threads": threads, "repeats": repeats, "min_seconds": min_seconds, "latency_feeds": lat_note,
                     "onnxruntime": ort.__version__, "provider": "CPUExecutionProvider", "quick": quick},
        "rows": rows,
    }
    result["markdown"] = markdown(result)
    result["files"] = {}
    if out is not None:
        result["files"] = _write(result, out, say)
    return result


def _measure(variant: Variant, source: Path, work: Path, external: bool, threads: int | None,
             feeds: dict[str, np.ndarray], lat_feeds: dict[str, np.ndarray], ref_out: list[np.ndarray],
             repeats: int, min_seconds: float, reference: Any, float_weights: int, ref_bytes: int) -> dict[str, Any]:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in variant.spec)
    target = work / f"{safe}.onnx"
    row: dict[str, Any] = {"variant": variant.spec, "kind": variant.kind, "path": str(target)}
    try:
        start = time.perf_counter()
        if variant.kind == "hyperonnx":
            converted = api.convert(source, target, codec_name=variant.name, options=dict(variant.options),
                                    external_data=external or None)
            if not converted.report.tensors:
                # convert() keeps a tensor raw when the codec rejects it; with none compressed the "variant" is
                # the fp32 model again, and a row of it would read as a perfect codec
                reasons = [s.reason for s in converted.report.skipped if "--min-elements" not in s.reason]
                raise ValueError(f"compressed no tensor ({reasons[0] if reasons else 'no eligible weights'})")
            row["tensors"] = len(converted.report.tensors)
        elif variant.name == "ort-int8":
            _ort_int8(source, target, variant.options, external)
        else:
            _ort_nbits(source, target, variant.options, external)
        row["prepare_s"] = time.perf_counter() - start
        size = model_io.file_size(target)
        left = count_float_weights(onnx.load(str(target), load_external_data=False))
        start = time.perf_counter()
        if variant.kind == "hyperonnx":
            session, runs_as = _hyperonnx_session(target, work / f"{safe}.decoded.onnx", threads)
            runs_as = f"{row['tensors']} tensor{'s' if row['tensors'] != 1 else ''}; {runs_as}"
        else:
            session, runs_as = _plain_session(target, threads), "plain session"
        row["load_s"] = time.perf_counter() - start
        outputs = session.run(None, feeds)
        latency, ref_latency = _latencies([session, reference], lat_feeds, repeats, min_seconds)
        row.update({"bytes": size, "bits_per_weight": 8 * size / float_weights,
                    "float_weights_left": left / float_weights, **fidelity(ref_out, outputs),
                    "latency_s": latency, "latency_vs_fp32": latency / ref_latency, "runs_as": runs_as})
        if left >= float_weights:  # e.g. MatMulNBits on a model whose weights all feed Conv or Gemm
            row["runs_as"] += "; compressed nothing"
        row["smaller"] = ref_bytes / size if size else None
    except Exception as exc:  # one variant's failure is a row of the report, not the end of the sweep
        row = {"variant": variant.spec, "kind": variant.kind, "error": short_reason(exc, typed=True)}
    return row


def _mark_frontier(rows: list[dict[str, Any]]) -> None:
    """A row is on the size–fidelity frontier when no other row is at most its size with a higher cosine
    (ties on both broken by the smaller file): the rows worth shipping."""
    ok = [r for r in rows if "error" not in r and not math.isnan(r["cosine_min"])]
    for r in rows:
        r["frontier"] = False
    for r in ok:
        r["frontier"] = not any(
            o is not r and o["bytes"] <= r["bytes"] and o["cosine_min"] >= r["cosine_min"]
            and (o["bytes"] < r["bytes"] or o["cosine_min"] > r["cosine_min"])
            for o in ok)


# ----------------------------------------------------------------------------------------------------------------
# reports
# ----------------------------------------------------------------------------------------------------------------


def _size(n: float) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} KB"


def markdown(result: dict[str, Any]) -> str:
    """The Markdown table of a :func:`bench` result (what the CLI prints and writes to bench.md)."""
    s = result["settings"]
    has_top1 = any(r.get("top1_agreement") is not None for r in result["rows"])
    lines = [
        f"Model `{Path(result['model']).name}`: {result['float_weights']:,} float weights; fidelity on "
        f"{result['inputs']} {result['input_shapes']}; ONNX Runtime {s['onnxruntime']} CPU, "
        f"{s['threads'] or 'default'} threads; latency: median of ≥ {s['repeats']} runs and ≥ {s['min_seconds']} s "
        f"({s['latency_feeds']}), interleaved with the fp32 model's runs (× fp32).",
        "",
        "| variant | size | × smaller | bits/weight | fp weights left | cosine min | "
        + ("top-1 | " if has_top1 else "") + "load ms | latency ms | × fp32 | frontier | notes |",
        "|---|---:|---:|---:|---:|---:|" + ("---:|" if has_top1 else "") + "---:|---:|---:|:-:|---|",
    ]
    ref_bytes = result["rows"][0]["bytes"]
    for r in result["rows"]:
        if "error" in r:
            dashes = " | ".join(["—"] * (8 + has_top1))
            lines.append(f"| {r['variant']} | {dashes} | | error: {r['error'].replace('|', '/')} |")
            continue
        top1 = ""
        if has_top1:
            top1 = f"{r['top1_agreement']:.4f} | " if r.get("top1_agreement") is not None else "— | "
        cos = "nan" if math.isnan(r["cosine_min"]) else f"{r['cosine_min']:.6f}"
        lines.append(
            f"| {r['variant']} | {_size(r['bytes'])} | {ref_bytes / r['bytes']:.2f} | {r['bits_per_weight']:.2f} | "
            f"{100 * r['float_weights_left']:.1f} % | {cos} | {top1}{1e3 * r['load_s']:.0f} | "
            f"{1e3 * r['latency_s']:.2f} | {r['latency_vs_fp32']:.2f} | {'✓' if r['frontier'] else ''} | {r['runs_as']} |")
    return "\n".join(lines) + "\n"


def _write(result: dict[str, Any], out: Path, say: Callable[[str], None]) -> dict[str, str]:
    files = {"markdown": str(out / "bench.md"), "json": str(out / "bench.json")}
    Path(files["markdown"]).write_text(result["markdown"])
    payload = {k: v for k, v in result.items() if k not in {"markdown", "files"}}
    Path(files["json"]).write_text(jsonout.dumps(payload) + "\n")
    png = out / "bench.png"
    if plot(result, png):
        files["plot"] = str(png)
    else:
        say("matplotlib is not installed: skipped bench.png (pip install matplotlib)")
    return files


def _label(spec: str) -> str:
    """A short point label: "ort-nbits:algo=rtn:block=32:ops=MatMul+Gather" → "nbits rtn b32 +Gather"."""
    for long, short in (("ort-nbits", "nbits"), ("algo=", ""), ("block=", "b"), ("ops=MatMul+Gather", "+Gather"),
                        ("per_channel=1", "per-ch"), (":", " ")):
        spec = spec.replace(long, short)
    return spec


def plot(result: dict[str, Any], path: Path) -> bool:
    """Size against fidelity, one point per variant; False (and nothing written) without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    # rows that compressed nothing sit on the fp32 point and would stretch the log axis to 1e-12
    rows = [r for r in result["rows"] if "error" not in r and not math.isnan(r["cosine_min"])
            and (r["kind"] == "reference" or r["float_weights_left"] < 1.0)]
    has_top1 = any(r.get("top1_agreement") is not None for r in rows)
    # Figure + Agg canvas, not pyplot: no global backend state, works headless and inside other programs
    fig = Figure(figsize=(11 if has_top1 else 6.5, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if has_top1 else 1, squeeze=False)[0]
    colors = {"reference": "black", "hyperonnx": "tab:blue", "ort": "tab:orange"}
    ref = result["rows"][0]
    for ax, metric in zip(axes, ["cosine", "top1"]):
        for r in rows:
            if metric == "cosine":
                # 1 − cosine on a log axis separates 0.999 from 0.99999; the exact fp32 point has no place there
                if r is ref:
                    continue
                y = max(1.0 - r["cosine_min"], 1e-9)
            else:
                if r.get("top1_agreement") is None:
                    continue
                y = r["top1_agreement"]
            ax.scatter(r["bytes"] / 1e6, y, color=colors.get(r["kind"], "gray"),
                       marker="o" if r["frontier"] else "x", zorder=3)
            label = ax.annotate(_label(r["variant"]), (r["bytes"] / 1e6, y), fontsize=7, xytext=(4, 3),
                                textcoords="offset points")
            label.set_in_layout(False)  # long labels must not squeeze the axes
        ax.axvline(ref["bytes"] / 1e6, color="black", linestyle=":", linewidth=1, label="fp32 size")
        ax.set_xlabel("whole file, MB")
        ax.grid(True, alpha=0.3)
        if metric == "cosine":
            ax.set_yscale("log")
            ax.set_ylabel("1 − cosine (min over outputs), lower is better")
        else:
            ax.set_ylabel("top-1 agreement with fp32, higher is better")
    for kind, color in colors.items():
        axes[0].scatter([], [], color=color, label=kind)
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle(f"{Path(result['model']).name}: size vs fidelity (o = on the frontier)", fontsize=10)
    fig.savefig(str(path), dpi=120)
    return True
