"""Which tensors a model's task metric depends on at the default: one group of tensors converted at a time.

    python benchmarks/noise_sources.py MODEL [--parts 4] [--glob NAME=GLOB[|GLOB...] ...]

MODEL is one of benchmarks/models.py's (mobilenet, minilm, terrain, ppocr-det, ppocr-rec, silero). Each group is
converted at the default (`hyperonnx convert --include ...`, every other tensor kept fp32) and scored on the
model's real evaluation data (benchmarks/fidelity.py). Without ``--glob`` the groups are the ``--parts`` slices
of the compressed tensors in graph order (first use). Noise from different tensors adds nearly independently,
so the groups' deficits (1 − cosine, PSNR as noise power) show where the output noise comes from and where a
rule on shape or graph position could spend or save bits. A group's tensors keep their own targets, except
that the first and last tensor of a group count as the model's first and last layer.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from models import MODELS, plain_session  # noqa: E402

import hyperonnx  # noqa: E402
from hyperonnx.passes import policy  # noqa: E402
from hyperonnx.passes.select import Selection, choose, find_sites  # noqa: E402


def slices(source: Path, parts: int) -> dict[str, tuple[str, ...]]:
    """The compressed tensors in graph order, cut into ``parts`` groups of about equal count."""
    model = onnx.load(str(source), load_external_data=False)
    chosen, _ = choose(find_sites(model), Selection(policy.MIN_ELEMENTS))
    order = policy.first_use(model)
    chosen.sort(key=lambda site: order.get((id(site.graph), site.name), 0))
    n = len(chosen)
    return {f"part {k + 1}/{parts}": tuple(site.name for site in chosen[k * n // parts : (k + 1) * n // parts])
            for k in range(parts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument("--parts", type=int, default=4)
    parser.add_argument("--glob", action="append", default=[], metavar="NAME=GLOB[|GLOB...]")
    args = parser.parse_args()
    get, evaluate = MODELS[args.model]
    source = get()
    reference = plain_session(source)
    groups = {name: tuple(globs.split("|")) for name, _, globs in (g.partition("=") for g in args.glob)} \
        or slices(source, args.parts)
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "part.onnx"
        for name, include in groups.items():
            result = hyperonnx.convert(source, target, include=include)
            scores = evaluate(reference, hyperonnx.session(target), source)
            shown = {k: round(v, 6) if isinstance(v, float) else v for k, v in scores.items()
                     if not k.startswith("text_") or k == "text_identical"}
            weights = sum(math.prod(t.shape) for t in result.report.tensors)
            print(json.dumps({"group": name, "tensors": len(result.report.tensors), "weights": weights, **shown}),
                  flush=True)


if __name__ == "__main__":
    main()
