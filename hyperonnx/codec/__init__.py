"""The codec table: every codec hyperonnx knows, by name (like ggml's type table). Each entry is a codec class
that carries its own traits (:class:`hyperonnx.codec.base.Codec`); the op schema, the budget ladders and the
emitters derive what they need from here.

``encode(array, codec, **options)`` → :class:`Encoded`; ``decode(encoded)`` → array of the input dtype.
The numpy decode here is the source of truth that the C++, CUDA and portable decoders reproduce bit for bit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from hyperonnx.codec.base import FORMAT_VERSION, Codec, Encoded, validate_input
from hyperonnx.codec.blocktcq import BlockTcqCodec
from hyperonnx.codec.blockvq import BlockVQCodec
from hyperonnx.codec.ecsq import EcsqCodec
from hyperonnx.codec.grid import GridCodec
from hyperonnx.codec.paper import PaperCnnCodec, PaperCodec
from hyperonnx.codec.tcq import TcqCodec

CODECS: dict[str, Codec] = {}
# Families that are decoded but never chosen: `grid` is detected by the converter (exact or nothing).
DECODE_ONLY: dict[str, Codec] = {"grid": GridCodec()}


def register(codec: Codec) -> Codec:
    CODECS[codec.name] = codec
    return codec


for _codec in (BlockTcqCodec(), BlockVQCodec(), EcsqCodec(), TcqCodec(), PaperCodec(), PaperCnnCodec()):
    register(_codec)

try:  # the Kronecker codec lives in its own module; it registers itself when present
    from hyperonnx.codec.kronecker import KroneckerCodec

    register(KroneckerCodec())
except ImportError:  # pragma: no cover
    pass

DEFAULT_CODEC = "blocktcq"


def get_codec(name: str) -> Codec:
    try:
        return CODECS[name]
    except KeyError:
        raise ValueError(f"unknown codec {name!r} (known: {', '.join(sorted(CODECS))})") from None


def decoder_for(family: str) -> Codec:
    """The codec that decodes ``Encoded.codec == family`` (presets share their family's decoder)."""
    for codec in (*CODECS.values(), *DECODE_ONLY.values()):
        if codec.name == family:
            return codec
    raise ValueError(f"unknown codec family {family!r}")


def families() -> dict[str, Codec]:
    """One codec per family, decode-only ones included, by family name: the codec whose name is the family (a
    preset such as paper-cnn shares its family's traits)."""
    return {c.family: c for c in (*CODECS.values(), *DECODE_ONLY.values()) if c.name == c.family}


def side_information_keys() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(int keys, float keys) that some family stores (as i_<key> / f_<key>), each once."""
    ints = dict.fromkeys(key for c in families().values() for key in c.int_keys)
    floats = dict.fromkeys(key for c in families().values() for key in c.float_keys)
    return tuple(ints), tuple(floats)


def encode(array: np.ndarray, codec: str = DEFAULT_CODEC, **options: Any) -> Encoded:
    """Encode ``array`` with ``codec``; raises ValueError for unsupported, empty or non-finite input."""
    impl = get_codec(codec)
    params = impl.params(options)
    array = validate_input(array)
    return impl.encode(array, params)


def check_options(codec: str, options: dict[str, Any] | None = None) -> None:
    """ValueError now, naming the problem, for an unknown codec, an unknown option or a value the codec refuses
    (``bits=99``, a negative step): the ranges are checked where the codec encodes, so a small probe tensor is
    encoded (once per setting: the command line and the API both ask). Without this, a conversion skipped every
    weight for the same reason and wrote an uncompressed copy."""
    key = (codec, tuple(sorted((options or {}).items(), key=repr)))
    try:
        seen = key in _CHECKED_OPTIONS
    except TypeError:  # an unhashable value: check it every time
        seen, key = False, None
    if not seen:
        encode(_OPTION_PROBE, codec, **(options or {}))
        if key is not None:
            _CHECKED_OPTIONS.add(key)


_OPTION_PROBE = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)
_CHECKED_OPTIONS: set[tuple] = set()


def _check_format(enc: Encoded) -> Codec:
    codec = decoder_for(enc.codec)
    if enc.format_version not in codec.formats:
        known = " or ".join(str(f) for f in codec.formats)
        raise ValueError(f"codec {enc.codec!r}: format version {enc.format_version} is not supported "
                         f"(this release reads {known})")
    return codec


def table(enc: Encoded) -> np.ndarray:
    """The float32 decode table of ``enc``, shape (entries, group)."""
    with _missing_side_information(enc):
        return _check_format(enc).table(enc)


def decode(enc: Encoded) -> np.ndarray:
    """Regenerate the tensor; the result has the shape and dtype that were encoded. A malformed ``enc`` (it may
    come from an untrusted file) raises ValueError."""
    with _missing_side_information(enc):
        return _check_format(enc).decode(enc)


@contextlib.contextmanager
def _missing_side_information(enc: Encoded) -> Iterator[None]:
    """A side-information key the codec needs but ``enc`` lacks is a malformed input (ValueError), not a bug."""
    try:
        yield
    except KeyError as exc:
        raise ValueError(f"codec {enc.codec!r}: side information {exc} is missing") from None


__all__ = ["CODECS", "DEFAULT_CODEC", "FORMAT_VERSION", "Codec", "Encoded", "check_options", "decode", "encode",
           "families", "get_codec", "register", "side_information_keys", "table"]
