"""Runtime parity: what a hyperonnx model costs once loaded, per load path, against the original.

    .venv/bin/python benchmarks/runtime.py [--models mobilenet_v2,ppocr_det] [--rounds 5] [--runs 30] [--json]
    .venv/bin/python benchmarks/runtime.py --model ORIG.onnx --converted CONV.onnx --inputs X.npz [--portable P.onnx]
    .venv/bin/python benchmarks/runtime.py --quick ...        # CI-sized: 1 round of 5 runs
    .venv/bin/python benchmarks/runtime.py --decode-only [--codec blockvq]    # decode throughput: benchmarks/decode.py

Models: the real models of docs/real-models.md (``--models``, default all: mobilenet_v2, minilm, terrain_unet,
ppocr_det, ppocr_rec, silero_vad, obtained through realmodels.py; ``matmul``, a 2048x2048 MatMul with a synthetic
encoding, needs no conversion), each converted here with the defaults, once as ``ort`` and once as ``--runtime
portable`` (``--work DIR`` keeps the conversions and reuses them; delete them to convert again), or any pair given
with ``--model/--converted/--inputs`` (the npz is keyed by input name; a portable ``--converted`` is measured as
``portable``).

Configurations, each in a fresh process:
    original      the original model in plain ONNX Runtime
    portable      the --runtime portable conversion in plain ONNX Runtime (standard ops, folded at load)
    ort-load      plain ONNX Runtime + register_custom_ops_library, session config hyperonnx.decode_mode=load
    ort-call      the same with decode_mode=call
    python-fast   hyperonnx.session(path, sess_options=..., providers=...) where it takes SessionOptions, else
                  hyperonnx.runtime.session(path, options=...) (the same fast path); the JSON's "via" says which
    cpp-original  the C++ sample (samples/cpp) on the original model: the baseline of cpp-fast, same binary and ORT
    cpp-fast      the C++ sample on the converted model, with its default load path and --cpp-args
The sample is found at .cache/edge/build-host/hyperonnx_sample (built as samples/cpp/README.md shows; --cpp-sample
PATH for another, "none" to leave it out) and run through ``tools/edge/run.sh host`` when its sysroot is there
(--cpp-runner). It runs ORT 1.21 from Debian, not the pip ORT of the Python rows, so cpp-fast's ratios are against
cpp-original; it takes one float32 input, so models with other inputs have no C++ rows.

Measures: session creation (``create``: SessionOptions with the op library registered, then the session), the first
Run, the median of ``--runs`` Runs, whole-process RSS right after creation (``rss_after_load``; ``rss_added``: what
creation added to the process, the model's own share, which the whole-process figure dilutes) and after the runs
(``rss_after_runs``: where ``load`` decodes on its first Run), and peak RSS (VmHWM, restarted just before creation)
during creation (``rss_peak_create``) and over the whole measurement (``rss_peak``). Every Python child imports the
same modules (numpy, onnxruntime, hyperonnx, hyperonnx.runtime: the last two take only the standard library) before
it measures; whatever a load path imports besides (today's hyperonnx.session() imports onnx, and onnx ml_dtypes)
is its own cost and counts in its creation time and RSS, as it does for a user (JSON ``imports``: the top-level
packages creation imported). One intra-op thread by default (``--threads``). Rounds are interleaved (round r runs every configuration once before round r+1 starts), so a load
change on the shared machine hits all configurations alike; each figure is the median over rounds, and every figure
is also a ratio to ``original`` (cpp-fast: to cpp-original). For the C++ sample, ``create`` is its
register_ms + session_create_ms; its RSS figures are read from its timing line where it prints
``rss_after_load_kib``/``rss_peak_kib``, else peak RSS is the process's maximum (wait4) and RSS after load is not
known (JSON null).

``--json`` prints one JSON line per configuration and model: ``config``, ``latency_x``, ``rss_after_load_x``,
``rss_peak_x``, ``create_x`` and the rest of the figures (``model``, ``baseline``, ``via``, absolute values).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EDGE = Path(os.environ.get("HYPERONNX_EDGE_CACHE") or ROOT / ".cache" / "edge")
DEFAULT_SAMPLE = EDGE / "build-host" / "hyperonnx_sample"
PYTHON_CONFIGS = ("original", "portable", "ort-load", "ort-call", "python-fast")
CPP_CONFIGS = ("cpp-original", "cpp-fast")
CONFIGS = (*PYTHON_CONFIGS, *CPP_CONFIGS)
BASELINE = {"cpp-fast": "cpp-original"}  # everything else: original
MEASURES = ("create_ms", "first_run_ms", "latency_ms", "rss_after_load_mib", "rss_added_mib", "rss_after_runs_mib",
            "rss_peak_create_mib", "rss_peak_mib")
RATIO_KEYS = {"create_ms": "create_x", "first_run_ms": "first_run_x", "latency_ms": "latency_x",
              "rss_after_load_mib": "rss_after_load_x", "rss_added_mib": "rss_added_x",
              "rss_after_runs_mib": "rss_after_runs_x",
              "rss_peak_create_mib": "rss_peak_create_x", "rss_peak_mib": "rss_peak_x"}
DOMAIN = "ai.hyperonnx"


# -- the child: one configuration, one fresh process ---------------------------------------------------------
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> None:
    """Restart VmHWM (peak RSS) from the current RSS (Linux >= 4.0), so the imports before it do not count."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _fast_session(path: str, so, providers: list[str]):
    """The fast path with these SessionOptions: the top-level call where it takes them, else the runtime module's
    (the same path today), else the top-level call without options (ORT's default threads)."""
    import hyperonnx
    from hyperonnx import runtime

    if "sess_options" in inspect.signature(hyperonnx.session).parameters:
        return hyperonnx.session(path, sess_options=so, providers=providers), "hyperonnx.session(sess_options=)"
    if "options" in inspect.signature(runtime.session).parameters:
        return runtime.session(path, providers=providers, options=so), "hyperonnx.runtime.session(options=)"
    return hyperonnx.session(path, providers=providers), "hyperonnx.session() without SessionOptions"


