"""The fast load path against the original model: session creation time, peak RSS during creation, RSS after
load and median latency, each configuration in a fresh process, rounds interleaved, medians, ratios to
``original`` of the same round (docs/ops.md, "Fast path"). Until benchmarks/runtime.py covers ``python-fast`` and
``cpp-fast``, this is the fast path's own measurement.

    python benchmarks/fastpath.py --model M.onnx --converted M.hx.onnx --inputs X.npz [--sample BIN] [--rounds 5]

``--sample``: the C++ sample binary (samples/cpp, built against a C/C++ ONNX Runtime) adds ``cpp-fast`` and
``cpp-original``, measured by the sample itself (its own original, so the C++ ratio compares like with like);
``--sample-runner`` prefixes it (e.g. ``tools/edge/run.sh host``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CONFIGS = ("original", "python-fast", "ort-load")


def _status() -> dict[str, float]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) * 1024
    return out


def child(config: str, model: str, converted: str, inputs: str, runs: int) -> None:
    """One configuration in this (fresh) process; prints one JSON line."""
    import numpy as np
    import onnxruntime as ort

    feeds = dict(np.load(inputs))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    if config == "python-fast":
        from hyperonnx import runtime  # imported before the baseline: its cost is not the session's

        runtime.library_path()
    elif config == "ort-load":
        from hyperonnx import runtime

        so = runtime.session_options(options=so)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM: the peak below is the session creation's
    base = _status()["VmRSS"]
    t0 = time.perf_counter()
    if config == "original":
        sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    elif config == "python-fast":
        sess = runtime.session(converted, so)
    else:
        sess = ort.InferenceSession(converted, so, providers=["CPUExecutionProvider"])
    create = time.perf_counter() - t0
    after = _status()
    t0 = time.perf_counter()
    sess.run(None, feeds)
    first = time.perf_counter() - t0
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t0)
    decode = 0.0
    if config == "python-fast":  # the rewrite alone (parse + decode into bytes), for "create <= original + decode"
        from hyperonnx import fastpath

        t0 = time.perf_counter()
        plan = fastpath.FastModel(converted)
        plan.model_bytes()
        plan.close()
        decode = time.perf_counter() - t0
    print(json.dumps({"config": config, "create_s": create, "first_s": first, "latency_s": statistics.median(times),
                      "rss_after_load": after["VmRSS"], "rss_peak": after["VmHWM"], "rss_base": base,
                      "decode_s": decode}))


def cpp(sample: list[str], model: str, inputs: str, mode: str, runs: int) -> dict:
    import numpy as np

    data = np.load(inputs)
    if len(data.files) != 1:
        raise SystemExit("--sample needs a model with one input")
    npy = inputs + ".input.npy"
    np.save(npy, data[data.files[0]].astype(np.float32))
    args = [*sample, model, "--input", npy, "--runs", str(runs), "--threads", "1"]
    if mode:
        args += ["--mode", mode]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("timing:"))
    words = line.split()[1:]
    t = {words[i]: float(words[i + 1]) for i in range(0, len(words) - 1, 2)}
    return {"create_s": t["session_create_ms"] / 1e3, "first_s": t["first_run_ms"] / 1e3,
            "latency_s": t["median_run_ms"] / 1e3, "rss_after_load": t["rss_after_load_kb"] * 1024,
            "rss_peak": t["rss_peak_kb"] * 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--converted", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--sample", help="the C++ sample binary (adds cpp-original and cpp-fast)")
    ap.add_argument("--sample-runner", default="", help="command prefix for the sample, e.g. 'tools/edge/run.sh host'")
    ap.add_argument("--json", action="store_true", help="one JSON line per configuration")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.model, args.converted, args.inputs, args.runs)
        return
    results: dict[str, list[dict]] = {c: [] for c in CONFIGS}
    sample = args.sample_runner.split() + [args.sample] if args.sample else None
    if sample:
        results.update({"cpp-original": [], "cpp-fast": [], "cpp-load": []})
    for _ in range(args.rounds):
        for config in CONFIGS:
            out = subprocess.run([sys.executable, __file__, "--child", config, "--model", args.model, "--converted",
                                  args.converted, "--inputs", args.inputs, "--runs", str(args.runs)],
                                 capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            results[config].append(json.loads(out.stdout.strip().splitlines()[-1]))
        if sample:
            results["cpp-original"].append(cpp([*sample, "--plain"], args.model, args.inputs, "", args.runs))
            results["cpp-fast"].append(cpp(sample, args.converted, args.inputs, "", args.runs))
            results["cpp-load"].append(cpp([*sample, "--plain"], args.converted, args.inputs, "load", args.runs))
    keys = ("latency_s", "rss_after_load", "rss_peak", "create_s", "first_s")
    med = {c: {k: statistics.median(r[k] for r in rs) for k in keys} for c, rs in results.items() if rs}
    for c, rs in results.items():  # Python: RSS over the process's RSS just before creation (imports excluded)
        if rs and "rss_base" in rs[0]:
            med[c]["load_delta"] = statistics.median(r["rss_after_load"] - r["rss_base"] for r in rs)
            med[c]["peak_delta"] = statistics.median(r["rss_peak"] - r["rss_base"] for r in rs)
            med[c]["decode_s"] = statistics.median(r["decode_s"] for r in rs)
    for config, m in med.items():
        ref = med["cpp-original" if config.startswith("cpp") else "original"]
        ratios = {"latency_x": m["latency_s"] / ref["latency_s"], "rss_after_load_x": m["rss_after_load"] /
                  ref["rss_after_load"], "rss_peak_x": m["rss_peak"] / ref["rss_peak"],
                  "create_x": m["create_s"] / ref["create_s"]}
        if args.json:
            print(json.dumps({"config": config, **{k: round(v, 4) for k, v in ratios.items()}, **m}))
        else:
            print(f"{config:13s} latency {m['latency_s'] * 1e3:8.3f} ms ({ratios['latency_x']:.3f}x)  "
                  f"rss after load {m['rss_after_load'] / 2**20:7.1f} MiB ({ratios['rss_after_load_x']:.3f}x)  "
                  f"peak {m['rss_peak'] / 2**20:7.1f} MiB ({ratios['rss_peak_x']:.3f}x)  "
                  f"create {m['create_s'] * 1e3:7.1f} ms ({ratios['create_x']:.2f}x)  first {m['first_s'] * 1e3:.1f} ms"
                  + (f"  [over the pre-creation RSS: load +{m['load_delta'] / 2**20:.1f} MiB, peak "
                     f"+{m['peak_delta'] / 2**20:.1f} MiB; rewrite alone {m['decode_s'] * 1e3:.1f} ms]"
                     if "load_delta" in m else ""))


if __name__ == "__main__":
    main()
