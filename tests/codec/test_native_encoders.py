"""The native encoders (hyperonnx/codec/native.py, custom_ops/src/encoders/) against their specification, numpy:
byte-identical blobs and side information on every dtype, odd sizes, ties, extremes, all-zero blocks, subnormals and
real models' tensors; thread counts that do not change a byte; the numpy fallback and what `doctor` says."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from native_identity import assert_native_matches_numpy, corner_tensors, encoded_or_error, needs_library

import hyperonnx.codec as codec
from hyperonnx.codec import base, native


def assert_corner_tensors_match(name: str, dtype: str, rng: np.random.Generator, labels: tuple[str, ...],
                                settings: list[dict], monkeypatch) -> None:
    """Every corner tensor cast to ``dtype`` at the codec's defaults, and the ones named in ``labels`` at each of
    ``settings`` too."""
    for label, x in corner_tensors(rng):
        with np.errstate(all="ignore"):
            x = np.asarray(x).astype(base.dtype_from_name(dtype))
        assert_native_matches_numpy(name, x, {}, monkeypatch)
        if label in labels:
            for options in settings:
                assert_native_matches_numpy(name, x, options, monkeypatch)


@needs_library
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
def test_blocktcq_bytes_match_numpy_on_corner_tensors(dtype, monkeypatch):
    assert_corner_tensors_match("blocktcq", dtype, np.random.default_rng(21),
                                ("gaussian", "ties", "zero blocks", "heavy tails"), [{"bits": 3, "block": 48}],
                                monkeypatch)


@pytest.mark.parametrize("magnitude", [1e-44, 3e-45, 1e-40])
def test_blocktcq_encodes_tensors_at_the_subnormal_floor(magnitude, monkeypatch):
    """A tensor a few units above float32's smallest subnormal: most block scales underflow to zero and the
    ranking's cell width overflows; both encoders must still code it, identically, and decode close to it."""
    x = (np.random.default_rng(3).standard_normal((40, 64)) * magnitude).astype(np.float32)
    x[::3] = 0.0
    ref = encoded_or_error("blocktcq", x, {}, False, monkeypatch)
    assert not isinstance(ref, str), ref
    err = np.abs(codec.get_codec("blocktcq").decode(ref) - x).max()
    assert err <= 0.1 * np.abs(x).max(), err
    if native.library_path() is not None:
        assert_native_matches_numpy("blocktcq", x, {}, monkeypatch)