def child(config: str, path: str, inputs: str, threads: int, runs: int) -> dict:
    import gc

    import numpy as np
    import onnxruntime as ort

    import hyperonnx
    from hyperonnx import runtime  # noqa: F401  (standard library only, like hyperonnx itself)

    providers = ["CPUExecutionProvider"]
    with np.load(inputs) as npz:
        feeds = {k: npz[k] for k in npz.files}
    gc.collect()
    loaded = set(sys.modules)
    _reset_peak_rss()
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    via = "onnxruntime.InferenceSession"
    if config in ("ort-load", "ort-call"):
        so.add_session_config_entry("hyperonnx.decode_mode", config.removeprefix("ort-"))  # before registering
        so.register_custom_ops_library(hyperonnx.library_path())
        via += " + register_custom_ops_library"
    if config == "python-fast":
        sess, via = _fast_session(path, so, providers)
    else:
        sess = ort.InferenceSession(path, so, providers=providers)
    create = time.perf_counter() - start
    after_load, peak_create = _status_kib("VmRSS"), _status_kib("VmHWM")
    imports = sorted(m for m in set(sys.modules) - loaded  # packages new to the process, not the standard library's
                     if "." not in m and not m.startswith("_") and m not in sys.stdlib_module_names)
    start = time.perf_counter()
    sess.run(None, feeds)
    first = time.perf_counter() - start
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - start)
    return {"via": via, "imports": imports, "create_ms": create * 1e3, "first_run_ms": first * 1e3,
            "latency_ms": statistics.median(times) * 1e3, "rss_before_mib": before / 1024,
            "rss_after_load_mib": after_load / 1024, "rss_added_mib": (after_load - before) / 1024, "rss_after_runs_mib": _status_kib("VmRSS") / 1024,
            "rss_peak_create_mib": peak_create / 1024, "rss_peak_mib": _status_kib("VmHWM") / 1024}


