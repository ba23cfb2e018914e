"""The real models of benchmarks/realmodels.py load in onnxruntime, run on their real inputs and do their task in fp32.

These checks guard the fixtures that the compression tests and benchmarks build on: if an export or an input
builder silently broke (wrong preprocessing, wrong weights, wrong names), the task checks here would fail.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

try:  # tests/ may or may not be a package, depending on what else lives there
    from . import realmodels as rm
except ImportError:
    import realmodels as rm

# The real models' exports (torch, transformers) and task checks take minutes on a fresh checkout.
pytestmark = pytest.mark.slow


def _session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2  # the CI machine has 2 cores
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _op_counts(path: Path) -> collections.Counter[str]:
    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


# ---------------------------------------------------------------------------------------------- cache plumbing


def test_cache_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPERONNX_MODEL_CACHE", str(tmp_path))
    first = rm.ppocr("cls")
    assert first.parent == tmp_path and first.exists()
    info = rm.model_info(first)
    assert info["recipe"] == rm.RECIPES["ppocr_cls"] and info["bytes"] == first.stat().st_size
    mtime = first.stat().st_mtime_ns
    assert rm.ppocr("cls") == first and first.stat().st_mtime_ns == mtime
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]  # no export leftovers


def test_ensure_packages_is_a_noop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    rm.ensure_packages()  # installs whatever is missing (CI starts from a fresh venv)

    def no_pip(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"pip should not run again: {args}")

    monkeypatch.setattr(rm.subprocess, "run", no_pip)
    rm.ensure_packages()
    rm.ensure_packages("silero-vad==6.2.3")


# ---------------------------------------------------------------------------------------------- terrain UNet


def test_terrain_unet() -> None:
    path = rm.terrain_unet()
    assert 10_400_000 < rm.model_info(path)["params"] < 10_500_000
    sess = _session(path)
    feeds = rm.terrain_inputs()
    assert len(feeds) == 8 and feeds[0]["noisy"].shape == (1, 1, 128, 128)
    assert [float(f["difficulty"][0]) for f in (feeds[0], feeds[-1])] == [1.0, 100.0]
    outs = [sess.run(None, f)[0] for f in feeds]
    for o in outs:
        assert o.shape == (1, 1, 128, 128) and np.isfinite(o).all()
        assert o.std() > 1e-3  # a real heightmap, not a constant
    assert not np.allclose(outs[0], outs[1])  # seeds give different terrains
    # the same eight inputs as one batch give the same heightmaps (dynamic batch works)
    batch = {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}
    np.testing.assert_allclose(sess.run(None, batch)[0], np.concatenate(outs), atol=1e-3)


# ---------------------------------------------------------------------------------------------- MobileNetV2


@pytest.fixture(scope="module")
def mobilenet() -> ort.InferenceSession:
    return _session(rm.mobilenet_v2())


def test_mobilenet_v2_graph() -> None:
    path = rm.mobilenet_v2()
    ops = _op_counts(path)
    assert ops["Conv"] == 52 and ops["Gemm"] == 1 and ops["BatchNormalization"] == 0  # BN folded
    model = onnx.load(str(path))
    names = {i.name for i in model.graph.initializer}
    assert {"features.0.0.weight", "features.7.conv.2.weight", "classifier.1.weight"} <= names
    big = [i.name for i in model.graph.initializer if np.prod(i.dims) >= 1024]
    assert all(n.startswith(("features.", "classifier.")) for n in big), big
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["logits"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    info = rm.model_info(path)
    assert 3_480_000 < info["params"] < 3_510_000 and info["max_abs_diff_vs_torch"] < 1e-4


def test_mobilenet_v2_classifies_photos(mobilenet: ort.InferenceSession) -> None:
    cat = _softmax(mobilenet.run(None, {"input": rm.imagenet_photo("chelsea")})[0])[0]
    coffee = _softmax(mobilenet.run(None, {"input": rm.imagenet_photo("coffee")})[0])[0]
    assert cat.argmax() == rm.IMAGENET_EGYPTIAN_CAT and cat.max() > 0.5
    assert coffee.argmax() == rm.IMAGENET_ESPRESSO and coffee.max() > 0.9


def test_mobilenet_v2_on_random_crops(mobilenet: ort.InferenceSession) -> None:
    x = rm.imagenet_inputs()
    assert x.shape == (96, 3, 224, 224) and x.dtype == np.float32
    np.testing.assert_array_equal(x, rm.imagenet_inputs())  # deterministic
    logits = mobilenet.run(None, {"input": x})[0]
    assert logits.shape == (96, 1000) and np.isfinite(logits).all()
    top1 = logits.argmax(axis=1)
    # the twelve crops of the cat photo are mostly cats (ImageNet cat classes 281-285)
    assert np.isin(top1[:12], np.arange(281, 286)).mean() >= 0.5
    assert len(set(top1.tolist())) >= 8  # eight different photos do not collapse onto one class


# ---------------------------------------------------------------------------------------------- MiniLM


@pytest.fixture(scope="module")
def minilm() -> ort.InferenceSession:
    return _session(rm.minilm())


def _embed(sess: ort.InferenceSession, sentences: list[str]) -> np.ndarray:
    feeds = rm.minilm_encode(sentences)
    return rm.mean_pool(sess.run(None, feeds)[0], feeds["attention_mask"])


def test_minilm_graph() -> None:
    path = rm.minilm()
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == list(rm.MINILM_INPUTS)
    assert [o.name for o in model.graph.output] == ["last_hidden_state"]
    for i in model.graph.input:
        dims = i.type.tensor_type.shape.dim
        assert i.type.tensor_type.elem_type == onnx.TensorProto.INT64 and dims[0].dim_param and dims[1].dim_param
    weights = {i.name: tuple(i.dims) for i in model.graph.initializer if np.prod(i.dims) >= 1024}
    assert weights["encoder.layer.0.attention.self.query.weight"] == (384, 384)
    assert weights["encoder.layer.5.intermediate.dense.weight"] == (384, 1536)  # stored [in, out] for MatMul
    assert weights["embeddings.word_embeddings.weight"] == (30522, 384)
    assert not [n for n in weights if n.startswith("val_")], "exporter-named weights left"
    info = rm.model_info(path)
    assert 22_500_000 < info["params"] < 22_800_000 and info["max_abs_diff_vs_torch"] < 1e-4


def test_minilm_similarity(minilm: ort.InferenceSession) -> None:
    e = _embed(
        minilm,
        ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply today."],
    )
    assert float(e[0] @ e[1]) > 0.5
    assert float(e[0] @ e[2]) < 0.3 and float(e[1] @ e[2]) < 0.3


def test_minilm_inputs(minilm: ort.InferenceSession) -> None:
    sentences = rm.pydoc_sentences()
    assert len(sentences) == 256 and all(40 <= len(s) <= 200 for s in sentences)
    feeds = rm.minilm_inputs()
    assert set(feeds) == set(rm.MINILM_INPUTS)
    n, seq = feeds["input_ids"].shape
    assert n == 256 and seq <= 128 and all(v.dtype == np.int64 for v in feeds.values())
    batches = rm.minilm_inputs(n=64, batch=32)
    assert isinstance(batches, list) and [b["input_ids"].shape[0] for b in batches] == [32, 32]
    hidden = minilm.run(None, feeds)[0]
    assert hidden.shape == (256, seq, 384) and np.isfinite(hidden).all()
    emb = rm.mean_pool(hidden, feeds["attention_mask"])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # padding must not change an embedding: the batched run equals the sentence run alone
    alone = _embed(minilm, sentences[:1])[0]
    assert float(alone @ emb[0]) > 0.9999


# ---------------------------------------------------------------------------------------------- PP-OCR


@pytest.mark.parametrize("which", ["det", "rec", "cls"])
def test_ppocr_weights_are_constants(which: str) -> None:
    model = onnx.load(str(rm.ppocr(which)))
    assert len(model.graph.initializer) == 0  # the edge case this model is here for
    assert sum(n.op_type == "Constant" for n in model.graph.node) > 300
    assert rm.model_info(rm.ppocr(which))["params"] > 100_000


def test_ppocr_det_finds_text() -> None:
    x = rm.ppocr_inputs("det")["x"]
    assert x.shape == (1, 3, 384, 768) and x.min() >= -1.0 and x.max() <= 1.0
    prob = _session(rm.ppocr("det")).run(None, {"x": x})[0]
    assert prob.shape == (1, 1, 384, 768) and np.isfinite(prob).all()
    p = prob[0, 0]
    assert p.max() > 0.9 and 0.02 < (p > 0.3).mean() < 0.5  # text regions, not everything
    assert p[:20].mean() < 0.02  # the blank top margin (page rows 0-9)
    # text lines show up as separate horizontal bands: count row runs where the text map is active
    rows = (p > 0.3).mean(axis=1) > 0.05
    bands = int(np.sum(rows[1:] & ~rows[:-1]) + rows[0])
    assert bands >= 5, bands  # title + four body lines + code line on page.png


def test_ppocr_rec_reads_words() -> None:
    path = rm.ppocr("rec")
    sess = _session(path)
    for word in rm.PAGE_WORD_BOXES:
        x = rm.ppocr_inputs("rec", word=word)["x"]
        assert x.shape == (1, 3, 48, 320)
        probs = sess.run(None, {"x": x})[0]
        assert probs.shape == (1, 40, 6625) and np.isfinite(probs).all()
        assert rm.ppocr_ctc_decode(probs, path) == [word]


def test_ppocr_cls_orientation() -> None:
    sess = _session(rm.ppocr("cls"))
    x = rm.ppocr_inputs("cls")["x"]
    assert x.shape == (1, 3, 48, 192)
    upright = sess.run(None, {"x": x})[0]
    flipped = sess.run(None, {"x": np.ascontiguousarray(x[..., ::-1, ::-1])})[0]
    assert upright.shape == (1, 2) and upright[0].argmax() == 0 and upright[0, 0] > 0.9
    assert flipped[0].argmax() == 1  # rotated 180 degrees


# ---------------------------------------------------------------------------------------------- Silero VAD


def test_silero_vad_detects_speech() -> None:
    path = rm.silero_vad()
    model = onnx.load(str(path))
    assert len(model.graph.initializer) == 0 and any(n.op_type == "If" for n in model.graph.node)
    assert rm.model_info(path)["params"] > 300_000  # all inside the If branches
    audio = rm.silero_waveform()
    feeds = rm.silero_inputs(audio)
    assert feeds[0]["input"].shape == (1, 576) and feeds[0]["state"].shape == (2, 1, 128)
    assert feeds[0]["sr"].dtype == np.int64 and feeds[0]["sr"].shape == ()
    probs = rm.silero_run(_session(path), feeds)
    assert probs.shape == (len(feeds),) and np.isfinite(probs).all()
    mask = rm.silero_speech_mask(audio, len(feeds))
    speech, silence = probs[mask == 1].mean(), probs[mask == 0].mean()
    assert speech > 0.5 and silence < 0.1 and speech - silence > 0.5, (audio.source, speech, silence)


def test_silero_synthetic_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rm.shutil, "which", lambda name: None)  # as on a machine without espeak-ng
    audio = rm.silero_waveform()
    assert audio.source == "synthetic"
    probs = rm.silero_run(_session(rm.silero_vad()), rm.silero_inputs(audio))
    mask = rm.silero_speech_mask(audio, len(probs))
    assert probs[mask == 1].mean() > probs[mask == 0].mean() + 0.3


# ---------------------------------------------------------------------------------------------- SmolLM2 (optional)


@pytest.mark.skipif(
    os.environ.get("HYPERONNX_TEST_SMOLLM2") != "1",
    reason="optional: 538 MB export (~1.5 min, needs gguf + accelerate); set HYPERONNX_TEST_SMOLLM2=1",
)
def test_smollm2_predicts_text() -> None:
    path = rm.smollm2()
    info = rm.model_info(path)
    assert 134_000_000 < info["params"] < 135_000_000 and info["max_abs_diff_vs_torch"] < 1e-3
    model = onnx.load(str(path), load_external_data=False)
    big = [i.name for i in model.graph.initializer if np.prod(i.dims) >= 1024]
    assert "model.layers.0.self_attn.q_proj.weight" in big and not [n for n in big if n.startswith("val_")]
    tok = rm.smollm2_tokenizer()
    sess = _session(path)
    ids = np.array([tok("The capital of France is")["input_ids"]], dtype=np.int64)
    logits = sess.run(None, {"input_ids": ids})[0]
    assert logits.shape == (1, ids.shape[1], 49152) and np.isfinite(logits).all()
    assert tok.decode([int(logits[0, -1].argmax())]).strip() == "Paris"
    # perplexity on real prose: ~17 in fp32; a broken export or tokenizer gives hundreds
    text = " ".join(rm.pydoc_sentences(40))
    ids = np.array([tok(text)["input_ids"][:256]], dtype=np.int64)
    logits = sess.run(None, {"input_ids": ids})[0][0].astype(np.float64)
    logp = logits - logits.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    ppl = float(np.exp(-logp[np.arange(ids.shape[1] - 1), ids[0, 1:]].mean()))
    assert ppl < 40, ppl
