"""Compare the C++ sample's output (samples/cpp) with Python's onnxruntime + hyperonnx.session on the same input.

    python tools/edge/sample_check.py MODEL SAMPLE_STDOUT [--saved DIR] [--seed N] [--dim N] [--rtol R]

SAMPLE_STDOUT is what `hyperonnx_sample MODEL ...` printed ("-" for stdin); --saved is the folder given to the
sample's --save (full outputs as .npy). Exit status 0 when every output matches:
* decoded weights (outputs named decoded_*): bit-identical, whatever the ORT version or CPU;
* model outputs: bit-identical when the ORT versions match, else within rtol of the output's largest magnitude
  (different ORT releases and CPUs pick different MLAS kernels, so float sums are ordered differently).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]

_LCG_MUL, _LCG_ADD = 6364136223846793005, 1442695040888963407


def deterministic_input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """The sample's generated input (samples/cpp/main.cc): exact float32 values from a 64-bit LCG."""
    n = int(np.prod(shape, dtype=np.int64))
    out = np.empty(n, np.float32)
    s, mask = seed, (1 << 64) - 1
    for i in range(n):
        s = (s * _LCG_MUL + _LCG_ADD) & mask
        out[i] = np.float32((s >> 40) - (1 << 23)) / np.float32(1 << 23)
    return out.reshape(shape)


def parse_sample_output(text: str) -> dict:
    """Parse the sample's stdout: version, inputs, outputs (type, shape, first values, sums, hash), timings."""
    res: dict = {"inputs": [], "outputs": [], "timing": {}}
    cur = None
    for line in text.splitlines():
        if line.startswith("onnxruntime "):
            res["ort_version"] = line.split()[1]
        elif line.startswith("registration: "):
            res["registration"] = line.split(": ", 1)[1]
        elif line.startswith("input "):
            _, idx, name, dtype, shape = line.split()
            res["inputs"].append({"name": name, "dtype": dtype, "shape": tuple(int(d) for d in shape[1:-1].split(","))})
        elif line.startswith("output "):
            _, idx, name, dtype, shape = line.split()
            dims = tuple(int(d) for d in shape[1:-1].split(",") if d)
            cur = {"name": name, "dtype": dtype, "shape": dims}
            res["outputs"].append(cur)
        elif line.startswith("  first:") and cur is not None:
            cur["first"] = np.array([float(v) for v in line.split()[1:]], np.float32)
        elif line.startswith("  sum:") and cur is not None:
            m = re.match(r"\s+sum: (\S+) abs_sum: (\S+) argmax: (\d+) fnv1a64: ([0-9a-f]+)", line)
            cur.update(sum=float(m[1]), abs_sum=float(m[2]), argmax=int(m[3]), fnv1a64=m[4])
        elif line.startswith("timing: "):
            f = line.split()[1:]
            res["timing"] = {k: float(v) for k, v in zip(f[0::2], f[1::2])}
    if "ort_version" not in res or not res["outputs"]:
        raise ValueError("not the output of hyperonnx_sample:\n" + text[-2000:])
    return res


def fnv1a64(a: np.ndarray) -> str:
    """The sample's checksum: FNV-1a 64 over the raw bytes (a sequential loop: use it on small arrays)."""
    data = np.frombuffer(np.ascontiguousarray(a).tobytes(), np.uint8).astype(np.uint64)
    h = np.uint64(14695981039346656037)
    prime = np.uint64(1099511628211)
    with np.errstate(over="ignore"):
        for b in data:
            h = (h ^ b) * prime
    return f"{int(h):016x}"


def python_reference(model: str | Path, inputs: dict[str, np.ndarray], mode: str | None = "load") -> dict:
    """Outputs of hyperonnx.session (the op library built for this checkout, Python's onnxruntime)."""
    sys.path.insert(0, str(ROOT))
    import onnxruntime as ort

    import hyperonnx

    sess = hyperonnx.session(str(model), mode=mode)
    names = [o.name for o in sess.get_outputs()]
    return {"ort_version": ort.__version__, "outputs": dict(zip(names, sess.run(None, inputs)))}


def compare(parsed: dict, ref: dict, saved: Path | None = None, rtol: float = 1e-5) -> list[str]:
    """Problems found (empty: match). Decoded weights must be bit-identical; model outputs too when the ORT
    versions match, else within rtol * max|ref|."""
    problems = []
    same_ort = parsed["ort_version"] == ref["ort_version"]
    for i, out in enumerate(parsed["outputs"]):
        name = out["name"]
        want = ref["outputs"].get(name)
        if want is None:
            problems.append(f"{name}: not an output of the Python session")
            continue
        if tuple(want.shape) != out["shape"]:
            problems.append(f"{name}: shape {out['shape']} != Python's {want.shape}")
            continue
        exact = name.startswith("decoded_") or same_ort
        got = np.load(saved / f"output{i}.npy") if saved is not None else None
        if exact:
            h = fnv1a64(want.astype(np.float32)) if want.size <= 1 << 16 else None
            if got is not None:
                if not np.array_equal(got.view(np.uint32), want.astype(np.float32).view(np.uint32)):
                    problems.append(f"{name}: not bit-identical to Python's (max |diff| "
                                    f"{float(np.max(np.abs(got - want)))})")
            elif h is not None and h != out["fnv1a64"]:
                problems.append(f"{name}: fnv1a64 {out['fnv1a64']} != Python's {h}")
            elif not np.array_equal(out["first"], want.reshape(-1)[: out["first"].size]):
                problems.append(f"{name}: first values differ from Python's")
        else:
            tol = rtol * max(float(np.max(np.abs(want))), 1e-30)
            have = got if got is not None else out["first"]
            ref_vals = want if got is not None else want.reshape(-1)[: out["first"].size]
            diff = float(np.max(np.abs(have.astype(np.float64) - ref_vals.astype(np.float64))))
            if diff > tol:
                problems.append(f"{name}: max |diff| {diff:.3g} > {tol:.3g} (rtol {rtol} of max |y|)")
            if int(np.argmax(want.reshape(-1))) != out["argmax"]:
                problems.append(f"{name}: argmax {out['argmax']} != Python's {int(np.argmax(want))}")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("sample_stdout")
    ap.add_argument("--saved", type=Path, help="the folder passed to the sample's --save")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rtol", type=float, default=1e-5)
    ap.add_argument("--mode", default="load", help="hyperonnx.session mode for the reference (load|call|init)")
    args = ap.parse_args()
    text = sys.stdin.read() if args.sample_stdout == "-" else Path(args.sample_stdout).read_text()
    parsed = parse_sample_output(text)
    feeds = {x["name"]: deterministic_input(x["shape"], args.seed + i) for i, x in enumerate(parsed["inputs"])}
    ref = python_reference(args.model, feeds, mode=None if args.mode == "init" else args.mode)
    problems = compare(parsed, ref, args.saved, args.rtol)
    print(f"C++ sample: onnxruntime {parsed['ort_version']} ({parsed['registration']}); "
          f"Python: onnxruntime {ref['ort_version']}")
    for out in parsed["outputs"]:
        print(f"  {out['name']} {out['dtype']} {list(out['shape'])} fnv1a64 {out['fnv1a64']}")
    for p in problems:
        print("MISMATCH", p)
    print("MATCH" if not problems else f"{len(problems)} mismatches")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
