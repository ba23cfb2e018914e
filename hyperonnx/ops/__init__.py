"""The ``ai.hyperonnx`` operator domain."""

from hyperonnx.ops.fused import FUSED_OP_TYPES, MATMUL_OP_TYPE  # noqa: F401  (importing registers their schemas)
from hyperonnx.ops.schema import DOMAIN, OP_TYPE, OPSET_VERSION, register_schemas

__all__ = ["DOMAIN", "OPSET_VERSION", "OP_TYPE", "register_schemas"]
