"""The demo's PNG writer (samples/picture.py): a decoder written from the PNG specification reads back every pixel."""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "samples"))
import picture  # noqa: E402


def decode_png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0] == zlib.crc32(kind + body)
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, *_ = header
    assert (depth, colour) == (8, 2)
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + 3 * width)
    rows = np.zeros((height, 3 * width), dtype=np.uint8)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:]
        assert kind in (0, 2)  # None or Up: the only filters the writer may use
        rows[y] = line + rows[y - 1] if kind == 2 and y > 0 else line
    return rows.reshape(height, width, 3)


def test_write_png_round_trips_every_pixel(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    path = picture.write_png(tmp_path / "x.png", image)
    assert np.array_equal(decode_png(path.read_bytes()), image)
    assert picture.read_png_size(path) == (53, 37)


def test_grid_and_colour_maps():
    heights = np.linspace(-1, 1, 16 * 16).reshape(16, 16)
    tile = picture.colourize(heights, -1.0, 1.0, picture.TERRAIN)
    assert tile.dtype == np.uint8 and tile.shape == (16, 16, 3)
    assert np.array_equal(tile[0, 0], picture.TERRAIN[0]) and np.array_equal(tile[-1, -1], picture.TERRAIN[-1])
    image = picture.grid([[tile, tile, tile], [tile]], scale=2, gap=3)
    assert image.shape == (2 * 32 + 3 * 3, 3 * 32 + 4 * 3, 3)
    assert np.array_equal(image[3:35, 3:35], np.repeat(np.repeat(tile, 2, axis=0), 2, axis=1))
    assert (image[38:70, 38:] == 255).all()  # the second row has one tile: the rest is background
