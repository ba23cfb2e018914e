"""The Python API: everything the CLI does, as functions returning plain data."""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from hyperonnx import codec, model_io
from hyperonnx.errors import HyperonnxError
from hyperonnx.ops import DOMAIN
from hyperonnx.passes.compress import CompressReport, compress_model
from hyperonnx.passes.decoders import find_decoders
from hyperonnx.passes.decompress import decompress_model
from hyperonnx.passes.select import Selection


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


def convert(
    source: str | os.PathLike,
    target: str | os.PathLike,
    codec_name: str | None = None,
    options: dict[str, Any] | None = None,
    runtime: str = "ort",
    decode: str = "load",
    min_elements: int | None = None,
    include: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    all_ops: bool = False,
    jobs: int | None = None,
    external_data: bool | None = None,
    progress: Callable[[str], None] | None = None,
    target_bpw: float | None = None,
    max_size: int | None = None,
    strip_debug_info: bool = False,
    target_cosine: float | None = None,
    inputs: str | os.PathLike | dict[str, np.ndarray] | None = None,
    exact_grids: bool = True,
    sensitivity: bool = False,
) -> ConvertResult:
    """Compress the weights of the model at ``source`` and write the result to ``target`` atomically.

    ``target_bpw`` / ``max_size`` allocate bits per tensor to meet a budget (bits per compressed weight, or the
    whole output file in bytes). ``strip_debug_info`` drops exporter debug data (node metadata and doc strings)
    — the one opt-in exception to "nothing else changes".

    ``target_cosine`` instead searches for the smallest model whose outputs keep that cosine to the original's on
    ``inputs`` (an .npz path or a dict keyed by input name; generated when None), validates it and reports the
    achieved cosine (:mod:`hyperonnx.tune`); ``progress`` then receives one line per search step.

    ``sensitivity`` (implied by ``inputs`` with a size budget) weighs the budget's allocation by each tensor's
    measured effect on the outputs (:func:`hyperonnx.tune.measure_sensitivity`, on ``inputs`` or generated ones)
    instead of counting every tensor's relative noise alike; the model is then loaded whole.

    ``exact_grids`` stores weights that already lie on a float16 block grid (dequantized from a llama.cpp
    checkpoint) exactly, with the `grid` codec, in the ``ort`` form.

    ``min_elements`` defaults to 4096, or to the policy's own (1024) under the default policy.

    With no ``codec_name`` and no options, budget or target, the default policy chooses each tensor's setting
    from a weight-SQNR target (:mod:`hyperonnx.passes.policy`, docs/default.md); otherwise ``codec_name``
    defaults to :data:`codec.DEFAULT_CODEC`. Without ``inputs``, ``target_cosine`` and ``sensitivity`` measure on
    generated inputs, and no tensor then goes below the policy's floor.
    """
    from hyperonnx.passes import policy

    default_policy = codec_name is None and not options and target_bpw is None and max_size is None \
        and target_cosine is None and not sensitivity and inputs is None
    codec_name = codec_name or codec.DEFAULT_CODEC
    if min_elements is None:  # the policy stores small tensors at its high targets: worth it from 1024 weights
        min_elements = policy.MIN_ELEMENTS if default_policy else 4096
    floor_db = policy.FLOOR_DB if inputs is None and (target_cosine is not None or sensitivity) else None
    source, target = _check_paths(source, target)
    if min_elements < 1:
        raise HyperonnxError(f"--min-elements must be at least 1, got {min_elements}")
    if jobs is not None and jobs < 1:
        raise HyperonnxError(f"--jobs must be at least 1, got {jobs}")
    if target_bpw is not None and not 1.0 <= target_bpw <= 32.0:
        raise HyperonnxError(f"--target-bpw must be between 1 and 32, got {target_bpw}")
    if target_bpw is not None and max_size is not None:
        raise HyperonnxError("give --target-bpw or --max-size, not both")
    if max_size is not None and max_size <= 0:
        raise HyperonnxError(f"--max-size must be positive, got {max_size}")
    if target_cosine is not None and (target_bpw is not None or max_size is not None):
        raise HyperonnxError("give --target-cosine or a size budget (--target-bpw, --max-size), not both")
    if target_cosine is not None and not 0.0 < target_cosine <= 1.0:
        raise HyperonnxError(f"--target-cosine must be in (0, 1], got {target_cosine}")
    budgeted = target_bpw is not None or max_size is not None
    if inputs is not None and target_cosine is None and not budgeted:
        raise HyperonnxError("--inputs is used with --target-cosine or a size budget (--target-bpw, --max-size)")
    if sensitivity and not budgeted and target_cosine is None:
        raise HyperonnxError("--sensitivity is used with a size budget (--target-bpw, --max-size)")
    sensitivity = budgeted and (sensitivity or inputs is not None)
    try:
        codec.check_options(codec_name, options)  # bits=99 would skip every weight: say so now, in one line
    except ValueError as exc:
        raise HyperonnxError(str(exc)) from None
    if runtime == "portable" and codec_name in codec.CODECS and not codec.CODECS[codec_name].portable:
        raise HyperonnxError(f"codec {codec_name!r} has no portable decoder (its θ are entropy coded): "
                             "use --runtime ort, or --codec blocktcq or blockvq for --runtime portable")
    # Streaming: external data stays on disk; each weight is read when it is encoded, the rest is copied through
    # when saving. (The fidelity search holds every weight in memory anyway: it loads them all.)
    lazy = target_cosine is None and not sensitivity
    model = model_io.load_lazy(source) if lazy else model_io.load(source)
    input_data = model_io.external_files(source, model if lazy else None)  # a full load has read it in
    model_io.refuse_overwriting_input(source, input_data, (target, model_io.data_file(target)))
    had_external = bool(input_data)
    bytes_before = model_io.file_size(source, model if lazy else None)
    selection = Selection(min_elements, tuple(include), tuple(exclude), all_ops)
    tuned = None
    try:
        if target_cosine is not None:
            from hyperonnx import tune

            tuned = tune.tune_model(model, source, target_cosine, inputs, codec_name, options, selection, runtime,
                                    decode, jobs, progress, exact_grids=exact_grids, floor_db=floor_db)
            report = tuned.report
        elif default_policy:
            report = policy.compress_default(model, selection, runtime, decode, jobs, progress, source.parent,
                                             exact_grids)
        else:
            weights = None
            if sensitivity:
                from hyperonnx import tune

                weights, measured = tune.measure_sensitivity(model, source, inputs, codec_name, options, selection)
            report = compress_model(model, codec_name, options, selection, runtime, decode, jobs, progress,
                                    target_bpw=target_bpw, max_bytes=max_size, input_bytes=bytes_before,
                                    base_dir=source.parent, exact_grids=exact_grids, tensor_weights=weights,
                                    floor_db=floor_db)
    except ValueError as exc:
        raise HyperonnxError(str(exc)) from None
    if strip_debug_info:
        strip_debug(model)
    if external_data is None and had_external:
        external_data = True
    model_io.save(model, target, external_data, source_dir=source.parent)
    del model
    result = ConvertResult(str(source), str(target), report, bytes_before, model_io.file_size(target))
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
    if report.policy is not None:
        result.extra["policy"] = report.policy
    if floor_db is not None:
        result.extra["floor_db"] = floor_db
    if tuned is not None:
        result.extra["tune"] = tuned.details
    if sensitivity:
        result.extra["sensitivity"] = measured
    return result


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
        tensors = [_describe(decoder) for decoder in find_decoders(model)]
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