def run_python(config: str, path: Path, inputs: Path, threads: int, runs: int) -> dict:
    cmd = [sys.executable, __file__, "--child", config, str(path), str(inputs), str(threads), str(runs)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{config} on {path.name} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# -- the C++ sample ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class CppSample:
    command: list[str]  # runner + binary
    args: list[str]  # extra arguments for cpp-fast (the load path flag, once the sample has one)

    def run(self, model: Path, npy: Path, threads: int, runs: int, extra: list[str]) -> dict:
        cmd = [*self.command, str(model), "--input", str(npy), "--runs", str(runs), "--threads", str(threads), *extra]
        # Through a small waiting process: a process forked from this one (numpy, onnx, onnxruntime loaded) starts
        # with this one's RSS as its peak, which exec does not reset, so wait4 here would report ours.
        r = subprocess.run([sys.executable, "-c", _WAIT4, *cmd], capture_output=True, text=True, errors="replace")
        if r.returncode != 0:
            tail = [line for line in r.stderr.splitlines() if not line.startswith("Schema error")][-20:]
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n" + "\n".join(tail))
        text, _, maxrss = r.stdout.rpartition("maxrss_kib ")
        return parse_sample_output(text, int(maxrss))


_WAIT4 = """import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(proc.pid, 0)
print(f"maxrss_kib {usage.ru_maxrss}", flush=True)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def parse_sample_output(text: str, maxrss_kib: int) -> dict:
    """Figures from the sample's ``timing:`` line (``key value`` pairs) and its ``onnxruntime``/``registration``
    lines; RSS from ``rss_after_load_kib``/``rss_peak_kib`` where the sample prints them, else the peak is the
    process's maximum RSS (the runner's too) and RSS after load is unknown."""
    timing: dict[str, float] = {}
    notes = []
    for line in text.splitlines():
        if line.startswith("timing:"):
            words = line.split()[1:]
            timing = {k: float(v) for k, v in zip(words[::2], words[1::2])}
        elif line.startswith(("onnxruntime ", "registration:", "path:", "load path:")):
            notes.append(line.strip())
    if "median_run_ms" not in timing:
        raise RuntimeError(f"the sample printed no timing line:\n{text[-2000:]}")
    after_load = timing.get("rss_after_load_kib")
    peak = timing.get("rss_peak_kib", maxrss_kib)
    return {"via": "; ".join(notes), "imports": [], "create_ms": timing.get("register_ms", 0.0) + timing["session_create_ms"],
            "first_run_ms": timing["first_run_ms"], "latency_ms": timing["median_run_ms"],
            "rss_after_load_mib": None if after_load is None else after_load / 1024, "rss_added_mib": None,
            "rss_after_runs_mib": None,
            "rss_peak_create_mib": None, "rss_peak_mib": peak / 1024}


def find_sample(path: str, runner: str | None, args: str) -> CppSample | None:
    if path == "none":
        return None
    exe = Path(path) if path else DEFAULT_SAMPLE
    if not exe.is_file():
        if path:
            raise SystemExit(f"--cpp-sample {path}: no such file")
        return None
    if runner is None:  # built against the fetched Debian sysroot: its loader runs it
        runner = f"{ROOT / 'tools' / 'edge' / 'run.sh'} host" if (EDGE / "sysroot-amd64").is_dir() else ""
    return CppSample([*shlex.split(runner), str(exe)], shlex.split(args))


# -- models -----------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Case:
    name: str
    original: Path
    inputs: Path  # .npz keyed by input name
    converted: Path | None = None  # the ort form (HyperDecode nodes)
    portable: Path | None = None

    def configs(self, sample: CppSample | None) -> list[str]:
        out = ["original"]
        if self.portable:
            out.append("portable")
        if self.converted:
            out += ["ort-load", "ort-call", "python-fast"]
        if sample and self.single_float_input() is not None:
            out.append("cpp-original")
            if self.converted:
                out.append("cpp-fast")
        return out

    def single_float_input(self) -> Path | None:
        """The one float32 input as .npy for the C++ sample, or None where the model has other inputs."""
        import numpy as np

        with np.load(self.inputs) as npz:
            if len(npz.files) != 1 or npz[npz.files[0]].dtype != np.float32:
                return None
            npy = self.inputs.with_suffix(".npy")
            if not npy.exists():
                np.save(npy, np.ascontiguousarray(npz[npz.files[0]]))
            return npy


def is_portable(path: Path) -> bool:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return not any(o.domain == DOMAIN for o in model.opset_import)


def _realmodels():
    import realmodels  # beside this script; imported late: only the real-model rows need it

    return realmodels


def _silero_feed(rm) -> dict:
    feeds = rm.silero_inputs()
    return feeds[len(feeds) // 2]  # a step inside the utterance


# name -> (the original model's path, the feeds of one Run)
REAL_MODELS: dict[str, tuple[Callable[[], Path], Callable[[], dict]]] = {
    "mobilenet_v2": (lambda: _realmodels().mobilenet_v2(), lambda: {"input": _realmodels().imagenet_inputs(1)[:1]}),
    "minilm": (lambda: _realmodels().minilm(), lambda: _realmodels().minilm_inputs(n=8)),
    "terrain_unet": (lambda: _realmodels().terrain_unet(), lambda: _realmodels().terrain_inputs(1)[0]),
    "ppocr_det": (lambda: _realmodels().ppocr("det"), lambda: _realmodels().ppocr_inputs("det")),
    "ppocr_rec": (lambda: _realmodels().ppocr("rec"), lambda: _realmodels().ppocr_inputs("rec")),
    "silero_vad": (lambda: _realmodels().silero_vad(), lambda: _silero_feed(_realmodels())),
}
ALL_MODELS = (*REAL_MODELS, "matmul")
DEFAULT_MODELS = tuple(REAL_MODELS)


def matmul_case(work: Path) -> Case:
    """Y = X @ W, W 2048x2048 (16 MiB fp32), batch 8: a synthetic encoding (benchmarks/decode.py), no converter;
    no portable form."""
    import numpy as np
    import onnx
    from decode import hyperdecode_attributes, synthetic_encoding
    from onnx import TensorProto, helper, numpy_helper

    from hyperonnx import codec

    k = n = 2048
    paths = {"original": work / "matmul.onnx", "converted": work / "matmul.hx.onnx", "inputs": work / "matmul.npz"}
    if all(p.exists() for p in paths.values()):
        return Case("matmul", paths["original"], paths["inputs"], converted=paths["converted"])
    enc = synthetic_encoding((k, n))
    x_info = helper.make_tensor_value_info("X", TensorProto.FLOAT, [8, k])
    y_info = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [8, n])
    opsets = [helper.make_opsetid("", 17)]
    matmul = helper.make_node("MatMul", ["X", "W"], ["Y"])
    original = helper.make_graph([matmul], "mm", [x_info], [y_info],
                                 initializer=[numpy_helper.from_array(codec.decode(enc), "W")])
    decode = helper.make_node("HyperDecode", ["W_theta"], ["W"], domain=DOMAIN, name="decode_W",
                              **hyperdecode_attributes(enc))
    converted = helper.make_graph([decode, matmul], "mm_hx", [x_info], [y_info],
                                  initializer=[numpy_helper.from_array(enc.blob, "W_theta")])
    onnx.save(helper.make_model(original, opset_imports=opsets, ir_version=8), str(paths["original"]))
    onnx.save(helper.make_model(converted, opset_imports=[*opsets, helper.make_opsetid(DOMAIN, 1)], ir_version=8),
              str(paths["converted"]))
    np.savez(paths["inputs"], X=np.random.default_rng(1).standard_normal((8, k)).astype(np.float32))
    return Case("matmul", paths["original"], paths["inputs"], converted=paths["converted"])


def real_case(name: str, work: Path, log: Callable[[str], None]) -> Case:
    import numpy as np

    import hyperonnx

    get_model, get_feeds = REAL_MODELS[name]
    source = get_model()
    case = Case(name, source, work / f"{name}.npz", converted=work / f"{name}.hx.onnx",
                portable=work / f"{name}.portable.onnx")
    if not case.inputs.exists():
        np.savez(case.inputs, **get_feeds())
    for target, form in ((case.converted, "ort"), (case.portable, "portable")):
        if not target.exists():
            log(f"converting {name} ({form}) ...")
            try:
                hyperonnx.convert(source, target, runtime=form)
            except hyperonnx.HyperonnxError as exc:  # e.g. a codec or opset the portable form does not take
                log(f"  {name}: no {form} form: {exc}")
                if form == "portable":
                    case.portable = None
                else:
                    case.converted = None
    return case


def given_case(args: argparse.Namespace) -> Case:
    original, converted, inputs = (Path(p).resolve() for p in (args.model, args.converted, args.inputs))
    for p in (original, converted, inputs):
        if not p.is_file():
            raise SystemExit(f"{p}: no such file")
    case = Case(original.stem, original, inputs)
    if is_portable(converted):
        case.portable = converted
    else:
        case.converted = converted
    if args.portable:
        case.portable = Path(args.portable).resolve()
    return case


# -- measuring and reporting ------------------------------------------------------------------------------------
def measure(case: Case, sample: CppSample | None, configs: list[str], rounds: int, threads: int,
            runs: int) -> dict[str, dict]:
    """Median over interleaved rounds of each configuration's figures, with ratios to its baseline."""
    samples: dict[str, list[dict]] = {c: [] for c in configs}
    npy = case.single_float_input() if sample else None
    for _ in range(rounds):
        for config in configs:
            if config in CPP_CONFIGS:
                model = case.original if config == "cpp-original" else case.converted
                extra = sample.args if config == "cpp-fast" else ["--plain"]  # the original: plain ORT
                samples[config].append(sample.run(model, npy, threads, runs, extra))
            else:
                model = {"original": case.original, "portable": case.portable}.get(config, case.converted)
                samples[config].append(run_python(config, model, case.inputs, threads, runs))
    rows = {}
    for config, results in samples.items():
        row = {"via": results[0]["via"], "imports": results[0]["imports"]}
        for key in MEASURES:
            values = [r[key] for r in results if r[key] is not None]
            row[key] = statistics.median(values) if values else None
        rows[config] = row
    for config, row in rows.items():
        base = rows.get(BASELINE.get(config, "original"))
        row["baseline"] = BASELINE.get(config, "original")
        for key, ratio in RATIO_KEYS.items():
            ok = base is not None and row[key] is not None and base[key]
            row[ratio] = row[key] / base[key] if ok else None
    return rows


