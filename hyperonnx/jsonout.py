"""JSON for scripts: strict RFC 8259 text. Python's json writes NaN and Infinity, which most parsers outside
Python reject (JavaScript's, jq's, Go's); hyperonnx has such values (an exactly stored tensor's SQNR is
infinite, a model's NaN output has a NaN cosine), so they are written as null."""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (numpy's too) replaced by None, through dicts, lists and tuples."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        return None if isinstance(value, float) and not math.isfinite(value) else value
    if hasattr(value, "dtype") and getattr(value, "shape", None) == ():  # a numpy scalar
        return finite(value.item())
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """Indented strict JSON; objects JSON has no form for (paths, say) become their str()."""
    return json.dumps(finite(value), indent=2, default=str, allow_nan=False)
