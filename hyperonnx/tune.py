"""Conversion to a fidelity target: the smallest model whose outputs stay within a cosine of the original's.

``hyperonnx convert IN -o OUT --target-cosine 0.995 [--inputs X.npz]``: θ search and validation.

The fidelity of a converted model is **the minimum over the model's float outputs of the mean over samples of the
cosine between the original's and the converted model's output** (one sample = one row of the batch when the
inputs share a leading dimension the model leaves free; otherwise one run). It is measured on the user's inputs
(``--inputs``) or, without them, on generated ones (random normals, small ints) — real inputs give a meaningful
target, generated ones only a rough one.

How:

1. every selected tensor is encoded at each rung of its codec's budget ladder (``budget.ladder``), giving its
   candidates, exactly as the size-budget mode does (:func:`compress.encode_candidates`);
2. *sensitivity*: on a few samples, each tensor alone is replaced by its decoded version at a probe setting (the
   middle of the ladder) and the drop of the output cosine is measured (:mod:`hyperonnx.sensitivity`); a tensor's
   *gain* is that drop per unit of its relative weight noise, so the predicted drop of a whole allocation is
   Σ gain × noise (errors of independent tensors add up in 1 − cosine as long as they are small);
3. *search*: :func:`budget.allocate` spends a byte budget where the weighted noise drops most per byte; the byte
   budget is searched — a prediction first (the predicted drop, rescaled by what the evaluation nearest the
   target measured), bisection when the prediction leaves the bracket — evaluating the whole model on all
   samples each time, at most ``max_evals`` times. The smallest allocation that meets the target wins;
4. *validation*: the winner is written as the real converted model (:class:`compress.GraphRewriter`: HyperDecode
   nodes or the portable form) and run with ONNX Runtime against the original file; only a model that meets the
   target is returned.

Inputs, sessions and the metric are :mod:`hyperonnx.evaluate`'s.

Evaluations during the search run one session in which every compressed tensor is a graph input (fed the
decoded weights, which are bit-identical to what the decoders produce), so no model is rebuilt per step.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from hyperonnx import codec, evaluate, model_io, sensitivity
from hyperonnx.errors import HyperonnxError
from hyperonnx.evaluate import METRIC
from hyperonnx.passes import budget, compress, emit
from hyperonnx.passes.portable.emit import check_portable
from hyperonnx.passes.select import Selection, choose, find_sites

MAX_EVALS = 12


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
    form: str = "ort",
    mode: str = "load",
    jobs: int | None = None,
    progress: Callable[[str], None] | None = None,
    max_evals: int = MAX_EVALS,
    exact_grids: bool = True,
    floor_db: float | None = None,
) -> TuneResult:
    """Compress ``model`` (loaded from ``source``) in place into the smallest model found whose fidelity
    (:data:`METRIC`) on ``inputs`` reaches ``target_cosine``. Raises HyperonnxError when even the largest
    setting of every tensor falls short. ValueError for a bad codec, option, form or mode. ``floor_db``: no
    tensor's setting below that weight SQNR (the default policy's floor, when ``inputs`` are generated)."""
    say = progress or (lambda _msg: None)
    if not 0.0 < target_cosine <= 1.0:
        raise HyperonnxError(f"--target-cosine must be in (0, 1], got {target_cosine}")
    compress.check_form_and_mode(form, mode)
    options = dict(options or {})
    impl = codec.get_codec(codec_name)
    impl.params(options)
    rungs = budget.ladder(codec_name, impl.family, options, "a fidelity target")
    selection = selection or Selection()
    opset = emit.model_opset(model)
    if form == "portable":
        check_portable(opset)  # before any model run; the weights' dtypes are checked once they are chosen

    reference_session = evaluate.make_session(source)
    samples = evaluate.load_samples(reference_session, inputs, model)
    outputs = evaluate.float_outputs(reference_session)

    # 1. every tensor at every setting
    chosen, _ = choose(find_sites(model), selection)
    if not chosen:
        raise HyperonnxError("no tensor to compress (see --min-elements, --include, --exclude)")
    if form == "portable":
        check_portable(opset, chosen)
    say(f"encoding {len(chosen)} tensors at {len(rungs)} settings each")
    jobs = max(1, jobs or os.cpu_count() or 1)
    base_dir = str(Path(source).parent)  # for tensors still in external data
    arrays = [numpy_helper.to_array(site.tensor, base_dir) for site in chosen]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(lambda ia: compress.encode_candidates(ia[1], codec_name, rungs, form,
                                                                      chosen[ia[0]].name if form == "ort" else None,
                                                                      exact_grids and form == "ort",
                                                                      floor_db=floor_db),
                                enumerate(arrays)))
    tensors = [Tensor(site.name, c) for site, c in zip(chosen, results) if not isinstance(c, str)]
    kept = [i for i, c in enumerate(results) if not isinstance(c, str)]
    if not tensors:
        raise HyperonnxError(f"no tensor could be encoded with {codec_name} ({results[0]})")

    # 2. sensitivity, on a few samples
    evaluator = sensitivity.WeightsAsInputs(model, selection, arrays, samples, outputs)
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
    for t, gain in zip(tensors, sensitivity.gains(evaluator, originals, trials)):
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

    def try_budget(limit: float) -> bool:
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
        if try_budget(guess):
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
        try_budget(float(largest))  # raises when even that falls short

    # 4. write the winner as the real converted model and validate it against the original file
    passing = sorted((s, v) for s, v in evaluated.items() if v[1] >= target_cosine)
    for size, (choice, _) in passing:
        encodings: list[Any] = list(results)
        for t, i, c in zip(tensors, kept, choice):
            encodings[i] = t.candidates[c].payload
        converted = onnx.ModelProto()
        converted.CopyFrom(model)
        report = _rewrite(converted, selection, encodings, form, mode)
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


def _rewrite(model: onnx.ModelProto, selection: Selection, encodings: list, form: str,
             mode: str) -> compress.CompressReport:
    """Rewrite ``model`` in place with the given encoding (or skip reason) per selected tensor, in site order."""
    started = time.perf_counter()
    chosen, skipped = choose(find_sites(model), selection)
    rewriter = compress.GraphRewriter(model, form, mode, skipped)
    for site, result in zip(chosen, encodings):
        rewriter.add(site, result)
    report = rewriter.finish()
    report.seconds = time.perf_counter() - started
    return report


def _validate(model: onnx.ModelProto, reference_session, samples: evaluate.Samples,
              outputs: list[str]) -> evaluate.Fidelity:
    """Fidelity of the converted ``model`` run as a file by ONNX Runtime (with the op library), against the
    original model's session."""
    with tempfile.TemporaryDirectory(prefix="hyperonnx-tune-") as folder:
        path = Path(folder) / "candidate.onnx"
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        model_io.save(copy, path)
        session = evaluate.make_session(path)
        reference = evaluate.run_samples(reference_session, samples, outputs)
        got = evaluate.run_samples(session, samples, outputs)
    return evaluate.compare(outputs, reference, samples, got)


__all__ = ["MAX_EVALS", "TuneResult", "tune_model"]
