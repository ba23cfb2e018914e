"""How much weight noise a model's evaluation set tolerates, whatever the codec: MobileNetV2's top-1 flips on its
96 real crops when every weight ``convert`` would compress carries white Gaussian noise at a given SQNR.

    python benchmarks/noise_floor.py [--sqnr 30,35,40,45,50,55,60] [--seeds 8] [--json OUT.json]

No codec is involved: the noise is the best case a weight codec can reach at that SQNR without using data (it is
unbiased and spread evenly over the tensors), so the flips here bound what any data-free codec of that fidelity
does. Alongside, the size an ideal entropy-coded uniform quantizer needs for that SQNR on Gaussian weights at high
rate, (SQNR + 1.53 dB) / 6.02 bits a weight, turned into a ratio against fp32 (side information not counted), and
the fp32 model's smallest top-1 logit margins: crops whose two best classes are nearly tied flip under any noise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import realmodels as rm  # noqa: E402

from hyperonnx.passes.select import Selection, choose, find_sites  # noqa: E402

# 98 % of the 96 crops: a 98 % top-1 agreement target allows at most one flip
ALLOWED_FLIPS = 1


def logits(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"input": x[i : i + 16]})[0] for i in range(0, len(x), 16)])


def with_noise(model: onnx.ModelProto, names: list[str], sqnr_db: float, seed: int) -> onnx.ModelProto:
    """A copy of ``model`` whose named initializers carry white noise at ``sqnr_db`` each (tensor by tensor)."""
    rng = np.random.default_rng(seed)
    noisy = onnx.ModelProto()
    noisy.CopyFrom(model)
    wanted = set(names)
    for tensor in noisy.graph.initializer:
        if tensor.name in wanted:
            w = numpy_helper.to_array(tensor).astype(np.float64)
            sigma = np.sqrt((w**2).mean() / 10 ** (sqnr_db / 10))
            tensor.CopyFrom(numpy_helper.from_array((w + rng.normal(0, sigma, w.shape)).astype(np.float32), tensor.name))
    return noisy


def ideal_ratio(sqnr_db: float) -> float:
    """fp32 bits over the entropy of a uniform quantizer reaching ``sqnr_db`` on Gaussian weights (high rate)."""
    return 32.0 / ((sqnr_db + 10 * np.log10(np.pi * np.e / 6)) / 6.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sqnr", default="30,35,40,45,50,55,60", help="comma-separated SQNR levels, dB")
    parser.add_argument("--seeds", type=int, default=8, help="noise draws per level")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    model = onnx.load(str(rm.mobilenet_v2()))
    chosen, _ = choose(find_sites(model), Selection())
    names = [site.name for site in chosen]
    x = rm.imagenet_inputs()
    ref = logits(model, x)
    top = np.sort(ref, axis=-1)
    margins = np.sort(top[:, -1] - top[:, -2])
    print(f"MobileNetV2, {len(names)} weight tensors, {len(x)} crops; fp32 smallest top-1 logit margins: "
          + ", ".join(f"{m:.4f}" for m in margins[:4]))
    print(f"\n| weight SQNR | ideal size ratio | flips: median | max | draws with ≤ {ALLOWED_FLIPS} flip |")
    print("|---:|---:|---:|---:|---:|")
    rows = []
    for level in (float(s) for s in args.sqnr.split(",")):
        flips = [int((logits(with_noise(model, names, level, seed), x).argmax(-1) != ref.argmax(-1)).sum())
                 for seed in range(args.seeds)]
        within = sum(f <= ALLOWED_FLIPS for f in flips)
        rows.append({"sqnr_db": level, "ideal_ratio": ideal_ratio(level), "flips": flips})
        print(f"| {level:.0f} dB | {ideal_ratio(level):.2f}× | {statistics.median(flips):g} | {max(flips)} | "
              f"{within}/{args.seeds} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"margins": margins[:8].tolist(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
