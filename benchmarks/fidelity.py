"""Task fidelity of a compressed model against its original, on each real model's own evaluation data.

One function per model family returns plain numbers; the real-model tests assert on them and
benchmarks/models.py prints them. Task metrics first (top-1 agreement on all and on
confident inputs, KL, embedding cosine, PSNR, decoded strings), never max error alone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

try:
    from . import realmodels as rm
except ImportError:
    import realmodels as rm

Session = Any
MakeSession = Callable[[Path], Session]


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def mobilenet(reference: Session, test: Session) -> dict[str, float]:
    x = rm.imagenet_inputs()
    ref = np.concatenate([reference.run(None, {"input": x[i : i + 16]})[0] for i in range(0, len(x), 16)])
    out = np.concatenate([test.run(None, {"input": x[i : i + 16]})[0] for i in range(0, len(x), 16)])
    p, q = _softmax(ref.astype(np.float64)), _softmax(out.astype(np.float64))
    agree = p.argmax(-1) == q.argmax(-1)
    confident = p.max(-1) >= 0.5
    kl = (p * (np.log(p + 1e-12) - np.log(q + 1e-12))).sum(-1)
    return {"top1_agreement": float(agree.mean()), "top1_agreement_confident": float(agree[confident].mean()),
            "confident_inputs": int(confident.sum()), "inputs": len(x), "kl_mean": float(kl.mean())}


def minilm(reference: Session, test: Session) -> dict[str, float]:
    feeds = rm.minilm_inputs(n=256, batch=32)
    ref, out = [], []
    for f in feeds:
        ref.append(rm.mean_pool(reference.run(None, f)[0], f["attention_mask"]))
        out.append(rm.mean_pool(test.run(None, f)[0], f["attention_mask"]))
    ref, out = np.concatenate(ref), np.concatenate(out)
    cos = (ref * out).sum(-1)
    sim_ref, sim_out = ref @ ref.T, out @ out.T
    np.fill_diagonal(sim_ref, -2)
    np.fill_diagonal(sim_out, -2)
    nn = float((sim_ref.argmax(-1) == sim_out.argmax(-1)).mean())
    return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()), "nn_agreement": nn}


def terrain(reference: Session, test: Session, seeds: int = 8) -> dict[str, float]:
    scores = []
    for feeds in rm.terrain_inputs(seeds):
        a, b = reference.run(None, feeds)[0].astype(np.float64), test.run(None, feeds)[0].astype(np.float64)
        mse = float(np.mean((a - b) ** 2))
        scores.append(float("inf") if mse == 0 else 10 * np.log10((a.max() - a.min()) ** 2 / mse))
    return {"psnr_min": min(scores), "psnr_mean": float(np.mean(scores))}


def ppocr(which: str, reference: Session, test: Session, model_path: Path) -> dict[str, Any]:
    feeds = rm.ppocr_inputs(which)
    a, b = reference.run(None, feeds)[0], test.run(None, feeds)[0]
    result: dict[str, Any] = {"cosine": _cos(a, b)}
    if which == "rec":
        result["text_reference"] = rm.ppocr_ctc_decode(a, model_path)
        result["text_compressed"] = rm.ppocr_ctc_decode(b, model_path)
        result["text_identical"] = result["text_reference"] == result["text_compressed"]
    elif which == "det":
        result["mask_iou"] = float(((a > 0.3) & (b > 0.3)).sum() / max(((a > 0.3) | (b > 0.3)).sum(), 1))
    else:
        result["label_agreement"] = float((a.argmax(-1) == b.argmax(-1)).mean())
    return result


def silero(reference: Session, test: Session) -> dict[str, float]:
    feeds = rm.silero_inputs()
    a, b = rm.silero_run(reference, feeds), rm.silero_run(test, feeds)
    return {"prob_max_abs_diff": float(np.abs(a - b).max()),
            "decision_agreement": float(((a > 0.5) == (b > 0.5)).mean())}
