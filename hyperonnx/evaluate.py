"""Evaluation: sessions, the inputs two models are compared on, and the one set of fidelity metrics.

``verify``, ``--target-cosine`` (:mod:`hyperonnx.tune`), ``--sensitivity`` (:mod:`hyperonnx.sensitivity`) and
``bench`` all measure through this module, so a cosine, a top-1 agreement or an input check means the same thing
in every report:

* sessions: :func:`make_session` (registers the op library when a model needs it), :func:`run` (one error line),
  :func:`median_latency`;
* inputs: :func:`load_inputs` (.npz), :func:`generated_inputs` (from the signature), :func:`finite_generated`
  (generated ones on which the original is finite), :func:`check_input_names`, :class:`Samples`;
* metrics: :func:`sample_cosines` / :func:`cosine`, :func:`top1_agreement` (finite rows only),
  :func:`kl_divergence`, :class:`Fidelity` (:data:`METRIC`), and the checks of the original's outputs
  (:func:`all_finite`, :func:`check_reference_outputs`).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx

from hyperonnx.errors import HyperonnxError, short_reason
from hyperonnx.ops import DOMAIN

METRIC = "min over float outputs of the mean over samples of cosine(original, converted)"
CHUNK_ROWS = 16  # rows per run when the inputs are split into samples
PROBE_SAMPLES = 16  # samples used to measure each tensor's sensitivity
FLOAT_OUTPUT_TYPES = ("tensor(float)", "tensor(float16)", "tensor(double)", "tensor(bfloat16)")

# ----------------------------------------------------------------------------------------------------------------
# Sessions
# ----------------------------------------------------------------------------------------------------------------


def needs_library(model_path: str | os.PathLike) -> bool:
    """Whether the model at ``model_path`` uses hyperonnx's op domain (and so the op library)."""
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
        raise HyperonnxError(f"{model_path}: onnxruntime cannot load it ({short_reason(exc)})") from None


def run(session, feeds: dict[str, np.ndarray], outputs: list[str] | None = None,
        what: str = "the model") -> list[np.ndarray]:
    """``session.run``, with ORT's own exception types (bad feeds, a kernel's refusal) as one HyperonnxError."""
    try:
        return session.run(outputs, feeds)
    except Exception as exc:
        raise HyperonnxError(f"running {what} failed ({short_reason(exc)})") from None


def median_latency(session, feeds: dict[str, np.ndarray], repeats: int) -> float:
    """The median wall time, in seconds, of ``repeats`` runs of ``session`` on ``feeds``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def float_outputs(session, needs: str = "--target-cosine") -> list[str]:
    """Names of the session's float outputs (what a cosine is measured on); ``needs`` names who needs one."""
    names = [o.name for o in session.get_outputs() if o.type in FLOAT_OUTPUT_TYPES]
    if not names:
        raise HyperonnxError(f"{needs} needs a model with at least one float output to compare")
    return names


# ----------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------

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


def finite_generated(session, model: onnx.ModelProto | None, count: int, attempts: int,
                     outputs: list[str] | None = None) -> list[tuple[int, dict[str, np.ndarray], list[np.ndarray]]]:
    """Up to ``count`` (seed, generated feeds, the session's ``outputs`` on them) on which those outputs are
    finite, trying seeds 0, 1, … at most ``attempts`` of them: a random input outside the model's domain (a
    negative noise level, say) gives NaN outputs, which measure nothing. Empty when no seed gives finite ones."""
    kept = []
    for seed in range(attempts):
        feeds = {k: np.asarray(v) for k, v in generated_inputs(session, seed, model).items()}  # a scalar too
        got = run(session, feeds, outputs, "the original model")
        if all_finite(got):
            kept.append((seed, feeds, got))
            if len(kept) == count:
                break
    return kept


