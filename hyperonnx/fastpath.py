"""The fast load path in Python: the op library's ONNX rewriter (``include/hyperonnx/fast.h``, via ctypes)
decodes every constant HyperDecode node straight into the bytes of a rewritten model, and ONNX Runtime creates
the session from those bytes with plain constant initializers (docs/ops.md, "Fast path").

Memory: the rewritten model is one ``bytes`` object, decoded into in place, that the session does not keep:
``InferenceSession`` would hold its model bytes for its whole life (to rebuild itself in ``set_providers``), so
:class:`FastSession` drops them after creation and rebuilds them when ORT asks again.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Sequence

import onnxruntime as ort

DECODE_CALL_NODES = 1  # HYPERONNX_FAST_DECODE_CALL_NODES
_FOLDER_KEY = "session.model_external_initializers_file_folder_path"
_ERRLEN = 1024
_lib: ctypes.CDLL | None = None


class _Info(ctypes.Structure):
    _fields_ = [("model_bytes", ctypes.c_uint64), ("external_bytes", ctypes.c_uint64),
                ("decoded_nodes", ctypes.c_uint64), ("decoded_bytes", ctypes.c_uint64),
                ("ops_remain", ctypes.c_int32), ("external_refs", ctypes.c_int32)]


def _library() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        from hyperonnx.library import library_path

        lib = ctypes.CDLL(library_path())
        lib.hyperonnx_fast_plan_file.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_uint64, ctypes.c_int,
                                                 ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_size_t]
        lib.hyperonnx_fast_get_info.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Info)]
        lib.hyperonnx_fast_get_info.restype = None
        lib.hyperonnx_fast_write.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p,
                                             ctypes.c_size_t]
        lib.hyperonnx_fast_free.argtypes = [ctypes.c_void_p]
        lib.hyperonnx_fast_free.restype = None
        _lib = lib
    return _lib


class FastModel:
    """A planned rewrite of one model file (parsed and validated, nothing decoded yet)."""

    def __init__(self, path: str, flags: int = 0, inline_limit: int = 0, threads: int = 0):
        self._handle = ctypes.c_void_p()
        lib = _library()
        err = ctypes.create_string_buffer(_ERRLEN)
        if lib.hyperonnx_fast_plan_file(os.fsencode(path), flags, inline_limit, threads, ctypes.byref(self._handle),
                                        err, _ERRLEN):
            raise RuntimeError(f"hyperonnx: {err.value.decode(errors='replace')}")
        self.info = _Info()
        lib.hyperonnx_fast_get_info(self._handle, ctypes.byref(self.info))

    def model_bytes(self) -> bytes:
        """The rewritten model, decoded straight into a new ``bytes`` object (no intermediate copy)."""
        if self.info.external_bytes:
            raise ValueError("the decoded weights exceed protobuf's 2 GiB: they need the external buffer")
        size = self.info.model_bytes
        make = ctypes.pythonapi.PyBytes_FromStringAndSize
        make.argtypes, make.restype = [ctypes.c_void_p, ctypes.c_ssize_t], ctypes.py_object
        address = ctypes.pythonapi.PyBytes_AsString
        address.argtypes, address.restype = [ctypes.py_object], ctypes.c_void_p
        # A new bytes object's contents may be filled in before anything else sees it (CPython C API).
        data = make(None, size)
        err = ctypes.create_string_buffer(_ERRLEN)
        if _library().hyperonnx_fast_write(self._handle, address(data), None, err, _ERRLEN):
            raise RuntimeError(f"hyperonnx: {err.value.decode(errors='replace')}")
        return data

    def close(self) -> None:
        if self._handle:
            _library().hyperonnx_fast_free(self._handle)
            self._handle = ctypes.c_void_p()

    def __del__(self):
        self.close()


class FastSession(ort.InferenceSession):
    """An ``InferenceSession`` made from a rewritten model that does not keep the rewritten bytes alive."""

    def __init__(self, path: str, data: bytes, rebuild: Callable[[], bytes], sess_options, providers,
                 provider_options):
        self._hx_path, self._hx_rebuild = path, rebuild
        super().__init__(data, sess_options, providers=providers, provider_options=provider_options)
        self._model_bytes = None  # ORT's own attribute: it would hold the decoded weights for the session's life

    def _reset_session(self, providers, provider_options) -> None:  # set_providers: needs the model again
        self._model_bytes = self._hx_rebuild()
        try:
            super()._reset_session(providers, provider_options)
        finally:
            self._model_bytes = None


def session(path: str, sess_options: ort.SessionOptions | None, providers: list[str],
            provider_options: Sequence[dict] | None, decode_call_nodes: bool = False,
            fallback: Callable | None = None) -> ort.InferenceSession:
    """The fast-path session for the hyperonnx model at ``path`` (see :func:`hyperonnx.runtime.session`)."""
    from hyperonnx.library import CONFIG_DECODE_THREADS, session_options

    so = sess_options if sess_options is not None else ort.SessionOptions()
    threads = int(so.get_session_config_entry(CONFIG_DECODE_THREADS) or 0) if _has_entry(so) else 0
    flags = DECODE_CALL_NODES if decode_call_nodes else 0
    plan = FastModel(path, flags, threads=threads)
    info = plan.info
    if info.external_bytes:  # over 2 GiB decoded: ORT's Python API has no in-memory external files before 1.22
        plan.close()
        if fallback is None:
            raise ValueError(f"{path}: decoded weights exceed 2 GiB")
        return fallback(path, providers, sess_options, only_load_nodes=not decode_call_nodes,
                        provider_options=provider_options)
    if info.external_refs:  # other initializers keep their external data: ORT resolves it against this folder
        so.add_session_config_entry(_FOLDER_KEY, os.path.dirname(os.path.abspath(path)))
    if info.ops_remain:  # nodes fed at run time (or call-mode nodes) stay kernels
        session_options(options=so)
    try:
        data = plan.model_bytes()
    finally:
        plan.close()

    def rebuild() -> bytes:
        again = FastModel(path, flags, threads=threads)
        try:
            return again.model_bytes()
        finally:
            again.close()

    return FastSession(path, data, rebuild, so, providers, provider_options)


def _has_entry(so: ort.SessionOptions) -> bool:
    """``get_session_config_entry`` raises for a missing key in some ORT versions."""
    from hyperonnx.library import CONFIG_DECODE_THREADS

    try:
        so.get_session_config_entry(CONFIG_DECODE_THREADS)
        return True
    except Exception:  # noqa: BLE001 - the binding raises RuntimeError/Fail for a missing key
        return False
