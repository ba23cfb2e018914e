"""HyperDecode in ONNX Runtime equals the numpy reference bit for bit, in every mode (needs the built library)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hyperonnx import codec, runtime
from hyperonnx.codec.base import dtype_from_name

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "custom_ops" / "tests" / "golden"
ONNX_DTYPE = {"float32": 1, "float16": 10, "float64": 11, "bfloat16": 16}

try:
    LIBRARY = runtime.library_path()
except FileNotFoundError as exc:  # CI builds it; locally: cmake -S . -B build && cmake --build build
    LIBRARY = None
    pytestmark = pytest.mark.skip(reason=f"op library not built: {exc}")


def attributes(enc: codec.Encoded, mode: str = "load") -> dict:
    attrs = {"codec": enc.codec, "format": enc.format_version, "shape": list(enc.shape),
             "dtype": ONNX_DTYPE[enc.dtype], "group": enc.group, "bits": enc.bits, "mode": mode}
    attrs.update({f"i_{k}": list(v) for k, v in enc.ints.items()})
    attrs.update({f"f_{k}": list(v) for k, v in enc.floats.items()})
    return attrs


def decode_model(attrs: dict, blob: np.ndarray | None, consumer: str = "Identity",
                 matmul_input: tuple[int, int] | None = None) -> onnx.ModelProto:
    """blob -> HyperDecode -> W -> consumer. ``blob=None`` makes the blob a graph input instead of an initializer."""
    empty = [k for k, v in attrs.items() if isinstance(v, list) and not v]  # e.g. a scalar's shape: typed by hand
    nodes = [helper.make_node("HyperDecode", ["blob"], ["W"], domain="ai.hyperonnx", name="decode_W",
                              **{k: v for k, v in attrs.items() if k not in empty})]
    nodes[0].attribute.extend(helper.make_attribute(k, [], attr_type=onnx.AttributeProto.INTS) for k in empty)
    inputs, inits = [], []
    if blob is None:
        inputs.append(helper.make_tensor_value_info("blob", TensorProto.UINT8, [None]))
    else:
        inits.append(numpy_helper.from_array(np.asarray(blob, dtype=np.uint8).reshape(-1), "blob"))
    elem = attrs["dtype"]
    if consumer == "MatMul":
        inputs.append(helper.make_tensor_value_info("X", elem, list(matmul_input)))
        nodes.append(helper.make_node("MatMul", ["X", "W"], ["Y"]))
    else:
        nodes.append(helper.make_node("Identity", ["W"], ["Y"]))
    graph = helper.make_graph(nodes, "hyperdecode_test", inputs, [helper.make_tensor_value_info("Y", elem, None)],
                              initializer=inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.hyperonnx", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def save(model: onnx.ModelProto, tmp_path: Path, name: str = "model.onnx") -> str:
    path = tmp_path / name
    onnx.save(model, str(path))
    return str(path)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.shape == b.shape and a.tobytes() == b.tobytes()


def raw_output(sess, attrs: dict) -> bytes:
    """Output Y's bytes, decoded into a buffer we own (works for bfloat16, which numpy cannot hold)."""
    import onnxruntime as ort

    storage = {1: np.float32, 10: np.float16, 11: np.float64, 16: np.uint16}[attrs["dtype"]]
    buffer = np.full(attrs["shape"], 0x55, dtype=storage)
    binding = sess.io_binding()
    binding.bind_ortvalue_output("Y", ort.OrtValue.ortvalue_from_numpy_with_onnx_type(buffer, attrs["dtype"]))
    sess.run_with_iobinding(binding)
    return buffer.tobytes()


def run(path: str, mode: str | None, feeds: dict | None = None) -> np.ndarray:
    return runtime.session(path, mode=mode).run(None, feeds or {})[0]


def check_matches_reference(tmp_path: Path, enc: codec.Encoded, mode: str | None) -> None:
    """The op decodes ``enc`` (a constant blob; ``mode`` None: the node's own mode "call") as the reference."""
    path = save(decode_model(attributes(enc, "call" if mode is None else "load"), enc.blob), tmp_path)
    assert same_bits(run(path, mode), codec.decode(enc))


def check_threads(path: str, attrs: dict, ref: bytes) -> None:
    """The model decodes to the raw bytes ``ref`` on 1 and 4 threads, in both modes."""
    import onnxruntime as ort

    for threads in (1, 4):
        for mode in ("load", "call"):
            so = runtime.session_options(mode=mode, threads=threads)
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            assert raw_output(sess, attrs) == ref, (threads, mode)


