"""Conversion to a fidelity target: the smallest model whose outputs stay within a cosine of the original's.

``hyperonnx convert IN -o OUT --target-cosine 0.995 [--inputs X.npz]``: θ search and validation.

The fidelity of a converted model is **the minimum over the model's float outputs of the mean over samples of the
cosine between the original's and the converted model's output** (one sample = one row of the batch when the
inputs share a leading dimension the model leaves free; otherwise one run). It is measured on the user's inputs
(``--inputs``) or, without them, on generated ones (random normals, small ints) — real inputs give a meaningful
target, generated ones only a rough one.

How:

1. every selected tensor is encoded at each candidate setting of its codec family (``budget.BUDGET_OPTIONS``),
   exactly as the size-budget mode does;
2. *sensitivity*: on a few samples, each tensor alone is replaced by its decoded version at a probe setting (the
   middle of the ladder) and the drop of the output cosine is measured; a tensor's *gain* is that drop per unit
   of its relative weight noise, so the predicted drop of a whole allocation is Σ gain × noise (errors of
   independent tensors add up in 1 − cosine as long as they are small);
3. *search*: :func:`budget.allocate` spends a byte budget where the weighted noise drops most per byte; the byte
   budget is searched — a prediction first (the predicted drop, rescaled by what the evaluation nearest the
   target measured), bisection when the prediction leaves the bracket — evaluating the whole model on all samples each time, at
   most ``max_evals`` times. The smallest allocation that meets the target wins;
4. *validation*: the winner is written as the real converted model (HyperDecode nodes or the portable form) and
   run with ONNX Runtime against the original file; only a model that meets the target is returned.

Evaluations during the search run one session in which every compressed tensor is a graph input (fed the
decoded weights, which are bit-identical to what the decoders produce), so no model is rebuilt per step.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hyperonnx import codec, model_io
from hyperonnx.errors import HyperonnxError
from hyperonnx.ops import DOMAIN, OPSET_VERSION, register_schemas
from hyperonnx.passes import budget, compress, emit
from hyperonnx.passes.select import Selection, choose, find_sites

METRIC = "min over float outputs of the mean over samples of cosine(original, converted)"
CHUNK_ROWS = 16  # rows per run when the inputs are split into samples
PROBE_SAMPLES = 16  # samples used to measure each tensor's sensitivity
GENERATED_SAMPLES = 8
GENERATED_ATTEMPTS = 4 * GENERATED_SAMPLES  # seeds tried to find GENERATED_SAMPLES with finite outputs
MAX_EVALS = 12


# ----------------------------------------------------------------------------------------------------------------
# Samples: the inputs the fidelity is measured on
# ----------------------------------------------------------------------------------------------------------------


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


def _generated_samples(session, model: onnx.ModelProto | None) -> list[dict[str, np.ndarray]]:
    """GENERATED_SAMPLES generated feeds on which the original model's float outputs are finite: a random input
    outside the model's domain (a negative noise level, say) gives NaN outputs, which measure nothing. Seeds are
    tried in order, at most GENERATED_ATTEMPTS of them."""
    from hyperonnx import api

    outputs = _float_outputs(session)
    kept = []
    for seed in range(GENERATED_ATTEMPTS):
        feeds = {k: np.asarray(v) for k, v in api.generated_inputs(session, seed, model).items()}  # a scalar too
        if api.all_finite(_run(session, feeds, outputs)):
            kept.append(feeds)
            if len(kept) == GENERATED_SAMPLES:
                break
    if not kept:
        raise HyperonnxError(f"the model's outputs are not finite on any of {GENERATED_ATTEMPTS} generated inputs: "
                             "pass real inputs with --inputs FILE.npz")
    return kept


def _rows(feeds: dict[str, np.ndarray]) -> int:
    return int(next(iter(feeds.values())).shape[0])


def load_samples(session, inputs: str | dict[str, np.ndarray] | None,
                 model: onnx.ModelProto | None = None) -> Samples:
    """The user's inputs (an .npz path or a dict keyed by input name) or generated ones (``model``: the graph, to
    keep generated indices inside the tables they index), checked against the model."""
    from hyperonnx import api

    args = session.get_inputs()
    names = {a.name for a in args}
    if inputs is None:
        free = all(a.shape and not isinstance(a.shape[0], int) for a in args)
        seeds = _generated_samples(session, model)
        if free:  # one batch of GENERATED_SAMPLES rows
            feeds = {k: np.concatenate([s[k] for s in seeds]) for k in seeds[0]}
            return Samples([(feeds, True)], f"{len(seeds)} generated inputs")
        return Samples([(s, False) for s in seeds], f"{len(seeds)} generated inputs")
    feeds = inputs if isinstance(inputs, dict) else api.load_inputs(inputs)
    source = "the given inputs" if isinstance(inputs, dict) else str(inputs)
    if set(feeds) != names:
        raise HyperonnxError(f"{source}: inputs {sorted(feeds)} do not match the model's inputs {sorted(names)}")
    leading = {np.asarray(v).shape[0] if np.ndim(v) else None for v in feeds.values()}
    split = (len(leading) == 1 and None not in leading and next(iter(leading)) > 1
             and all(a.shape and not isinstance(a.shape[0], int) for a in args))
    return Samples([({k: np.asarray(v) for k, v in feeds.items()}, split)], source)


# ----------------------------------------------------------------------------------------------------------------
# Fidelity
# ----------------------------------------------------------------------------------------------------------------


def _row_cosines(a: np.ndarray, b: np.ndarray, split: bool) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if split and a.ndim >= 1 and a.shape[0] > 0:
        a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    else:
        a, b = a.reshape(1, -1), b.reshape(1, -1)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = (a * b).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = dot / (na * nb)
    cos = np.where((na == 0) | (nb == 0), np.where(na == nb, 1.0, 0.0), cos)
    return np.nan_to_num(cos, nan=0.0)  # a NaN output is as far as it gets


class Fidelity:
    """Per-output cosine sums; :attr:`value` is the metric (:data:`METRIC`)."""

    def __init__(self, names: list[str]):
        self.names = names
        self.sums = [0.0] * len(names)
        self.counts = [0] * len(names)

    def add(self, i: int, cos: np.ndarray) -> None:
        self.sums[i] += float(cos.sum())
        self.counts[i] += int(cos.size)

    @property
    def per_output(self) -> dict[str, float]:
        return {n: s / max(c, 1) for n, s, c in zip(self.names, self.sums, self.counts)}

    @property
    def value(self) -> float:
        return min(self.per_output.values())


def _float_outputs(session) -> list[str]:
    names = [o.name for o in session.get_outputs() if o.type in ("tensor(float)", "tensor(float16)",
                                                                  "tensor(double)", "tensor(bfloat16)")]
    if not names:
        raise HyperonnxError("--target-cosine needs a model with at least one float output to compare")
    return names


def _run(session, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
    try:
        return session.run(outputs, feeds)
    except Exception as exc:  # ORT raises its own types for bad feeds
        raise HyperonnxError(f"running the model failed ({str(exc).splitlines()[0][:300]})") from None


class Evaluator:
    """One session of the model with every selected tensor as a graph input: fidelity of any set of weights."""

    def __init__(self, model: onnx.ModelProto, selection: Selection, originals: list[np.ndarray], samples: Samples,
                 outputs: list[str]):
        import onnxruntime as ort

        lifted = onnx.ModelProto()
        lifted.CopyFrom(model)
        self.inputs = _lift(lifted, selection)
        options = ort.SessionOptions()
        if any(o.domain == DOMAIN for o in lifted.opset_import):
            from hyperonnx import runtime

            options = runtime.session_options()
        try:
            self.session = ort.InferenceSession(lifted.SerializeToString(), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise HyperonnxError("cannot run this model with its weights as inputs to measure fidelity "
                                 f"({str(exc).splitlines()[0][:300]})") from None
        self.originals = originals
        self.outputs = outputs
        self.samples = samples
        self.probe = samples.probe()
        self.reference = self._outputs(samples, originals)
        from hyperonnx import api

        api.check_reference_outputs([y for chunk in self.reference for y in chunk], samples.source)
        self.probe_reference = self._outputs(self.probe, originals)

    def _outputs(self, samples: Samples, weights: list[np.ndarray]) -> list[list[np.ndarray]]:
        feeds_w = dict(zip(self.inputs, weights))
        return [_run(self.session, {**feeds, **feeds_w}, self.outputs) for feeds, _ in samples.chunks()]

    def fidelity(self, weights: list[np.ndarray], probe: bool = False) -> Fidelity:
        samples, reference = (self.probe, self.probe_reference) if probe else (self.samples, self.reference)
        return _compare(self.outputs, reference, samples, self._outputs(samples, weights))


def _compare(outputs, reference, samples: Samples, got) -> Fidelity:
    result = Fidelity(outputs)
    for (_, split), ref, out in zip(samples.chunks(), reference, got):
        for i, (a, b) in enumerate(zip(ref, out)):
            result.add(i, _row_cosines(a, b, split))
    return result


def _lift(model: onnx.ModelProto, selection: Selection) -> list[str]:
    """Turn every selected tensor into a main-graph input feeding an Identity that produces the tensor's name
    (so the tensor may live in a subgraph or a Constant node). Returns the new input names, in site order."""
    chosen, _ = choose(find_sites(model), selection)
    taken = {v.name for v in model.graph.input} | {t.name for t in model.graph.initializer}
    names = []
    removed: dict[int, tuple[onnx.GraphProto, set[str]]] = {}
    front: dict[int, list[onnx.NodeProto]] = {}
    for i, site in enumerate(chosen):
        name = f"hyperonnx::tune::{i}"
        while name in taken:
            name += "_"
        taken.add(name)
        names.append(name)
        model.graph.input.append(helper.make_tensor_value_info(name, site.tensor.data_type, list(site.tensor.dims)))
        if site.constant_node is not None:
            node = site.constant_node
            node.op_type, node.domain = "Identity", ""
            node.ClearField("attribute")
            node.input[:] = [name]
        else:
            removed.setdefault(id(site.graph), (site.graph, set()))[1].add(site.name)
            front.setdefault(id(site.graph), []).append(helper.make_node("Identity", [name], [site.name]))
    for key, (graph, gone) in removed.items():
        keep = [t for t in graph.initializer if t.name not in gone]
        del graph.initializer[:]
        graph.initializer.extend(keep)
        nodes = front[key] + list(graph.node)
        del graph.node[:]
        graph.node.extend(nodes)
    return names


# ----------------------------------------------------------------------------------------------------------------
# The search
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Tensor:
    name: str
    candidates: list[budget.Candidate]  # cheapest first; payload = (Encoded, sqnr)
    gain: float = 1.0
    decoded: tuple[int, np.ndarray] | None = None  # the last decoded setting, reused while it stays chosen

    def weight(self, index: int) -> np.ndarray:
        if self.decoded is None or self.decoded[0] != index:
            self.decoded = (index, codec.decode(self.candidates[index].payload[0]))
        return self.decoded[1]


@dataclass
class TuneResult:
    report: compress.CompressReport
    details: dict[str, Any] = field(default_factory=dict)


def tune_model(
    model: onnx.ModelProto,
    source: str | Path,
    target_cosine: float,
    inputs: str | dict[str, np.ndarray] | None = None,
    codec_name: str = codec.DEFAULT_CODEC,
    options: dict | None = None,
    selection: Selection | None = None,
    runtime: str = "ort",
    decode_mode: str = "load",
    jobs: int | None = None,
    progress: Callable[[str], None] | None = None,
    max_evals: int = MAX_EVALS,
    exact_grids: bool = True,
    floor_db: float | None = None,
) -> TuneResult:
    """Compress ``model`` (loaded from ``source``) in place into the smallest model found whose fidelity
    (:data:`METRIC`) on ``inputs`` reaches ``target_cosine``. Raises HyperonnxError when even the largest
    setting of every tensor falls short. ValueError for a bad codec, option, runtime or mode. ``floor_db``: no
    tensor's setting below that weight SQNR (the default policy's floor, when ``inputs`` are generated)."""
    from hyperonnx import api

    say = progress or (lambda _msg: None)
    if not 0.0 < target_cosine <= 1.0:
        raise HyperonnxError(f"--target-cosine must be in (0, 1], got {target_cosine}")
    if runtime not in compress.RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r} (choose from {', '.join(compress.RUNTIMES)})")
    if decode_mode not in compress.DECODE_MODES:
        raise ValueError(f"unknown decode mode {decode_mode!r} (choose from {', '.join(compress.DECODE_MODES)})")
    options = dict(options or {})
    impl = codec.get_codec(codec_name)
    impl.params(options)
    option_sets = budget.ladder(codec_name, impl.family, options, "a fidelity target")
    selection = selection or Selection()
    opset = emit.model_opset(model)
    if runtime == "portable":
        emit.check_portable(opset)  # before any model run; the weights' dtypes are checked once they are chosen

    reference_session = api.make_session(source)
    samples = load_samples(reference_session, inputs, model)
    outputs = _float_outputs(reference_session)

    # 1. every tensor at every setting
    chosen, _ = choose(find_sites(model), selection)
    if not chosen:
        raise HyperonnxError("no tensor to compress (see --min-elements, --include, --exclude)")
    if runtime == "portable":
        emit.check_portable(opset, chosen)
    say(f"encoding {len(chosen)} tensors at {len(option_sets)} settings each")
    jobs = max(1, jobs or os.cpu_count() or 1)
    base_dir = str(Path(source).parent)  # for tensors still in external data
    arrays = [numpy_helper.to_array(site.tensor, base_dir) for site in chosen]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(lambda ia: compress._candidates(ia[1], codec_name, option_sets, runtime,
                                                                chosen[ia[0]].name if runtime == "ort" else None,
                                                                exact_grids and runtime == "ort",
                                                                floor_db=floor_db),
                                enumerate(arrays)))
    tensors = [Tensor(site.name, c) for site, c in zip(chosen, results) if not isinstance(c, str)]
    kept = [i for i, c in enumerate(results) if not isinstance(c, str)]
    if not tensors:
        raise HyperonnxError(f"no tensor could be encoded with {codec_name} ({results[0]})")

    # 2. sensitivity, on a few samples
    evaluator = Evaluator(model, selection, arrays, samples, outputs)
    originals = list(arrays)

    def weights(choice: list[int]) -> list[np.ndarray]:
        out = list(originals)
        for t, i, c in zip(tensors, kept, choice):
            out[i] = t.weight(c)
        return out

    probe_index = [max(0, (len(t.candidates) - 1) // 2) for t in tensors]
    say(f"measuring the sensitivity of {len(tensors)} tensors on {evaluator.probe.count} samples")
    started = time.perf_counter()
    trials = ((i, lambda t=t, k=k: t.weight(probe_index[k]), t.candidates[probe_index[k]].rel_noise)
              for k, (t, i) in enumerate(zip(tensors, kept)))
    for t, gain in zip(tensors, _gains(evaluator, originals, trials)):
        t.gain = gain
    say(f"sensitivity measured in {time.perf_counter() - started:.1f} s")
    candidates = [t.candidates for t in tensors]
    gains = [t.gain for t in tensors]

    def allocation(limit: float) -> tuple[list[int], int, float]:
        choice = budget.allocate(candidates, limit, gains)
        size = sum(c[i].nbytes for c, i in zip(candidates, choice))
        predicted = sum(g * c[i].rel_noise for g, c, i in zip(gains, candidates, choice))
        return choice, size, predicted

    smallest = sum(c[0].nbytes for c in candidates)
    largest = sum(c[-1].nbytes for c in candidates)

    def budget_for(drop: float) -> float:
        """The smallest byte budget whose predicted drop is at most ``drop``."""
        lo, hi = float(smallest), float(largest)
        if allocation(lo)[2] <= drop:
            return lo
        for _ in range(40):
            mid = (lo + hi) / 2
            if allocation(mid)[2] <= drop:
                hi = mid
            else:
                lo = mid
            if hi - lo < 1:
                break
        return hi

    # 3. search the byte budget
    wanted = 1.0 - target_cosine
    evaluated: dict[int, tuple[list[int], float]] = {}  # allocation size -> choice, fidelity
    history: list[dict[str, Any]] = []
    fits: list[tuple[float, float]] = []  # (measured, predicted) drop per evaluation

    def scale() -> float:
        """Measured / predicted drop at the evaluation nearest the target: the prediction's error there."""
        usable = [(m, p) for m, p in fits if m > 0 and p > 0]
        if not usable:
            return 1.0
        m, p = min(usable, key=lambda mp: abs(math.log(mp[0] / wanted)) if wanted > 0 else mp[0])
        return m / p

    def evaluate(limit: float) -> bool:
        choice, size, predicted = allocation(limit)
        if size not in evaluated:
            started = time.perf_counter()
            fid = evaluator.fidelity(weights(choice)).value
            evaluated[size] = (choice, fid)
            fits.append((1.0 - fid, predicted))
            history.append({"bytes": size, "cosine": fid, "passed": fid >= target_cosine})
            say(f"evaluation {len(history)}: {size} bytes of weights -> cosine {fid:.6f} "
                f"({'meets' if fid >= target_cosine else 'below'} {target_cosine}, "
                f"{time.perf_counter() - started:.1f} s)")
        if evaluated[size][1] < target_cosine and limit >= largest:
            raise HyperonnxError(f"--target-cosine {target_cosine} is out of reach: even the largest setting of "
                                 f"every tensor gives cosine {evaluated[size][1]:.6f} on {samples.source} "
                                 f"({METRIC})")
        return evaluated[size][1] >= target_cosine

    lo_limit, hi_limit = float(smallest), None  # budgets known to fail (or the bottom) / to pass
    guess, misses = budget_for(wanted), 0
    while len(history) < max_evals:
        if evaluate(guess):
            hi_limit = guess
        else:
            lo_limit, misses = guess, misses + 1
        if hi_limit is None:  # nothing passed yet: aim past the corrected prediction, then at the top
            guess = budget_for(0.7 * wanted / scale()) if misses < 2 else float(largest)
            if guess <= lo_limit:
                guess = lo_limit + 0.1 * (largest - lo_limit)
            continue
        if hi_limit - lo_limit <= 0.01 * hi_limit:
            break
        guess = budget_for(wanted / scale())
        margin = 0.05 * (hi_limit - lo_limit)
        if not lo_limit + margin < guess < hi_limit - margin:
            guess = (lo_limit + hi_limit) / 2
    if hi_limit is None:
        evaluate(float(largest))  # raises when even that falls short

    # 4. write the winner as the real converted model and validate it against the original file
    passing = sorted((s, v) for s, v in evaluated.items() if v[1] >= target_cosine)
    for size, (choice, _) in passing:
        encodings: list[Any] = list(results)
        for t, i, c in zip(tensors, kept, choice):
            encodings[i] = t.candidates[c].payload
        converted = onnx.ModelProto()
        converted.CopyFrom(model)
        report = _emit(converted, selection, encodings, runtime, decode_mode)
        fid = _validate(converted, reference_session, samples, outputs)
        say(f"validated the converted model: cosine {fid.value:.6f}")
        if fid.value >= target_cosine:
            model.CopyFrom(converted)
            per_tensor = {t.name: {"gain": t.gain, "bits": t.candidates[c].payload[0].bits}
                          for t, c in zip(tensors, choice)}
            return TuneResult(report, {
                "target_cosine": target_cosine,
                "cosine": fid.value,
                "cosine_per_output": fid.per_output,
                "metric": METRIC,
                "inputs": samples.source,
                "samples": samples.count,
                "evaluations": history,
                "weights_bytes": size,
                "tensors": per_tensor,
            })
    raise HyperonnxError(f"--target-cosine {target_cosine}: no converted model passed validation on "
                         f"{samples.source} (best cosine {fid.value:.6f}, {METRIC})")


