"""`make demo`: compress a real diffusion UNet, then show its size, fidelity and speed.

The model is the terrain consistency-diffusion UNet that ships as ONNX inside the PyPI package
`adaptive-terrain-diffusion` (10.5 M fp32 weights). It is converted with the default codec into HyperDecode
nodes, run through ONNX Runtime with the hyperonnx op library, and compared with the original on one-step
generations from fixed noise seeds.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import hyperonnx

PACKAGE = "adaptive-terrain-diffusion==0.4.2"
ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".cache" / "demo"


def terrain_unet() -> Path:
    if importlib.util.find_spec("terrain_diffusion") is None:
        print(f"installing {PACKAGE} (model only, --no-deps) ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", PACKAGE], check=True)
        importlib.invalidate_caches()
    folder = Path(importlib.util.find_spec("terrain_diffusion").origin).parent
    return folder / "weights" / "terrain_consistency_unet_difficulty100.onnx"


def inputs(seed: int, difficulty: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "noisy": (rng.standard_normal((1, 1, 128, 128)) * 80).astype(np.float32),
        "sigma": np.array([80.0], dtype=np.float32),
        "difficulty": np.array([difficulty], dtype=np.float32),
    }


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    peak = float(reference.max() - reference.min())
    mse = float(np.mean((reference.astype(np.float64) - test) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def median_ms(session, feeds, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    source = terrain_unet()
    target = WORK / "terrain_unet.hx.onnx"
    print(f"converting {source.name} ...", flush=True)
    result = hyperonnx.convert(source, target)
    totals = result.as_dict()["totals"]
    print(f"  {totals['tensors_compressed']} tensors compressed in {totals['seconds']:.1f} s")

    import onnxruntime as ort

    start = time.perf_counter()
    original = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    load_original = time.perf_counter() - start
    start = time.perf_counter()
    compressed = hyperonnx.session(target)
    load_compressed = time.perf_counter() - start

    scores = []
    for seed, difficulty in enumerate(np.linspace(1, 100, 4)):
        feeds = inputs(seed, float(difficulty))
        scores.append(psnr(original.run(None, feeds)[0], compressed.run(None, feeds)[0]))
    feeds = inputs(0, 50.0)
    lat_original, lat_compressed = median_ms(original, feeds), median_ms(compressed, feeds)

    mb = 1024 * 1024
    print()
    print(f"model        terrain consistency UNet ({source.stat().st_size / mb:.1f} MB fp32)")
    print(f"size         {result.bytes_before / mb:.1f} MB -> {result.bytes_after / mb:.2f} MB "
          f"({result.ratio:.2f}x smaller, whole file)")
    print(f"fidelity     PSNR vs fp32 output over 4 seeds: min {min(scores):.1f} dB, "
          f"mean {np.mean(scores):.1f} dB")
    print(f"load         {load_original * 1e3:.0f} ms -> {load_compressed * 1e3:.0f} ms (decode at session load)")
    print(f"latency      {lat_original:.0f} ms -> {lat_compressed:.0f} ms per generation (median, batch 1)")
    print(f"output       {target}")


if __name__ == "__main__":
    main()
