"""Small synthetic ONNX models (random weights) that exercise every place a weight can live."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=OPSET, producer_name="toy", doc_string="toy model")
    model.ir_version = 8
    helper.set_model_props(model, {"author": "tests", "license": "none"})
    return model


def conv_mlp(seed: int = 0, dtype=np.float32) -> onnx.ModelProto:
    """Conv → Reshape → MatMul → Gemm, with a bias, a shape tensor and a small norm-like vector kept raw."""
    rng = np.random.default_rng(seed)
    onnx_type = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    weights = {
        "conv.weight": rng.standard_normal((16, 8, 3, 3)) * 0.1,
        "conv.bias": rng.standard_normal(16) * 0.01,
        "fc1.weight": rng.standard_normal((576, 65)) * 0.05,  # odd element count: exercises the pad
        "fc2.weight": rng.standard_normal((10, 65)) * 0.1,
        "fc2.bias": rng.standard_normal(10) * 0.01,
        "scale": rng.standard_normal(65),
    }
    inits = [numpy_helper.from_array(v.astype(dtype), k) for k, v in weights.items()]
    inits.append(numpy_helper.from_array(np.array([-1, 576], np.int64), "flat_shape"))
    nodes = [
        helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="conv"),
        helper.make_node("Reshape", ["c", "flat_shape"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "fc1.weight"], ["h"], name="fc1"),
        helper.make_node("Mul", ["h", "scale"], ["hs"], name="scale"),
        helper.make_node("Gemm", ["hs", "fc2.weight", "fc2.bias"], ["y"], transB=1, name="fc2", doc_string="head"),
    ]
    graph = helper.make_graph(
        nodes, "conv_mlp", [helper.make_tensor_value_info("x", onnx_type, ["N", 8, 8, 8])],
        [helper.make_tensor_value_info("y", onnx_type, ["N", 10])], inits,
        value_info=[helper.make_tensor_value_info("h", onnx_type, ["N", 65])])
    return _model(graph)


def constants_and_subgraphs(seed: int = 1) -> onnx.ModelProto:
    """Weights in Constant nodes, and in both branches of an If (as Constant nodes and initializers)."""
    rng = np.random.default_rng(seed)
    w_main = rng.standard_normal((64, 96)).astype(np.float32) * 0.1
    w_then = rng.standard_normal((96, 32)).astype(np.float32) * 0.1
    w_else = rng.standard_normal((96, 32)).astype(np.float32) * 0.2
    then_graph = helper.make_graph(
        [helper.make_node("Constant", [], ["w_then"], value=numpy_helper.from_array(w_then)),
         helper.make_node("MatMul", ["h", "w_then"], ["out_then"])],
        "then", [], [helper.make_tensor_value_info("out_then", TensorProto.FLOAT, None)])
    else_graph = helper.make_graph(
        [helper.make_node("MatMul", ["h", "w_else"], ["out_else"])],
        "else", [], [helper.make_tensor_value_info("out_else", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w_else, "w_else")])
    nodes = [
        helper.make_node("Constant", [], ["w_main"], value=numpy_helper.from_array(w_main), name="const_main"),
        helper.make_node("MatMul", ["x", "w_main"], ["h"], name="mm"),
        helper.make_node("If", ["flag"], ["y"], then_branch=then_graph, else_branch=else_graph, name="branch"),
    ]
    graph = helper.make_graph(
        nodes, "subgraphs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64]),
         helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 32])])
    return _model(graph)
