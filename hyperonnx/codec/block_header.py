"""The per-block header that blockvq and blocktcq share (docs/format.md): an 8-bit scale code and a 2-bit level-set
id. Its own module so that the native encoders (codec/native.py) read the sizes without importing a codec."""

SCALE_CODES = 256
BOOKS = 4
HEADER_BITS = 8 + 2  # scale code + level-set id, per block
