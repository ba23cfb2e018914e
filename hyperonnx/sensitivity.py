"""Per-tensor sensitivity: how much a model's outputs suffer per unit of one tensor's relative weight noise.

A size budget with ``--sensitivity`` (:func:`measure`) spends its bytes by these weights, and the fidelity search
(:mod:`hyperonnx.tune`) predicts a whole allocation's cosine drop from them. Each tensor alone is replaced by a
decoded version of itself and the drop of the output cosine (:data:`hyperonnx.evaluate.METRIC`, on a few probe
samples) is divided by the tensor's relative noise: errors of independent tensors add up in 1 − cosine as long as
they are small.

Every run goes through one :class:`WeightsAsInputs` session, in which every selected tensor is a graph input fed
the weights to try, so no model is rebuilt per trial.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hyperonnx import codec, evaluate
from hyperonnx.errors import HyperonnxError, short_reason
from hyperonnx.ops import DOMAIN
from hyperonnx.passes import budget
from hyperonnx.passes.compress import encode_tensor
from hyperonnx.passes.select import Selection, choose, find_sites


class WeightsAsInputs:
    """One session of the model with every selected tensor as a graph input: the fidelity of any set of weights
    to the original's outputs, on the samples or on their probe subset."""

    def __init__(self, model: onnx.ModelProto, selection: Selection, originals: list[np.ndarray],
                 samples: evaluate.Samples, outputs: list[str]):
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
                                 f"({short_reason(exc)})") from None
        self.originals = originals
        self.outputs = outputs
        self.samples = samples
        self.probe = samples.probe()
        self.reference = self._outputs(samples, originals)
        evaluate.check_reference_outputs([y for chunk in self.reference for y in chunk], samples.source)
        self.probe_reference = self._outputs(self.probe, originals)

    def _outputs(self, samples: evaluate.Samples, weights: list[np.ndarray]) -> list[list[np.ndarray]]:
        return evaluate.run_samples(self.session, samples, self.outputs, dict(zip(self.inputs, weights)))

    def fidelity(self, weights: list[np.ndarray], probe: bool = False) -> evaluate.Fidelity:
        samples, reference = (self.probe, self.probe_reference) if probe else (self.samples, self.reference)
        return evaluate.compare(self.outputs, reference, samples, self._outputs(samples, weights))


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


Trial = tuple[int, Callable[[], np.ndarray], float]  # index into the originals, its decoded weight, its noise


def gains(session: WeightsAsInputs, originals: list[np.ndarray], trials: Iterable[Trial]) -> list[float]:
    """Each trial alone in the model on the probe samples: the drop of the output cosine per unit of relative
    noise. Gains too small to measure are raised to 1/1000 of the median positive one (no tensor is free)."""
    measured = []
    for i, weight, noise in trials:
        trial = list(originals)
        trial[i] = weight()
        drop = 1.0 - session.fidelity(trial, probe=True).value
        measured.append(drop / noise if noise > 0 else 0.0)
    positive = sorted(g for g in measured if g > 0)
    floor = positive[len(positive) // 2] * 1e-3 if positive else 1.0
    return [max(g, floor) for g in measured]


def measure(
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
    rung of the codec's budget ladder — the weights a size budget (``--target-bpw``, ``--max-size``) spends
    its bytes by. ``model`` holds every weight (not lazily loaded) and is not changed. Returns the weights and a
    summary (inputs, samples, seconds)."""
    say = progress or (lambda _msg: None)
    options = dict(options or {})
    impl = codec.get_codec(codec_name)
    impl.params(options)
    rungs = budget.ladder(codec_name, impl.family, options, "a size budget")
    probe = rungs[(len(rungs) - 1) // 2]
    selection = selection or Selection()
    reference_session = evaluate.make_session(source)
    samples = evaluate.load_samples(reference_session, inputs, model)
    chosen, _ = choose(find_sites(model), selection)
    if not chosen:
        raise HyperonnxError("no tensor to compress (see --min-elements, --include, --exclude)")
    base_dir = str(Path(source).parent)
    originals = [numpy_helper.to_array(site.tensor, base_dir) for site in chosen]
    session = WeightsAsInputs(model, selection, originals, samples, evaluate.float_outputs(reference_session))
    say(f"measuring the sensitivity of {len(chosen)} tensors on {session.probe.count} samples")
    started = time.perf_counter()

    def trials() -> Iterable[Trial]:
        for i, array in enumerate(originals):
            result = encode_tensor(array, codec_name, probe)
            if isinstance(result, str):  # this codec cannot encode it: the budget skips it too
                yield i, lambda a=array: a, 0.0
                continue
            enc, sqnr = result
            noise = 10.0 ** (-sqnr / 10.0) if np.isfinite(sqnr) else 0.0
            yield i, lambda e=enc, a=array: codec.decode(e).reshape(a.shape).astype(a.dtype, copy=False), noise

    weights = gains(session, originals, trials())
    seconds = time.perf_counter() - started
    say(f"sensitivity measured in {seconds:.1f} s")
    return weights, {"inputs": samples.source, "samples": session.probe.count, "seconds": round(seconds, 3)}


__all__ = ["Trial", "WeightsAsInputs", "gains", "measure"]
