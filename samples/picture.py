"""A small RGB picture writer for the demo: colour maps and a PNG encoder on numpy, zlib and struct alone.

The demo must run on the project's own dependencies (no Pillow, no matplotlib), so this module writes PNG itself:
8-bit RGB, one IDAT chunk, every scanline with the "Up" filter (the grid is made of pixel-repeated tiles, whose
repeated rows the filter turns into zeros for zlib).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

# Elevation colours, low to high: deep water, shallow water, lowland, hills, rock, snow (RGB, 0..255).
TERRAIN = np.array([[20, 50, 120], [60, 130, 190], [70, 140, 70], [170, 160, 90], [120, 95, 75], [245, 245, 245]],
                   dtype=np.float64)
# Difference colours: zero is black, then red, yellow, white at the top of the scale.
HEAT = np.array([[0, 0, 0], [150, 20, 10], [240, 120, 20], [255, 230, 80], [255, 255, 255]], dtype=np.float64)


def colourize(values: np.ndarray, low: float, high: float, colours: np.ndarray) -> np.ndarray:
    """Map a 2-D array onto ``colours`` (linear between stops) over [low, high]; returns uint8 (h, w, 3)."""
    span = high - low if high > low else 1.0
    t = np.clip((np.asarray(values, dtype=np.float64) - low) / span, 0.0, 1.0) * (len(colours) - 1)
    below = np.minimum(np.floor(t).astype(np.int64), len(colours) - 2)
    frac = (t - below)[..., None]
    rgb = colours[below] * (1 - frac) + colours[below + 1] * frac
    return np.round(rgb).astype(np.uint8)


def grid(tiles: list[list[np.ndarray]], scale: int = 2, gap: int = 4, background: int = 255) -> np.ndarray:
    """Lay out equally sized RGB tiles in rows, each pixel repeated ``scale`` times, ``gap`` pixels apart."""
    h, w = tiles[0][0].shape[:2]
    rows, cols = len(tiles), max(len(r) for r in tiles)
    th, tw = h * scale, w * scale
    image = np.full((rows * th + (rows + 1) * gap, cols * tw + (cols + 1) * gap, 3), background, dtype=np.uint8)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            y, x = gap + r * (th + gap), gap + c * (tw + gap)
            image[y:y + th, x:x + tw] = np.repeat(np.repeat(tile, scale, axis=0), scale, axis=1)
    return image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an 8-bit RGB image (uint8, shape (h, w, 3)) as a PNG file; returns the path."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (h, w, 3) image, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    rows = rgb.reshape(h, w * 3)
    up = rows.copy()
    up[1:] = rows[1:] - rows[:-1]  # uint8 arithmetic wraps modulo 256, as the Up filter specifies
    raw = np.concatenate([np.full((h, 1), 2, dtype=np.uint8), up], axis=1).tobytes()
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8 bits, colour type 2 (RGB), no interlace
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")
    path = Path(path)
    path.write_bytes(png)
    return path


def read_png_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of a PNG file, after checking its signature and that its IHDR chunk comes first."""
    data = Path(path).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG file")
    return struct.unpack(">II", data[16:24])
