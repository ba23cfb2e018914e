"""hyperonnx: Hyper-Compression for ONNX models.

>>> import hyperonnx
>>> hyperonnx.convert("model.onnx", "model.hx.onnx")          # doctest: +SKIP
>>> session = hyperonnx.session("model.hx.onnx")               # doctest: +SKIP
"""

# _startup first, before numpy and onnx: the command's Ctrl-C while starting is one line, not a traceback.
from hyperonnx import _startup, codec  # noqa: F401
from hyperonnx.api import ConvertResult, convert, decompress, doctor, inspect, verify
from hyperonnx.errors import HyperonnxError
from hyperonnx.ops import register_schemas

__version__ = "0.1.0"

register_schemas()


def library_path() -> str:
    """Path of the op library to pass to ``SessionOptions.register_custom_ops_library``."""
    from hyperonnx import runtime

    return runtime.library_path()


def session(path, providers=None, mode=None):
    """An ``onnxruntime.InferenceSession`` with the op library registered (``mode``: load | call)."""
    from hyperonnx import runtime

    return runtime.session(path, providers=providers, mode=mode)


__all__ = ["ConvertResult", "HyperonnxError", "codec", "convert", "decompress", "doctor", "inspect",
           "library_path", "session", "verify", "__version__"]
