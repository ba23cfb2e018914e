"""Ctrl-C while the ``hyperonnx`` command starts: one line and exit status 130, never a traceback.

The command's imports (numpy, onnx, onnxruntime) take a few tenths of a second before ``cli.main()`` can catch
KeyboardInterrupt; without a handler a SIGINT prints a traceback from deep inside some import. When this process is
the ``hyperonnx`` command (the console script, or ``python -m hyperonnx``), the package installs
:func:`_interrupted` as the SIGINT handler before its own imports (:func:`guard`), and ``cli.main()`` gives
SIGINT back to Python (:func:`release`) once it catches KeyboardInterrupt itself. Nothing is written before
then, so exiting at once leaves nothing behind. A library import (``import hyperonnx`` in a program) changes
nothing. This module imports only the standard library's already-loaded modules: it must be quick.
"""

from __future__ import annotations

import os
import signal
import sys

MESSAGE = b"hyperonnx: interrupted\n"
COMMAND_NAMES = ("hyperonnx", "hyperonnx.exe", "hyperonnx-script.py")
COMMAND_MODULES = ("hyperonnx", "hyperonnx.__main__", "hyperonnx.cli")  # those whose main() calls release()


def _interrupted(signum, frame) -> None:  # noqa: ARG001 (a signal handler's signature)
    try:
        os.write(2, MESSAGE)
    except OSError:
        pass
    os._exit(130)


def launched_as_command() -> bool:
    """Whether this process is the ``hyperonnx`` command: the console script, or ``python -m hyperonnx``
    (while ``-m`` locates its module, ``sys.argv[0]`` is ``"-m"``)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 == "-m":
        args = list(getattr(sys, "orig_argv", []))
        for i, arg in enumerate(args):
            if arg == "-m" and i + 1 < len(args):
                module = args[i + 1]
            elif arg.startswith("-m") and len(arg) > 2:
                module = arg[2:]
            else:
                continue
            return module in COMMAND_MODULES
        return False
    return os.path.basename(argv0) in COMMAND_NAMES


def guard() -> None:
    """Install the start-up SIGINT handler, if this is the command and SIGINT still has Python's default."""
    if not launched_as_command():
        return
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _interrupted)
    except ValueError:  # not the main thread: not a command start-up
        pass


def release() -> None:
    """Hand SIGINT back to Python (KeyboardInterrupt), if :func:`guard` took it."""
    try:
        if signal.getsignal(signal.SIGINT) is _interrupted:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:
        pass


def settle() -> None:
    """Once the command's work is done (its output written or cleaned up), a Ctrl-C during the interpreter's
    shutdown (joining worker threads, atexit) exits at once with the one line, as during start-up: Python's own
    handler would print a traceback from wherever the shutdown was. Buffered output is written first."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    try:
        signal.signal(signal.SIGINT, _interrupted)
    except ValueError:  # not the main thread
        pass


guard()  # on import: the package imports this module before anything heavy
