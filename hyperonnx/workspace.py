"""Scratch memory that a conversion's worker threads reuse from one tensor to the next.

A new large numpy array is new memory from the kernel, which zeroes every page on its first write. The converter
makes several such arrays a tensor that live only while the tensor is encoded: the tensor read from external data,
the float64 chunk of its sum of squares, the decoded copy its SQNR is measured on, the rANS coder's output. On a
1 B-weight conversion the kernel's zeroing of them was a tenth of all CPU time (perf: ``clear_page_erms``;
benchmarks/convert_rate.py). On a thread that called :func:`keep` (a conversion pool's initializer), :func:`array`
hands the same memory out again for the same purpose; on any other thread it is ``np.empty``.

A purpose's array is valid until the next :func:`array` of that purpose on the same thread: each user takes one,
uses it and lets it go before it could be asked for again (no recursion, no holding across tensors). Arrays over
:data:`MAX_KEPT` bytes are made new each time and not kept: a thread holds at most that much per purpose, so one
huge tensor (an LLM's embedding) does not leave its scratch behind for the rest of the conversion.
"""

from __future__ import annotations

import threading

import numpy as np

_local = threading.local()
# Per purpose and thread: a 1 B-parameter transformer's largest tensors (2048 x 8192 fp32) fit; SmolLM2's
# embedding (28 M weights) does not, and kept its decoded copy and coder output (~170 MB a worker) for the rest
# of its conversion.
MAX_KEPT = 64 << 20


def keep() -> None:
    """From now on this thread reuses its scratch arrays (until it ends: they go with it)."""
    _local.buffers = {}


def array(purpose: str, shape: int | tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """An uninitialized C-contiguous array: this thread's scratch for ``purpose`` where it keeps one, else new."""
    dtype = np.dtype(dtype)
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        return np.empty(shape, dtype)
    count = int(np.prod(shape, dtype=np.int64))
    nbytes = count * dtype.itemsize
    if nbytes > MAX_KEPT:
        return np.empty(shape, dtype)
    raw = buffers.get(purpose)
    if raw is None or raw.size < nbytes:
        buffers[purpose] = None  # the old one is freed before the larger one is made
        raw = buffers[purpose] = np.empty(nbytes, np.uint8)
    return raw[:nbytes].view(dtype).reshape(shape)


__all__ = ["array", "keep"]