@needs_library
@pytest.mark.parametrize("direct", [False, True], ids=["merged-search", "direct-search"])
def test_blocktcq_bytes_match_numpy_at_every_rate_and_block(direct, monkeypatch):
    """Every rate, blocks of odd and tiny sizes (whose Lloyd sets repeat ±1: the lookup grid is not exact there),
    through both of the library's nearest-level searches (HYPERONNX_ENCODERS_DIRECT forces the per-coset one)."""
    if direct:
        monkeypatch.setenv("HYPERONNX_ENCODERS_DIRECT", "1")
    rng = np.random.default_rng(5)
    for bits in range(1, 9):
        for block in (2, 3, 32) if bits % 2 else (5, 32, 67):
            x = (rng.standard_normal(3 * block + block // 2 + 1) * rng.uniform(0.01, 10)).astype(np.float32)
            assert_native_matches_numpy("blocktcq", x, {"bits": bits, "block": block}, monkeypatch)
    assert_native_matches_numpy("blocktcq", rng.standard_normal(2 * 512 + 5).astype(np.float32), {"block": 512},
                      monkeypatch)


@needs_library
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
def test_blockvq_bytes_match_numpy_on_corner_tensors(dtype, monkeypatch):
    assert_corner_tensors_match("blockvq", dtype, np.random.default_rng(22),
                                ("gaussian", "ties", "zero blocks", "heavy tails", "mixed subnormal"),
                                [{"bits": 3, "block": 6}], monkeypatch)


@needs_library
def test_blockvq_bytes_match_numpy_at_every_rate_and_block(monkeypatch):
    """Every rate, odd numbers of weights (a last pair half padding), tiny blocks (whose Lloyd sets repeat ±1 at 6
    bits and more: the library's binary search), blocks of 1, 2 and 3 vectors, and the largest block."""
    rng = np.random.default_rng(6)
    for bits in range(1, 9):
        for block in (2, 4, 16, 40) if bits % 2 else (6, 8, 32, 50):
            x = (rng.standard_normal(21 * block + block // 2 + 1) * rng.uniform(0.01, 10)).astype(np.float32)
            assert_native_matches_numpy("blockvq", x, {"bits": bits, "block": block}, monkeypatch)
    assert_native_matches_numpy("blockvq", rng.standard_normal(3 * 4096 - 7).astype(np.float32), {"block": 4096}, monkeypatch)


@needs_library
@pytest.mark.parametrize("name", ["ecsq", "tcq"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
def test_entropy_coded_bytes_match_numpy_on_corner_tensors(name, dtype, monkeypatch):
    """ecsq and tcq: rANS streams (both) and the trellis search (tcq), with and without the rank-1 term."""
    rng = np.random.default_rng(8)
    assert_corner_tensors_match(name, dtype, rng, ("gaussian", "ties", "heavy tails", "zero blocks"),
                                [{"step": 0.05, "block": 7, "rank1": 0}, {"step": 2.0, "block": 1}], monkeypatch)
    low_rank = np.outer(rng.standard_normal(40), rng.standard_normal(50)) + 0.01 * rng.standard_normal((40, 50))
    assert_native_matches_numpy(name, low_rank.astype(dtype if dtype != "bfloat16" else "float32"), {}, monkeypatch)



@needs_library
def test_rans_streams_match_numpy_at_extreme_frequencies():
    """The coder divides by a symbol's frequency with a reciprocal (rans.cc): exact at every frequency from 1 to
    4095 and states up to 2^32 − 1. Models with the rarest and the commonest symbols, coded often enough to drive
    the states through their whole range, in one lane and in many (one stream per phase order)."""
    from hyperonnx.codec import rans

    rng = np.random.default_rng(21)
    tables = [np.array([1, 4095]), np.array([4095, 1]), np.r_[np.ones(255, int), 3841],
              np.r_[2048, 2047, 1], np.bincount(rng.integers(0, 256, 4096), minlength=256)]
    for size in (1, 37, 50_000, 300_000):
        phases = []
        for freq in tables:
            model = rans.Model(3 if freq.size < 250 else 0, freq)
            used = np.flatnonzero(freq)
            # rare symbols as often as common ones: the states grow by log2(4096 / f) bits a symbol
            symbols = (rng.choice(used, size) + model.lo).astype(np.uint8)
            phases.append((symbols, model))
        for order in (phases, phases[::-1]):
            got = native.rans_encode(order)
            assert got is not None and got == rans.encode(order), size
            freq, cum = rans.symbol_frequencies(order)
            assert native.rans_encode_pairs(freq, cum) == got



@needs_library
def test_block_scales_are_numpy_s_with_the_library_s_block_maxima(monkeypatch):
    """ecsq.block_scales takes each block's max |x| from the library: the same scale codes as numpy's on infinite,
    negative-zero, subnormal and zero blocks and a short last block; a block with a NaN keeps numpy's NaN max."""
    from hyperonnx.codec import ecsq

    rng = np.random.default_rng(4)
    x = rng.standard_normal(64 * 40 + 9).astype(np.float32)
    x[:64] = 0.0
    x[64:128] = -0.0
    x[128:192] *= np.float32(1e-42)
    x[200] = np.inf
    x[300] = -np.inf
    with_nan = x.copy()
    with_nan[500] = np.nan
    steps = ecsq.scale_table(0.05)
    for values in (x, with_nan):
        got = ecsq.block_scales(values, 64, 0.05, 0.05, steps, ecsq.ZERO)
        monkeypatch.setenv(native.ENV, "0")
        want = ecsq.block_scales(values, 64, 0.05, 0.05, steps, ecsq.ZERO)
        monkeypatch.setenv(native.ENV, "1")
        assert np.array_equal(got[1], want[1]) and np.array_equal(got[0], want[0], equal_nan=True)
    blocks = x[: 64 * 40].reshape(40, 64)
    assert np.array_equal(native.block_absmax(blocks), np.abs(blocks).max(axis=1))


@needs_library
def test_symbol_counts_are_numpy_s_bincount(monkeypatch):
    """rANS models count their symbols in the library: np.bincount's counts and length (the largest symbol + 1),
    over long runs of one symbol, both ends of the byte range and lengths off a multiple of four; numpy without
    the library."""
    from hyperonnx.codec import rans

    rng = np.random.default_rng(5)
    cases = [np.zeros(5, np.uint8), np.array([255], np.uint8), np.full(4099, 7, np.uint8),
             rng.integers(0, 255, 3 * (1 << 20) + 3).astype(np.uint8)]
    for x in cases:
        got = rans._counts(x)
        monkeypatch.setenv(native.ENV, "0")
        want = rans._counts(x)
        monkeypatch.setenv(native.ENV, "1")
        assert native.symbol_counts(x) is not None
        assert got.dtype == want.dtype and np.array_equal(got, want) and np.array_equal(want, np.bincount(x))


@needs_library
def test_tcq_chunks_choose_their_distance_form_as_numpy_does(monkeypatch):
    """numpy's tcq search computes coset distances one of two ways per chunk of 2^18 weights (the clipped form
    where some |y| > 250): an outlier in the second chunk only, and a third chunk without one."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal(4096 * 130).astype(np.float32)
    x[4096 * 70 + 5] = 700.0  # |y| up to 252.7 in the second chunk, < 40 elsewhere
    assert_native_matches_numpy("tcq", x, {"block": 4096, "rank1": 0}, monkeypatch)


@needs_library
@pytest.mark.parametrize("width", ["128", "256", "512"])
def test_every_vector_width_gives_the_same_bytes(width, monkeypatch):
    """The library runs its searches at the widest vectors the CPU has (128-bit SSE2/NEON, AVX2, AVX-512);
    HYPERONNX_ENCODERS_ISA caps the width, so each one this CPU has is checked against numpy here."""
    monkeypatch.setenv("HYPERONNX_ENCODERS_ISA", width)
    rng = np.random.default_rng(int(width))
    for bits, block in ((5, 32), (2, 3), (8, 67)):
        assert_native_matches_numpy("blocktcq", rng.standard_normal(20 * block + 3).astype(np.float32),
                          {"bits": bits, "block": block}, monkeypatch)
    assert_native_matches_numpy("tcq", rng.standard_t(3, (50, 77)).astype(np.float32), {"block": 13}, monkeypatch)
    for bits, block in ((5, 32), (2, 2), (8, 4), (6, 66)):  # blockvq: register and memory tables, bisection
        assert_native_matches_numpy("blockvq", rng.standard_t(4, 37 * block + 1).astype(np.float32),
                          {"bits": bits, "block": block}, monkeypatch)


@needs_library
@pytest.mark.parametrize("name", ["blocktcq", "blockvq"])
def test_thread_counts_do_not_change_a_byte(name, monkeypatch):
    x = np.random.default_rng(3).standard_normal((300, 129)).astype(np.float32)
    monkeypatch.setenv(native.ENV, "1")
    blobs = []
    try:
        for threads in (1, 2, 3, 8):
            native.set_threads(threads)
            blobs.append(codec.get_codec(name).encode(x, {"bits": 4, "block": 32}).blob.tobytes())
    finally:
        native.set_threads(None)
    assert all(b == blobs[0] for b in blobs)
    assert_native_matches_numpy(name, x, {"bits": 4, "block": 32}, monkeypatch)


@needs_library
@pytest.mark.parametrize("name", ["blocktcq", "blockvq"])
def test_chunked_calls_cover_large_tensors(name, monkeypatch):
    """A tensor of several library calls (CHUNK_WEIGHTS each), with a partial last block: the same bytes."""
    monkeypatch.setattr(native, "CHUNK_WEIGHTS", 1 << 12)
    x = np.random.default_rng(9).standard_normal(5 * (1 << 12) + 77).astype(np.float16)
    assert_native_matches_numpy(name, x, {"block": 24}, monkeypatch)


def _external_model(folder, rng) -> str:
    """A small MatMul chain whose weights (odd shapes, one fp16) live in external data."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shapes = [(64, 96), (96, 130), (130, 64)]
    inits, nodes, prev = [], [], "x"
    for i, shape in enumerate(shapes):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * 0.05).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"]))
        prev = f"h{i}"
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["N", 64])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = str(folder / "chain.onnx")
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="chain.onnx.data",
              size_threshold=0)
    return path


@needs_library
@pytest.mark.parametrize("settings, most", [({"codec_name": "blocktcq"}, 0.25), ({}, 0.3),
                                             ({"codec_name": "tcq", "target_bpw": 4.5}, 0.25),
                                             ({"codec_name": "blockvq", "target_bpw": 4.5}, 0.25)],
                         ids=["blocktcq", "default-policy", "tcq-budget", "blockvq-budget"])
def test_conversions_are_the_same_files_with_and_without_the_library(settings, most, tmp_path, monkeypatch):
    """A model with external data converted with --jobs 2, natively and with numpy alone: the same files."""
    import hyperonnx

    src = _external_model(tmp_path, np.random.default_rng(2))
    outputs = []
    for flag in ("1", "0"):
        monkeypatch.setenv(native.ENV, flag)
        out = tmp_path / f"out{flag}"
        out.mkdir()
        hyperonnx.convert(src, out / "chain.hx.onnx", jobs=2, min_elements=16, **settings)
        outputs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert outputs[0] == outputs[1]
    weights = 4 * (64 * 96 + 96 * 130 + 130 * 64)
    # really compressed: ~5 bits a weight; the default policy's targets on these small tensors, ~6-7
    assert sum(len(b) for b in outputs[0].values()) < most * weights


def test_fallback_encodes_with_numpy_alone(monkeypatch):
    """HYPERONNX_NATIVE=0, or no library at all: every codec still encodes (numpy), and doctor says which."""
    x = np.random.default_rng(1).standard_normal((16, 40)).astype(np.float32)
    monkeypatch.setenv(native.ENV, "0")
    assert native.library() is None and native.describe().startswith("numpy")
    called = []
    with monkeypatch.context() as m:
        m.setattr(native, "_load", lambda: called.append(1) or (None, "no"))
        enc = codec.get_codec("blocktcq").encode(x, {"bits": 5, "block": 32})
    assert not called  # the library is not even looked up
    assert np.linalg.norm(codec.get_codec("blocktcq").decode(enc) - x) < 0.05 * np.linalg.norm(x)  # ~26 dB at 5 bits

    monkeypatch.setenv(native.ENV, "1")
    monkeypatch.setenv(native.LIBRARY_ENV, "/nonexistent/libhyperonnx_encoders.so")
    native._load.cache_clear()
    try:
        assert native.library() is None
        assert native.describe() == f"numpy ({native.LIBRARY_NAME} not found)"
        assert codec.get_codec("blocktcq").encode(x, {"bits": 5, "block": 32}).blob.tobytes() == enc.blob.tobytes()
    finally:
        monkeypatch.delenv(native.LIBRARY_ENV)
        native._load.cache_clear()


def test_doctor_names_the_encoders(monkeypatch):
    from hyperonnx.cli import cli

    monkeypatch.setenv(native.ENV, "0")
    out = CliRunner().invoke(cli, ["doctor", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["encoders"] == f"numpy ({native.ENV}=0)"
    monkeypatch.setenv(native.ENV, "1")
    out = CliRunner().invoke(cli, ["doctor"])
    line = next(line for line in out.output.splitlines() if line.startswith("encoders"))
    assert line.split(None, 1)[1] == native.describe()
    if native.library_path() is not None:
        assert native.describe().startswith("native (")


@needs_library
@pytest.mark.slow
def test_real_model_tensors_match_numpy(monkeypatch):
    """Every float initializer of MobileNetV2 and MiniLM (tests/realmodels.py), at each native codec's defaults."""
    import onnx
    import realmodels
    from onnx import numpy_helper

    for path in (realmodels.mobilenet_v2(), realmodels.minilm()):
        model = onnx.load(str(path))
        for init in model.graph.initializer:
            x = numpy_helper.to_array(init)
            if x.dtype.kind == "f" and x.size >= 16:
                for name in ("blocktcq", "tcq", "ecsq", "blockvq"):
                    assert_native_matches_numpy(name, x, {}, monkeypatch)


@needs_library
def test_codec_benchmark_reports_native_beside_numpy():
    """benchmarks/codec.py --json on a tiny array (its structure; speed is the benchmark's business): each codec's
    rate with the encoders in use and numpy's from the same run, and whether their blobs are identical."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("codec_benchmark",
                                                  Path(__file__).parents[2] / "benchmarks" / "codec.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.speed_report(1 << 12, 1)
    assert report["encoders"] == native.describe() and report["encoders"].startswith("native (")
    assert set(report["codecs"]) == {"blocktcq", "tcq", "blockvq", "ecsq", "paper"}
    for name, row in report["codecs"].items():
        assert row["identical"], name
        assert row["encode_mws_per_core"] > 0 and row["encode_numpy_mws_per_core"] > 0, name