def needs_library(model_path: str | os.PathLike) -> bool:
    model = onnx.load(str(model_path), load_external_data=False)
    return any(o.domain == DOMAIN for o in model.opset_import)


def make_session(model_path: str | os.PathLike, providers: list[str] | None = None, mode: str | None = None):
    """An ONNX Runtime session; registers the hyperonnx op library when the model needs it."""
    import onnxruntime as ort

    providers = providers or ["CPUExecutionProvider"]
    if needs_library(model_path):
        from hyperonnx import runtime

        options = runtime.session_options(mode=mode)
    else:
        options = ort.SessionOptions()
    try:
        return ort.InferenceSession(str(model_path), options, providers=providers)
    except Exception as exc:  # ORT raises its own exception types for bad models
        raise HyperonnxError(f"{model_path}: onnxruntime cannot load it ({str(exc).splitlines()[0][:300]})") from None


_NP_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def generated_inputs(session, seed: int = 0, model: onnx.ModelProto | None = None) -> dict[str, np.ndarray]:
    """Inputs that match the session's signature: batch 1, other free dimensions 32; floats standard normal;
    integers over the whole table where ``model`` shows them indexing a Gather (token ids, token type ids), small
    (0…99) otherwise, and all ones for inputs named like masks."""
    rng = np.random.default_rng(seed)
    bounds = _index_bounds(model) if model is not None else {}
    feeds = {}
    for arg in session.get_inputs():
        dims = [d if isinstance(d, int) and d >= 0 else (1 if i == 0 else 32) for i, d in enumerate(arg.shape)]
        np_type = _NP_TYPES.get(arg.type)
        if np_type is None:
            raise HyperonnxError(f"cannot generate input {arg.name!r} of type {arg.type}; pass --inputs FILE.npz")
        if np.issubdtype(np_type, np.floating):
            feeds[arg.name] = rng.standard_normal(dims).astype(np_type)
        elif np_type is np.bool_:
            feeds[arg.name] = rng.random(dims) < 0.5
        elif "mask" in arg.name.lower():
            feeds[arg.name] = np.ones(dims, dtype=np_type)
        else:
            feeds[arg.name] = rng.integers(0, max(1, bounds.get(arg.name, 100)), size=dims).astype(np_type)
    return feeds


_PASS_THROUGH = {"Cast", "Identity", "Unsqueeze", "Squeeze", "Reshape", "Flatten"}


