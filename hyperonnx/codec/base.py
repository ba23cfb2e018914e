"""What every codec shares: the encoded container, the codec interface (its trait table) and the table decoder.

A codec class is hyperonnx's one description of a codec, as ggml keeps one traits entry per type: its name and
options, its encoder and numpy decoder (the source of truth), and the traits the rest of the package derives
from it: the side-information keys a node stores (the ``HyperDecode`` schema, :mod:`hyperonnx.ops.schema`), the
settings a size budget chooses among and the option it may set between them (:mod:`hyperonnx.passes.budget`),
whether the blob ends in block headers, and which module of :mod:`hyperonnx.passes.portable` writes its
standard-op decoder (None: no portable form). A new codec sets these; nothing else lists codecs by hand.

Most codecs share one decoded form: a tensor is cut into groups of ``group`` consecutive weights (row-major, the
last group padded), each group is one integer code θ, and a small float32 *table* regenerated from the side
information maps θ to the group's values (``table[θ]`` is a row of ``group`` values); unpacking codes and
gathering rows (:func:`gather_table`) is shared by the numpy reference, the C++ and CUDA kernels and the
portable ONNX decoder, which is what keeps them bit-identical. Codecs with more structure (per-block scales,
entropy-coded streams) override ``decode``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from hyperonnx import workspace
from hyperonnx.codec import bitpack

FORMAT_VERSION = 1

SUPPORTED_DTYPES = ("float16", "bfloat16", "float32", "float64")


def dtype_from_name(name: str) -> np.dtype:
    if name == "bfloat16":
        # Imported here, not at module level: ml_dtypes takes 0.5-1 s to import and only bfloat16 needs it.
        try:
            import ml_dtypes
        except ImportError:  # pragma: no cover - ml_dtypes is always installed with our dependencies (onnx)
            raise ValueError("bfloat16 needs the ml_dtypes package") from None
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


@dataclass(frozen=True)
class Encoded:
    """One compressed tensor: packed codes plus the parameters that regenerate the table.

    ``ints`` and ``floats`` are the codec's side information; every float is exactly representable in
    float32 (it is stored as an ONNX float attribute).
    """

    codec: str
    shape: tuple[int, ...]
    dtype: str
    group: int
    bits: int
    blob: np.ndarray
    ints: dict[str, tuple[int, ...]] = field(default_factory=dict)
    floats: dict[str, tuple[float, ...]] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def count(self) -> int:
        """Number of codes (groups)."""
        return -(-self.numel // self.group)

    @property
    def nbytes(self) -> int:
        """Bytes stored for this tensor: codes, side information and shape (as the ONNX node holds them)."""
        side = 4 * sum(len(v) for v in self.floats.values()) + 8 * sum(len(v) for v in self.ints.values())
        return int(self.blob.nbytes) + side + 8 * len(self.shape) + 8 * 3  # + group, bits, format

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.nbytes / max(self.numel, 1)


class Codec:
    """A codec: a name, parameters with defaults, ``encode``, the table generator ``table`` and its traits."""

    name: ClassVar[str]
    family: ClassVar[str]  # the decoder this codec's output needs (a preset shares its family's decoder)
    defaults: ClassVar[dict[str, Any]]
    summary: ClassVar[str]
    formats: ClassVar[tuple[int, ...]] = (FORMAT_VERSION,)  # the format versions its decoder reads
    # Side information (Encoded.ints / Encoded.floats): the keys every encoding holds, stored as the node
    # attributes i_<key> / f_<key> (docs/format.md; the C++ CodecSpec reads the same keys).
    int_keys: ClassVar[tuple[str, ...]] = ()
    float_keys: ClassVar[tuple[str, ...]] = ()
    # The settings a size or fidelity budget chooses among, smallest encoding first (empty: the codec takes no
    # budget), and the option that varies continuously between two of them (None: only the rungs).
    budget_ladder: ClassVar[tuple[dict[str, Any], ...]] = ()
    continuous_option: ClassVar[str | None] = None
    # The blob is the codes followed by 10-bit block headers (scale code, level set): blockvq's framing.
    block_headers: ClassVar[bool] = False
    # The module of hyperonnx.passes.portable that writes the decoder as standard ONNX ops (it also sizes that
    # form); None: there is none (an entropy-coded stream has no standard-op decoder). A name, not the module:
    # codecs are pure numpy and never import onnx.
    portable: ClassVar[str | None] = None

    def params(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        params = dict(self.defaults)
        for key, value in (overrides or {}).items():
            if key not in params:
                known = ", ".join(sorted(params)) or "none"
                raise ValueError(f"codec {self.name!r} has no option {key!r} (options: {known})")
            params[key] = _coerce(self.name, key, value, type(self.defaults[key]))
        return params

    def encode(self, x: np.ndarray, params: dict[str, Any]) -> Encoded:
        """Encode a finite, non-empty float array (any shape). ``params`` are complete (see ``params``)."""
        raise NotImplementedError

    def table(self, enc: Encoded) -> np.ndarray:
        """The float32 table, shape (entries, group), regenerated from ``enc``'s side information."""
        raise NotImplementedError

    def decode(self, enc: Encoded) -> np.ndarray:
        """Regenerate the tensor. Table codecs share one decoder; codecs with more structure override this."""
        return gather_table(enc, self.table(enc))