CASES = [  # (shape, dtype, n, rings)
    ((33, 17), "float32", 1600, 3),
    ((7,), "float32", 5, 0),
    ((3, 5, 7), "float16", 225, 2),
    ((64, 9), "float16", 17, 1),
    ((11, 13), "float64", 16, 3),
    ((1,), "float32", 1, 0),
]


@pytest.mark.parametrize("shape,dtype,n,rings", CASES)
@pytest.mark.parametrize("mode", [None, "load", "call", "init"])
def test_decode_matches_reference(tmp_path, shape, dtype, n, rings, mode):
    rng = np.random.default_rng(abs(hash((shape, dtype, n))) % 2**32)
    x = (rng.standard_normal(shape) * 0.05).astype(dtype_from_name(dtype))
    check_matches_reference(tmp_path, codec.encode(x, "paper", n=n, rings=rings, L=4.0), mode)


KRONECKER_CASES = [  # (shape, dtype, N, U): odd sizes leave a partial last group
    ((33, 17), "float32", 2, 4096),
    ((5, 7), "float16", 3, 100),
    ((3, 11), "float64", 4, 256),
    ((2,), "float32", 2, 2),
]


@pytest.mark.parametrize("shape,dtype,group,levels", KRONECKER_CASES)
@pytest.mark.parametrize("mode", [None, "load", "call", "init"])
def test_kronecker_matches_reference(tmp_path, shape, dtype, group, levels, mode):
    rng = np.random.default_rng(group * 1000 + levels)
    x = (rng.standard_normal(shape) * 0.05).astype(dtype_from_name(dtype))
    check_matches_reference(tmp_path, codec.encode(x, "kronecker", N=group, U=levels), mode)


BLOCKVQ_CASES = [  # (shape, dtype, bits, block): odd sizes leave a partial last block and pair
    ((33, 17), "float32", 5, 32),
    ((64, 48), "float32", 4, 64),
    ((5, 7), "float16", 3, 40),
    ((3, 11), "float64", 8, 32),
    ((9, 65), "float16", 2, 2),
    ((2,), "float32", 1, 16),
]


@pytest.mark.parametrize("shape,dtype,bits,block", BLOCKVQ_CASES)
@pytest.mark.parametrize("mode", [None, "load", "call", "init"])
def test_blockvq_matches_reference(tmp_path, shape, dtype, bits, block, mode):
    rng = np.random.default_rng(bits * 1000 + block)
    x = (rng.standard_normal(shape) * 0.05).astype(dtype_from_name(dtype))
    check_matches_reference(tmp_path, codec.encode(x, "blockvq", bits=bits, block=block), mode)


def test_blockvq_bfloat16_and_blob_input(tmp_path):
    x = (np.random.default_rng(6).standard_normal((7, 96)) * 0.1).astype(dtype_from_name("bfloat16"))
    enc = codec.encode(x, "blockvq", bits=5, block=32)
    attrs = attributes(enc)
    ref = codec.decode(enc).view(np.uint16).tobytes()
    path = save(decode_model(attrs, enc.blob), tmp_path)
    for mode in ("load", "call", "init"):
        sess = runtime.session(path, mode=mode)
        assert sess.get_outputs()[0].type == "tensor(bfloat16)"
        assert raw_output(sess, attrs) == ref
    x = (np.random.default_rng(7).standard_normal((101,)) * 0.1).astype(np.float32)
    enc = codec.encode(x, "blockvq", bits=4, block=16)
    path = save(decode_model(attributes(enc), None, "Identity"), tmp_path, "input.onnx")
    for mode in ("load", "call", "init"):
        sess = runtime.session(path, mode=mode)
        for _ in range(2):
            assert same_bits(sess.run(None, {"blob": enc.blob})[0], codec.decode(enc))


BLOCKTCQ_CASES = [  # (shape, dtype, bits, block): odd blocks, partial last blocks, every code width
    ((33, 17), "float32", 5, 32),
    ((64, 48), "float32", 4, 64),
    ((5, 7), "float16", 3, 7),
    ((3, 11), "float64", 8, 33),
    ((9, 65), "float16", 2, 2),
    ((2,), "float32", 1, 16),
    ((7, 96), "bfloat16", 6, 33),
    ((1100,), "float32", 7, 4096),
]


