"""HyperDecode under ONNX Runtime's CUDA execution provider vs the CPU provider and the golden bytes.

  python3 tests/gpu/check_ort.py path/to/libhyperonnx_ops.so

Needs onnxruntime-gpu (CUDAExecutionProvider) and onnx; run.sh runs it only when both import. For each of a
few golden cases, modes load and call (session config hyperonnx.decode_mode), blob as an initializer (checked
when the session is created) and as a graph input (checked on every run): outputs equal the golden bytes on
CUDA and CPU; a run-time blob with an out-of-range code fails that run; three runs per session (load serves
its cache); ORT's profiler must show the node on CUDAExecutionProvider.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "custom_ops" / "tests" / "golden"
CASES = ["paper_bits13", "paper_float16_r3_n225_3x5", "paper_float64_r2_n17_2x3x5",
         "paper_f16_default_37x41", "ecsq_float16_B16_s0.25_3x5x7",  # ecsq, grid: host decode, uploaded
         "grid_float32_B32_T_64x5", "grid_float16_B4_t0_3x5x7"]
failures = 0


def check(ok: bool, what: str) -> bool:
    global failures
    if not ok:
        failures += 1
        print(f"FAIL: {what}")
    return ok


def parse(path: Path) -> tuple[dict, bytes, bytes]:
    attrs: dict = {}
    blob = expect = b""
    for line in path.read_text().splitlines():
        kind, _, rest = line.partition(" ")
        key, _, values = rest.partition(" ")
        if kind == "blob":
            blob = bytes.fromhex(rest.strip())
        elif kind == "expect":
            expect = bytes.fromhex(rest.strip())
        elif kind == "s":
            attrs[key] = values
        elif kind == "i":
            vals = [int(v) for v in values.split()]
            attrs[key] = vals if key == "shape" or key.startswith("i_") else vals[0]
        elif kind == "f":
            attrs[key] = [float(np.frombuffer(bytes.fromhex(v), ">f4")[0]) for v in values.split()]
    return attrs, blob, expect


def model(attrs: dict, blob: bytes | None) -> bytes:
    inputs, inits = [], []
    if blob is None:
        inputs.append(helper.make_tensor_value_info("blob", TensorProto.UINT8, [None]))
    else:
        inits.append(numpy_helper.from_array(np.frombuffer(blob, np.uint8).copy(), "blob"))
    nodes = [helper.make_node("HyperDecode", ["blob"], ["Y"], domain="ai.hyperonnx", name="decode", **attrs)]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("Y", attrs["dtype"], None)],
                              initializer=inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.hyperonnx", 1)],
                          ir_version=8)
    return m.SerializeToString()


def session(lib: str, data: bytes, mode: str, provider: str, profile: bool = False) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.enable_profiling = profile
    so.profile_file_prefix = str(Path(tempfile.gettempdir()) / "hyperonnx_check_ort")
    so.add_session_config_entry("hyperonnx.decode_mode", mode)
    so.register_custom_ops_library(lib)
    return ort.InferenceSession(data, so, providers=[provider])


def placement(sess: ort.InferenceSession) -> str:
    """The provider ORT's profiler reports for the HyperDecode node ('?' when not found)."""
    events = json.loads(Path(sess.end_profiling()).read_text())
    for e in events:
        args = e.get("args", {})
        if args.get("op_name") == "HyperDecode" and "provider" in args:
            return args["provider"]
    return "?"


def main() -> int:
    lib = sys.argv[1]
    print(f"onnxruntime {ort.__version__}, providers {ort.get_available_providers()}, onnx {onnx.__version__}")
    checked = 0
    for name in CASES:
        path = GOLDEN / f"{name}.txt"
        if not path.exists():
            continue
        attrs, blob, expect = parse(path)
        for mode in ("load", "call"):
            for as_input in (False, True):
                data = model(attrs, None if as_input else blob)
                feeds = {"blob": np.frombuffer(blob, np.uint8).copy()} if as_input else {}
                for provider in ("CUDAExecutionProvider", "CPUExecutionProvider"):
                    what = f"{name} mode={mode} blob={'input' if as_input else 'initializer'} {provider}"
                    try:
                        cuda = provider.startswith("CUDA")
                        sess = session(lib, data, mode, provider, profile=cuda)
                        outs = [sess.run(None, feeds)[0].tobytes() for _ in range(3)]
                        check(all(o == expect for o in outs), f"{what}: output differs")
                        if cuda:
                            where = placement(sess)
                            check(where == provider, f"{what}: HyperDecode ran on {where}")
                        checked += 1
                    except Exception as exc:  # noqa: BLE001
                        check(False, f"{what}: {exc}")
                if as_input and mode == "call" and attrs["bits"] >= 2:
                    # entries are always below 2^bits here only if the golden table is small; try the top code
                    bad = bytearray(blob)
                    bad[0] |= 0xFF if attrs["bits"] >= 8 else (1 << attrs["bits"]) - 1
                    sess = session(lib, data, mode, "CUDAExecutionProvider")
                    try:
                        sess.run(None, {"blob": np.frombuffer(bytes(bad), np.uint8).copy()})
                        print(f"  note: {name}: all-ones first code is in range (table covers 2^bits)")
                    except Exception as exc:  # noqa: BLE001
                        # ecsq, grid: a bad first frequency table
                        want = f"{attrs['codec']} codec" if attrs["codec"] in ("ecsq", "grid") else "out of range"
                        check(want in str(exc), f"{name}: bad run-time blob: unexpected error {exc}")
    print(f"{'PASS' if failures == 0 else 'FAIL'}: {checked} session checks, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
