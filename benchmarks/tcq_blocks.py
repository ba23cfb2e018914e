"""What tcq's block size is worth at the default's targets: θ bytes at equal weight SQNR for each block size.

    python benchmarks/tcq_blocks.py [--models terrain,mobilenet,...] [--blocks 64,128,256,1024,4096] [--json OUT]

For every model of benchmarks/models.py: each tensor the default compresses is encoded to its own default target
(passes/policy.py, ``encode_to_target``) with blocks of each size in ``--blocks`` (the format's ``i_block``: one
scale code per block), and the θ bytes are summed per block size, plus the smallest of them per tensor. The
whole-file ratio of `hyperonnx convert model.onnx` (no flags) is measured too, and what it would be with each
tensor at its best block size (the same file less the θ bytes saved). Encode seconds per block size are one
core's CPU time. Every encoding reaches the same target, so the comparison is at equal weight SQNR.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from models import MODELS  # noqa: E402

from hyperonnx import model_io  # noqa: E402
from hyperonnx.codec import rank1  # noqa: E402
from hyperonnx.passes import compress, policy  # noqa: E402
from hyperonnx.passes.select import Selection, choose, find_sites  # noqa: E402


def theta_bytes(source: Path, blocks: list[int]) -> dict:
    """Per block size: θ bytes and encode seconds over the default's tensors; the best block size's bytes per
    tensor summed, and how many tensors each block size won."""
    model = onnx.load(str(source))
    chosen, _ = choose(find_sites(model), Selection(policy.MIN_ELEMENTS))
    plan = policy.targets(model, chosen)
    totals = dict.fromkeys(blocks, 0)
    seconds = dict.fromkeys(blocks, 0.0)
    wins = dict.fromkeys(blocks, 0)
    best = 0
    for site, target in zip(chosen, plan):
        array = compress.tensor_values(site, source.parent)
        array = array() if callable(array) else array
        sizes = {}
        with rank1.reuse(array):  # one rank-1 fit per tensor, as the converter does
            for block in blocks:
                start = time.process_time()
                result = policy.encode_to_target(array, target.sqnr_db, block=block)
                seconds[block] += time.process_time() - start
                if isinstance(result, str):
                    raise SystemExit(f"{site.name}: {result}")
                sizes[block] = result[0].nbytes
        for block, size in sizes.items():
            totals[block] += size
        winner = min(sizes, key=sizes.get)
        wins[winner] += 1
        best += sizes[winner]
    return {"tensors": len(chosen), "theta_bytes": totals, "best_theta_bytes": best, "wins": wins,
            "encode_seconds": seconds}


def file_ratio(source: Path, folder: Path) -> tuple[int, int]:
    """(original bytes, converted bytes) of `hyperonnx convert` with no flags."""
    target = folder / f"{source.stem}.hx.onnx"
    subprocess.run([sys.executable, "-m", "hyperonnx", "convert", str(source), "-o", str(target)], check=True,
                   capture_output=True)
    return model_io.file_size(source), model_io.file_size(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="terrain,mobilenet,ppocr-det")
    parser.add_argument("--blocks", default="64,128,256,1024,4096")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    blocks = [int(b) for b in args.blocks.split(",")]
    if policy.BLOCK not in blocks:
        blocks.insert(0, policy.BLOCK)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            source = MODELS[name][0]()
            row = {"model": name, **theta_bytes(source, blocks)}
            original, converted = file_ratio(source, Path(tmp))
            saved = row["theta_bytes"][policy.BLOCK] - row["best_theta_bytes"]
            row.update(ratio=original / converted, ratio_best_blocks=original / (converted - saved),
                       saved_pct_of_theta=100.0 * saved / row["theta_bytes"][policy.BLOCK])
            rows.append(row)
            shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
            shown["encode_seconds"] = {k: round(v, 2) for k, v in row["encode_seconds"].items()}
            print(json.dumps(shown), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
