"""Real models from PyPI packages, converted at the default (no flags, no data) and run the way users run them.

The default-path tests are the acceptance of the default policy (passes/policy.py, docs/default.md):
size and task fidelity on each model's real evaluation data. Thresholds sit at or a little below what
benchmarks/default.py measured; where a target is not met yet the docstring says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import hyperonnx

try:
    from . import fidelity
    from . import realmodels as rm
except ImportError:
    import fidelity
    import realmodels as rm

# Every test converts and runs real models (minutes on 2 cores; their first export needs torch).
pytestmark = pytest.mark.slow


# Targets not met yet at the default, and what benchmarks/default.py measured: terrain 3.91× (target 4×;
# worst seed 40.5 dB, target 35).
TERRAIN_RATIO, TERRAIN_PSNR_MIN = 3.85, 35.0
DET_RATIO, DET_IOU = 4.5, 0.99  # measured 4.60×, IoU 0.9919


def plain(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Convert each model once per runtime form; returns {(model, runtime): (source, target, result)}."""
    folder = tmp_path_factory.mktemp("converted")
    cache = {}

    def get(name: str, runtime: str = "ort"):
        if (name, runtime) not in cache:
            source = {"mobilenet": rm.mobilenet_v2, "minilm": rm.minilm, "terrain": rm.terrain_unet,
                      "ppocr-det": lambda: rm.ppocr("det"), "ppocr-rec": lambda: rm.ppocr("rec"),
                      "silero": rm.silero_vad}[name]()
            target = folder / f"{name}.{runtime}.onnx"
            cache[(name, runtime)] = (source, target, hyperonnx.convert(source, target, runtime=runtime))
        return cache[(name, runtime)]

    return get


def test_mobilenet_v2(converted):
    """Target: ≥ 5×, top-1 100 % on confident crops, ≥ 93 % on all 96, KL ≤ 0.03 (measured 5.09×, 100 % /
    93.8 %, KL 0.021; the old blocktcq default: 5.27×, 98.2 % / 83.3 %, KL 0.074)."""
    source, target, result = converted("mobilenet")
    assert result.ratio >= 5.0
    assert all(t.reason for t in result.report.tensors)  # the default policy chose every setting
    scores = fidelity.mobilenet(plain(source), hyperonnx.session(target))
    assert scores["top1_agreement_confident"] == 1.0
    assert scores["top1_agreement"] >= 0.93 and scores["kl_mean"] <= 0.03


def test_minilm(converted):
    """Target: ≥ 5×, embedding cosine ≥ 0.998 mean, nearest-neighbour agreement ≥ 97 % (measured 5.54×, 0.9989,
    98.0 %; old default 0.9959, 94.1 %)."""
    source, target, result = converted("minilm")
    assert result.ratio >= 5.0
    reasons = {t.reason for t in result.report.tensors}
    assert reasons == {"matmul", "lookup table"}, reasons
    scores = fidelity.minilm(plain(source), hyperonnx.session(target))
    assert scores["cosine_mean"] >= 0.998 and scores["nn_agreement"] >= 0.97


@pytest.mark.slow
def test_terrain_unet(converted):
    """Target: worst of 8 seeds ≥ 35 dB PSNR at ≥ 4× (whole file, 3.2 MB of exporter stack traces kept).
    Seed 0 (difficulty 1) is ill-conditioned: one 32×32×3×3 conv alone took it to ~28 dB at the old default's
    5 bits (21.3 dB worst); the policy's small-tensor target holds that conv near 45 dB."""
    source, target, result = converted("terrain")
    assert result.ratio >= TERRAIN_RATIO
    scores = fidelity.terrain(plain(source), hyperonnx.session(target))
    assert scores["psnr_min"] >= TERRAIN_PSNR_MIN


