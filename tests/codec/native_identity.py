"""What the native-encoder tests share: the library mark, an encoding with the native encoders on or off, the
byte-identity assertion and the tensors that reach the encoders' corners."""

from __future__ import annotations

import numpy as np
import pytest

import hyperonnx.codec as codec
from hyperonnx.codec import native

needs_library = pytest.mark.skipif(native.library_path() is None, reason="libhyperonnx_encoders.so is not built")


def encoded_or_error(name: str, x: np.ndarray, params: dict, use_native: bool, monkeypatch) -> codec.Encoded | str:
    """The encoding (or the error) with the native encoders on or off. Where numpy raises (blocktcq indexes with
    NaN or infinite values), the native path must raise the same."""
    monkeypatch.setenv(native.ENV, "1" if use_native else "0")
    assert not use_native or native.library() is not None, native.describe()  # else numpy would meet numpy
    try:
        return codec.get_codec(name).encode(x, {**codec.get_codec(name).defaults, **params})
    except (ValueError, IndexError) as exc:
        return f"{type(exc).__name__}: {exc}"


def assert_native_matches_numpy(name: str, x: np.ndarray, params: dict, monkeypatch) -> None:
    with np.errstate(all="ignore"):
        ref = encoded_or_error(name, x, params, False, monkeypatch)
        got = encoded_or_error(name, x, params, True, monkeypatch)
    if isinstance(ref, str) or isinstance(got, str):
        assert got == ref
        return
    assert got.blob.dtype == ref.blob.dtype and got.blob.tobytes() == ref.blob.tobytes(), (x.dtype, x.shape, params)
    assert (got.ints, got.floats, got.shape, got.dtype, got.bits, got.group) == (
        ref.ints, ref.floats, ref.shape, ref.dtype, ref.bits, ref.group)


def corner_tensors(rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """Tensors that reach the encoders' corners."""
    n = rng.standard_normal
    ties = np.round(n(999) * 4) / 4  # many weights on the same values: ranking and path ties
    blocks = n((7, 64))
    blocks[[1, 4]] = 0.0  # all-zero blocks
    sub = n(777) * np.float32(1e-39)  # every weight subnormal
    mixed = n(500)
    mixed[::7] *= np.float32(1e-42)  # subnormals beside normal weights
    heavy = rng.standard_t(2, 4099)  # outliers: blocks of very different scales
    return [
        ("gaussian", n((33, 65))),
        ("ties", ties),
        ("zero blocks", blocks),
        ("all zero", np.zeros(100)),
        ("constant", np.full(70, -0.375)),
        ("one weight", np.array([2.5])),
        ("subnormal", sub),
        ("mixed subnormal", mixed),
        ("huge", n(3000) * np.float32(6e37)),
        ("near max", np.array([3.3e38, -3.4e38, 1.0, 0.0] * 9)),
        ("tiny", n(3000) * np.float32(1e-30)),
        ("heavy tails", heavy),
        ("uniform", rng.uniform(-1, 1, 2049)),
        ("one sign", np.abs(n(1000)) + 0.1),
        ("negative zero", np.array([-0.0, 0.0, 1.0, -1.0] * 40)),
    ]
