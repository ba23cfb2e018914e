"""Schemas of the fused ops of ``ai.hyperonnx`` (docs/fused.md), registered with onnx so checker and shape inference
accept models that use them. Each reads its weight W straight from a θ blob and takes HyperDecode's attributes (the
weight's codec, shape, dtype and side information) except ``mode``:

* ``HyperMatMul(A, θ)`` is ``MatMul(A, W)`` for a 2-D W, or ``MatMul(A, Transpose(W))`` with ``transB`` (a tied LM
  head reading its embedding table);
* ``HyperGemm(A, θ, C?)`` is ``Gemm(A, W, C)`` with Gemm's alpha, beta, transA, transB;
* ``HyperGather(θ, indices)`` is ``Gather(W, indices, axis=0)``, decoding only the requested rows;
* ``HyperConv(X, θ, B?)`` is a 1×1 ``Conv(X, W, B)`` (group 1, strides 1, no padding, dilations 1)."""

from __future__ import annotations

from onnx import defs, helper

from hyperonnx.ops.names import DOMAIN, OPSET_VERSION
from hyperonnx.ops.schema import weight_attributes

MATMUL_OP_TYPE = "HyperMatMul"
GEMM_OP_TYPE = "HyperGemm"
GATHER_OP_TYPE = "HyperGather"
CONV_OP_TYPE = "HyperConv"
FUSED_OP_TYPES = (MATMUL_OP_TYPE, GEMM_OP_TYPE, GATHER_OP_TYPE, CONV_OP_TYPE)

_MATMUL_DOC = """Y = A × W′, W regenerated from the θ blob (docs/format.md) a tile at a time inside the multiply.
W′ = W (`shape` = [K, N]), or Wᵀ with transB (`shape` = [N, K]); A is float32 of shape [..., K] (ONNX MatMul
broadcasting with a 2-D B); Y has shape [..., N] ([N] for a 1-D A)."""
_GEMM_DOC = """Y = alpha · A′ × W′ + beta · C (ONNX Gemm with B = W), W regenerated from the θ blob a tile at a time.
A′ = Aᵀ if transA; W′ = Wᵀ if transB (`shape` = [N, K]), else `shape` = [K, N]. A is 2-D; C, optional, broadcasts
unidirectionally to Y's [M, N]."""
_GATHER_DOC = """Y = Gather(W, indices, axis = 0) for a 2-D W (`shape` = [V, D], an embedding table): only the
requested rows are regenerated from the θ blob. indices: int32 or int64, any shape, each in [-V, V - 1] (negative
counts from the end); Y has shape indices.shape + [D]."""
_CONV_DOC = """Y = Conv(X, W, B) for a 1×1 kernel W (`shape` = [M, C, 1, …, 1]) with group 1, strides 1, no padding and
dilations 1: for every position, Y[n, :, …] = W × X[n, :, …] + B. X is [N, C, …] of W's rank; B, optional, is [M];
Y is [N, M, …]."""


def _dims(ctx, index: int) -> list | None:
    """Input ``index``'s dims (int, str or None each), or None when its shape is unknown."""
    if not ctx.has_input(index):
        return None
    t = ctx.get_input_type(index)
    if t is None or not t.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.tensor_type.shape.dim]


def _weight_shape(ctx) -> list | None:
    shape = ctx.get_attribute("shape")
    return list(shape.ints) if shape is not None and len(shape.ints) == 2 else None


def _infer_matmul(ctx) -> None:
    shape = _weight_shape(ctx)
    if shape is None or not ctx.has_input(0):
        return
    dims = _dims(ctx, 0)
    if dims is None:
        ctx.set_output_type(0, helper.make_tensor_type_proto(1, None))
        return
    n = shape[0] if _int_attribute(ctx, "transB") else shape[1]
    out = [*dims[:-1], n] if dims else [n]
    ctx.set_output_type(0, helper.make_tensor_type_proto(1, out))


def _int_attribute(ctx, name: str) -> int:
    value = ctx.get_attribute(name)
    return value.i if value is not None else 0


def _infer_gemm(ctx) -> None:
    shape = _weight_shape(ctx)
    if shape is None:
        return
    n = shape[0] if _int_attribute(ctx, "transB") else shape[1]
    dims = _dims(ctx, 0)
    m = dims[1 if _int_attribute(ctx, "transA") else 0] if dims is not None and len(dims) == 2 else None
    ctx.set_output_type(0, helper.make_tensor_type_proto(1, [m, n]))


