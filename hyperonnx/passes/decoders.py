"""Find the decoders a conversion left in a model (HyperDecode nodes and portable Gather chains)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hyperonnx import codec
from hyperonnx.codec import bitpack
from hyperonnx.ops import DOMAIN, OP_TYPE
from hyperonnx.passes.emit import BLOCK_CODECS, PORTABLE_TAG, encoded_from_attributes
from hyperonnx.passes.graphs import walk


@dataclass
class Decoder:
    graph: onnx.GraphProto
    graph_path: str
    output: str  # the weight's name
    form: str  # "ort" or "portable"
    nodes: list[onnx.NodeProto]
    initializers: list[str]
    meta: dict  # attributes (+ stats recorded at convert time)

    def decode(self) -> np.ndarray:
        """The weight this decoder produces, computed with the numpy reference."""
        inits = {t.name: t for t in self.graph.initializer}
        if self.form == "ort":
            enc = encoded_from_attributes(self.meta, numpy_helper.to_array(inits[self.initializers[0]]))
            return codec.decode(enc)
        # Portable: codes (and the block codecs' headers) are stored one per element (in any shape: the block
        # codecs' whole blocks as a grid); pack them back into a blob and decode with the reference.
        codes = numpy_helper.to_array(inits[self.initializers[0]]).astype(np.uint32)
        blob = bitpack.pack(codes, int(self.meta["bits"]))
        if self.meta["codec"] in BLOCK_CODECS:
            scale_code = numpy_helper.to_array(inits[self._helper("scale_code")]).astype(np.uint32)
            book = numpy_helper.to_array(inits[self._helper("book")]).astype(np.uint32)
            blob = np.concatenate([blob, bitpack.pack(scale_code | (book << 8), 10)])
        return codec.decode(encoded_from_attributes(self.meta, blob))

    def _helper(self, label: str) -> str:
        suffix = f"::{label}"
        return next(name for name in self.initializers if name.startswith(self.output) and name.endswith(suffix))

    @property
    def bytes_after(self) -> int:
        inits = {t.name: t for t in self.graph.initializer}
        total = 0
        for name in self.initializers:
            tensor = inits[name]
            total += int(np.prod(tensor.dims)) * helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        return total


def find_decoders(model: onnx.ModelProto) -> Iterator[Decoder]:
    for scope in walk(model.graph):
        graph = scope.graph
        for node in graph.node:
            if node.domain == DOMAIN and node.op_type == OP_TYPE:
                meta = {a.name: helper.get_attribute_value(a) for a in node.attribute}
                meta = {k: v.decode() if isinstance(v, bytes) else v for k, v in meta.items()}
                meta.update(_stats(node.doc_string))
                yield Decoder(graph, scope.path, node.output[0], "ort", [node], [node.input[0]], meta)
            elif node.op_type == "Gather" and node.doc_string.startswith(PORTABLE_TAG):
                meta = json.loads(node.doc_string[len(PORTABLE_TAG) :])
                chain = [n for n in graph.node if n.name.startswith(f"hyperonnx/{meta['name']}/")]
                inits = [meta["codes"]]
                helpers = {i for n in chain for i in n.input} - {o for n in chain for o in n.output}
                inits += sorted(helpers - set(inits))
                yield Decoder(graph, scope.path, meta["name"], "portable", chain, inits, meta)


def _stats(doc: str) -> dict:
    try:
        value = json.loads(doc) if doc else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
