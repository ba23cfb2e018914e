"""The op library: where ``libhyperonnx_ops.so`` is and how a session registers it. Imports nothing heavy, so
``hyperonnx.library_path()`` costs no onnx or onnxruntime import (tests/platform/test_startup.py)."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnxruntime as ort

LIBRARY_NAME = "libhyperonnx_ops.so"
LIBRARY_ENV = "HYPERONNX_LIBRARY"
CONFIG_DECODE_MODE = "hyperonnx.decode_mode"
CONFIG_DECODE_THREADS = "hyperonnx.decode_threads"
KERNEL_MODES = ("load", "call")

_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_BUILD = _PACKAGE_DIR.parent / "build"


def library_path() -> str:
    """Path of ``libhyperonnx_ops.so``: $HYPERONNX_LIBRARY, else the package folder (wheel install), else the
    newest build under ``<repo>/build/`` (source checkout)."""
    env = os.environ.get(LIBRARY_ENV)
    if env:
        if not os.path.isfile(env):
            raise FileNotFoundError(f"{LIBRARY_ENV}={env} does not exist")
        return env
    import hyperonnx

    for folder in [_PACKAGE_DIR, *(Path(p) for p in getattr(hyperonnx, "__path__", []))]:
        candidate = folder / LIBRARY_NAME
        if candidate.is_file():
            return str(candidate)
    built = glob.glob(str(_REPO_BUILD / "**" / LIBRARY_NAME), recursive=True)
    if built:
        return max(built, key=os.path.getmtime)  # the most recent build wins
    raise FileNotFoundError(
        f"{LIBRARY_NAME} not found (looked at ${LIBRARY_ENV}, {_PACKAGE_DIR}, {_REPO_BUILD}/**): build it with "
        "`pip install .` or `cmake -S . -B build && cmake --build build`")


def session_options(mode: str | None = None, threads: int | None = None,
                    options: ort.SessionOptions | None = None) -> ort.SessionOptions:
    """SessionOptions with the op library registered; ``mode`` ("load"/"call") overrides every node's attribute,
    ``threads`` sets the decode threads per tensor. Config entries must precede registration (the library reads
    them then), so pass ``options`` here rather than setting them afterwards."""
    if mode is not None and mode not in KERNEL_MODES:
        raise ValueError(f"decode mode {mode!r} is not one of {', '.join(KERNEL_MODES)}")
    import onnxruntime as ort

    so = options if options is not None else ort.SessionOptions()
    if mode is not None:
        so.add_session_config_entry(CONFIG_DECODE_MODE, mode)
    if threads is not None:
        if threads < 1:
            raise ValueError(f"decode threads must be positive, got {threads}")
        so.add_session_config_entry(CONFIG_DECODE_THREADS, str(int(threads)))
    so.register_custom_ops_library(library_path())
    return so


__all__ = ["CONFIG_DECODE_MODE", "CONFIG_DECODE_THREADS", "KERNEL_MODES", "LIBRARY_ENV", "LIBRARY_NAME",
           "library_path", "session_options"]