def _infer_gather(ctx) -> None:
    shape = _weight_shape(ctx)
    if shape is None:
        return
    dims = _dims(ctx, 1)
    ctx.set_output_type(0, helper.make_tensor_type_proto(1, None if dims is None else [*dims, shape[1]]))


def _infer_conv(ctx) -> None:
    shape = ctx.get_attribute("shape")
    if shape is None or len(shape.ints) < 3:
        return
    dims = _dims(ctx, 0)
    out = None if dims is None or len(dims) != len(shape.ints) else [dims[0], shape.ints[0], *dims[2:]]
    ctx.set_output_type(0, helper.make_tensor_type_proto(1, out))


def _param(name: str, type_str: str, doc: str, optional: bool = False):
    option = defs.OpSchema.FormalParameterOption.Optional if optional else defs.OpSchema.FormalParameterOption.Single
    return defs.OpSchema.FormalParameter(name, type_str, doc, param_option=option)


def _trans_b() -> list:
    return [defs.OpSchema.Attribute("transB", helper.make_attribute("transB", 0), "W is [N, K]")]


def _gemm_attributes() -> list:
    attr = defs.OpSchema.Attribute
    return [attr("alpha", helper.make_attribute("alpha", 1.0), "scale of A′ × W′"),
            attr("beta", helper.make_attribute("beta", 1.0), "scale of C"),
            attr("transA", helper.make_attribute("transA", 0), "A is [K, M]"), *_trans_b()]


def register_fused_schemas() -> None:
    """Register the fused ops' schemas once per process (idempotent)."""
    try:
        defs.get_schema(CONV_OP_TYPE, OPSET_VERSION, DOMAIN)
        return
    except defs.SchemaError:
        pass
    ops = [
        (MATMUL_OP_TYPE, _MATMUL_DOC, _infer_matmul, _trans_b(),
         [_param("A", "tensor(float)", "left operand, [..., K]"),
          _param("theta", "tensor(uint8)", "packed codes of W, [K, N] ([N, K] if transB)")],
         _param("Y", "tensor(float)", "A × W, [..., N]")),
        (GEMM_OP_TYPE, _GEMM_DOC, _infer_gemm, _gemm_attributes(),
         [_param("A", "tensor(float)", "left operand, [M, K] ([K, M] if transA)"),
          _param("theta", "tensor(uint8)", "packed codes of W, [K, N] ([N, K] if transB)"),
          _param("C", "tensor(float)", "bias, broadcast to [M, N]", optional=True)],
         _param("Y", "tensor(float)", "[M, N]")),
        (GATHER_OP_TYPE, _GATHER_DOC, _infer_gather, [],
         [_param("theta", "tensor(uint8)", "packed codes of W, [V, D]"),
          _param("indices", "tind", "rows to read")],
         _param("Y", "tensor(float)", "indices.shape + [D]")),
        (CONV_OP_TYPE, _CONV_DOC, _infer_conv, [],
         [_param("X", "tensor(float)", "input, [N, C, …]"),
          _param("theta", "tensor(uint8)", "packed codes of W, [M, C, 1, …, 1]"),
          _param("B", "tensor(float)", "bias, [M]", optional=True)],
         _param("Y", "tensor(float)", "[N, M, …]")),
    ]
    for op_type, doc, infer, extra, inputs, output in ops:
        try:
            defs.get_schema(op_type, OPSET_VERSION, DOMAIN)
            continue  # registered earlier in this process
        except defs.SchemaError:
            pass
        constraints = [("tind", ["tensor(int32)", "tensor(int64)"], "index type")] if op_type == GATHER_OP_TYPE else []
        schema = defs.OpSchema(op_type, DOMAIN, OPSET_VERSION, doc, inputs=inputs, outputs=[output],
                               type_constraints=constraints,
                               attributes=[*weight_attributes(), *extra])  # HyperDecode's, less its mode
        schema.set_type_and_shape_inference_function(infer)
        defs.register_schema(schema)


__all__ = ["CONV_OP_TYPE", "FUSED_OP_TYPES", "GATHER_OP_TYPE", "GEMM_OP_TYPE", "MATMUL_OP_TYPE", "register_fused_schemas"]
