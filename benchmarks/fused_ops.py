"""HyperGemm, HyperGather and HyperConv against fp32 and today's call mode (docs/fused.md, "Measurements"), and
all-MiniLM-L6-v2 end to end in call mode.

    nice -n 10 .venv/bin/python benchmarks/fused_ops.py --clock cpu          # the op rows (~1 minute)
    nice -n 10 .venv/bin/python benchmarks/fused_ops.py --minilm --clock cpu # + MiniLM, batch 1, 128 tokens

Each op in one ORT session per variant, timed in interleaved rounds (benchmarks/fused.py's method), medians:
  fp32   the standard op with its weight a constant initializer;
  call   HyperDecode (mode call) + the standard op: the whole weight decoded on every run;
  fused  the fused op: only θ resident, decoded a tile (Gemm, Conv) or a requested row (Gather) at a time.
Weights are blocktcq encodings at the codec's defaults with random θ and headers (fused.blocktcq_weight). Rows:
  Gemm   torch's Linear form (W [N, K], transB = 1, bias), 4096 × 4096, M ∈ {1, 64};
  Gather an embedding table of 49152 × 576 (SmolLM2's), 1 token and 128 tokens;
  tied   SmolLM2's tied LM head, MatMul(X [1, T, 576], Transpose(table)), 6-bit codes as the default policy gives
         that table in call mode, T ∈ {1, 8}: fp32 reads the table transposed once at load (ORT folds the Transpose
         of a constant), call decodes and transposes it on every run, fused is HyperMatMul with transB;
  Conv   a 1×1 Conv 256 → 256 over 28 × 28 and three of MobileNetV2's pointwise shapes, batch 1.
Prints milliseconds per run, ratios to fp32 and resident weight bytes. --minilm converts all-MiniLM-L6-v2 with
`--decode call` (fused) and times it against the original and against the same conversion unfused (HyperDecode
everywhere), batch 1 × 128 tokens; resident weight bytes count every initializer the session keeps (θ blobs and the
tensors left uncompressed).

--clock cpu times one-thread runs by this thread's CPU time (a shared machine); two-thread rows stay on wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from fused import blocktcq_weight, rel_error, session, time_variants  # noqa: E402

from hyperonnx import codec  # noqa: E402
from hyperonnx.passes.ort_node import node_attributes  # noqa: E402

VARIANTS = ("fp32", "call", "fused")


def _model(nodes, inputs, inits, domains: list[str]) -> bytes:
    opsets = [helper.make_opsetid("", 17), *[helper.make_opsetid(d, 1) for d in domains]]
    graph = helper.make_graph(nodes, "op", inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                              initializer=inits)
    return helper.make_model(graph, opset_imports=opsets, ir_version=8).SerializeToString()


def variants(enc: codec.Encoded, op: str, inputs: list, extra_inits: list, **op_attrs) -> tuple[dict, dict]:
    """fp32 / call / fused models of `op` (its weight is the input "W"), and their resident weight bytes."""
    w = codec.decode(enc)
    attrs = node_attributes(enc, "call")
    theta = numpy_helper.from_array(enc.blob, "theta")
    order = {"Gemm": ["X", "W", "C"], "Gather": ["W", "I"], "Conv": ["X", "W", "B"]}[op]
    plain = helper.make_node(op, order, ["Y"], **op_attrs)
    decode = helper.make_node("HyperDecode", ["theta"], ["W"], domain="ai.hyperonnx", **attrs)
    attrs.pop("mode")
    fused_inputs = [("theta" if i == "W" else i) for i in order]
    fused = helper.make_node(f"Hyper{op}", fused_inputs, ["Y"], domain="ai.hyperonnx", **attrs, **op_attrs)
    models = {"fp32": _model([plain], inputs, [numpy_helper.from_array(w, "W"), *extra_inits], []),
              "call": _model([decode, plain], inputs, [theta, *extra_inits], ["ai.hyperonnx"]),
              "fused": _model([fused], inputs, [theta, *extra_inits], ["ai.hyperonnx"])}
    extra = sum(numpy_helper.to_array(t).nbytes for t in extra_inits)
    return models, {"fp32": w.nbytes + extra, "call": enc.blob.nbytes + extra, "fused": enc.blob.nbytes + extra}


class Repeated:
    """A session whose run() runs it `times` times: microsecond ops are timed over many runs (the clocks' resolution
    and the per-sample overhead would swamp one); the printed times are per run."""

    def __init__(self, sess, times: int):
        self.sess, self.times = sess, times

    def run(self, outputs, feeds):
        for _ in range(self.times):
            result = self.sess.run(outputs, feeds)
        return result


def op_cases():
    """(label, models, sizes, feeds, runs per timed sample) for every row."""
    rng = np.random.default_rng(0)
    k = n = 4096
    enc = blocktcq_weight(n, k)  # [N, K]: transB = 1
    bias = numpy_helper.from_array(rng.standard_normal(n).astype(np.float32) * 0.01, "C")
    for m in (1, 64):
        x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [m, k])
        models, sizes = variants(enc, "Gemm", [x], [bias], transB=1)
        yield f"Gemm {n}×{k}ᵀ M={m}", models, sizes, {"X": rng.standard_normal((m, k)).astype(np.float32)}, 1
    table = blocktcq_weight(49152, 576, seed=1)
    for tokens in (1, 128):
        idx = helper.make_tensor_value_info("I", TensorProto.INT64, [1, tokens])
        models, sizes = variants(table, "Gather", [idx], [])
        yield f"Gather 49152×576 T={tokens}", models, sizes, {"I": rng.integers(0, 49152, (1, tokens))}, 200
    tied = blocktcq_weight(49152, 576, seed=1, bits=6)
    for tokens in (1, 8):
        models, sizes = tied_head_variants(tied, tokens)
        yield f"tied 576×49152ᵀ T={tokens}", models, sizes, {"X": rng.standard_normal((1, tokens, 576), np.float32)}, 1
    # 256 → 256 over 28², then three of MobileNetV2's pointwise shapes (C → M over S²).
    for c, m, side in ((256, 256, 28), (32, 192, 56), (96, 576, 14), (320, 1280, 7)):
        kernel = dataclasses.replace(blocktcq_weight(m, c, seed=2), shape=(m, c, 1, 1))
        x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, c, side, side])
        b = numpy_helper.from_array(rng.standard_normal(m).astype(np.float32) * 0.01, "B")
        models, sizes = variants(kernel, "Conv", [x], [b])
        feeds = {"X": rng.standard_normal((1, c, side, side)).astype(np.float32)}
        yield f"Conv 1×1 {c}→{m} {side}²", models, sizes, feeds, 10


def tied_head_variants(enc: codec.Encoded, tokens: int) -> tuple[dict, dict]:
    """fp32 / call / fused models of MatMul(X, Transpose(W)) for a weight W stored [N, K], and their resident bytes."""
    w = codec.decode(enc)
    n, k = w.shape
    x = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, tokens, k])]
    attrs = node_attributes(enc, "call")
    theta = numpy_helper.from_array(enc.blob, "theta")
    head = [helper.make_node("Transpose", ["W"], ["Wt"], perm=[1, 0]), helper.make_node("MatMul", ["X", "Wt"], ["Y"])]
    decode = helper.make_node("HyperDecode", ["theta"], ["W"], domain="ai.hyperonnx", **attrs)
    attrs.pop("mode")
    fused = helper.make_node("HyperMatMul", ["X", "theta"], ["Y"], domain="ai.hyperonnx", transB=1, **attrs)
    models = {"fp32": _model(head, x, [numpy_helper.from_array(w, "W")], []),
              "call": _model([decode, *head], x, [theta], ["ai.hyperonnx"]),
              "fused": _model([fused], x, [theta], ["ai.hyperonnx"])}
    return models, {"fp32": w.nbytes, "call": enc.blob.nbytes, "fused": enc.blob.nbytes}


def resident_bytes(model: onnx.ModelProto) -> int:
    return sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer)


def minilm_cases():
    """all-MiniLM-L6-v2: the original, call mode fused (the conversion as saved) and the same unfused."""
    import realmodels

    from hyperonnx import api
    from hyperonnx.passes.fuse import unfuse_model

    src = realmodels.minilm()
    feeds = realmodels.minilm_encode(["A man is playing a guitar while the crowd sings along " * 16], max_length=128)
    tmp = Path(tempfile.mkdtemp(prefix="hx-fused-"))
    out = tmp / "minilm.call.onnx"
    t0 = time.perf_counter()
    api.convert(src, out, decode="call")
    print(f"(converted all-MiniLM-L6-v2 with --decode call in {time.perf_counter() - t0:.0f} s)")
    original, fused = onnx.load(str(src)), onnx.load(str(out))
    unfused = onnx.load(str(out))
    names = unfuse_model(unfused)
    kinds = sorted({n.op_type for n in fused.graph.node if n.op_type.startswith("Hyper")})
    print(f"(fused: {len(names)} weights; ops {', '.join(kinds)})")
    models = {"fp32": original.SerializeToString(), "call": unfused.SerializeToString(),
              "fused": fused.SerializeToString()}
    sizes = {"fp32": resident_bytes(original), "call": resident_bytes(unfused), "fused": resident_bytes(fused)}
    yield f"MiniLM 1×{feeds['input_ids'].shape[1]}", models, sizes, feeds, 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of timing per configuration")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: one-thread rows by the thread's CPU time (a shared machine)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="thread counts (default 1)")
    parser.add_argument("--minilm", action="store_true", help="add all-MiniLM-L6-v2 end to end")
    parser.add_argument("--no-ops", action="store_true", help="skip the single-op rows")
    parser.add_argument("--only", nargs="+", metavar="PREFIX", help="only the op rows whose label starts so (tied)")
    args = parser.parse_args()
    print("times in ms (medians; " + args.clock + " clock for one thread); ratios to fp32 in the same run")
    print(f"{'case':>24} {'thr':>3} " + " ".join(f"{v:>8}" for v in VARIANTS) + "  "
          + " ".join(f"{v + '/fp32':>10}" for v in VARIANTS[1:]) + "   resident bytes: fp32, fused (ratio)")
    cases = [] if args.no_ops else [c for c in op_cases() if not args.only or c[0].startswith(tuple(args.only))]
    for label, models, sizes, feeds, repeat in cases + (list(minilm_cases()) if args.minilm else []):
        for threads in args.threads:
            sessions = {name: Repeated(session(model, threads), repeat) for name, model in models.items()}
            ys = {name: s.sess.run(None, feeds)[0] for name, s in sessions.items()}
            err = rel_error(ys["fused"], ys["call"])
            cpu = args.clock == "cpu" and threads == 1
            t = time_variants(sessions, feeds, args.budget, time.thread_time if cpu else time.perf_counter)
            t = {name: v / repeat for name, v in t.items()}
            print(f"{label:>24} {threads:>3} " + " ".join(f"{t[v] * 1e3:>8.3f}" for v in VARIANTS) + "  "
                  + " ".join(f"{t[v] / t['fp32']:>10.2f}" for v in VARIANTS[1:])
                  + f"   {sizes['fp32']:,}, {sizes['fused']:,} ({sizes['fused'] / sizes['fp32']:.3f}×)"
                  + f"  (fused vs call: rel err {err:.1e})")
            del sessions


if __name__ == "__main__":
    main()