def _gains(evaluator: Evaluator, originals: list[np.ndarray], trials: Iterable) -> list[float]:
    """Each trial (index into ``originals``, a function giving the decoded weight, its relative noise) alone in
    the model on the probe samples: the drop of the output cosine per unit of relative noise. Gains too small
    to measure are raised to 1/1000 of the median positive one (no tensor is free)."""
    gains = []
    for i, weight, noise in trials:
        trial = list(originals)
        trial[i] = weight()
        drop = 1.0 - evaluator.fidelity(trial, probe=True).value
        gains.append(drop / noise if noise > 0 else 0.0)
    positive = sorted(g for g in gains if g > 0)
    floor = positive[len(positive) // 2] * 1e-3 if positive else 1.0
    return [max(g, floor) for g in gains]


def measure_sensitivity(
    model: onnx.ModelProto,
    source: str | Path,
    inputs: str | dict[str, np.ndarray] | None,
    codec_name: str,
    options: dict | None = None,
    selection: Selection | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[float], dict[str, Any]]:
    """Per selected tensor (selection order): how much the model's outputs suffer per unit of that tensor's
    relative weight noise, measured on ``inputs`` (generated when None) with each tensor alone at the middle
    setting of the codec's budget ladder — the weights a size budget (``--target-bpw``, ``--max-size``) spends
    its bytes by. ``model`` holds every weight (not lazily loaded) and is not changed. Returns the weights and a
    summary (inputs, samples, seconds)."""
    from hyperonnx import api

    say = progress or (lambda _msg: None)
    options = dict(options or {})
    impl = codec.get_codec(codec_name)
    impl.params(options)
    option_sets = budget.ladder(codec_name, impl.family, options, "a size budget")
    probe = option_sets[(len(option_sets) - 1) // 2]
    selection = selection or Selection()
    reference_session = api.make_session(source)
    samples = load_samples(reference_session, inputs, model)
    chosen, _ = choose(find_sites(model), selection)
    if not chosen:
        raise HyperonnxError("no tensor to compress (see --min-elements, --include, --exclude)")
    base_dir = str(Path(source).parent)
    originals = [numpy_helper.to_array(site.tensor, base_dir) for site in chosen]
    evaluator = Evaluator(model, selection, originals, samples, _float_outputs(reference_session))
    say(f"measuring the sensitivity of {len(chosen)} tensors on {evaluator.probe.count} samples")
    started = time.perf_counter()

    def trials():
        for i, array in enumerate(originals):
            result = compress._encode_one(array, codec_name, probe)
            if isinstance(result, str):  # this codec cannot encode it: the budget skips it too
                yield i, lambda a=array: a, 0.0
                continue
            enc, sqnr = result
            noise = 10.0 ** (-sqnr / 10.0) if np.isfinite(sqnr) else 0.0
            yield i, lambda e=enc, a=array: codec.decode(e).reshape(a.shape).astype(a.dtype, copy=False), noise

    gains = _gains(evaluator, originals, trials())
    seconds = time.perf_counter() - started
    say(f"sensitivity measured in {seconds:.1f} s")
    return gains, {"inputs": samples.source, "samples": evaluator.probe.count, "seconds": round(seconds, 3)}


def _emit(model: onnx.ModelProto, selection: Selection, encodings: list, runtime: str,
          decode_mode: str) -> compress.CompressReport:
    """Rewrite ``model`` in place with the given encoding (or skip reason) per selected tensor, in site order —
    the tail of :func:`compress.compress_model` with the encodings already chosen."""
    started = time.perf_counter()
    register_schemas()
    chosen, skipped = choose(find_sites(model), selection)
    report = compress.CompressReport(skipped=skipped)
    namer = emit.Namer(model.graph)
    rewrites: dict[int, tuple[onnx.GraphProto, list[emit.Rewrite]]] = {}
    opset = emit.model_opset(model)
    for site, result in zip(chosen, encodings):
        compress._finish((site, compress._Done(result)), report, runtime, decode_mode, namer, rewrites, None, opset)
    for graph, graph_rewrites in reversed(list(rewrites.values())):
        emit.apply(graph, graph_rewrites)
    if report.tensors and runtime == "ort" and not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, OPSET_VERSION))
    report.seconds = time.perf_counter() - started
    return report


def _validate(model: onnx.ModelProto, reference_session, samples: Samples, outputs: list[str]) -> Fidelity:
    """Fidelity of the converted ``model`` run as a file by ONNX Runtime (with the op library), against the
    original model's session."""
    from hyperonnx import api

    with tempfile.TemporaryDirectory(prefix="hyperonnx-tune-") as folder:
        path = Path(folder) / "candidate.onnx"
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        model_io.save(copy, path)
        session = api.make_session(path)
        reference = [_run(reference_session, feeds, outputs) for feeds, _ in samples.chunks()]
        got = [_run(session, feeds, outputs) for feeds, _ in samples.chunks()]
    return _compare(outputs, reference, samples, got)


__all__ = ["METRIC", "Samples", "TuneResult", "load_samples", "measure_sensitivity", "tune_model"]
