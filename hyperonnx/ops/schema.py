"""Schema of ``ai.hyperonnx::HyperDecode`` registered with onnx, so checker and shape inference accept
converted models. Type and shape come from the node's ``dtype`` and ``shape`` attributes; the side-information
attributes (``i_<key>``, ``f_<key>``) are every codec family's keys, from the codec traits."""

from __future__ import annotations

from onnx import defs, helper

from hyperonnx import codec
from hyperonnx.ops.names import DOMAIN, OP_TYPE, OPSET_VERSION

_DOC = """Regenerates a weight tensor from packed integer codes θ (docs/format.md).
Input: the θ blob (uint8). Output: the tensor, of type `dtype` and shape `shape`."""

_registered = False


def _infer(ctx) -> None:
    dtype = ctx.get_attribute("dtype")
    shape = ctx.get_attribute("shape")
    if dtype is None or shape is None:
        return
    out = helper.make_tensor_type_proto(dtype.i, list(shape.ints))
    ctx.set_output_type(0, out)


def weight_attributes() -> list:
    """The attributes that describe an encoded weight (codec, format, shape, dtype, group, bits and every codec's
    side-information keys, from the codec traits): HyperDecode's and the fused ops' alike."""
    attr = defs.OpSchema.Attribute
    kind = defs.OpSchema.AttrType
    int_keys, float_keys = codec.side_information_keys()
    return [
        attr("codec", kind.STRING, "codec family", required=True),
        attr("format", kind.INT, "codec format version", required=True),
        attr("shape", kind.INTS, "weight shape", required=True),
        attr("dtype", kind.INT, "weight TensorProto element type", required=True),
        attr("group", kind.INT, "weights per code", required=True),
        attr("bits", kind.INT, "bits per code", required=True),
        *[attr(f"i_{key}", kind.INTS, "codec side information", required=False) for key in int_keys],
        *[attr(f"f_{key}", kind.FLOATS, "codec side information", required=False) for key in float_keys],
    ]


def register_schemas() -> None:
    """Register the schema once per process (idempotent)."""
    global _registered
    if _registered:
        return
    try:
        defs.get_schema(OP_TYPE, OPSET_VERSION, DOMAIN)
        _registered = True
        return
    except defs.SchemaError:
        pass
    attr = defs.OpSchema.Attribute
    schema = defs.OpSchema(
        OP_TYPE,
        DOMAIN,
        OPSET_VERSION,
        _DOC,
        inputs=[defs.OpSchema.FormalParameter("theta", "tensor(uint8)", "packed codes")],
        outputs=[defs.OpSchema.FormalParameter("output", "T", "regenerated tensor")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)", "tensor(bfloat16)", "tensor(double)"],
                           "weight type")],
        attributes=[*weight_attributes(), attr("mode", helper.make_attribute("mode", "load"), "load | call")],
    )
    schema.set_type_and_shape_inference_function(_infer)
    defs.register_schema(schema)
    _registered = True


__all__ = ["register_schemas", "weight_attributes"]
