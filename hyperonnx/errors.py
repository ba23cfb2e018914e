"""The one error type for user mistakes, and the one way an exception is shortened into such an error's line."""

from __future__ import annotations


class HyperonnxError(Exception):
    """A problem with the user's input or options (missing or corrupt file, unknown codec, bad path...)."""


def short_reason(exc: BaseException, limit: int = 300, typed: bool = False) -> str:
    """The first non-empty line of an exception's message, at most ``limit`` characters, or its type's name when
    it has none; ``typed`` puts the type's name in front (for a row of a report, where the type is news).
    ONNX Runtime, protobuf and zipfile put multi-line dumps in their messages: the CLI prints one line."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0][:limit] if lines else ""
    if not text:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text}" if typed else text
