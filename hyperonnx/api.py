"""The Python API: everything the CLI does, as functions returning plain data."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from threadpoolctl import threadpool_limits

from hyperonnx import codec, evaluate, model_io
from hyperonnx.errors import HyperonnxError, short_reason
from hyperonnx.ops import DOMAIN, register_schemas
from hyperonnx.passes import compress, policy
from hyperonnx.passes.compress import CompressReport, compress_model
from hyperonnx.passes.decoders import find_decoders
from hyperonnx.passes.decompress import decompress_model
from hyperonnx.passes.fuse import FUSABLE_CODECS, fusable_weights, unfuse_model
from hyperonnx.passes.select import Selection

register_schemas()  # onnx's checker and shape inference accept converted models once the API is in use


@dataclass
class ConvertResult:
    input: str
    output: str
    report: CompressReport
    bytes_before: int
    bytes_after: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.bytes_before / max(self.bytes_after, 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "output": self.output,
            "tensors": [t.as_dict() for t in self.report.tensors],
            "skipped": [{"name": s.name, "reason": s.reason} for s in self.report.skipped],
            "totals": {
                "tensors_compressed": len(self.report.tensors),
                "bytes_before": self.bytes_before,
                "bytes_after": self.bytes_after,
                "ratio": self.ratio,
                "seconds": self.report.seconds,
            },
            **self.extra,
        }


def _check_paths(source: str | os.PathLike, target: str | os.PathLike) -> tuple[Path, Path]:
    source, target = Path(source), Path(target)
    if not source.exists():
        raise HyperonnxError(f"{source}: no such file")
    if target.exists() and target.resolve() == source.resolve():
        raise HyperonnxError(f"{target}: output path is the input path; choose another output")
    if target.is_dir():
        raise HyperonnxError(f"{target}: is a directory, expected an output file name")
    return source, target


@dataclass(frozen=True, kw_only=True)
class ConvertOptions:
    """What a conversion does; validated once, when made (one HyperonnxError line for a bad value).

    The field names are the command line's flags: ``codec_name`` ``--codec``, ``options`` ``--codec-opt``,
    ``runtime`` ``--runtime`` (the decoders' *form*: ``ort`` nodes of the op library or ``portable`` standard
    ops), ``decode`` ``--decode`` (the op library's decode *mode*: once per session or on every call),
    ``max_size`` ``--max-size`` (the whole output file, in bytes); the others as their flags.

    ``target_bpw`` / ``max_size`` allocate bits per tensor to meet a budget (bits per compressed weight, or the
    whole output file in bytes). ``strip_debug_info`` drops exporter debug data (node metadata and doc strings)
    — the one opt-in exception to "nothing else changes".

    ``target_cosine`` instead searches for the smallest model whose outputs keep that cosine to the original's on
    ``inputs`` (an .npz path or a dict keyed by input name; generated when None), validates it and reports the
    achieved cosine (:mod:`hyperonnx.tune`); ``progress`` then receives one line per search step.

    ``sensitivity`` (implied by ``inputs`` with a size budget) weighs the budget's allocation by each tensor's
    measured effect on the outputs (:func:`hyperonnx.sensitivity.measure`, on ``inputs`` or generated ones)
    instead of counting every tensor's relative noise alike; the model is then loaded whole.

    ``exact_grids`` stores weights that already lie on a float16 block grid (dequantized from a llama.cpp
    checkpoint) exactly, with the `grid` codec, in the ``ort`` form.

    With no ``codec_name`` and no options, budget, target or inputs, the default policy chooses each tensor's
    setting from a weight-SQNR target (:mod:`hyperonnx.passes.policy`, docs/default.md); otherwise the codec is
    :data:`codec.DEFAULT_CODEC`. ``min_elements`` defaults to the policy's own (1024) under it, else 4096.
    Without ``inputs``, ``target_cosine`` and ``sensitivity`` measure on generated inputs, and no tensor then goes
    below the policy's floor.
    """

    codec_name: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    runtime: str = "ort"
    decode: str = "load"
    min_elements: int | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    all_ops: bool = False
    jobs: int | None = None
    external_data: bool | None = None
    target_bpw: float | None = None
    max_size: int | None = None
    strip_debug_info: bool = False
    target_cosine: float | None = None
    inputs: str | os.PathLike | dict[str, np.ndarray] | None = None
    exact_grids: bool = True
    sensitivity: bool = False

    def __post_init__(self) -> None:
        # normalized copies: a caller's dict or list changed later must not change a validated conversion
        object.__setattr__(self, "options", dict(self.options or {}))
        object.__setattr__(self, "include", tuple(self.include))
        object.__setattr__(self, "exclude", tuple(self.exclude))
        self._validate()

    def _validate(self) -> None:
        if self.min_elements is not None and self.min_elements < 1:
            raise HyperonnxError(f"--min-elements must be at least 1, got {self.min_elements}")
        if self.jobs is not None and self.jobs < 1:
            raise HyperonnxError(f"--jobs must be at least 1, got {self.jobs}")
        if self.target_bpw is not None and not 1.0 <= self.target_bpw <= 32.0:
            raise HyperonnxError(f"--target-bpw must be between 1 and 32, got {self.target_bpw}")
        if self.target_bpw is not None and self.max_size is not None:
            raise HyperonnxError("give --target-bpw or --max-size, not both")
        if self.max_size is not None and self.max_size <= 0:
            raise HyperonnxError(f"--max-size must be positive, got {self.max_size}")
        if self.target_cosine is not None and self.budgeted:
            raise HyperonnxError("give --target-cosine or a size budget (--target-bpw, --max-size), not both")
        if self.target_cosine is not None and not 0.0 < self.target_cosine <= 1.0:
            raise HyperonnxError(f"--target-cosine must be in (0, 1], got {self.target_cosine}")
        if self.inputs is not None and self.target_cosine is None and not self.budgeted:
            raise HyperonnxError("--inputs is used with --target-cosine or a size budget (--target-bpw, --max-size)")
        if self.sensitivity and not self.budgeted and self.target_cosine is None:
            raise HyperonnxError("--sensitivity is used with a size budget (--target-bpw, --max-size)")
        try:
            compress.check_form_and_mode(self.runtime, self.decode)
            codec.check_options(self.codec, self.options)  # bits=99 would skip every weight: say so now
        except ValueError as exc:
            raise HyperonnxError(str(exc)) from None
        if self.runtime == "portable" and not self.default_policy and not codec.CODECS[self.codec].portable:
            raise HyperonnxError(f"codec {self.codec!r} has no portable decoder (its θ are entropy coded): "
                                 "use --runtime ort, or --codec blocktcq or blockvq for --runtime portable")

    @property
    def budgeted(self) -> bool:
        """A size budget: --target-bpw or --max-size."""
        return self.target_bpw is not None or self.max_size is not None

    @property
    def measures_sensitivity(self) -> bool:
        """Whether the budget is spent by measured sensitivity (asked for, or implied by given inputs)."""
        return self.budgeted and (self.sensitivity or self.inputs is not None)

    @property
    def selection(self) -> Selection:
        min_elements = self.min_elements
        if min_elements is None:  # the policy stores small tensors at its high targets: worth it from 1024 weights
            min_elements = policy.MIN_ELEMENTS if self.default_policy else 4096
        return Selection(min_elements, self.include, self.exclude, self.all_ops)

    @property
    def default_policy(self) -> bool:
        """No codec, option, budget, target or data: the default policy chooses every tensor's setting."""
        return (self.codec_name is None and not self.options and not self.budgeted and self.target_cosine is None
                and not self.sensitivity and self.inputs is None)

    @property
    def codec(self) -> str:
        """The codec used outside the default policy: ``codec_name``, else the default codec."""
        return self.codec_name or codec.DEFAULT_CODEC

    @property
    def floor_db(self) -> float | None:
        """The policy's floor of weight SQNR where measurements run on generated inputs (no ``inputs``)."""
        measured = self.target_cosine is not None or self.sensitivity
        return policy.FLOOR_DB if measured and self.inputs is None else None


def convert(
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    config: ConvertOptions | None = None,
    progress: Callable[[str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    **settings: Any,
) -> ConvertResult:
    """Compress the weights of the model at ``source`` and write the result to ``target`` atomically.

    What to do is ``config`` (a :class:`ConvertOptions`), or its fields given as keywords here
    (``convert(src, dst, codec_name="tcq", target_bpw=4.5)``), or both (the keywords replace ``config``'s).
    ``on_start`` is told how many tensors will be encoded, before the first; ``progress`` then receives each
    one's name (with ``target_cosine``: one line per search step instead).
    """
    try:
        config = (dataclasses.replace(config, **settings) if config is not None else ConvertOptions(**settings))
    except TypeError as exc:  # a keyword that is no option
        raise HyperonnxError(f"convert(): {exc}") from None
    source, target = _check_paths(source, target)
    # Streaming: external data stays on disk; each weight is read when it is encoded, the rest is copied through
    # when saving. (The fidelity search and the sensitivity measurement hold every weight in memory anyway.)
    sensitivity = config.measures_sensitivity
    lazy = config.target_cosine is None and not sensitivity
    model = model_io.load_lazy(source) if lazy else model_io.load(source)
    input_data = model_io.external_files(source, model if lazy else None)  # a full load has read it in
    model_io.refuse_overwriting_input(source, input_data, (target, model_io.data_file(target)))
    had_external = bool(input_data)
    bytes_before = model_io.file_size(source, model if lazy else None)
    # call mode with a codec the fused ops read: weights left on the grid codec are worth a warning (below)
    fusing = config.decode == "call" and config.runtime == "ort" and config.codec in FUSABLE_CODECS
    fusable = {name for _, name in fusable_weights(model)} if fusing else set()
    external_data = config.external_data
    if external_data is None and had_external:
        external_data = True
    # An output with external data gets each θ blob written out as it is made (model_io.BlobSpool): memory then
    # stays at the tensors in flight whatever the model's size. An inline output is under 2 GiB and its blobs
    # are serialized together anyway; the fidelity search evaluates the model in memory (tune), so it keeps them.
    streamed = bool(external_data) and config.target_cosine is None
    with model_io.BlobSpool(target) if streamed else contextlib.nullcontext() as spool:
        # The converter runs its own threads (--jobs, one tensor each): numpy's BLAS threads inside them (the rank-1
        # fit's products) only compete for the same cores, 20-25 % more CPU time (benchmarks/convert_rate.py)
        with threadpool_limits(limits=1, user_api="blas"):
            report, tuned, measured = _compress(model, source, config, sensitivity, bytes_before, progress,
                                                on_start, spool)
        if config.strip_debug_info:
            strip_debug(model)
        model_io.save(model, target, external_data, source_dir=source.parent, spool=spool)
    del model
    result = ConvertResult(str(source), str(target), report, bytes_before, model_io.file_size(target))
    max_size, target_bpw = config.max_size, config.target_bpw
    if max_size is not None and result.bytes_after > max_size:
        result.extra["warning"] = (f"{result.bytes_after} bytes is over --max-size {max_size} even at the smallest "
                                   "setting of every tensor; lower --min-elements or add --strip-debug-info")
    if report.budget is not None:
        result.extra["budget"] = report.budget
        if target_bpw is not None and report.budget["chosen_bytes"] > report.budget["limit_bytes"]:
            spent = 8 * report.budget["chosen_bytes"] / max(report.budget["weights"], 1)
            result.extra["warning"] = (f"{spent:.3f} bits a weight is over --target-bpw {target_bpw} even at the "
                                       "smallest setting of every tensor (small tensors carry their side "
                                       "information); raise --min-elements or the target")
    unfused_grids = [t.name for t in report.tensors if t.codec == "grid" and t.name in fusable]
    if unfused_grids:
        shown = ", ".join(unfused_grids[:3]) + (", …" if len(unfused_grids) > 3 else "")
        note = (f"{len(unfused_grids)} weight(s) on exact float16 grids kept the grid codec, which no fused op reads "
                f"({shown}): call mode decodes them whole on every run; --no-exact-grids lets them fuse")
        result.extra["warning"] = "; ".join(w for w in (result.extra.get("warning"), note) if w)
    if report.policy is not None:
        result.extra["policy"] = report.policy
    if config.floor_db is not None:
        result.extra["floor_db"] = config.floor_db
    if tuned is not None:
        result.extra["tune"] = tuned.details
    if sensitivity:
        result.extra["sensitivity"] = measured
    return result


def _compress(model: onnx.ModelProto, source: Path, config: ConvertOptions, sensitivity: bool, bytes_before: int,
              progress: Callable[[str], None] | None, on_start: Callable[[int], None] | None,
              spool: model_io.BlobSpool | None) -> tuple[CompressReport, Any, Any]:
    """The conversion's pass, as ``config`` chooses it: (report, the fidelity search's result, the measured
    sensitivity), the last two None when not run."""
    tuned = measured = None
    try:
        if config.target_cosine is not None:
            from hyperonnx import tune

            tuned = tune.tune_model(model, source, config.target_cosine, config.inputs, config.codec,
                                    config.options, config.selection, config.runtime, config.decode, config.jobs,
                                    progress, exact_grids=config.exact_grids, floor_db=config.floor_db)
            report = tuned.report
        elif config.default_policy:
            report = policy.compress_default(model, selection=config.selection, form=config.runtime,
                                             mode=config.decode, jobs=config.jobs, progress=progress,
                                             on_start=on_start, base_dir=source.parent,
                                             exact_grids=config.exact_grids, spool=spool)
        else:
            weights = None
            if sensitivity:
                from hyperonnx import sensitivity as measured_by

                weights, measured = measured_by.measure(model, source, config.inputs, config.codec,
                                                        config.options, config.selection)
            report = compress_model(model, codec_name=config.codec, options=config.options,
                                    selection=config.selection, form=config.runtime, mode=config.decode,
                                    jobs=config.jobs, progress=progress, on_start=on_start,
                                    target_bpw=config.target_bpw, max_bytes=config.max_size,
                                    input_bytes=bytes_before, base_dir=source.parent,
                                    exact_grids=config.exact_grids, tensor_weights=weights,
                                    floor_db=config.floor_db, spool=spool)
    except ValueError as exc:
        raise HyperonnxError(str(exc)) from None
    return report, tuned, measured


def strip_debug(model: onnx.ModelProto) -> None:
    """Drop exporter debug data: node metadata (stack traces, FX dumps) and node doc strings, in every graph.
    Decoder nodes keep their doc strings: they record the fidelity measured at conversion."""
    from hyperonnx.passes.graphs import walk

    for scope in walk(model.graph):
        for node in scope.graph.node:
            node.ClearField("metadata_props")
            if node.domain != DOMAIN and not node.name.startswith("hyperonnx/"):
                node.ClearField("doc_string")


def decompress(source: str | os.PathLike, target: str | os.PathLike, external_data: bool | None = None) -> int:
    """Write a plain ONNX model with every compressed weight decoded; returns the number decoded."""
    source, target = _check_paths(source, target)
    model = model_io.load(source, load_external_data=False)
    model_io.refuse_overwriting_input(source, model_io.external_files(source, model),
                                      (target, model_io.data_file(target)))
    model_io.load_external(model, source)
    try:
        count = decompress_model(model)
    except (ValueError, KeyError) as exc:
        raise HyperonnxError(f"{source}: cannot decode ({exc})") from None
    model_io.save(model, target, external_data)
    return count


def inspect(path: str | os.PathLike) -> dict[str, Any]:
    """Per compressed tensor: name, shape, dtype, codec, bits/weight, SQNR, bytes; and totals."""
    model = model_io.load(path)
    try:
        fused = set(unfuse_model(model))  # a fused op (docs/fused.md) is described as its decoder, marked fused
        tensors = [{**_describe(decoder), "fused": decoder.output in fused} for decoder in find_decoders(model)]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise HyperonnxError(f"{path}: malformed hyperonnx decoder ({type(exc).__name__}: {exc})") from None
    before = sum(t["bytes_before"] or 0 for t in tensors)
    after = sum(t["bytes_after"] for t in tensors)
    return {
        "tensors": tensors,
        "totals": {
            "tensors": len(tensors),
            "bytes_before": before,
            "bytes_after": after,
            "ratio": before / after if after else None,
            "file_bytes": model_io.file_size(path),
        },
    }


def _describe(decoder) -> dict[str, Any]:
    meta = decoder.meta
    numel = math.prod(meta["shape"])
    after = decoder.bytes_after + 8 * (len(meta["shape"]) + 3)
    return {
        "name": decoder.output,
        "graph": decoder.graph_path,
        "form": decoder.form,
        "shape": list(meta["shape"]),
        "dtype": _dtype_name(meta["dtype"]),
        "codec": meta["codec"],
        "format": int(meta.get("format", 1)),  # 2: an ecsq / tcq tensor with a rank-1 term (docs/format.md)
        "bits": meta["bits"],
        "mode": meta.get("mode"),
        "bits_per_weight": 8.0 * after / max(numel, 1),
        "sqnr_db": meta.get("sqnr_db"),
        "target_db": meta.get("target_db"),  # the default policy's target and why (None: set by flags)
        "reason": meta.get("reason"),
        "bytes_before": meta.get("bytes_before"),
        "bytes_after": after,
    }


def _dtype_name(onnx_type: int) -> str:
    from hyperonnx.passes.select import FLOAT_TYPES

    return FLOAT_TYPES.get(int(onnx_type), str(onnx_type))


def _timed_session(path, providers, mode):
    start = time.perf_counter()
    session = evaluate.make_session(path, providers, mode)
    return session, time.perf_counter() - start


def verify(
    original: str | os.PathLike,
    compressed: str | os.PathLike,
    inputs: str | os.PathLike | dict[str, np.ndarray] | None = None,
    providers: list[str] | None = None,
    mode: str | None = None,
    repeats: int = 5,
) -> dict[str, Any]:
    """Run both models on the same inputs; report fidelity per output, size ratio, load time and latency."""
    graphs = []
    for path in (original, compressed):
        if not Path(path).exists():
            raise HyperonnxError(f"{path}: no such file")
        graphs.append(model_io.load(path, load_external_data=False))  # one clear line for a corrupt file
    ref, ref_load = _timed_session(original, providers, None)
    test, test_load = _timed_session(compressed, providers, mode)
    if inputs is None:
        feeds = evaluate.generated_inputs(ref, model=graphs[0])
    else:
        feeds, _ = evaluate.given_inputs(inputs)
    evaluate.check_input_names(feeds, ref)
    ref_out = evaluate.run(ref, feeds, what="the original model")
    test_out = evaluate.run(test, feeds, what="the compressed model")
    # NaN is reported below, and fails --min-cosine
    evaluate.check_reference_outputs(ref_out, "these inputs", finite=False)
    outputs = []
    for arg, a, b in zip(ref.get_outputs(), ref_out, test_out):
        a, b = np.asarray(a), np.asarray(b)
        entry = {"name": arg.name, "shape": list(a.shape), "cosine": evaluate.cosine(a, b),
                 "max_abs_error": float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
                 if a.size else 0.0}
        if np.issubdtype(a.dtype, np.floating):
            # NaN or inf anywhere makes the cosine NaN, which then fails --min-cosine: say where it came from
            entry["non_finite"] = {"original": int(a.size - np.isfinite(a).sum()),
                                   "compressed": int(b.size - np.isfinite(b).sum())}
            top1 = evaluate.top1_agreement(a, b)
            if top1 is not None:
                entry["top1_agreement"] = top1
        outputs.append(entry)
    cosines = [o["cosine"] for o in outputs]
    ref_latency = evaluate.median_latency(ref, feeds, repeats)
    test_latency = evaluate.median_latency(test, feeds, repeats)
    size_before, size_after = model_io.file_size(original), model_io.file_size(compressed)
    return {
        "outputs": outputs,
        # NaN-aware: min() over floats with a NaN among them answers by position
        "cosine_min": float("nan") if any(np.isnan(c) for c in cosines) else min(cosines, default=1.0),
        "size_bytes": {"original": size_before, "compressed": size_after},
        "size_ratio": size_before / max(size_after, 1),
        "load_seconds": {"original": ref_load, "compressed": test_load},
        "latency_seconds": {"original": ref_latency, "compressed": test_latency},
        "latency_ratio": test_latency / ref_latency if ref_latency else None,
    }


def _cuda_report(library: str, providers: list[str]) -> dict[str, Any]:
    """Whether the library holds CUDA kernels, how many devices they see, and whether ORT can use them."""
    import ctypes

    lib = ctypes.CDLL(library)
    if not hasattr(lib, "hyperonnx_cuda_info"):
        return {"cuda_kernels": False, "cuda_usable": False}
    buffer = ctypes.create_string_buffer(1024)
    lib.hyperonnx_cuda_info(buffer, ctypes.c_size_t(len(buffer)))
    devices = int(lib.hyperonnx_cuda_available())
    return {"cuda_kernels": True, "cuda_devices": devices, "cuda_info": buffer.value.decode(errors="replace"),
            "cuda_usable": devices > 0 and "CUDAExecutionProvider" in providers}


def doctor() -> dict[str, Any]:
    """Versions, the op library and whether it loads, the providers ONNX Runtime offers."""
    import platform

    import onnxruntime as ort

    from hyperonnx import __version__

    info: dict[str, Any] = {
        "hyperonnx": __version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "numpy": np.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        "codecs": sorted(codec.CODECS),
    }
    try:
        from hyperonnx import runtime

        path = runtime.library_path()
        info["library"] = path
        runtime.session_options()
        info["library_loads"] = True
        info.update(_cuda_report(path, info["providers"]))
    except Exception as exc:
        info.setdefault("library", None)
        info["library_loads"] = False
        info["library_error"] = short_reason(exc)
    return info
