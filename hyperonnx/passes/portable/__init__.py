"""The ``portable`` form: each compressed weight as standard ONNX ops (docs/format.md, "Portable form").

``layout``: what the file stores (bit planes, the tag), shared by the writer and the reader
(:mod:`hyperonnx.passes.decoders`); ``emit``: the writer's entry points; ``builder`` and ``blocks``: the
graph-building steps the codecs share; one module per codec's rows (``paper``, ``table``, ``blockvq``,
``blocktcq``), named by the codec's ``portable`` trait. Nothing is imported here, so a reader of the layout
loads no writer.
"""
