"""How far each budget codec's ladder reaches: the top rung's weight SQNR on every tensor of the real models.

    python benchmarks/ladders.py [--models mobilenet_v2,minilm,ppocr_det,ppocr_rec,terrain_unet,silero_vad]
                                 [--codecs tcq,ecsq,blocktcq,blockvq] [--rung '{"step": 0.0312}'] [--times]
                                 [--convert-bpw 6.0] [--json OUT.json]

A size or fidelity budget (--target-bpw, --max-size, --target-cosine) can give a tensor no more than its codec's
largest setting, so a target is "out of reach" exactly when the top rungs fall short. Per model and codec: the
tensors of ≥ 1024 float weights (what the default policy compresses), the min and median of their SQNR at the top
rung, the worst tensor, and the median bits a weight there. ``--rung`` measures that setting instead of the top
rung (e.g. the former top rung, ``{"step": 0.0312}``, for a before/after). ``--times`` adds the CPU seconds (one
thread) to encode every tensor at every rung, and what the rungs past the former nine (``FORMER_RUNGS``) add:
what a budget spends on encoding, since it encodes each tensor at each rung. ``--convert-bpw B`` times a whole
``convert --codec C --target-bpw B`` (one job, wall and CPU seconds) with the full ladder and with the former nine
rungs, in the same run, with the whole-file ratio each gives.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one thread: CPU time measures the encoders alone

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnx  # noqa: E402
import realmodels  # noqa: E402

from hyperonnx import codec  # noqa: E402
from hyperonnx.passes import budget  # noqa: E402
from hyperonnx.passes.compress import sqnr_db, tensor_values  # noqa: E402
from hyperonnx.passes.select import find_sites  # noqa: E402

MODELS = {"mobilenet_v2": realmodels.mobilenet_v2, "minilm": realmodels.minilm,
          "ppocr_det": lambda: realmodels.ppocr("det"), "ppocr_rec": lambda: realmodels.ppocr("rec"),
          "terrain_unet": realmodels.terrain_unet, "silero_vad": realmodels.silero_vad}
CODECS = ("tcq", "ecsq", "blocktcq", "blockvq")
MIN_ELEMENTS = 1024
FORMER_RUNGS = {"tcq": 9, "ecsq": 9}  # the ecsq/tcq ladder before its near-lossless rungs (step 0.5 … 0.0312)


def model_tensors(name: str) -> list[tuple[str, np.ndarray]]:
    """(name, values) of every float weight of ≥ MIN_ELEMENTS elements, subgraphs and Constant nodes included."""
    path = MODELS[name]()
    out = []
    for site in find_sites(onnx.load(str(path))):
        if site.numel < MIN_ELEMENTS:
            continue
        values = tensor_values(site, str(path.parent))
        values = values() if callable(values) else values
        if values.dtype.kind == "f":
            out.append((site.name, values))
    return out


def reach(tensors: list[tuple[str, np.ndarray]], codec_name: str, rung: dict) -> dict:
    sqnr, bpw = [], []
    for _, x in tensors:
        enc = codec.encode(x, codec_name, **rung)
        sqnr.append(sqnr_db(x, codec.decode(enc)))
        bpw.append(8.0 * enc.nbytes / x.size)
    worst = int(np.argmin(sqnr))
    return {"rung": rung, "tensors": len(tensors), "min_db": float(np.min(sqnr)),
            "median_db": float(np.median(sqnr)), "worst": tensors[worst][0],
            "worst_shape": list(tensors[worst][1].shape), "median_bpw": float(np.median(bpw))}


def ladder_seconds(tensors: list[tuple[str, np.ndarray]], codec_name: str) -> list[float]:
    """CPU seconds to encode (and decode, as a budget does to measure each candidate) every tensor, per rung."""
    out = []
    for rung in budget.BUDGET_OPTIONS[codec.get_codec(codec_name).family]:
        started = time.process_time()
        for _, x in tensors:
            codec.decode(codec.encode(x, codec_name, **rung))
        out.append(time.process_time() - started)
    return out


def convert_seconds(model: str, codec_name: str, bpw: float, rungs: int | None) -> dict:
    """One ``convert --target-bpw`` of the model with the ladder's first ``rungs`` rungs (None: all of them)."""
    import hyperonnx

    family = codec.get_codec(codec_name).family
    full = budget.BUDGET_OPTIONS[family]
    budget.BUDGET_OPTIONS[family] = full[:rungs] if rungs else full
    try:
        with tempfile.TemporaryDirectory() as folder:
            wall, cpu = time.perf_counter(), time.process_time()
            result = hyperonnx.convert(MODELS[model](), Path(folder) / "out.onnx", codec_name=codec_name,
                                       target_bpw=bpw, jobs=1)
            return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "ratio": result.ratio}
    finally:
        budget.BUDGET_OPTIONS[family] = full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--codecs", default=",".join(CODECS))
    parser.add_argument("--rung", type=json.loads, help="measure this setting instead of each codec's top rung")
    parser.add_argument("--times", action="store_true", help="CPU seconds to encode the whole ladder")
    parser.add_argument("--convert-bpw", type=float, help="time convert --target-bpw, full ladder vs former")
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    for model in args.models.split(","):
        tensors = model_tensors(model)
        for name in args.codecs.split(","):
            family = codec.get_codec(name).family
            row = {"model": model, "codec": name,
                   **reach(tensors, name, args.rung or budget.BUDGET_OPTIONS[family][-1])}
            line = (f"{model:13s} {name:9s} {row['tensors']:4d} tensors  top rung {json.dumps(row['rung']):32s} "
                    f"min {row['min_db']:5.1f} dB  median {row['median_db']:5.1f} dB  {row['median_bpw']:5.2f} bpw"
                    f"  worst {row['worst']} {row['worst_shape']}")
            if args.times:
                seconds = ladder_seconds(tensors, name)
                former = FORMER_RUNGS.get(name, len(seconds))
                row.update(ladder_seconds=sum(seconds), former_rungs_seconds=sum(seconds[:former]))
                line += (f"\n{'':24s}ladder encode {sum(seconds):6.2f} CPU s, its first {former} rungs "
                         f"{sum(seconds[:former]):6.2f} s ({sum(seconds) / max(sum(seconds[:former]), 1e-9):.2f}×)")
            if args.convert_bpw and name in FORMER_RUNGS:
                former = convert_seconds(model, name, args.convert_bpw, FORMER_RUNGS[name])
                now = convert_seconds(model, name, args.convert_bpw, None)
                row.update(convert_former=former, convert=now)
                line += (f"\n{'':24s}convert --target-bpw {args.convert_bpw}: {now['wall_s']:6.2f} s wall, "
                         f"{now['cpu_s']:6.2f} CPU s ({now['ratio']:.2f}x); former ladder {former['wall_s']:6.2f} s, "
                         f"{former['cpu_s']:6.2f} CPU s ({former['ratio']:.2f}x): "
                         f"{now['cpu_s'] / max(former['cpu_s'], 1e-9):.2f}x the CPU time")
            print(line, flush=True)
            rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
