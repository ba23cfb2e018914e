"""hyperonnx: Hyper-Compression for ONNX models.

>>> import hyperonnx
>>> hyperonnx.convert("model.onnx", "model.hx.onnx")          # doctest: +SKIP
>>> session = hyperonnx.session("model.hx.onnx")               # doctest: +SKIP

``import hyperonnx`` loads only the standard library: the public names below import their modules (numpy, onnx,
onnxruntime, ml_dtypes) on first use, through the module ``__getattr__``. ml_dtypes alone (imported by onnx) took
0.56-1.2 s of a 0.75-1.8 s import; a program that only wants :func:`library_path` or a session should not pay
for the converter. tests/platform/test_startup.py asserts which modules the import and those two calls load.
"""

from __future__ import annotations

import importlib

# interrupts first, before numpy and onnx: the command's Ctrl-C while starting is one line, not a traceback.
from hyperonnx import interrupts  # noqa: F401
from hyperonnx.errors import HyperonnxError

__version__ = "0.1.0"

# Public names that live in hyperonnx.api (numpy, onnx, the codecs and passes; importing it registers the
# ai.hyperonnx schemas with onnx, see hyperonnx/ops).
_API_NAMES = frozenset({"ConvertOptions", "ConvertResult", "convert", "decompress", "doctor", "inspect", "verify"})
# Subpackages and modules reachable as attributes (``hyperonnx.codec.encode``) without an explicit import.
_SUBMODULES = frozenset({"api", "bench", "cli", "codec", "errors", "evaluate", "jsonout", "library", "model_io", "ops",
                         "passes", "runtime", "sensitivity", "tune"})


def __getattr__(name: str) -> object:  # not typing.Any: importing typing costs more than all of this
    if name in _API_NAMES:
        value = getattr(importlib.import_module("hyperonnx.api"), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"hyperonnx.{name}")
    else:
        raise AttributeError(f"module 'hyperonnx' has no attribute {name!r}")
    globals()[name] = value  # resolved once; later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | _API_NAMES | _SUBMODULES)


def library_path() -> str:
    """Path of the op library to pass to ``SessionOptions.register_custom_ops_library``."""
    from hyperonnx import library

    return library.library_path()


def session(path, sess_options=None, providers=None, provider_options=None, *, mode=None, options=None):
    """An ``onnxruntime.InferenceSession`` for a hyperonnx model, taking ``InferenceSession``'s own arguments;
    by default the fast path (weights decoded once, handed to ONNX Runtime as plain initializers). ``mode``:
    None, "init", "load" or "call" (:func:`hyperonnx.runtime.session`)."""
    from hyperonnx import runtime

    return runtime.session(path, sess_options, providers, provider_options, mode=mode, options=options)


__all__ = ["ConvertOptions", "ConvertResult", "HyperonnxError", "codec", "convert", "decompress", "doctor", "inspect",
           "library_path", "session", "verify", "__version__"]
