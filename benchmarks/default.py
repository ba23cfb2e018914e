"""The default conversion (passes/policy.py) against the old fixed-rate default (blocktcq, 5 bits), same run.

    python benchmarks/default.py [--models mobilenet,minilm,terrain,ppocr-det,ppocr-rec,silero] [--jobs 2]
                                 [--json OUT.json]

For every model: whole-file size ratio (external data and debug info counted), conversion seconds, and the task
fidelity of tests/fidelity.py on each model's real evaluation data, for `hyperonnx convert model.onnx` (no flags)
and for `--codec blocktcq` (the old default); the conversion-time ratio new / old is held to ≤ 3×.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from models import MODELS, plain_session  # noqa: E402

import hyperonnx  # noqa: E402

VARIANTS = {"default": None, "old default (blocktcq 5 bits)": "blocktcq"}


def measure(name: str, jobs: int | None, folder: Path) -> list[dict]:
    get, evaluate = MODELS[name]
    source = get()
    reference = plain_session(source)
    rows = []
    for label, codec_name in VARIANTS.items():
        target = folder / f"{name}.{codec_name or 'default'}.onnx"
        start = time.perf_counter()
        result = hyperonnx.convert(source, target, codec_name=codec_name, jobs=jobs)
        seconds = time.perf_counter() - start
        scores = evaluate(reference, hyperonnx.session(target), source)
        scores = {k: v for k, v in scores.items() if not k.startswith("text_") or k == "text_identical"}
        rows.append({"model": name, "variant": label, "ratio": result.ratio, "seconds": seconds, **scores})
    rows[0]["time_ratio_vs_old"] = rows[0]["seconds"] / rows[1]["seconds"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mobilenet,minilm,terrain,ppocr-det,ppocr-rec,silero")
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            for row in measure(name, args.jobs, Path(tmp)):
                rows.append(row)
                shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
                print(json.dumps(shown), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
