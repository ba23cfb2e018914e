"""`make demo`: compress a real diffusion UNet, then show its size, fidelity and speed.

The model is the terrain consistency-diffusion UNet that ships as ONNX inside the PyPI package
`adaptive-terrain-diffusion` (10.5 M fp32 weights). It is converted twice into HyperDecode nodes — with the
default codec, and with the smallest-file setting (tcq, exporter debug data stripped) — run through ONNX Runtime
with the hyperonnx op library, and compared with the original on one-step generations from fixed noise seeds.
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


# The default codec, then the smallest-file one: tcq (entropy-coded trellis θ) with exporter debug data stripped.
SETTINGS = [("default (blocktcq)", {}),
            ("smallest (tcq step 0.177, debug info stripped)",
             {"codec_name": "tcq", "options": {"step": 0.177}, "strip_debug_info": True})]


def main() -> None:
    import onnxruntime as ort

    WORK.mkdir(parents=True, exist_ok=True)
    source = terrain_unet()
    start = time.perf_counter()
    original = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    load_original = time.perf_counter() - start
    seeds = [inputs(seed, float(difficulty)) for seed, difficulty in enumerate(np.linspace(1, 100, 4))]
    references = [original.run(None, feeds)[0] for feeds in seeds]
    latency_feeds = inputs(0, 50.0)

    mb = 1024 * 1024
    rows = [("original (fp32)", f"{source.stat().st_size / mb:.1f} MB", "—", load_original * 1e3,
             median_ms(original, latency_feeds))]
    for i, (label, options) in enumerate(SETTINGS):
        target = WORK / f"terrain_unet.{i}.hx.onnx"
        print(f"converting {source.name}: {label} ...", flush=True)
        result = hyperonnx.convert(source, target, **options)
        totals = result.as_dict()["totals"]
        print(f"  {totals['tensors_compressed']} tensors compressed in {totals['seconds']:.1f} s", flush=True)
        start = time.perf_counter()
        compressed = hyperonnx.session(target)
        load = time.perf_counter() - start
        scores = [psnr(ref, compressed.run(None, feeds)[0]) for ref, feeds in zip(references, seeds)]
        rows.append((label, f"{result.bytes_after / mb:.2f} MB ({result.ratio:.2f}x smaller)",
                     f"{min(scores):.1f} / {np.mean(scores):.1f} dB", load * 1e3, median_ms(compressed, latency_feeds)))

    print()
    print("terrain consistency UNet; PSNR of the output against fp32 over 4 noise seeds (min / mean);")
    print("load includes decoding every weight; latency: median per generation, batch 1; sizes are whole files")
    print(f"{'setting':<48} {'size':<26} {'PSNR':<16} {'load':>7} {'latency':>8}")
    for label, size, fidelity, load_ms, latency_ms in rows:
        print(f"{label:<48} {size:<26} {fidelity:<16} {load_ms:>5.0f} ms {latency_ms:>5.0f} ms")
    print(f"outputs in {WORK}")


if __name__ == "__main__":
    main()
