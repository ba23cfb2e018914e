"""Graph transformations, one per module: select weights, emit a decoder (ort or portable), decompress."""