def _index_bounds(model: onnx.ModelProto) -> dict[str, int]:
    """Per graph input: the smallest size of a table it indexes as a Gather's indices (directly or through
    casts and reshapes), when the table is an initializer or Constant of known shape."""
    graph = model.graph
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                shapes[node.output[0]] = list(value.dims)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    bounds = {}
    for graph_input in graph.input:
        frontier, seen, found = [graph_input.name], set(), []
        while frontier:
            name = frontier.pop()
            if name in seen:
                continue
            seen.add(name)
            for node in consumers.get(name, []):
                if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == name:
                    dims = shapes.get(node.input[0])
                    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
                    if dims and -len(dims) <= axis < len(dims):
                        found.append(int(dims[axis]))
                elif node.op_type in _PASS_THROUGH and node.input and node.input[0] == name:
                    frontier.extend(node.output)
        if found:
            bounds[graph_input.name] = min(found)
    return bounds


def load_inputs(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of an .npz file, by name. Any unreadable file (missing, truncated, not a zip, a bare .npy,
    pickled objects) is one HyperonnxError line."""
    try:
        loaded = np.load(str(path))  # allow_pickle stays False: an .npz from elsewhere must not run code
    except Exception as exc:  # zipfile, numpy and the OS raise many kinds for a bad file
        raise HyperonnxError(f"{path}: cannot read inputs ({model_io.short_reason(exc)})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise HyperonnxError(f"{path}: not an .npz archive of named inputs (save them with numpy.savez(path, "
                             "name=array, ...))")
    try:
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except Exception as exc:
        raise HyperonnxError(f"{path}: cannot read inputs ({model_io.short_reason(exc)})") from None


def all_finite(outputs: list) -> bool:
    """No NaN or inf in any float output (other outputs, token ids say, count as finite)."""
    for output in outputs:
        output = np.asarray(output)
        if np.issubdtype(output.dtype, np.inexact) and not np.isfinite(output).all():
            return False
    return True


def check_reference_outputs(outputs: list, source: str, finite: bool = True) -> None:
    """The original model's outputs on the comparison inputs must measure something: not all empty (a batch of no
    rows would make any model "agree"), and with ``finite``, no NaN or inf (no cosine to them). One HyperonnxError
    line otherwise; shared by verify (which reports NaN instead), --target-cosine / --sensitivity and bench."""
    if all(np.asarray(y).size == 0 for y in outputs):
        raise HyperonnxError(f"every output of the original model is empty on {source}: nothing to compare (give at "
                             "least one sample)")
    if finite and not all_finite(outputs):
        raise HyperonnxError(f"the original model's outputs are not finite (NaN or inf) on {source}: fidelity to "
                             "them cannot be measured; give inputs on which the model is finite")


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(a @ b / (na * nb))


def _timed_session(path, providers, mode):
    start = time.perf_counter()
    session = make_session(path, providers, mode)
    return session, time.perf_counter() - start


def _median_latency(session, feeds, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
        feeds = generated_inputs(ref, model=graphs[0])
    elif isinstance(inputs, dict):
        feeds = inputs
    else:
        feeds = load_inputs(inputs)
    expected_names = {a.name for a in ref.get_inputs()}
    if set(feeds) != expected_names:
        raise HyperonnxError(f"inputs {sorted(feeds)} do not match the model's inputs {sorted(expected_names)}")
    try:
        ref_out = ref.run(None, feeds)
        test_out = test.run(None, feeds)
    except Exception as exc:
        raise HyperonnxError(f"running the models failed ({str(exc).splitlines()[0][:300]})") from None
    check_reference_outputs(ref_out, "these inputs", finite=False)  # NaN is reported below, and fails --min-cosine
    outputs = []
    for arg, a, b in zip(ref.get_outputs(), ref_out, test_out):
        a, b = np.asarray(a), np.asarray(b)
        entry = {"name": arg.name, "shape": list(a.shape), "cosine": _cosine(a, b),
                 "max_abs_error": float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
                 if a.size else 0.0}
        if np.issubdtype(a.dtype, np.floating):
            # NaN or inf anywhere makes the cosine NaN, which then fails --min-cosine: say where it came from
            entry["non_finite"] = {"original": int(a.size - np.isfinite(a).sum()),
                                   "compressed": int(b.size - np.isfinite(b).sum())}
            rows = np.isfinite(a).all(-1) & np.isfinite(b).all(-1) if a.ndim >= 2 else None
            if a.ndim >= 2 and a.shape[-1] > 1 and rows.any():  # argmax of a NaN row says nothing: skip those
                entry["top1_agreement"] = float((a.argmax(-1) == b.argmax(-1))[rows].mean())
        outputs.append(entry)
    cosines = [o["cosine"] for o in outputs]
    ref_latency = _median_latency(ref, feeds, repeats)
    test_latency = _median_latency(test, feeds, repeats)
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
        info["library_error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return info
