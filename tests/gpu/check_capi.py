"""GPU check of the C entry points of include/hyperonnx/cuda.h from Python: ctypes + CuPy (+ PyTorch if present).

  python3 tests/gpu/check_capi.py path/to/libhyperonnx_ops.so

* every golden case decodes on the GPU into a NaN-poisoned CuPy buffer, bit-identical to the numpy reference;
* fresh tensors encoded here with every codec the numpy package knows (and the library too) decode on the GPU
  exactly as the numpy reference ``hyperonnx.codec.decode`` does;
* out-of-range codes and a wrong output size are rejected;
* the library's static cudart works with memory and streams made by CuPy's (and PyTorch's) shared cudart.
Needs numpy and CuPy only (hyperonnx.codec is imported without hyperonnx/__init__, which needs onnx).
"""

from __future__ import annotations

import ctypes
import sys
import types
from pathlib import Path

import cupy as cp
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "custom_ops" / "tests" / "golden"
ONNX_DTYPE = {"float32": 1, "float16": 10, "float64": 11, "bfloat16": 16}
failures = 0


def check(ok: bool, what: str) -> bool:
    global failures
    if not ok:
        failures += 1
        print(f"FAIL: {what}")
    return ok


def load_codec():
    try:
        import hyperonnx.codec as codec
    except ImportError:  # hyperonnx/__init__ imports onnx; the codec package needs numpy only
        for name in [m for m in sys.modules if m == "hyperonnx" or m.startswith("hyperonnx.")]:
            del sys.modules[name]
        pkg = types.ModuleType("hyperonnx")
        pkg.__path__ = [str(ROOT / "hyperonnx")]
        sys.modules["hyperonnx"] = pkg
        import hyperonnx.codec as codec
    return codec