def print_table(name: str, rows: dict[str, dict]) -> None:
    def cell(value: float | None, fmt: str) -> str:
        return format(value, fmt) if value is not None else "n/a"

    cols = [("create ms", "create_ms", ".1f"), ("first run ms", "first_run_ms", ".2f"),
            ("median ms", "latency_ms", ".3f"), ("RSS load MiB", "rss_after_load_mib", ".1f"),
            ("added MiB", "rss_added_mib", ".1f"),
            ("RSS runs MiB", "rss_after_runs_mib", ".1f"), ("peak create MiB", "rss_peak_create_mib", ".1f"),
            ("peak MiB", "rss_peak_mib", ".1f")]
    print(f"\n{name}")
    print(f"| config | {' | '.join(c[0] for c in cols)} |")
    print("|---|" + "---|" * len(cols))
    for config, row in rows.items():
        cells = [f"{cell(row[key], fmt)} ({row[RATIO_KEYS[key]]:.2f}×)" if row[RATIO_KEYS[key]] is not None
                 else cell(row[key], fmt) for _, key, fmt in cols]
        print(f"| {config} | {' | '.join(cells)} |")
    for config, row in rows.items():
        print(f"  {config}: {row['via']}" + (f"; ratios vs {row['baseline']}" if row["baseline"] != "original" else "")
              + (f"; imported while creating: {', '.join(row['imports'])}" if row["imports"] else ""))


