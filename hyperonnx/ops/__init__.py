"""The ``ai.hyperonnx`` operator domain: its names (light: no onnx) and its schemas (registered on first use)."""

from hyperonnx.ops.names import DOMAIN, OP_TYPE, OPSET_VERSION


def register_schemas() -> None:
    """Register the domain's schemas (``HyperDecode`` and the fused ops) with onnx, once per process; onnx is
    imported only here, so the names above stay cheap to import."""
    from hyperonnx.ops import fused, schema

    schema.register_schemas()
    fused.register_fused_schemas()


__all__ = ["DOMAIN", "OPSET_VERSION", "OP_TYPE", "register_schemas"]
