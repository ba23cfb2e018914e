"""The ``ort`` form: one ``HyperDecode`` node per weight (docs/format.md, "Attributes"), and its attributes read
back into an :class:`~hyperonnx.codec.Encoded`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
from onnx import helper, numpy_helper

from hyperonnx.codec import Encoded
from hyperonnx.ops.names import DOMAIN, FLOAT_TYPES, OP_TYPE
from hyperonnx.passes.emit import Namer, Rewrite
from hyperonnx.passes.select import WeightSite

if TYPE_CHECKING:
    from hyperonnx.model_io import BlobSpool

DTYPE_TO_ONNX = {name: code for code, name in FLOAT_TYPES.items()}


def node_attributes(enc: Encoded, mode: str) -> dict:
    attrs = {
        "codec": enc.codec,
        "format": enc.format_version,
        "shape": list(enc.shape),
        "dtype": DTYPE_TO_ONNX[enc.dtype],
        "group": enc.group,
        "bits": enc.bits,
        "mode": mode,
    }
    attrs.update({f"i_{key}": list(values) for key, values in enc.ints.items()})
    attrs.update({f"f_{key}": list(values) for key, values in enc.floats.items()})
    return attrs


def encoded_from_attributes(attrs: dict, blob: np.ndarray) -> Encoded:
    """Rebuild an Encoded from a node's attributes (the inverse of ``node_attributes``)."""
    try:
        dtype = FLOAT_TYPES[int(attrs["dtype"])]
        return Encoded(
            codec=str(attrs["codec"]),
            shape=tuple(int(d) for d in attrs["shape"]),
            dtype=dtype,
            group=int(attrs["group"]),
            bits=int(attrs["bits"]),
            blob=np.asarray(blob, dtype=np.uint8).reshape(-1),
            ints={k[2:]: tuple(int(v) for v in vals) for k, vals in attrs.items() if k.startswith("i_")},
            # float32 values; a portable decoder's JSON holds them in their shortest decimal form
            # (portable.layout.json_float32)
            floats={k[2:]: tuple(float(np.float32(v)) for v in vals) for k, vals in attrs.items()
                    if k.startswith("f_")},
            format_version=int(attrs["format"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed HyperDecode attributes ({exc})") from None


def emit_ort(site: WeightSite, namer: Namer, enc: Encoded, mode: str, stats: dict,
             spool: BlobSpool | None = None) -> Rewrite:
    """The weight as a ``HyperDecode`` node reading its θ blob (an initializer) and outputting the weight's name;
    with a ``spool``, the blob is written there (``BlobSpool.put``)."""
    theta = namer(f"{site.name}::theta")
    if spool is not None and enc.blob.dtype == np.uint8 and enc.blob.ndim == 1:
        blob = spool.put(theta, enc.blob)
    else:
        blob = numpy_helper.from_array(enc.blob, theta)
    node = helper.make_node(OP_TYPE, [theta], [site.name], name=f"hyperonnx/{site.name}", domain=DOMAIN,
                            doc_string=json.dumps(stats, sort_keys=True), **node_attributes(enc, mode))
    return Rewrite(site, [blob], [node])
