"""Make the C++ sample's demo model: a small Conv -> ReLU -> MatMul -> Gemm classifier with random weights,
converted by hyperonnx, with one decoded weight exposed as a second graph output so a run shows whether the
HyperDecode kernel reproduced it bit for bit (samples/cpp/README.md).

    python samples/cpp/make_model.py OUT_DIR      ->  OUT_DIR/model.onnx, OUT_DIR/model.hx.onnx
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

try:
    import hyperonnx
except ImportError:  # a source checkout without `pip install -e .`: use the checkout's package
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import hyperonnx

DECODED_OUTPUT = "decoded_fc1_weight"


def plain_model(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    w = {
        "conv.weight": rng.standard_normal((16, 3, 3, 3)) * 0.2,
        "conv.bias": rng.standard_normal(16) * 0.01,
        "fc1.weight": rng.standard_normal((16 * 14 * 14, 64)) * 0.02,
        "fc2.weight": rng.standard_normal((10, 64)) * 0.1,
        "fc2.bias": rng.standard_normal(10) * 0.01,
    }
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()]
    inits.append(numpy_helper.from_array(np.array([0, -1], np.int64), "flat_shape"))
    nodes = [
        helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Reshape", ["r", "flat_shape"], ["f"]),
        helper.make_node("MatMul", ["f", "fc1.weight"], ["h"]),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("Gemm", ["hr", "fc2.weight", "fc2.bias"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(nodes, "hyperonnx_sample",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 28, 28])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="hyperonnx-sample")
    model.ir_version = 8  # loads in ONNX Runtime 1.21 (onnx's default IR is newer than old runtimes accept)
    return model


def expose_decoded(path: Path, weight: str = "fc1.weight") -> None:
    """Add the HyperDecode output that regenerates `weight` as a graph output."""
    model = onnx.load(str(path))
    for node in model.graph.node:
        if node.op_type == "HyperDecode" and node.domain == "ai.hyperonnx" and weight in node.output[0]:
            shape = next(list(a.ints) for a in node.attribute if a.name == "shape")
            model.graph.node.append(helper.make_node("Identity", [node.output[0]], [DECODED_OUTPUT]))
            model.graph.output.append(helper.make_tensor_value_info(DECODED_OUTPUT, TensorProto.FLOAT, shape))
            onnx.save(model, str(path))
            return
    raise RuntimeError(f"no HyperDecode node produces {weight} in {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--decode", choices=["load", "call"], default="load", help="HyperDecode mode attribute")
    args = ap.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    plain, packed = args.out_dir / "model.onnx", args.out_dir / "model.hx.onnx"
    onnx.save(plain_model(), str(plain))
    result = hyperonnx.convert(plain, packed, decode=args.decode)
    expose_decoded(packed)
    print(f"{plain} ({plain.stat().st_size} B) -> {packed} ({packed.stat().st_size} B), "
          f"{len(result.report.tensors)} tensors compressed")


if __name__ == "__main__":
    main()
