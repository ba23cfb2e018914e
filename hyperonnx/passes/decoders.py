"""Find the decoders a conversion left in a model (HyperDecode nodes and portable Gather chains)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hyperonnx import codec
from hyperonnx.codec import bitpack
from hyperonnx.ops.names import DOMAIN, OP_TYPE
from hyperonnx.passes.graphs import doc_json, walk
from hyperonnx.passes.ort_node import encoded_from_attributes
from hyperonnx.passes.portable import layout


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
        # Portable: codes (and the block codecs' headers) are stored in bit planes (layout.pack_planes; "planes" in
        # the doc_string) or, for 8-, 16- and 32-bit codes, one per element (in any shape: the block codecs' whole
        # blocks as a grid); pack them back into a blob and decode with the reference.
        shell = encoded_from_attributes(self.meta, np.zeros(0, dtype=np.uint8))  # the attributes, no codes yet
        codes = self._codes(inits, "planes", "codes", shell.count, layout.code_planes(shell.bits))
        blob = bitpack.pack(codes, shell.bits)
        if self._block_headers(shell.codec):
            nblocks = layout.blocks(shell)
            scale_code = self._codes(inits, None, "scale_code", nblocks)
            book = self._codes(inits, "book_planes", "book", nblocks, [(layout.BOOK_BITS, 0)])
            blob = np.concatenate([blob, bitpack.pack(scale_code | (book << 8), 10)])
        return codec.decode(encoded_from_attributes(self.meta, blob))

    def _block_headers(self, family: str) -> bool:
        try:
            return codec.decoder_for(family).block_headers
        except ValueError as exc:
            raise ValueError(f"malformed portable decoder of {self.output!r} ({exc})") from None

    def _codes(self, inits: dict, key: str | None, label: str, count: int, planes=None) -> np.ndarray:
        """``count`` codes (uint32) stored as the planes that ``meta[key]`` lists (which must be ``planes``, the
        layout the writer uses for them) or, for a width without planes (``planes`` None), one per element of the
        ``::label`` initializer (``::codes``: the first one)."""
        try:
            if planes is None:
                name = self.initializers[0] if label == "codes" else self._helper(label)
                codes = numpy_helper.to_array(inits[name]).reshape(-1)
                if codes.size != count:
                    raise ValueError(f"{codes.size} codes stored, {count} expected")
                return codes.astype(np.uint32)
            listed = self.meta[key]
            stored = [(int(width), int(shift)) for _, width, shift in listed]
            if stored != planes:
                raise ValueError(f"code planes {stored}, expected {planes}")
            arrays = [numpy_helper.to_array(inits[str(name)]) for name, _, _ in listed]
            return layout.unpack_planes(arrays, stored, count)
        except (KeyError, TypeError, ValueError, StopIteration) as exc:
            raise ValueError(f"malformed portable decoder of {self.output!r} ({exc})") from None

    def _helper(self, label: str) -> str:
        suffix = f"::{label}"
        prefix = self.meta["prefix"]
        return next(name for name in self.initializers if name.startswith(f"{prefix}::") and name.endswith(suffix))

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
                meta.update(doc_json(node.doc_string))
                yield Decoder(graph, scope.path, node.output[0], "ort", [node], [node.input[0]], meta)
            elif node.op_type == "Gather" and node.doc_string.startswith(layout.TAG):
                meta = layout.read_tag(node.doc_string)
                prefix = meta["prefix"]  # the decoder's nodes are named hyperonnx/<prefix>/…
                chain = [n for n in graph.node if n.name.startswith(f"hyperonnx/{prefix}/")]
                inits = [meta["codes"]]
                helpers = {i for n in chain for i in n.input} - {o for n in chain for o in n.output}
                inits += sorted(helpers - set(inits))
                yield Decoder(graph, scope.path, meta["name"], "portable", chain, inits, meta)
