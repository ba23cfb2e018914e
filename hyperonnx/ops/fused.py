"""Schemas of the fused ops of ``ai.hyperonnx`` (docs/fused.md), registered with onnx so checker and shape inference
accept models that use them. ``HyperMatMul(A, θ)`` is ``MatMul(A, HyperDecode(θ))`` for a 2-D weight: it takes
HyperDecode's attributes (the weight's codec, shape, dtype and side information) except ``mode``."""

from __future__ import annotations

from onnx import defs, helper

from hyperonnx.ops.names import DOMAIN, OPSET_VERSION
from hyperonnx.ops.schema import weight_attributes

MATMUL_OP_TYPE = "HyperMatMul"
FUSED_OP_TYPES = (MATMUL_OP_TYPE,)

_MATMUL_DOC = """Y = A × W, W regenerated from the θ blob (docs/format.md) a tile at a time inside the multiply.
W is 2-D (`shape` = [K, N]); A is float32 of shape [..., K] (ONNX MatMul broadcasting with a 2-D B);
Y has shape [..., N] ([N] for a 1-D A)."""


def _infer_matmul(ctx) -> None:
    shape = ctx.get_attribute("shape")
    if shape is None or len(shape.ints) != 2 or not ctx.has_input(0):
        return
    a_type = ctx.get_input_type(0)
    if a_type is None or not a_type.tensor_type.HasField("shape"):
        ctx.set_output_type(0, helper.make_tensor_type_proto(1, None))
        return
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in a_type.tensor_type.shape.dim]
    out = [*dims[:-1], shape.ints[1]] if dims else [shape.ints[1]]
    ctx.set_output_type(0, helper.make_tensor_type_proto(1, out))


def register_fused_schemas() -> None:
    """Register the fused ops' schemas once per process (idempotent)."""
    try:
        defs.get_schema(MATMUL_OP_TYPE, OPSET_VERSION, DOMAIN)
        return
    except defs.SchemaError:
        pass
    schema = defs.OpSchema(
        MATMUL_OP_TYPE,
        DOMAIN,
        OPSET_VERSION,
        _MATMUL_DOC,
        inputs=[defs.OpSchema.FormalParameter("A", "tensor(float)", "left operand, [..., K]"),
                defs.OpSchema.FormalParameter("theta", "tensor(uint8)", "packed codes of W, [K, N]")],
        outputs=[defs.OpSchema.FormalParameter("Y", "tensor(float)", "A × W, [..., N]")],
        attributes=weight_attributes(),  # HyperDecode's, less its mode
    )
    schema.set_type_and_shape_inference_function(_infer_matmul)
    defs.register_schema(schema)


__all__ = ["FUSED_OP_TYPES", "MATMUL_OP_TYPE", "register_fused_schemas"]