def load_inputs(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of an .npz file, by name. Any unreadable file (missing, truncated, not a zip, a bare .npy,
    pickled objects) is one HyperonnxError line."""
    try:
        loaded = np.load(str(path))  # allow_pickle stays False: an .npz from elsewhere must not run code
    except Exception as exc:  # zipfile, numpy and the OS raise many kinds for a bad file
        raise HyperonnxError(f"{path}: cannot read inputs ({short_reason(exc)})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise HyperonnxError(f"{path}: not an .npz archive of named inputs (save them with numpy.savez(path, "
                             "name=array, ...))")
    try:
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except Exception as exc:
        raise HyperonnxError(f"{path}: cannot read inputs ({short_reason(exc)})") from None


def given_inputs(inputs: str | os.PathLike | dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str]:
    """The user's inputs (an .npz path or a dict keyed by input name) and how a message names them."""
    if isinstance(inputs, dict):
        return dict(inputs), "the given inputs"
    return load_inputs(inputs), str(inputs)


def check_input_names(feeds: dict[str, np.ndarray], session, source: str | None = None) -> None:
    """The feeds must name exactly the session's inputs; one HyperonnxError line (naming ``source``) otherwise."""
    expected = {a.name for a in session.get_inputs()}
    if set(feeds) != expected:
        where = f"{source}: " if source else ""
        raise HyperonnxError(f"{where}inputs {sorted(feeds)} do not match the model's inputs {sorted(expected)}")


GENERATED_SAMPLES = 8
GENERATED_ATTEMPTS = 4 * GENERATED_SAMPLES  # seeds tried to find GENERATED_SAMPLES with finite outputs


@dataclass
class Samples:
    """Feeds, in groups; a splittable group holds one sample per row of its leading dimension."""

    groups: list[tuple[dict[str, np.ndarray], bool]]
    source: str

    @property
    def count(self) -> int:
        return sum(_rows(f) if split else 1 for f, split in self.groups)

    def chunks(self) -> Iterable[tuple[dict[str, np.ndarray], bool]]:
        for feeds, split in self.groups:
            if not split:
                yield feeds, False
                continue
            n = _rows(feeds)
            for start in range(0, n, CHUNK_ROWS):
                yield {k: v[start : start + CHUNK_ROWS] for k, v in feeds.items()}, True

    def probe(self, limit: int = PROBE_SAMPLES) -> Samples:
        """At most ``limit`` samples spread over all of them (rows of a split group taken with a stride)."""
        if len(self.groups) == 1 and self.groups[0][1]:
            feeds = self.groups[0][0]
            n = _rows(feeds)
            rows = np.unique(np.linspace(0, n - 1, min(n, limit)).round().astype(int))
            return Samples([({k: v[rows] for k, v in feeds.items()}, True)], self.source)
        return Samples(self.groups[: max(1, limit // 4)], self.source)


def _rows(feeds: dict[str, np.ndarray]) -> int:
    return int(next(iter(feeds.values())).shape[0])


def load_samples(session, inputs: str | os.PathLike | dict[str, np.ndarray] | None,
                 model: onnx.ModelProto | None = None) -> Samples:
    """The user's inputs (an .npz path or a dict keyed by input name) or generated ones (``model``: the graph, to
    keep generated indices inside the tables they index), checked against the model."""
    args = session.get_inputs()
    if inputs is None:
        free = all(a.shape and not isinstance(a.shape[0], int) for a in args)
        found = finite_generated(session, model, GENERATED_SAMPLES, GENERATED_ATTEMPTS, float_outputs(session))
        if not found:
            raise HyperonnxError(f"the model's outputs are not finite on any of {GENERATED_ATTEMPTS} generated "
                                 "inputs: pass real inputs with --inputs FILE.npz")
        seeds = [feeds for _, feeds, _ in found]
        if free:  # one batch of GENERATED_SAMPLES rows
            feeds = {k: np.concatenate([s[k] for s in seeds]) for k in seeds[0]}
            return Samples([(feeds, True)], f"{len(seeds)} generated inputs")
        return Samples([(s, False) for s in seeds], f"{len(seeds)} generated inputs")
    feeds, source = given_inputs(inputs)
    check_input_names(feeds, session, source)
    leading = {np.asarray(v).shape[0] if np.ndim(v) else None for v in feeds.values()}
    split = (len(leading) == 1 and None not in leading and next(iter(leading)) > 1
             and all(a.shape and not isinstance(a.shape[0], int) for a in args))
    return Samples([({k: np.asarray(v) for k, v in feeds.items()}, split)], source)


# ----------------------------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------------------------


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


def sample_cosines(a: np.ndarray, b: np.ndarray, split: bool = False) -> np.ndarray:
    """Cosine between ``a`` (the original's output) and ``b``, per sample: per row of the leading dimension with
    ``split``, else one for the whole output. Two zero samples agree (1), one zero sample does not (0); NaN where
    a sample holds NaN or inf, or the shapes differ (nothing to compare)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    rows = a.shape[0] if split and a.ndim >= 1 and a.shape[0] > 0 else 1
    if a.shape != b.shape:
        return np.full(rows, np.nan)
    a, b = a.reshape(rows, -1), b.reshape(rows, -1)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = (a * b).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = dot / (na * nb)
    cos = np.where((na == 0) | (nb == 0), np.where(na == nb, 1.0, 0.0), cos)
    return np.where(np.isfinite(na) & np.isfinite(nb), cos, np.nan)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The cosine between two whole outputs (:func:`sample_cosines` with one sample)."""
    return float(sample_cosines(a, b)[0])


def top1_agreement(a: np.ndarray, b: np.ndarray) -> float | None:
    """Share of rows (all axes but the last) where ``a`` and ``b`` have the same argmax over the last axis, counted
    over the rows finite in both (the argmax of a NaN row says nothing). None when the outputs are not
    classifier-shaped (float, at least 2-D, more than one class, same shape) or no row is finite."""
    a, b = np.asarray(a), np.asarray(b)
    if not (np.issubdtype(a.dtype, np.floating) and a.ndim >= 2 and a.shape[-1] > 1 and a.shape == b.shape):
        return None
    rows = np.isfinite(a).all(-1) & np.isfinite(b).all(-1)
    if not rows.any():
        return None
    return float((a.argmax(-1) == b.argmax(-1))[rows].mean())


def kl_divergence(a: np.ndarray, b: np.ndarray) -> float | None:
    """Mean KL(softmax(a) ‖ softmax(b)) in nats over the rows (last axis: classes) finite in both, for logits ``a``
    of the original and ``b`` of the converted model. None when not classifier-shaped or no row is finite."""
    if top1_agreement(a, b) is None:
        return None
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    rows = np.isfinite(a).all(-1) & np.isfinite(b).all(-1)
    a, b = a[rows], b[rows]
    log_p = a - a.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    log_q = b - b.max(-1, keepdims=True)
    log_q -= np.log(np.exp(log_q).sum(-1, keepdims=True))
    return float((np.exp(log_p) * (log_p - log_q)).sum(-1).mean())


class Fidelity:
    """Per-output sums of per-sample cosines; :attr:`value` is the metric (:data:`METRIC`)."""

    def __init__(self, names: list[str]):
        self.names = names
        self.sums = [0.0] * len(names)
        self.counts = [0] * len(names)

    def add(self, i: int, cos: np.ndarray) -> None:
        cos = np.nan_to_num(cos, nan=0.0)  # a NaN output is as far as it gets
        self.sums[i] += float(cos.sum())
        self.counts[i] += int(cos.size)

    @property
    def per_output(self) -> dict[str, float]:
        return {n: s / max(c, 1) for n, s, c in zip(self.names, self.sums, self.counts)}

    @property
    def value(self) -> float:
        return min(self.per_output.values())


def compare(outputs: list[str], reference: list[list[np.ndarray]], samples: Samples,
            got: list[list[np.ndarray]]) -> Fidelity:
    """The fidelity of ``got`` to ``reference`` (per chunk of ``samples``, per output named in ``outputs``)."""
    result = Fidelity(outputs)
    for (_, split), ref, out in zip(samples.chunks(), reference, got):
        for i, (a, b) in enumerate(zip(ref, out)):
            result.add(i, sample_cosines(a, b, split))
    return result


def run_samples(session, samples: Samples, outputs: list[str], extra: dict[str, np.ndarray] | None = None,
                what: str = "the model") -> list[list[np.ndarray]]:
    """The session's ``outputs`` on every chunk of ``samples`` (``extra``: more feeds for every run)."""
    extra = extra or {}
    return [run(session, {**feeds, **extra}, outputs, what) for feeds, _ in samples.chunks()]


__all__ = ["METRIC", "Fidelity", "Samples", "all_finite", "check_input_names", "check_reference_outputs", "compare",
           "cosine", "finite_generated", "float_outputs", "generated_inputs", "given_inputs", "kl_divergence",
           "load_inputs", "load_samples", "make_session", "needs_library", "run", "run_samples", "sample_cosines",
           "top1_agreement"]