def load_lib(path: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(path)
    lib.hyperonnx_cuda_info.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    lib.hyperonnx_cuda_out_bytes.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.hyperonnx_cuda_out_bytes.restype = ctypes.c_int64
    lib.hyperonnx_cuda_decode.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                          ctypes.c_size_t, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    return lib


def attr_text(enc) -> str:
    lines = [f"s codec {enc.codec}", f"i format {enc.format_version}", f"i dtype {ONNX_DTYPE[enc.dtype]}",
             f"i group {enc.group}", f"i bits {enc.bits}", "i shape " + " ".join(str(d) for d in enc.shape)]
    lines += [f"i i_{k} " + " ".join(str(v) for v in vals) for k, vals in enc.ints.items()]
    lines += [f"f f_{k} " + " ".join(f"{int(u):08x}" for u in np.asarray(vals, np.float32).view(np.uint32))
              for k, vals in enc.floats.items()]
    return "\n".join(lines) + "\n"


def gpu_decode(lib, text: str, blob: bytes, out_len: int, stream_ptr: int = 0) -> tuple[int, bytes, str]:
    d_blob = cp.asarray(np.frombuffer(blob, np.uint8)) if blob else cp.zeros(1, cp.uint8)
    d_out = cp.full(max(out_len, 1), 0xFF, cp.uint8)  # NaN in every output dtype
    err = ctypes.create_string_buffer(512)
    cp.cuda.Device().synchronize()
    rc = lib.hyperonnx_cuda_decode(text.encode(), d_blob.data.ptr, len(blob), d_out.data.ptr, out_len,
                                   stream_ptr or None, err, len(err))
    return rc, cp.asnumpy(d_out).tobytes()[:out_len], err.value.decode()


def golden(lib) -> None:
    stream = cp.cuda.Stream(non_blocking=True)
    cases = sorted(p for p in GOLDEN.glob("*.txt") if p.name != "casts.txt")
    for path in cases:
        text = path.read_text()
        fields = dict(line.split(" ", 1) for line in text.splitlines() if line.startswith(("blob ", "expect ")))
        blob, expect = bytes.fromhex(fields.get("blob", "").strip()), bytes.fromhex(fields["expect"].strip())
        rc, out, err = gpu_decode(lib, text, blob, len(expect), stream.ptr)
        check(rc == 0 and out == expect, f"golden {path.stem}: rc {rc} {err} (equal={out == expect})")
    print(f"golden via ctypes+CuPy (non-blocking CuPy stream): {len(cases)} cases checked")


def reference(lib, codec) -> None:
    rng = np.random.default_rng(7)
    dtypes = ["float32", "float16", "float64"]
    try:
        import ml_dtypes  # noqa: F401

        dtypes.append("bfloat16")
    except ImportError:
        print("  (no ml_dtypes: bfloat16 not encoded here; the golden cases cover it)")
    done, skipped = 0, set()
    for name in sorted(codec.CODECS):
        for dtype in dtypes:
            for shape in [(37, 41), (1001,), (3, 5, 7), (256, 300)]:
                x = (rng.standard_normal(shape) * 0.05).astype(np.float32)
                x[..., :1] += 0.4
                try:
                    enc = codec.encode(x.astype(codec.base.dtype_from_name(dtype)), name)
                except Exception as exc:  # a codec that refuses a shape/dtype combination
                    print(f"  {name} {dtype} {shape}: not encodable ({exc}); skipped")
                    continue
                text = attr_text(enc)
                err = ctypes.create_string_buffer(512)
                n = lib.hyperonnx_cuda_out_bytes(text.encode(), err, len(err))
                if n < 0 and b"unknown codec" in err.value:
                    skipped.add(enc.codec)
                    continue
                expect = np.ascontiguousarray(codec.decode(enc)).tobytes()
                if not check(n == len(expect), f"{name} {dtype} {shape}: out_bytes {n} != {len(expect)}: {err.value}"):
                    continue
                blob = np.asarray(enc.blob, np.uint8).tobytes()
                rc, out, msg = gpu_decode(lib, text, blob, len(expect))
                check(rc == 0 and out == expect, f"{name} {dtype} {shape}: GPU differs from numpy (rc {rc} {msg})")
                done += 1
    extra = f"; codecs the library does not know: {', '.join(sorted(skipped))}" if skipped else ""
    print(f"numpy reference: {done} fresh tensors ({', '.join(sorted(codec.CODECS))} x {', '.join(dtypes)}) "
          f"decoded on the GPU{extra}")


def malformed(lib) -> None:
    text = "s codec paper\ni format 1\ni dtype 1\ni group 2\ni bits 4\ni shape 10\ni i_n 3\ni i_rings 0\n" \
           "f f_center 00000000 00000000\nf f_half 3f000000\nf f_step 3e800000 3e800000\nf f_scale 3f800000\n"
    # entries = 4: code 9 at position 3 is out of range
    codes = [0, 1, 2, 9, 3]
    blob = bytes([codes[0] | codes[1] << 4, codes[2] | codes[3] << 4, codes[4]])
    rc, _, err = gpu_decode(lib, text, blob, 40)
    check(rc == 1 and "code 9 at position 3 is out of range" in err, f"bad code: rc {rc} {err}")
    rc, _, err = gpu_decode(lib, text, blob[:2], 40)
    check(rc == 1 and "blob holds 2 bytes, expected 3" in err, f"short blob: rc {rc} {err}")
    rc, _, err = gpu_decode(lib, text, blob, 36)
    check(rc == 1 and "out holds 36 bytes" in err, f"wrong out size: rc {rc} {err}")
    print("malformed: bad code, short blob, wrong output size rejected")


def torch_interop(lib) -> None:
    try:
        import torch
    except ImportError:
        print("PyTorch: not importable, skipped")
        return
    if not torch.cuda.is_available():
        print("PyTorch: no CUDA, skipped")
        return
    path = GOLDEN / "paper_float32_r3_n16_4x17.txt"
    text = path.read_text()
    fields = dict(line.split(" ", 1) for line in text.splitlines() if line.startswith(("blob ", "expect ")))
    blob, expect = bytes.fromhex(fields["blob"].strip()), bytes.fromhex(fields["expect"].strip())
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        d_blob = torch.frombuffer(bytearray(blob), dtype=torch.uint8).cuda()
        d_out = torch.full((len(expect),), 0xFF, dtype=torch.uint8, device="cuda")
        torch.cuda.synchronize()
        err = ctypes.create_string_buffer(512)
        rc = lib.hyperonnx_cuda_decode(text.encode(), d_blob.data_ptr(), len(blob), d_out.data_ptr(), len(expect),
                                       s.cuda_stream, err, len(err))
        out = d_out.cpu().numpy().tobytes()
    check(rc == 0 and out == expect, f"PyTorch stream/memory: rc {rc} {err.value}")
    print(f"PyTorch {torch.__version__}: decode into torch memory on a torch stream ok")


def main() -> int:
    lib = load_lib(sys.argv[1])
    info = ctypes.create_string_buffer(1024)
    lib.hyperonnx_cuda_info(info, len(info))
    print(f"library: {info.value.decode()}")
    print(f"CuPy {cp.__version__}, CUDA runtime {cp.cuda.runtime.runtimeGetVersion()}, "
          f"devices visible to the library: {lib.hyperonnx_cuda_available()}")
    golden(lib)
    reference(lib, load_codec())
    malformed(lib)
    torch_interop(lib)
    print(f"{'PASS' if failures == 0 else 'FAIL'}: {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
