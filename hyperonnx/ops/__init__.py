"""The ``ai.hyperonnx`` operator domain.

Importing this package registers the ``HyperDecode`` schema with onnx (checker and shape inference accept
converted models). Every module that reads or writes hyperonnx graphs imports it, so the schema is in place
before any of them runs; ``import hyperonnx`` alone does not import onnx (hyperonnx/__init__.py).
"""

from hyperonnx.ops.fused import FUSED_OP_TYPES, MATMUL_OP_TYPE  # noqa: F401  (importing registers their schemas)
from hyperonnx.ops.schema import DOMAIN, OP_TYPE, OPSET_VERSION, register_schemas

register_schemas()

__all__ = ["DOMAIN", "OPSET_VERSION", "OP_TYPE", "register_schemas"]