def json_lines(name: str, rows: dict[str, dict], meta: dict) -> list[str]:
    lines = []
    for config, row in rows.items():
        record = {"config": config, "model": name, **{k: row[k] for k in ("latency_x", "rss_after_load_x",
                                                                             "rss_peak_x", "create_x")}}
        record.update({k: v for k, v in row.items() if k not in record})
        record.update(meta)
        lines.append(json.dumps(record, sort_keys=False))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help=f"comma-separated, of {', '.join(ALL_MODELS)} (default: the real models)")
    parser.add_argument("--model", help="an original model (with --converted and --inputs)")
    parser.add_argument("--converted", help="its hyperonnx conversion (ort form, or portable)")
    parser.add_argument("--inputs", help=".npz of one Run's inputs, keyed by input name")
    parser.add_argument("--portable", help="also its --runtime portable conversion")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of the configurations")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (fresh processes), default 5")
    parser.add_argument("--runs", type=int, default=30, help="timed Runs per process after the first, default 30")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads, default 1")
    parser.add_argument("--quick", action="store_true", help="CI-sized: 1 round of 5 runs")
    parser.add_argument("--work", help="folder for conversions and inputs, kept and reused (default: temporary)")
    parser.add_argument("--cpp-sample", default="", help="the C++ sample binary ('none': no C++ rows)")
    parser.add_argument("--cpp-runner", default=None, help="command that runs it (default: tools/edge/run.sh host "
                        "where its sysroot is fetched)")
    parser.add_argument("--cpp-args", default="", help="extra sample arguments for cpp-fast (its load path flag)")
    parser.add_argument("--json", action="store_true", help="one JSON line per configuration, nothing else")
    parser.add_argument("--decode-only", action="store_true", help="decode throughput only (benchmarks/decode.py)")
    parser.add_argument("--codec", choices=("paper", "kronecker", "blockvq"), default="paper",
                        help="--decode-only: codec of the synthetic tensor")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        config, path, inputs, threads, runs = args.child
        print(json.dumps(child(config, path, inputs, int(threads), int(runs))))
        return
    if args.decode_only:
        import decode

        decode.report(args.codec, args.quick)
        return
    if args.quick:
        args.rounds, args.runs = 1, 5
    if args.rounds < 1 or args.runs < 1 or args.threads < 1:
        parser.error("--rounds, --runs and --threads must be positive")
    wanted = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = sorted(set(wanted) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown configuration(s) {', '.join(unknown)} (known: {', '.join(CONFIGS)})")
    if bool(args.model) != bool(args.converted) or bool(args.model) != bool(args.inputs):
        parser.error("--model, --converted and --inputs go together")
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    if not args.model and sorted(set(names) - set(ALL_MODELS)):
        parser.error(f"unknown model(s) {', '.join(sorted(set(names) - set(ALL_MODELS)))}")
    sample = find_sample(args.cpp_sample, args.cpp_runner, args.cpp_args) if set(wanted) & set(CPP_CONFIGS) else None

    def log(message: str) -> None:
        print(message, file=sys.stderr if args.json else sys.stdout, flush=True)

    import onnxruntime as ort

    meta = {"rounds": args.rounds, "runs": args.runs, "threads": args.threads, "onnxruntime": ort.__version__}
    load = os.getloadavg()[0]
    if not args.json:
        log(f"onnxruntime {ort.__version__}, {os.cpu_count()} CPUs, {args.threads} intra-op thread(s), "
            f"{args.rounds} interleaved round(s) of {args.runs} runs, C++ sample: "
            f"{' '.join(sample.command) if sample else 'none'}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work).resolve() if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        cases = [given_case(args)] if args.model else [
            matmul_case(work) if name == "matmul" else real_case(name, work, log) for name in names]
        for case in cases:
            configs = [c for c in case.configs(sample) if c in wanted]
            rows = measure(case, sample, configs, args.rounds, args.threads, args.runs)
            if args.json:
                print("\n".join(json_lines(case.name, rows, meta)), flush=True)
            else:
                print_table(case.name, rows)
    if not args.json:
        log(f"\nload average {load:.2f} -> {os.getloadavg()[0]:.2f}; ratios vs original (cpp-fast: vs cpp-original)")


if __name__ == "__main__":
    sys.exit(main())
