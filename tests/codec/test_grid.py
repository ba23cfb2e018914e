"""Weights already on a float16 block grid (dequantized from a llama.cpp checkpoint) are detected and stored
exactly: the `grid` codec round-trips every bit, and `convert` uses it unless told not to."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hyperonnx
from hyperonnx import codec
from hyperonnx.codec import grid


def gguf_like(rows: int, cols: int, seed: int = 0, symmetric: bool = False, transposed: bool = True) -> np.ndarray:
    """Q4_1-style (asymmetric, q 0..15) or Q8_0-style (symmetric, q −127..127) blocks of 32 along the rows of
    the stored matrix when ``transposed`` (as a MatMul weight exported from a Linear), else along memory."""
    rng = np.random.default_rng(seed)
    n = rows * cols
    blocks = n // 32
    if symmetric:
        d = (rng.uniform(0.001, 0.02, blocks)).astype(np.float16)
        m = np.zeros(blocks, np.float16)
        q = rng.integers(-127, 128, (blocks, 32))
        q[:, 0] = 127  # d = amax / 127: the largest magnitude is a full level, as in Q8_0
    else:
        d = rng.uniform(0.005, 0.05, blocks).astype(np.float16)
        m = (-8 * d.astype(np.float32) + rng.normal(0, 0.01, blocks)).astype(np.float16)
        q = np.clip(np.rint(rng.normal(7.5, 3, (blocks, 32))), 0, 15)
        q[:, 0], q[:, 1] = 0, 15  # m = min and d = (max − min) / 15, as in Q4_1
    values = (d.astype(np.float32)[:, None] * q.astype(np.float32)).astype(np.float32) + m.astype(np.float32)[:, None]
    if transposed:
        return np.ascontiguousarray(values.reshape(cols, rows).T)
    return values.reshape(rows, cols)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("transposed", [False, True])
def test_detected_grids_round_trip_bit_for_bit(symmetric, transposed):
    x = gguf_like(512, 128, symmetric=symmetric, transposed=transposed)
    enc = grid.detect(x)
    assert enc is not None and enc.ints["transpose"] == (int(transposed),)
    assert np.array_equal(codec.decode(enc).view(np.uint32), x.view(np.uint32))
    assert enc.bits_per_weight < (9.0 if symmetric else 5.0)


def test_other_tensors_are_not_grids():
    rng = np.random.default_rng(1)
    assert grid.detect(rng.standard_normal((64, 64)).astype(np.float32) * 0.02) is None
    assert grid.detect(gguf_like(64, 64).astype(np.float16)) is None  # only float32 weights
    off = gguf_like(64, 64)
    off[37, 5] = np.nextafter(off[37, 5], np.float32(1))  # one element a single ulp off the grid
    assert grid.detect(off) is None
    assert grid.detect(np.zeros(31, np.float32)) is None  # under one block


def test_grid_blob_corruption_is_an_error():
    enc = grid.detect(gguf_like(64, 32))
    for blob in (enc.blob[:-1], np.append(enc.blob, np.uint8(0))):
        with pytest.raises(ValueError, match="rANS|grid"):
            codec.decode(codec.Encoded(**{**enc.__dict__, "blob": blob}))
    with pytest.raises(ValueError, match="transpose"):
        codec.decode(codec.Encoded(**{**enc.__dict__, "ints": {"block": (32,), "transpose": (2,)}}))


def _matmul_model(weight: np.ndarray, path) -> None:
    rows, cols = weight.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", rows])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", cols])],
        [numpy_helper.from_array(weight, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_convert_stores_grid_weights_exactly(tmp_path):
    weight = gguf_like(256, 96)
    src = tmp_path / "m.onnx"
    _matmul_model(weight, src)
    result = hyperonnx.convert(src, tmp_path / "g.onnx", codec_name="ecsq")
    (tensor,) = result.report.tensors
    assert tensor.codec == "grid" and tensor.sqnr_db == float("inf")
    hyperonnx.decompress(tmp_path / "g.onnx", tmp_path / "plain.onnx")
    back = numpy_helper.to_array(onnx.load(str(tmp_path / "plain.onnx")).graph.initializer[0])
    assert np.array_equal(back.view(np.uint32), weight.view(np.uint32))

    lossy = hyperonnx.convert(src, tmp_path / "l.onnx", codec_name="ecsq", exact_grids=False)
    assert lossy.report.tensors[0].codec == "ecsq"
    portable = hyperonnx.convert(src, tmp_path / "p.onnx", runtime="portable")
    assert portable.report.tensors[0].codec == codec.DEFAULT_CODEC  # no standard-op form of rANS: the lossy codec


@pytest.mark.slow  # budget conversions with every rung encoded
def test_budgets_prefer_the_exact_grid_when_it_fits(tmp_path):
    weight = gguf_like(256, 96)
    src = tmp_path / "m.onnx"
    _matmul_model(weight, src)
    roomy = hyperonnx.convert(src, tmp_path / "a.onnx", codec_name="ecsq", target_bpw=6.0)
    assert roomy.report.tensors[0].codec == "grid"
    tight = hyperonnx.convert(src, tmp_path / "b.onnx", codec_name="ecsq", target_bpw=3.5)
    assert tight.report.tensors[0].codec == "ecsq" and tight.report.tensors[0].bits_per_weight <= 3.5


@pytest.mark.slow  # conversions as processes
def test_command_line_exact_grids_and_their_opt_out(tmp_path):
    """`hyperonnx convert` stores a GGUF-style weight exactly by default and re-quantizes it with
    --no-exact-grids (the JSON report names each tensor's codec)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = tmp_path / "m.onnx"
    _matmul_model(gguf_like(256, 96), src)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    env.pop("HYPERONNX_DEBUG", None)
    codecs = {}
    for flag in ("--exact-grids", "--no-exact-grids"):
        out = tmp_path / f"{flag}.onnx"
        run = subprocess.run([sys.executable, "-m", "hyperonnx", "convert", str(src), "-o", str(out), "--codec",
                              "ecsq", flag, "--json"], capture_output=True, text=True, env=env, timeout=120)
        assert run.returncode == 0, run.stderr
        codecs[flag] = [t["codec"] for t in json.loads(run.stdout)["tensors"]]
    assert codecs == {"--exact-grids": ["grid"], "--no-exact-grids": ["ecsq"]}
