"""Real models from PyPI packages, converted with the default codec and run the way users run them.

Thresholds sit a little below what the default codec (blockvq, 5 bits) measured (benchmarks/models.py): they
catch a broken pass, codec or kernel, not noise. The figures themselves are in the README.
"""

from __future__ import annotations

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
    source, target, result = converted("mobilenet")
    assert result.ratio > 4.2
    scores = fidelity.mobilenet(plain(source), hyperonnx.session(target))
    assert scores["top1_agreement_confident"] >= 0.95
    assert scores["top1_agreement"] >= 0.8


def test_minilm(converted):
    source, target, result = converted("minilm")
    assert result.ratio > 4.6
    scores = fidelity.minilm(plain(source), hyperonnx.session(target))
    assert scores["cosine_mean"] > 0.98 and scores["nn_agreement"] > 0.85


def test_terrain_unet(converted):
    source, target, result = converted("terrain")
    assert result.ratio > 3.9  # 3.2 MB of exporter stack traces stay in the file (see --strip-debug-info)
    scores = fidelity.terrain(plain(source), hyperonnx.session(target), seeds=4)
    # Seed 0 (difficulty 1) is ill-conditioned: one 32×32×3×3 conv alone takes its PSNR to ~28 dB at 5 bits.
    assert scores["psnr_mean"] > 32 and scores["psnr_min"] > 20


def test_ppocr_constant_node_weights(converted):
    source, target, result = converted("ppocr-rec")
    assert not onnx.load(str(source)).graph.initializer  # every weight lives in a Constant node
    assert len(result.report.tensors) > 20 and result.ratio > 4.3
    scores = fidelity.ppocr("rec", plain(source), hyperonnx.session(target), source)
    assert scores["text_identical"]
    source, target, result = converted("ppocr-det")
    assert fidelity.ppocr("det", plain(source), hyperonnx.session(target), source)["mask_iou"] > 0.9


def test_silero_vad_subgraph_weights(converted):
    source, target, result = converted("silero")
    assert {t.graph for t in result.report.tensors} != {"main"}  # the weights live inside If branches
    assert fidelity.silero(plain(source), hyperonnx.session(target))["decision_agreement"] >= 0.95


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
    """Issue 6 acceptance: all-MiniLM-L6-v2 ≥ 6× smaller (whole file) with mean embedding cosine ≥ 0.99, data-free
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


def test_mobilenet_v2_tuned_entropy_coded_is_6x_smaller(tmp_path):
    """Issue 6 acceptance, data-free: MobileNetV2 ≥ 6× smaller with ≥ 98 % top-1 agreement on confident photo
    crops: tcq with --target-cosine 0.99 and no --inputs (sensitivity and the budget search run on generated
    inputs), scored on the 96 real evaluation crops; measured 6.28×, 100 % confident / 92.7 % all, KL 0.050 (ecsq:
    6.17×, 87.5 % all). The target refers to confident crops (a target must say which): on all crops no weight codec
    reaches 98 % at 6× on this set (benchmarks/noise_floor.py: white noise at the SQNR an ideal coder reaches at
    6.1× flips 14 crops in the median draw)."""
    source = rm.mobilenet_v2()
    target = tmp_path / "mnv2.tcq.onnx"
    result = hyperonnx.convert(source, target, codec_name="tcq", target_cosine=0.99)
    assert result.ratio >= 6.0
    scores = fidelity.mobilenet(plain(source), hyperonnx.session(target))
    assert scores["top1_agreement_confident"] >= 0.98 and scores["kl_mean"] < 0.1


def test_terrain_unet_data_free_target_is_6x_at_35db(tmp_path):
    """Issue 6 acceptance, data-free: the terrain UNet ≥ 6× smaller with ≥ 35 dB PSNR against the fp32 output:
    tcq with --target-cosine 0.9999 on generated inputs (those on which the model itself is NaN, a negative noise
    level, skipped), debug data stripped, scored on the real generation seeds 0–7; measured 6.82×, 35.7 dB worst,
    44.9 dB mean."""
    source = rm.terrain_unet()
    target = tmp_path / "terrain.tcq.onnx"
    result = hyperonnx.convert(source, target, codec_name="tcq", target_cosine=0.9999, strip_debug_info=True)
    assert result.ratio >= 6.0
    scores = fidelity.terrain(plain(source), hyperonnx.session(target))
    assert scores["psnr_min"] >= 35.0
