"""Graph transformations, one per module: select weights, compress them (with a size budget), rewrite each as a
decoder (``emit``: the shared mechanics; ``ort_node``: the HyperDecode node; ``portable``: standard ops), find the
decoders a conversion left (``decoders``) and decompress."""
