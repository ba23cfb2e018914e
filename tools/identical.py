"""Fingerprint what `hyperonnx convert` writes, to show a change leaves converted files byte-identical.

Converts a fixed set of models (toy models, a float16-grid model and the real models of tests/realmodels.py)
with a fixed set of options through the command line, and prints one JSON object: for every (model, options)
case the SHA-256 of the written files and of `inspect --json` (timings dropped). Run it on two commits and
compare:

    python tools/identical.py --out before.json            # on the old commit
    python tools/identical.py --out after.json --compare before.json

``--quick`` keeps the toy models and MobileNetV2 only; ``--models a,b`` picks real models and ``--light`` gives
them the common options only. Cases whose conversion fails are fingerprinted by
their exit status, so a behaviour change there shows too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
for helpers in ("benchmarks", "tests"):  # wherever realmodels.py and toymodels.py live
    sys.path.insert(0, str(ROOT / helpers))

# Options every model is converted with; the real models also get the heavier ones below.
COMMON = [
    [],
    ["--runtime", "portable"],
    ["--decode", "call"],
    ["--codec", "ecsq"],
    ["--target-bpw", "4.5"],
]
HEAVY = [
    ["--codec", "tcq"],
    ["--codec", "blockvq"],
    ["--codec", "paper"],
    ["--codec", "paper-cnn"],
    ["--codec", "kronecker"],
    ["--codec", "ecsq", "--codec-opt", "rank1=0"],
    ["--codec", "tcq", "--max-size", "FRACTION:0.18"],
    ["--codec", "ecsq", "--target-bpw", "5"],
    ["--runtime", "portable", "--codec", "blockvq", "--codec-opt", "bits=6"],
    ["--external-data", "--strip-debug-info"],
    ["--target-bpw", "5", "--sensitivity"],
]
QUICK_REAL = ("mobilenet_v2",)
REAL = ("mobilenet_v2", "minilm", "terrain_unet", "ppocr_det", "ppocr_rec", "silero_vad")


def _grid_model(path: Path) -> None:
    """A MatMul whose weight lies on a Q4_1-like float16 block grid (stored exactly by the `grid` codec)."""
    rng = np.random.default_rng(0)
    rows, cols = 256, 128
    blocks = rows * cols // 32
    d = rng.uniform(0.005, 0.05, blocks).astype(np.float16).astype(np.float32)
    m = (-8 * d + rng.normal(0, 0.01, blocks)).astype(np.float16).astype(np.float32)
    q = np.clip(np.rint(rng.normal(7.5, 3, (blocks, 32))), 0, 15).astype(np.float32)
    q[:, 0], q[:, 1] = 0, 15  # min and max levels present: the block's step and offset are recoverable
    w = np.ascontiguousarray((d[:, None] * q + m[:, None]).astype(np.float32).reshape(cols, rows).T)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, rows])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cols])
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "grid", [x], [y],
                              [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _toy(name: str) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        import toymodels

        onnx.save(getattr(toymodels, name)(), path)

    return build


def _real(name: str) -> Path:
    import realmodels

    if name in ("ppocr_det", "ppocr_rec"):
        return realmodels.ppocr(name.split("_")[1])
    return getattr(realmodels, name)()


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _drop_timings(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: _drop_timings(v) for k, v in obj.items() if "time" not in k and not k.endswith("_s")}
    if isinstance(obj, list):
        return [_drop_timings(v) for v in obj]
    return obj


def _case(model: Path, options: list[str], work: Path) -> dict:
    if "FRACTION:" in " ".join(options):  # a size budget relative to this model's file
        frac = float(options[-1].split(":")[1])
        options = [*options[:-1], str(int(model.stat().st_size * frac))]
    out = work / "out.onnx"
    for stale in work.glob("out.onnx*"):
        stale.unlink()
    cmd = [sys.executable, "-m", "hyperonnx", "convert", str(model), "-o", str(out), "--jobs", "2", *options]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return {"exit": done.returncode, "stderr": done.stderr.strip().splitlines()[-1:]}
    files = sorted(work.glob("out.onnx*"))
    inspect = subprocess.run([sys.executable, "-m", "hyperonnx", "inspect", str(out), "--json"],
                             capture_output=True, text=True, check=True)
    report = json.dumps(_drop_timings(json.loads(inspect.stdout)), sort_keys=True)
    return {"exit": 0, "files": _digest(files), "inspect": hashlib.sha256(report.encode()).hexdigest()[:16]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="write the fingerprints here (JSON)")
    ap.add_argument("--compare", type=Path, help="fingerprints from another commit: list the differences")
    ap.add_argument("--quick", action="store_true", help="toy models and MobileNetV2 only")
    ap.add_argument("--models", help=f"comma-separated subset of the real models ({','.join(REAL)}); none: ''")
    ap.add_argument("--light", action="store_true", help="the real models get the common options only")
    args = ap.parse_args()

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models: list[tuple[str, Path, list[list[str]]]] = []
        for name, build in (("conv_mlp", _toy("conv_mlp")), ("subgraphs", _toy("constants_and_subgraphs")),
                            ("grid", _grid_model)):
            path = work / f"{name}.onnx"
            build(path)
            models.append((name, path, COMMON + [["--no-exact-grids"]]))
        real = QUICK_REAL if args.quick else REAL
        if args.models is not None:
            real = tuple(m for m in args.models.split(",") if m)
            unknown = set(real) - set(REAL)
            if unknown:
                ap.error(f"unknown models: {', '.join(sorted(unknown))}")
        for name in real:
            models.append((name, _real(name), COMMON if args.light else COMMON + HEAVY))
        case_dir = work / "case"
        case_dir.mkdir()
        for name, path, option_sets in models:
            for options in option_sets:
                key = f"{name} {' '.join(options) or '(defaults)'}"
                results[key] = _case(path, options, case_dir)
                print(f"{key}: {results[key]}", file=sys.stderr, flush=True)
    text = json.dumps(results, indent=1, sort_keys=True)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)
    if args.compare:
        before = json.loads(args.compare.read_text())
        partial = args.quick or args.models is not None or args.light
        keys = set(results) if partial else set(before) | set(results)  # a subset of a full run
        differ = sorted(k for k in keys if before.get(k) != results.get(k))
        for k in differ:
            print(f"DIFFERS {k}: {before.get(k)} -> {results.get(k)}")
        print(f"{len(results) - len(differ)} of {len(results)} cases identical")
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