def _coerce(codec: str, key: str, value: Any, kind: type) -> Any:
    """An option value as its default's type; a value that would change on the way (``n=225.7`` for an int
    option, text that is not a number) is an error, never silently truncated."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"codec {codec!r} option {key!r} must be a number, got {value!r}") from None
    if kind is int:
        if not math.isfinite(number) or number != int(number):
            raise ValueError(f"codec {codec!r} option {key!r} must be an integer, got {value!r}")
        return int(number)
    if not math.isfinite(number):
        raise ValueError(f"codec {codec!r} option {key!r} must be finite, got {value!r}")
    return kind(number)


def validate_input(array: np.ndarray) -> np.ndarray:
    """Check that ``array`` can be encoded; raise ValueError naming the problem."""
    array = np.asarray(array)
    name = array.dtype.name
    if name not in SUPPORTED_DTYPES:
        raise ValueError(f"cannot encode dtype {name}: hyperonnx codecs take {', '.join(SUPPORTED_DTYPES)}")
    if array.size == 0:
        raise ValueError("cannot encode an empty tensor")
    flat = array.reshape(-1)
    bad = 0
    for start in range(0, flat.size, 1 << 22):  # in chunks: no float64 copy of a large tensor
        chunk = flat[start : start + (1 << 22)]
        if chunk.dtype.name == "bfloat16":
            chunk = chunk.astype(np.float32)
        finite = np.isfinite(chunk, out=workspace.array("finite", chunk.size, np.bool_))
        bad += int(chunk.size - np.count_nonzero(finite))
    if bad:
        raise ValueError(f"cannot encode a tensor with {bad} non-finite value(s) (NaN or Inf)")
    return array


def gather_table(enc: Encoded, table: np.ndarray) -> np.ndarray:
    """The shared decoder: unpack codes, check their range, gather table rows, strip the pad, reshape."""
    table = np.asarray(table, dtype=np.float32)
    if table.ndim != 2 or table.shape[1] != enc.group or table.shape[0] == 0:
        raise ValueError(f"decode table has shape {table.shape}, expected (entries, {enc.group})")
    codes = bitpack.unpack(enc.blob, enc.count, enc.bits)
    if codes.size and int(codes.max()) >= table.shape[0]:
        raise ValueError(f"code {int(codes.max())} out of range: the table has {table.shape[0]} entries")
    dtype = dtype_from_name(enc.dtype)
    # Casting the table once and then gathering equals gathering then casting, at a fraction of the work.
    rows = np.ascontiguousarray(table.astype(dtype))
    # Gather whole rows as single opaque items (an unsigned integer of the row's width, or raw bytes): numpy's
    # 1-D take copies them 2–6× faster than fancy indexing of a 2-D table, and the bits are the same.
    width = rows.shape[1] * rows.itemsize
    unit = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}.get(width, np.dtype((np.void, width)))
    values = np.take(rows.view(unit).reshape(-1), codes).view(dtype).reshape(-1)[: enc.numel]
    return values.reshape(enc.shape)