@pytest.mark.parametrize("shape,dtype,bits,block", BLOCKTCQ_CASES)
@pytest.mark.parametrize("mode", [None, "load", "call", "init"])
def test_blocktcq_matches_reference(tmp_path, shape, dtype, bits, block, mode):
    rng = np.random.default_rng(bits * 1000 + block)
    x = (rng.standard_normal(shape) * 0.05).astype(dtype_from_name(dtype))
    enc = codec.encode(x, "blocktcq", bits=bits, block=block)
    attrs = attributes(enc, "call" if mode is None else "load")
    path = save(decode_model(attrs, enc.blob), tmp_path)
    assert raw_output(runtime.session(path, mode=mode), attrs) == np.ascontiguousarray(codec.decode(enc)).tobytes()


def test_blocktcq_random_blob_threads_and_blob_input(tmp_path):
    """Random codes and headers (every one valid) for 1.1M weights, above the parallel threshold, float16 output:
    1 and 4 decode threads in both modes, and the blob as a graph input, all equal to the reference."""
    import dataclasses

    from hyperonnx.codec import bitpack

    small = codec.encode((np.random.default_rng(13).standard_normal(999) * 0.02).astype(np.float16), "blocktcq",
                         bits=5, block=33)
    numel = (1 << 20) + 77777
    rng = np.random.default_rng(14)
    theta = rng.integers(0, 1 << 5, size=numel, dtype=np.uint64)
    headers = rng.integers(0, 1 << 10, size=-(-numel // 33), dtype=np.uint64)
    enc = dataclasses.replace(small, shape=(numel,), blob=np.concatenate([bitpack.pack(theta, 5),
                                                                         bitpack.pack(headers, 10)]))
    attrs = attributes(enc)
    ref = codec.decode(enc).tobytes()
    check_threads(save(decode_model(attrs, enc.blob), tmp_path), attrs, ref)
    path = save(decode_model(attrs, None), tmp_path, "input.onnx")
    for mode in ("load", "call"):
        sess = runtime.session(path, mode=mode)
        for _ in range(2):
            assert sess.run(None, {"blob": enc.blob})[0].tobytes() == ref


ECSQ_CASES = [  # (shape, dtype, step, block): odd sizes leave a partial last block
    ((33, 17), "float32", 0.25, 32),
    ((64, 48), "float32", 0.1, 64),
    ((5, 7), "float16", 0.5, 3),
    ((3, 11), "float64", 0.25, 1),
    ((9, 65), "float16", 2.0, 4096),
    ((2,), "float32", 0.25, 32),
]


@pytest.mark.parametrize("family", ["ecsq", "tcq"])
@pytest.mark.parametrize("shape,dtype,step,block", ECSQ_CASES)
@pytest.mark.parametrize("mode", [None, "load", "call", "init"])
def test_ecsq_matches_reference(tmp_path, family, shape, dtype, step, block, mode):
    rng = np.random.default_rng(block * 1000 + int(step * 100))
    x = (rng.standard_normal(shape) * 0.05).astype(dtype_from_name(dtype))
    check_matches_reference(tmp_path, codec.encode(x, family, step=step, block=block), mode)


@pytest.mark.parametrize("family", ["ecsq", "tcq"])
def test_ecsq_segments_threads_and_blob_input(tmp_path, family):
    """Three segments (blocks of 2: 2^18 weights each) decoded on 1 and 4 threads, bfloat16 output, the blob as a
    graph input: every run equals the reference."""
    import onnxruntime as ort

    rng = np.random.default_rng(11)
    x = (rng.standard_normal(2 * (1 << 18) + 12345) * 0.05).astype(dtype_from_name("bfloat16"))
    enc = codec.encode(x, family, block=2)
    attrs = attributes(enc)
    ref = codec.decode(enc).view(np.uint16).tobytes()
    check_threads(save(decode_model(attrs, enc.blob), tmp_path), attrs, ref)
    path = save(decode_model(attrs, None), tmp_path, "input.onnx")
    for mode in ("load", "call"):
        sess = runtime.session(path, mode=mode)
        for _ in range(2):
            binding = sess.io_binding()
            binding.bind_cpu_input("blob", enc.blob)
            buffer = np.zeros(x.size, np.uint16)
            binding.bind_ortvalue_output("Y", ort.OrtValue.ortvalue_from_numpy_with_onnx_type(buffer, 16))
            sess.run_with_iobinding(binding)
            assert buffer.tobytes() == ref


def nearly_rank1(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Rows that are multiples of one pattern plus a little noise: the encoders store the rank-1 term."""
    rows, cols = shape[0], int(np.prod(shape[1:]))
    x = np.outer(rng.standard_normal(rows) + 2.0, rng.standard_normal(cols)) * 0.05
    return (x + rng.standard_normal((rows, cols)) * 0.002).reshape(shape).astype(dtype_from_name(dtype))


RANK1_CASES = [  # (shape, dtype, block): rows shorter and longer than the C++ decoder's 2048-weight chunks
    ((64, 128), "float32", 32),
    ((24, 5, 7), "float16", 64),
    ((30, 2500), "float16", 4096),  # bfloat16: the golden rank1_tcq_bfloat16 case (numpy has no bfloat16 output)
    ((9, 130), "float64", 7),
]


@pytest.mark.parametrize("family", ["ecsq", "tcq"])
@pytest.mark.parametrize("shape,dtype,block", RANK1_CASES)
@pytest.mark.parametrize("mode", [None, "load", "call", "init"])
def test_rank1_term_matches_reference(tmp_path, family, shape, dtype, block, mode):
    enc = codec.encode(nearly_rank1(np.random.default_rng(block), shape, dtype), family, block=block)
    assert enc.format_version == 2
    check_matches_reference(tmp_path, enc, mode)


def test_rank1_term_long_rows(tmp_path):
    """Rows longer than the 2^16 columns the C++ decoder converts once per call: v's halves converted in place."""
    enc = codec.encode(nearly_rank1(np.random.default_rng(32), (24, 70001), "float32"), "tcq", block=256)
    assert enc.format_version == 2
    check_matches_reference(tmp_path, enc, "load")


@pytest.mark.parametrize("family", ["ecsq", "tcq"])
def test_rank1_term_segments_and_threads(tmp_path, family):
    """Three segments (blocks of 2) whose boundaries fall inside rows, decoded on 1 and 4 threads."""
    enc = codec.encode(nearly_rank1(np.random.default_rng(31), (601, 900), "float32"), family, block=2)
    assert enc.format_version == 2 and enc.numel > 2 * (1 << 18)
    attrs = attributes(enc)
    check_threads(save(decode_model(attrs, enc.blob), tmp_path), attrs, codec.decode(enc).tobytes())


def grid_tensor(rng: np.random.Generator, nblocks: int, block: int, signed: bool) -> np.ndarray:
    """Blocks of a float16 grid in stream order, f32(f32(d·q) + m): Q4_0-like (q in −8..7, m = 0) or Q4_1-like
    (q in 0..15, a random float16 offset); each block reaches both ends of its grid (as detection assumes)."""
    d = (rng.random(nblocks) * 0.02 + 1e-4).astype(np.float16)
    m = np.zeros(nblocks, np.float16) if signed else (-rng.random(nblocks) * 0.1).astype(np.float16)
    lo, hi = (-8, 7) if signed else (0, 15)
    q = rng.integers(lo, hi + 1, (nblocks, block))
    q[:, 0], q[:, -1] = lo, hi
    x = (d.astype(np.float32)[:, None] * q.astype(np.float32)).astype(np.float32) + m.astype(np.float32)[:, None]
    return x.astype(np.float32).reshape(-1)


def grid_pack(shape, block: int, transpose: int, d, m, q, dtype: str = "float32") -> codec.Encoded:
    """The grid encoding of given per-block float16 steps and offsets and levels (stream order; any length, a
    partial last block too), decoded to ``dtype``."""
    from hyperonnx.codec import grid

    return grid.pack(shape, block, transpose, d, m, q, dtype)


GRID_CASES = [  # (shape, transpose, signed, dtype): detected, then cast on decode for the other dtypes
    ((8, 64), 0, True, "float32"),
    ((3, 96), 0, False, "float32"),
    ((64, 5), 1, False, "float32"),
    ((96, 3, 4), 1, True, "float32"),
    ((32, 7), 1, False, "float16"),
    ((4, 48), 0, True, "bfloat16"),
    ((64, 9), 1, True, "float64"),
]


@pytest.mark.parametrize("shape,transpose,signed,dtype", GRID_CASES)
@pytest.mark.parametrize("mode", [None, "load", "call", "init"])
def test_grid_matches_reference(tmp_path, shape, transpose, signed, dtype, mode):
    import dataclasses

    from hyperonnx.codec import grid

    rng = np.random.default_rng(int(np.prod(shape)) + transpose)
    numel = int(np.prod(shape))
    flat = grid_tensor(rng, numel // 32, 32, signed)
    x = flat.reshape(shape) if not transpose else np.ascontiguousarray(flat.reshape(-1, shape[0]).T).reshape(shape)
    enc = grid.detect(x)
    assert enc is not None and enc.ints["transpose"] == (transpose,)
    assert codec.decode(enc).tobytes() == x.tobytes()  # exact
    enc = dataclasses.replace(enc, dtype=dtype)
    attrs = attributes(enc, "call" if mode is None else "load")
    path = save(decode_model(attrs, enc.blob), tmp_path)
    expect = np.ascontiguousarray(codec.decode(enc)).tobytes()
    assert raw_output(runtime.session(path, mode=mode), attrs) == expect  # raw bytes: bfloat16 too


def test_grid_segments_threads_transposed_and_blob_input(tmp_path):
    """Two segments (blocks of 2: 2^18 stream elements each) of a transposed [1100, 300] tensor, so that each
    segment writes scattered columns, decoded on 1 and 4 threads in both modes, float16 output, the blob as a graph
    input: every run equals the reference."""
    rng = np.random.default_rng(12)
    shape, block = (1100, 300), 2
    nb = 1100 * 300 // block
    d = rng.choice(np.array([0.25, 0.125, 0.01], np.float16), nb)
    m = rng.choice(np.array([0, -0.5], np.float16), nb)
    q = rng.integers(0, 16, nb * block)
    enc = grid_pack(shape, block, 1, d, m, q, "float16")
    attrs = attributes(enc)
    ref = codec.decode(enc)
    x = ((d.astype(np.float32).repeat(block) * q.astype(np.float32)).astype(np.float32)
         + m.astype(np.float32).repeat(block))
    assert ref.tobytes() == np.ascontiguousarray(x.reshape(300, 1100).T).astype(np.float16).tobytes()
    ref = ref.view(np.uint16).tobytes()
    check_threads(save(decode_model(attrs, enc.blob), tmp_path), attrs, ref)
    path = save(decode_model(attrs, None), tmp_path, "input.onnx")
    for mode in ("load", "call"):
        sess = runtime.session(path, mode=mode)
        for _ in range(2):
            assert sess.run(None, {"blob": enc.blob})[0].view(np.uint16).tobytes() == ref


def test_golden_covers_every_codec():
    """The C++ and ORT golden tests below iterate the golden files: each codec must have some."""
    families = {c.family for c in (*codec.CODECS.values(), *codec.DECODE_ONLY.values())}
    assert families >= {"paper", "kronecker", "blockvq", "blocktcq", "ecsq", "tcq", "grid"}
    assert {read_golden(p)[0]["codec"] for p in GOLDEN_CASES} == families
    assert {read_golden(p)[0]["codec"] for p in DIGEST_CASES} == {"ecsq", "tcq", "grid"}


def test_bfloat16(tmp_path):
    x = (np.random.default_rng(1).standard_normal((5, 9)) * 0.1).astype(dtype_from_name("bfloat16"))
    enc = codec.encode(x, "paper", n=100, rings=2, L=4.0)
    attrs = attributes(enc)
    path = save(decode_model(attrs, enc.blob), tmp_path)
    ref = codec.decode(enc)
    for mode in ("load", "call", "init"):
        sess = runtime.session(path, mode=mode)
        assert sess.get_outputs()[0].type == "tensor(bfloat16)"
        assert raw_output(sess, attrs) == ref.view(np.uint16).tobytes()


def test_matmul_consumer(tmp_path):
    rng = np.random.default_rng(2)
    w = (rng.standard_normal((48, 24)) * 0.05).astype(np.float32)
    enc = codec.encode(w, "paper")
    path = save(decode_model(attributes(enc), enc.blob, "MatMul", (3, 48)), tmp_path)
    x = rng.standard_normal((3, 48)).astype(np.float32)
    want = x @ codec.decode(enc)
    for mode in ("load", "call", "init"):
        np.testing.assert_allclose(run(path, mode, {"X": x}), want, rtol=1e-5, atol=1e-6)


def test_blob_as_graph_input(tmp_path):
    """A blob fed at run time: load decodes on the first run, call on every run."""
    enc = codec.encode((np.arange(101, dtype=np.float32) - 50) / 100, "paper", n=50, rings=1)
    path = save(decode_model(attributes(enc), None), tmp_path)
    for mode in ("load", "call", "init"):
        sess = runtime.session(path, mode=mode)
        for _ in range(2):
            assert same_bits(sess.run(None, {"blob": enc.blob})[0], codec.decode(enc))


def read_golden(path: Path) -> tuple[dict, np.ndarray, bytes | tuple[int, int]]:
    """attrs, blob and the expected bytes; for *.digest cases (large outputs) (byte count, digest) instead."""
    attrs, blob, expect = {}, None, b""
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        kind, _, rest = line.partition(" ")
        if kind == "blob":
            blob = np.frombuffer(bytes.fromhex(rest), dtype=np.uint8)
        elif kind == "expect":
            expect = bytes.fromhex(rest)
        elif kind == "digest":
            size, value = rest.split()
            expect = (int(size), int(value, 16))
        else:
            key, *values = rest.split()
            if kind == "s":
                attrs[key] = values[0]
            elif kind == "i":
                attrs[key] = [int(v) for v in values] if key == "shape" or key.startswith("i_") else int(values[0])
            else:
                attrs[key] = np.array([int(v, 16) for v in values], dtype=np.uint32).view(np.float32).tolist()
    return attrs, blob, expect


def digest(data: bytes) -> int:
    """custom_ops/tests/make_golden.py's digest of a decoded tensor's bytes (golden.h, digest64)."""
    words = np.frombuffer(data + b"\0" * (-len(data) % 8), dtype="<u8")
    z = words + np.arange(words.size, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return int(z.sum(dtype=np.uint64)) ^ len(data)


def matches(expect: bytes | tuple[int, int], out: bytes) -> bool:
    if isinstance(expect, tuple):
        return (len(out), digest(out)) == expect
    return out == expect


GOLDEN_CASES = sorted(p for p in GOLDEN.glob("*.txt") if p.name != "casts.txt")
DIGEST_CASES = sorted(GOLDEN.glob("*.digest"))


@pytest.mark.parametrize("case", GOLDEN_CASES + DIGEST_CASES, ids=[p.name for p in GOLDEN_CASES + DIGEST_CASES])
def test_golden_vectors(tmp_path, case):
    attrs, blob, expect = read_golden(case)
    path = save(decode_model(attrs, blob), tmp_path)
    for mode in ("load", "call"):
        assert matches(expect, raw_output(runtime.session(path, mode=mode), attrs)), mode


def test_digest_matches_reference():
    """The digest is the reference's: a digest case decoded by numpy gives the stored digest, a changed byte not."""
    from hyperonnx.codec.base import Encoded

    attrs, blob, expect = read_golden(GOLDEN / "ecsq_2seg_B1_bfloat16.digest")
    enc = Encoded(codec=attrs["codec"], shape=tuple(attrs["shape"]), dtype="bfloat16", group=attrs["group"],
                  bits=attrs["bits"], blob=blob, ints={"block": tuple(attrs["i_block"])},
                  floats={"scale": tuple(attrs["f_scale"])})
    out = bytearray(np.ascontiguousarray(codec.decode(enc)).tobytes())
    assert matches(expect, bytes(out))
    out[12345] ^= 1
    assert not matches(expect, bytes(out))


def test_session_config_overrides_attribute(tmp_path):
    """The attribute says load; the session entry says call: both give the reference (and neither crashes)."""
    enc = codec.encode(np.linspace(-1, 1, 77, dtype=np.float32), "paper", n=30, rings=2)
    path = save(decode_model(attributes(enc, "load"), enc.blob), tmp_path)
    so = runtime.session_options(mode="call", threads=2)
    import onnxruntime as ort

    out = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"]).run(None, {})[0]
    assert same_bits(out, codec.decode(enc))


def test_library_path_env(monkeypatch, tmp_path):
    monkeypatch.setenv(runtime.LIBRARY_ENV, LIBRARY)
    assert runtime.library_path() == LIBRARY
    monkeypatch.setenv(runtime.LIBRARY_ENV, str(tmp_path / "missing.so"))
    with pytest.raises(FileNotFoundError, match="HYPERONNX_LIBRARY"):
        runtime.library_path()


def test_bad_mode_arguments():
    with pytest.raises(ValueError):
        runtime.session_options(mode="fast")
    with pytest.raises(ValueError):
        runtime.session("x.onnx", mode="fast")
