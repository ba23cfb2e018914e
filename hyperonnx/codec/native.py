"""Native encoders: the C++ library ``libhyperonnx_encoders.so`` (custom_ops/src/encoders/) through ctypes.

numpy stays the specification. Each native encoder reproduces its numpy encoder's arithmetic operation by operation
(the same float32/float64 roundings in the same order), so the blobs are byte-identical; the tables the numpy
encoders derive (level sets, nearest-level grids, scale tables) are handed to the library from here, so each has
one definition. Where a numpy encoder takes a path the library does not reproduce (a tensor so small that its
block scales underflow to zero), the library says so and the numpy encoder runs instead.

The fallback: without the library, or with ``HYPERONNX_NATIVE=0`` in the environment, every codec encodes with
numpy alone. ``hyperonnx doctor`` says which one is in use (:func:`describe`).

Threads: a native encoder splits a tensor's blocks over threads. ``convert --jobs`` already encodes tensors on
parallel threads, so each call takes an equal share of the thread budget (:func:`set_threads`, default: the CPU
count) among the native calls in flight: with two jobs on two cores each tensor gets one thread, and the last large
tensor, once alone, gets both.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
import threading
from pathlib import Path

import numpy as np

from hyperonnx import workspace
from hyperonnx.codec.block_header import HEADER_BITS, SCALE_CODES

ENV = "HYPERONNX_NATIVE"  # "0": numpy encoders only
LIBRARY_ENV = "HYPERONNX_ENCODERS_LIBRARY"  # an explicit path to the library
THREADS_ENV = "HYPERONNX_ENCODE_THREADS"
LIBRARY_NAME = "libhyperonnx_encoders.so"
ABI_VERSION = 1
NEEDS_REFERENCE = 1  # the library's answer where numpy must encode (encoders.h)
# Weights handed to the library per call: a multiple of 8 codes, so every chunk's packed codes start on a byte
# boundary; a non-float32 tensor is converted a chunk at a time (bounded memory).
CHUNK_WEIGHTS = 1 << 22

_PACKAGE_DIR = Path(__file__).resolve().parent.parent
_REPO_BUILD = _PACKAGE_DIR.parent / "build"

_f32 = np.ctypeslib.ndpointer(dtype=np.float32, flags="C_CONTIGUOUS")
_i16 = np.ctypeslib.ndpointer(dtype=np.int16, flags="C_CONTIGUOUS")
_i32 = np.ctypeslib.ndpointer(dtype=np.int32, flags="C_CONTIGUOUS")
_i64 = np.ctypeslib.ndpointer(dtype=np.int64, flags="C_CONTIGUOUS")
_u8 = np.ctypeslib.ndpointer(dtype=np.uint8, flags="C_CONTIGUOUS")
_u16 = np.ctypeslib.ndpointer(dtype=np.uint16, flags="C_CONTIGUOUS")
_u32 = np.ctypeslib.ndpointer(dtype=np.uint32, flags="C_CONTIGUOUS")
_u64 = np.ctypeslib.ndpointer(dtype=np.uint64, flags="C_CONTIGUOUS")
_SIGNATURES = {
    "hx_encoders_abi_version": [],
    "hx_block_absmax": [_f32, ctypes.c_uint64, ctypes.c_uint32, _f32, ctypes.c_int],
    "hx_count_u8": [_u8, ctypes.c_uint64, _u64],
    "hx_pack_u16": [_u16, ctypes.c_uint64, ctypes.c_int, _u8, ctypes.c_int],
    "hx_rans_bound": [ctypes.c_uint64],
    "hx_rans_encode": [ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), _u64, _u32, _u32, _u8, ctypes.c_uint64,
                       ctypes.POINTER(ctypes.c_uint64)],
    "hx_tcq_levels": [_f32, ctypes.c_uint64, ctypes.c_uint32, _f32, _u8, ctypes.c_int],
    "hx_blocktcq_encode": [_f32, ctypes.c_uint64, ctypes.c_int, ctypes.c_uint32, _f32, _f32, _f32, _f32, _i16, _i32,
                           _u8, _i64, _u16, _u32, ctypes.c_int],
    "hx_blockvq_encode": [_f32, ctypes.c_uint64, ctypes.c_int, ctypes.c_uint32, _f32, _f32, _f32, _i32, _u8, _i64,
                          _u16, _u32, ctypes.c_int],
}


def library_path() -> str | None:
    """$HYPERONNX_ENCODERS_LIBRARY, else the package folder (wheel install), else the newest build under
    ``<repo>/build/`` (source checkout); None when there is none."""
    env = os.environ.get(LIBRARY_ENV)
    if env:
        return env if os.path.isfile(env) else None
    import hyperonnx

    for folder in [_PACKAGE_DIR, *(Path(p) for p in getattr(hyperonnx, "__path__", []))]:  # as runtime.library_path
        candidate = folder / LIBRARY_NAME
        if candidate.is_file():
            return str(candidate)
    built = glob.glob(str(_REPO_BUILD / "**" / LIBRARY_NAME), recursive=True)
    return max(built, key=os.path.getmtime) if built else None


@functools.cache
def _load() -> tuple[ctypes.CDLL | None, str]:
    """The library and a description of it, or None and why the numpy encoders are used."""
    path = library_path()
    if path is None:
        return None, f"{LIBRARY_NAME} not found"
    try:
        lib = ctypes.CDLL(path)
        for name, args in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, ctypes.c_uint64 if name == "hx_rans_bound" else ctypes.c_int
    except (OSError, AttributeError) as exc:
        return None, f"{path} does not load ({exc})"
    if lib.hx_encoders_abi_version() != ABI_VERSION:
        return None, f"{path} is a stale build (interface {lib.hx_encoders_abi_version()}, expected {ABI_VERSION})"
    return lib, path


def library() -> ctypes.CDLL | None:
    """The loaded library, or None where the numpy encoders are used (no library, or HYPERONNX_NATIVE=0)."""
    if os.environ.get(ENV, "1").strip() == "0":
        return None
    return _load()[0]


def available() -> bool:
    return library() is not None


def describe() -> str:
    """One line for ``hyperonnx doctor``: which encoders are in use, and why."""
    if os.environ.get(ENV, "1").strip() == "0":
        return f"numpy ({ENV}=0)"
    lib, where = _load()
    return f"native ({where})" if lib is not None else f"numpy ({where})"


# ---- threads ----------------------------------------------------------------------------------------------------
_threads_budget: int | None = None
_active = 0
_active_lock = threading.Lock()


def set_threads(threads: int | None) -> None:
    """The threads all native encoder calls share (None: $HYPERONNX_ENCODE_THREADS, else the CPU count)."""
    global _threads_budget
    if threads is not None and threads < 1:
        raise ValueError(f"encoder threads must be positive, got {threads}")
    _threads_budget = threads


def thread_budget() -> int:
    if _threads_budget is not None:
        return _threads_budget
    env = os.environ.get(THREADS_ENV, "")
    if env.strip().isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class _Share:
    """A native call's share of the thread budget, among the calls in flight."""

    def __enter__(self) -> int:
        global _active
        with _active_lock:
            _active += 1
            return max(1, thread_budget() // _active)

    def __exit__(self, *exc) -> None:
        global _active
        with _active_lock:
            _active -= 1


def _check(rc: int, what: str) -> bool:
    """True when done; False where numpy must encode; a library error raises (a bug, never silent)."""
    if rc == 0:
        return True
    if rc == NEEDS_REFERENCE:
        return False
    raise RuntimeError(f"native {what} encoder failed (code {rc})")


# ---- block maxima (ecsq, tcq) -------------------------------------------------------------------------------------
def block_absmax(blocks: np.ndarray) -> np.ndarray | None:
    """``np.abs(blocks).max(axis=1)`` of a float32 (blocks × B) array without NaN (the library's max skips a NaN,
    numpy's keeps it: the caller checks); None without the library. A max is exact in any order, so the values are
    numpy's; ecsq.block_scales on 8 M weights in blocks of 64 took 37 ms with numpy's reduction along the short
    rows, 15 with this."""
    lib = library()
    if lib is None or blocks.ndim != 2 or blocks.dtype != np.float32 or blocks.shape[1] == 0:
        return None
    blocks = np.ascontiguousarray(blocks)
    out = np.empty(blocks.shape[0], dtype=np.float32)
    with _Share() as threads:
        _check(lib.hx_block_absmax(blocks, blocks.size, blocks.shape[1], out, threads), "block maxima")
    return out


def symbol_counts(flat: np.ndarray) -> np.ndarray | None:
    """``np.bincount(flat)`` of uint8 symbols (length: the largest symbol + 1), or None without the library.
    Counts are exact in any order; numpy widens every symbol to int64 first, which made the counts a tenth of a tcq
    encode (16.7 M symbols: 28 ms, 4 here)."""
    lib = library()
    if lib is None or flat.dtype != np.uint8 or flat.ndim != 1 or flat.size == 0:
        return None
    flat = np.ascontiguousarray(flat)
    counts = np.zeros(256, dtype=np.uint64)
    _check(lib.hx_count_u8(flat, flat.size, counts), "symbol counts")
    return counts[: int(np.flatnonzero(counts)[-1]) + 1].astype(np.int64)


# ---- blocktcq ---------------------------------------------------------------------------------------------------
def block_scale_starts(absmax: np.ndarray, smax: float) -> np.ndarray:
    """Each block's first scale code from its absolute maximum: blockvq's and blocktcq's numpy expression (numpy's
    log2, whose SIMD form may differ from the C library's in the last bit, so it stays in numpy)."""
    absmax = np.asarray(absmax).astype(np.float64)
    with np.errstate(divide="ignore"):
        k0 = np.floor(-np.log2(np.maximum(absmax, 1e-300) / smax) * 16)
    return np.ascontiguousarray(np.clip(k0, 0, SCALE_CODES - 1).astype(np.int64))


def _chunks(flat: np.ndarray, block: int):
    """(first, float32 contiguous part) over ``flat`` in whole blocks (a multiple of 8 weights each)."""
    step = max(8 * block, CHUNK_WEIGHTS // (8 * block) * (8 * block))
    for first in range(0, flat.size, step):
        yield first, np.ascontiguousarray(flat[first : first + step], dtype=np.float32)


def encode_blocktcq(flat: np.ndarray, bits: int, block: int, smax: float, scales: np.ndarray,
                    tables: tuple[np.ndarray, ...]) -> np.ndarray | None:
    """blocktcq's blob (codes, then headers) for ``flat`` (any float dtype) whose largest magnitude is ``smax``
    (> 0) and whose scale table is ``scales``; ``tables``: :func:`hyperonnx.codec.blocktcq.native_tables`. None
    where numpy must encode (no library, or a path the library does not reproduce)."""
    lib = library()
    if lib is None or not (np.asarray(scales) > 0).all():  # a zero scale: numpy's NaN cells (it raises or clips)
        return None
    from hyperonnx.codec import bitpack

    books, proxy, edges, index, lut, exact = tables
    scales = np.ascontiguousarray(scales, dtype=np.float32)
    numel = flat.size
    nblocks = -(-numel // block)
    codes = np.empty(bitpack.packed_size(numel, bits), dtype=np.uint8)
    headers = np.empty(nblocks, dtype=np.uint32)
    with _Share() as threads:
        for first, part in _chunks(flat, block):
            nb = -(-part.size // block)
            absmax = np.empty(nb, dtype=np.float32)
            _check(lib.hx_block_absmax(part, part.size, block, absmax, threads), "blocktcq")
            k0 = block_scale_starts(absmax, smax)
            digits = np.empty(part.size, dtype=np.uint16)
            q = first // block
            rc = lib.hx_blocktcq_encode(part, part.size, bits, block, books, scales, proxy, edges, index, lut, exact,
                                        k0, digits, headers[q : q + nb], threads)
            if not _check(rc, "blocktcq"):
                return None
            at = first * bits // 8
            _check(lib.hx_pack_u16(digits, digits.size, bits, codes[at : at + bitpack.packed_size(part.size, bits)],
                                   threads), "blocktcq")
    return np.concatenate([codes, bitpack.pack(headers, HEADER_BITS)])


# ---- blockvq ----------------------------------------------------------------------------------------------------
def encode_blockvq(flat: np.ndarray, bits: int, block: int, smax: float, scales: np.ndarray,
                   tables: tuple[np.ndarray, ...]) -> np.ndarray | None:
    """blockvq's blob (θ codes, then headers) for ``flat`` (any float dtype) whose largest magnitude is ``smax``
    (> 0) and whose scale table is ``scales``; ``tables``: :func:`hyperonnx.codec.blockvq.native_tables`. None
    where numpy must encode (no library, or a path the library does not reproduce)."""
    lib = library()
    if lib is None:
        return None
    from hyperonnx.codec import bitpack

    levels, edges, lut, exact = tables
    scales = np.ascontiguousarray(scales, dtype=np.float32)
    nblocks = -(-flat.size // block)
    codes = np.empty(bitpack.packed_size(-(-flat.size // 2), 2 * bits), dtype=np.uint8)
    headers = np.empty(nblocks, dtype=np.uint32)
    with _Share() as threads:
        for first, part in _chunks(flat, block):  # chunks of whole blocks, a multiple of 8 θ each
            nb = -(-part.size // block)
            absmax = np.empty(nb, dtype=np.float32)
            _check(lib.hx_block_absmax(part, part.size, block, absmax, threads), "blockvq")
            theta = np.empty(-(-part.size // 2), dtype=np.uint16)
            q = first // block
            rc = lib.hx_blockvq_encode(part, part.size, bits, block, levels, scales, edges, lut, exact,
                                       block_scale_starts(absmax, smax), theta, headers[q : q + nb], threads)
            if not _check(rc, "blockvq"):
                return None
            at = first * bits // 8  # first / 2 codes of 2·bits bits
            _check(lib.hx_pack_u16(theta, theta.size, 2 * bits,
                                   codes[at : at + bitpack.packed_size(theta.size, 2 * bits)], threads), "blockvq")
    return np.concatenate([codes, bitpack.pack(headers, HEADER_BITS)])


# ---- tcq --------------------------------------------------------------------------------------------------------
def tcq_levels(blocks: np.ndarray, block_steps: np.ndarray) -> np.ndarray | None:
    """TcqCodec.levels (uint8 symbols, blocks × B) of zero-padded float32 ``blocks`` whose steps are ``block_steps``;
    None where numpy must run (no library, or a level numpy's int16 cast would make of a non-finite value)."""
    lib = library()
    if lib is None or blocks.ndim != 2 or blocks.dtype != np.float32:
        return None
    blocks = np.ascontiguousarray(blocks)
    steps = np.ascontiguousarray(block_steps, dtype=np.float32)
    out = np.empty(blocks.shape, dtype=np.uint8)
    with _Share() as threads:
        rc = lib.hx_tcq_levels(blocks, blocks.shape[0], blocks.shape[1], steps, out, threads)
    return out if _check(rc, "tcq") else None


# ---- rANS -------------------------------------------------------------------------------------------------------
def rans_encode(phases, scratch: bool = False) -> bytes | np.ndarray | None:
    """rans.encode's stream for ``phases`` ((symbols, Model) pairs; plain models only), or None where numpy must
    encode (no library, a context-mixed model, or a symbol its model has no frequency for: numpy raises). With
    ``scratch``, the stream is a uint8 view of this thread's scratch (:mod:`hyperonnx.workspace`), to be copied
    before the next call, instead of bytes."""
    lib = library()
    # A plain model has one frequency row; a context-mixed one a row per context (rans.Mixed). Told apart by
    # shape, so this module needs nothing from rans, which counts its symbols here.
    if lib is None or not all(np.ndim(m.freq) == 1 and np.asarray(s).dtype == np.uint8 for s, m in phases):
        return None
    symbols = [np.ascontiguousarray(s).reshape(-1) for s, _ in phases]
    freq = np.zeros((len(phases), 256), dtype=np.uint32)
    cum = np.zeros((len(phases), 256), dtype=np.uint32)
    for p, (_, model) in enumerate(phases):
        freq[p, model.lo : model.lo + model.freq.size] = model.freq
        cum[p, model.lo : model.lo + model.cum.size] = model.cum
    total = sum(s.size for s in symbols)
    out = workspace.array("rans stream", lib.hx_rans_bound(total), np.uint8)
    size = ctypes.c_uint64(0)
    pointers = (ctypes.c_void_p * len(symbols))(*[s.ctypes.data for s in symbols])
    counts = np.array([s.size for s in symbols], dtype=np.uint64)
    rc = lib.hx_rans_encode(len(symbols), pointers, counts, freq, cum, out, out.size, ctypes.byref(size))
    if not _check(rc, "rANS"):
        return None
    return out[: size.value] if scratch else out[: size.value].tobytes()


__all__ = ["available", "block_absmax", "block_scale_starts", "describe", "encode_blocktcq", "library", "rans_encode", "set_threads", "tcq_levels",
           "thread_budget"]


# ---- decoding: the converter's check of each encoding (custom_ops/src/encoders/decode.cc); grid's rANS ---------
# The library holds the op library's decoder core, bit-exact with the numpy decoders, and compress.sqnr_db's sums
# in numpy's own order. Looked up apart from _SIGNATURES, so a library built without them still encodes; numpy
# then decodes and sums.
_ONNX_DTYPES = {"float32": 1, "float16": 10, "float64": 11, "bfloat16": 16}
_DECODE_SIGNATURES = {
    "hx_decode": [ctypes.c_char_p, ctypes.c_uint64, _u8, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int,
                  ctypes.c_char_p, ctypes.c_uint64],
    "hx_sqnr_sums": [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int64, ctypes.c_int,
                     ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_double)],
    "hx_rans_encode_pairs": [_u16, _u16, ctypes.c_uint64, _u8, ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint64)],
}


@functools.cache
def _decode_functions(lib: ctypes.CDLL) -> dict | None:
    try:
        functions = {name: getattr(lib, name) for name in _DECODE_SIGNATURES}
    except AttributeError:
        return None
    for name, fn in functions.items():
        fn.argtypes, fn.restype = _DECODE_SIGNATURES[name], ctypes.c_int
    return functions


def _decoding() -> dict | None:
    lib = library()
    return None if lib is None else _decode_functions(lib)


def _attribute_text(enc) -> bytes:
    """The encoding as its HyperDecode node's attributes (ort_node.node_attributes), one a line for hx_decode."""
    def ints(values) -> str:
        return " ".join(str(int(v)) for v in values)

    lines = [f"s codec {enc.codec}", f"i format {enc.format_version}", f"i shape {ints(enc.shape)}",
             f"i dtype {_ONNX_DTYPES[enc.dtype]}", f"i group {enc.group}", f"i bits {enc.bits}", "s mode load"]
    lines += [f"i i_{key} {ints(values)}" for key, values in enc.ints.items()]
    lines += [f"f f_{key} {' '.join(float(v).hex() for v in values)}" for key, values in enc.floats.items()]
    return "\n".join(lines).encode()


def decode(enc, out: np.ndarray | None = None) -> np.ndarray | None:
    """``codec.decode(enc)``, decoded by the library (the same bits), or None where numpy must decode (no library,
    or a codec the library does not know). A blob the library rejects raises RuntimeError: the encoders made it, so
    that is a bug, never a silent fallback. ``out``: where to decode (C-contiguous, the tensor's size and dtype;
    returned in the tensor's shape)."""
    functions = _decoding()
    if functions is None or enc.dtype not in _ONNX_DTYPES or any(" " in str(k) for k in (*enc.ints, *enc.floats)):
        return None
    from hyperonnx.codec.base import dtype_from_name

    dtype = dtype_from_name(enc.dtype)
    if out is None:
        out = np.empty(enc.shape, dtype=dtype)
    elif out.dtype != dtype or out.size != enc.numel or not out.flags.c_contiguous:
        raise ValueError(f"native decode: out must be a C-contiguous {dtype} array of {enc.numel} elements")
    out = out.reshape(enc.shape)
    blob = np.ascontiguousarray(enc.blob, dtype=np.uint8).reshape(-1)
    text = _attribute_text(enc)
    error = ctypes.create_string_buffer(512)
    with _Share() as threads:
        rc = functions["hx_decode"](text, len(text), blob, blob.size, out.ctypes.data, out.nbytes, threads, error,
                                    len(error))
    if rc == NEEDS_REFERENCE:
        return None
    if rc != 0:
        raise RuntimeError(f"native {enc.codec} decoder failed: {error.value.decode(errors='replace')}")
    return out


def sqnr_sums(original: np.ndarray, decoded: np.ndarray) -> tuple[float, float] | None:
    """(signal, noise): compress.sqnr_db's two float64 sums, Σx² and Σ(x − y)², to the last bit (numpy's pairwise
    order), with no float64 copy of either tensor; None where numpy must sum (no library, other dtypes)."""
    functions = _decoding()
    if functions is None or original.dtype != decoded.dtype or original.size != decoded.size:
        return None
    if original.dtype.name not in _ONNX_DTYPES:
        return None
    x = np.ascontiguousarray(original).reshape(-1)
    y = np.ascontiguousarray(decoded).reshape(-1)
    signal, noise = ctypes.c_double(), ctypes.c_double()
    with _Share() as threads:
        rc = functions["hx_sqnr_sums"](x.ctypes.data, y.ctypes.data, x.size, _ONNX_DTYPES[x.dtype.name], threads,
                                       ctypes.byref(signal), ctypes.byref(noise))
    _check(rc, "SQNR")
    return signal.value, noise.value


def rans_encode_pairs(freq: np.ndarray, cum: np.ndarray) -> bytes | None:
    """rans.encode's stream for symbols whose (freq, cum) pairs are given (rans.symbol_frequencies: any phases,
    context-mixed ones included), or None where numpy must encode (no library, or a zero frequency)."""
    functions = _decoding()
    lib = library()
    if functions is None or lib is None or freq.size != cum.size:
        return None
    f = np.ascontiguousarray(freq, dtype=np.uint16)
    c = np.ascontiguousarray(cum, dtype=np.uint16)
    out = np.empty(lib.hx_rans_bound(f.size), dtype=np.uint8)
    size = ctypes.c_uint64(0)
    rc = functions["hx_rans_encode_pairs"](f, c, f.size, out, out.size, ctypes.byref(size))
    return out[: size.value].tobytes() if _check(rc, "rANS") else None


__all__ += ["decode", "rans_encode_pairs", "sqnr_sums"]