def test_ppocr_constant_node_weights(converted):
    """Target: rec decoded text identical; det text-mask IoU ≥ 0.99 at ≥ 4.5× (measured: see DET_* below)."""
    source, target, result = converted("ppocr-rec")
    assert not onnx.load(str(source)).graph.initializer  # every weight lives in a Constant node
    assert len(result.report.tensors) > 20 and result.ratio >= 5.0
    scores = fidelity.ppocr("rec", plain(source), hyperonnx.session(target), source)
    assert scores["text_identical"]
    source, target, result = converted("ppocr-det")
    assert result.ratio >= DET_RATIO
    assert fidelity.ppocr("det", plain(source), hyperonnx.session(target), source)["mask_iou"] >= DET_IOU


def test_silero_vad_subgraph_weights(converted):
    """Target: speech decisions ≥ 99.9 % identical (measured 100 %)."""
    source, target, result = converted("silero")
    assert {t.graph for t in result.report.tensors} != {"main"}  # the weights live inside If branches
    assert fidelity.silero(plain(source), hyperonnx.session(target))["decision_agreement"] >= 0.999


@pytest.mark.skipif(
    os.environ.get("HYPERONNX_TEST_SMOLLM2") != "1",
    reason="optional: SmolLM2-135M export (538 MB, needs gguf + accelerate); set HYPERONNX_TEST_SMOLLM2=1",
)
def test_smollm2_perplexity_within_1_percent(tmp_path):
    """Target: SmolLM2-135M perplexity within 1 % of fp32 at the default. Its weights come dequantized from a
    GGUF (Q4_1 linear layers, Q8_0 embedding), so the policy stores every one exactly on its float16 block grid
    (benchmarks/llm.py, 2048 tokens: +0.00 %, 6.16× smaller; 5.62× and +1.56 % when made to re-quantize them
    with --no-exact-grids). Scored here on 256 tokens of real prose through the op library."""
    source = rm.smollm2()
    target = tmp_path / "smollm2.hx.onnx"
    result = hyperonnx.convert(source, target)
    assert result.ratio >= 5.0
    assert all(t.reason for t in result.report.tensors)
    tok = rm.smollm2_tokenizer()
    ids = np.array([tok(" ".join(rm.pydoc_sentences(40)))["input_ids"][:256]], dtype=np.int64)

    def perplexity(session) -> float:
        logits = session.run(None, {"input_ids": ids})[0][0].astype(np.float64)
        logp = logits - logits.max(axis=1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
        return float(np.exp(-logp[np.arange(ids.shape[1] - 1), ids[0, 1:]].mean()))

    assert perplexity(hyperonnx.session(target)) <= 1.01 * perplexity(plain(source))


@pytest.mark.parametrize("name", ["mobilenet", "minilm", "terrain"])
def test_every_decode_mode_matches_the_decompressed_model(converted, tmp_path, name):
    """The library's decode equals the numpy reference: served as initializers the outputs are bit-identical
    to the decompressed model's; through the kernel (load/call) ORT computes with a run-time weight, which
    may take other kernels, so those are compared to float tolerance."""
    source, target, _ = converted(name)
    plain_path = tmp_path / "plain.onnx"
    hyperonnx.decompress(target, plain_path)
    feeds = {"mobilenet": lambda: {"input": rm.imagenet_inputs(1)[:2]},
             "minilm": lambda: rm.minilm_inputs(n=4), "terrain": lambda: rm.terrain_inputs(1)[0]}[name]()
    expected = plain(plain_path).run(None, feeds)
    for got, want in zip(hyperonnx.session(target).run(None, feeds), expected):
        np.testing.assert_array_equal(got, want)
    for mode in ("load", "call"):
        session = hyperonnx.session(target, mode=mode)
        for _ in range(2):  # the second run serves the cached tensor in load mode
            for got, want in zip(session.run(None, feeds), expected):
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


@pytest.mark.parametrize("name", ["mobilenet", "ppocr-rec", "silero"])
def test_portable_form_runs_without_the_library(converted, tmp_path, name):
    source, target, result = converted(name, "portable")
    model = onnx.load(str(target))
    assert all(o.domain in ("", "ai.onnx") for o in model.opset_import)
    plain_path = tmp_path / "plain.onnx"
    hyperonnx.decompress(target, plain_path)
    feeds = {"mobilenet": lambda: {"input": rm.imagenet_inputs(1)[:2]},
             "ppocr-rec": lambda: rm.ppocr_inputs("rec"), "silero": lambda: rm.silero_inputs()[0]}[name]()
    for got, want in zip(plain(target).run(None, feeds), plain(plain_path).run(None, feeds)):
        np.testing.assert_array_equal(got, want)


def test_minilm_entropy_coded_is_6x_smaller_at_cosine_099(tmp_path):
    """All-MiniLM-L6-v2 ≥ 6× smaller (whole file) with mean embedding cosine ≥ 0.99, data-free
    (ecsq at step 0.125 measured 6.07×, cosine 0.9959); the op library's decode equals the numpy reference."""
    source = rm.minilm()
    target = tmp_path / "minilm.ecsq.onnx"
    result = hyperonnx.convert(source, target, codec_name="ecsq", options={"step": 0.125})
    assert result.ratio >= 6.0
    session = hyperonnx.session(target)
    scores = fidelity.minilm(plain(source), session)
    assert scores["cosine_mean"] >= 0.99
    plain_path = tmp_path / "plain.onnx"
    hyperonnx.decompress(target, plain_path)
    feeds = rm.minilm_inputs(n=4)
    for got, want in zip(session.run(None, feeds), plain(plain_path).run(None, feeds)):
        np.testing.assert_array_equal(got, want)


def test_mobilenet_v2_tuned_entropy_coded_is_5x_smaller(tmp_path):
    """Data-free --target-cosine keeps the default policy's floor: MobileNetV2 ≥ 5× smaller with ≥ 98 %
    top-1 agreement on confident photo crops: tcq with --target-cosine 0.99 and no --inputs (sensitivity and the
    budget search run on generated inputs), scored on the 96 real evaluation crops; measured 5.02× with the
    33 dB floor (6.28×, 100 % confident / 92.7 % all, KL 0.050 when generated inputs could take tensors below
    it). The target refers to confident crops (a target must say which): on all crops no weight codec
    reaches 98 % at 6× on this set (benchmarks/noise_floor.py: white noise at the SQNR an ideal coder reaches at
    6.1× flips 14 crops in the median draw)."""
    source = rm.mobilenet_v2()
    target = tmp_path / "mnv2.tcq.onnx"
    result = hyperonnx.convert(source, target, codec_name="tcq", target_cosine=0.99)
    assert result.ratio >= 5.0
    assert all(t.sqnr_db >= 33.0 - 1.5 for t in result.report.tensors)  # the floor, to within half a rung
    scores = fidelity.mobilenet(plain(source), hyperonnx.session(target))
    assert scores["top1_agreement_confident"] >= 0.98 and scores["kl_mean"] < 0.1


def test_terrain_unet_data_free_target_is_5x_at_35db(tmp_path):
    """Data-free: the terrain UNet ≥ 5× smaller with ≥ 35 dB PSNR against the fp32 output: tcq with
    --target-cosine 0.9999 on generated inputs (those on which the model itself is NaN, a negative noise level,
    skipped), debug data stripped, scored on the real generation seeds 0–7. Measured 5.36× with the default
    policy's floor, which generated inputs cannot take any tensor below (6.82×, 35.7 dB worst, 44.9 dB mean
    without it)."""
    source = rm.terrain_unet()
    target = tmp_path / "terrain.tcq.onnx"
    result = hyperonnx.convert(source, target, codec_name="tcq", target_cosine=0.9999, strip_debug_info=True)
    assert result.ratio >= 5.3
    scores = fidelity.terrain(plain(source), hyperonnx.session(target))
    assert scores["psnr_min"] >= 35.0
