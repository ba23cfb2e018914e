"""The ``portable`` form: each compressed weight as standard ONNX ops (docs/format.md, "Portable form").

``layout`` is what the file stores (bit planes, the tag), read by :mod:`hyperonnx.passes.decoders` too;
``builder`` and ``blocks`` the graph-building steps the codecs share; ``decoder`` the entry points; one module per
codec's rows (``paper``, ``table``, ``blockvq``, ``blocktcq``), named by the codec's ``portable`` trait.
"""

from hyperonnx.passes.portable.decoder import check_portable, emit_portable, portable_bytes, portable_opset_error

__all__ = ["check_portable", "emit_portable", "portable_bytes", "portable_opset_error"]
