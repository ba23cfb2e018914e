"""The ``ai.hyperonnx`` operator domain: its names (light: no onnx) and its schema (imported on first use)."""

from hyperonnx.ops.names import DOMAIN, OP_TYPE, OPSET_VERSION


def register_schemas() -> None:
    """Register ``HyperDecode``'s schema with onnx, once per process (:func:`hyperonnx.ops.schema.register_schemas`);
    onnx is imported only here, so the names above stay cheap to import."""
    from hyperonnx.ops import schema

    schema.register_schemas()


__all__ = ["DOMAIN", "OPSET_VERSION", "OP_TYPE", "register_schemas"]
