"""The names a converted file uses for hyperonnx's operator, defined once for the writers, the readers and the
runtime. No imports, so :mod:`hyperonnx.runtime` reads them without loading onnx."""

DOMAIN = "ai.hyperonnx"
OP_TYPE = "HyperDecode"
OPSET_VERSION = 1

# The weight element types hyperonnx compresses: ONNX TensorProto enum (FLOAT, FLOAT16, BFLOAT16, DOUBLE) → the
# name an Encoded carries (docs/format.md, `dtype`).
FLOAT_TYPES = {1: "float32", 10: "float16", 16: "bfloat16", 11: "float64"}

__all__ = ["DOMAIN", "FLOAT_TYPES", "OPSET_VERSION", "OP_TYPE"]
