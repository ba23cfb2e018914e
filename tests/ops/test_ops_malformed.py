"""Malformed HyperDecode blobs and attributes are rejected with an error naming the node, never a crash."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnxruntime as ort
import pytest
from test_ops_decode import LIBRARY, attributes, decode_model, save

from hyperonnx import codec, runtime

pytestmark = pytest.mark.skipif(LIBRARY is None, reason="op library not built")



def widened(enc: codec.Encoded, bits: int) -> codec.Encoded:
    """The same codes packed at ``bits`` bits, so codes >= entries become representable."""
    from hyperonnx.codec import bitpack

    codes = bitpack.unpack(enc.blob, enc.count, enc.bits)
    return dataclasses.replace(enc, bits=bits, blob=bitpack.pack(codes, bits))


ENC = widened(codec.encode(np.linspace(-1, 1, 45, dtype=np.float32).reshape(5, 9), "paper", n=17, rings=0), 7)


def entries(enc: codec.Encoded) -> int:
    return codec.table(enc).shape[0]


def bad_code_blob(enc: codec.Encoded, position: int, code: int) -> np.ndarray:
    from hyperonnx.codec import bitpack

    codes = bitpack.unpack(enc.blob, enc.count, enc.bits).astype(np.uint64)
    codes[position] = code
    return bitpack.pack(codes, enc.bits)


def check_bad_side_information(tmp_path, enc: codec.Encoded, change: dict, message: str, mode: str) -> None:
    """``enc``'s attributes updated by ``change`` (None: removed) fail the node with ``message``."""
    attrs = {k: v for k, v in {**attributes(enc), **change}.items() if v is not None}
    path = save(decode_model(attrs, enc.blob), tmp_path)
    with pytest.raises(Exception, match=f"decode_W.*{message}"):
        runtime.session(path, mode=mode).run(None, {})


def changed(enc: codec.Encoded, change) -> np.ndarray:
    """A copy of ``enc``'s blob, changed in place by ``change``."""
    blob = enc.blob.copy()
    change(blob)
    return blob


def u16_at(blob: np.ndarray, at: int) -> int:
    return int(blob[at : at + 2].view("<u2")[0])


def put_u16(blob: np.ndarray, at: int, value: int) -> None:
    blob[at : at + 2] = np.array([value], "<u2").view(np.uint8)


def table_offsets(blob: np.ndarray, n: int) -> list[int]:
    """Offsets of a rANS codec's ``n`` frequency tables, then of its first stream."""
    at = [0]
    for _ in range(n):
        at.append(at[-1] + 4 + 2 * u16_at(blob, at[-1] + 2))
    return at


def check_bad_rans_blob(tmp_path, enc: codec.Encoded, make, message: str, mode: str) -> None:
    """A bad blob of a rANS codec (ecsq, grid): the reference rejects it, and the op with ``message`` (a constant
    at session creation, a graph input at the run), and the session stays usable."""
    with pytest.raises(ValueError):  # the reference rejects it too
        codec.decode(dataclasses.replace(enc, blob=make()))
    path = save(decode_model(attributes(enc), make()), tmp_path)
    name = enc.codec
    with pytest.raises(Exception, match=f"HyperDecode node 'decode_W'.*{name} codec: .*({message})|decode_W.*{message}"):
        runtime.session(path, mode=mode)
    path = save(decode_model(attributes(enc), None), tmp_path, "input.onnx")
    sess = runtime.session(path, mode=mode)
    with pytest.raises(Exception, match=message):
        sess.run(None, {"blob": make()})
    assert sess.run(None, {"blob": enc.blob})[0].tobytes() == codec.decode(enc).tobytes()  # still usable


def check_every_byte_flip_is_safe(tmp_path, enc: codec.Encoded) -> None:
    """Every byte of a rANS codec's blob flipped (run-time input, call mode): the op and the reference agree on
    accepting it, with the same output when accepted; never a crash."""
    path = save(decode_model(attributes(enc), None), tmp_path, "input.onnx")
    sess = runtime.session(path, mode="call")
    rejected = 0
    for at in range(enc.blob.size):
        blob = enc.blob.copy()
        blob[at] ^= 0x10
        try:
            ref = codec.decode(dataclasses.replace(enc, blob=blob))
        except ValueError:
            ref = None
        try:
            out = sess.run(None, {"blob": blob})[0]
        except Exception as exc:  # noqa: BLE001 - ORT raises its own types
            assert ref is None, f"byte {at}: the op rejected what the reference decodes: {exc}"
            assert f"{enc.codec} codec" in str(exc) or "blob holds" in str(exc)
            rejected += 1
            continue
        assert ref is not None and out.tobytes() == ref.tobytes(), f"byte {at}: accepted, differs from the reference"
    assert rejected >= enc.blob.size * 9 // 10


ATTRIBUTE_CASES = {
    "unknown codec": ({"codec": "zip"}, "unknown codec 'zip'"),
    "format 2": ({"format": 2}, "format version 2 is not defined"),  # version 2 is ecsq's and tcq's only
    "format 3": ({"format": 3}, "format version 3 is not supported"),
    "bits 0": ({"bits": 0}, "bits must be in 1..32"),
    "bits 40": ({"bits": 40}, "bits must be in 1..32"),
    "group 0": ({"group": 0}, "group must be"),
    "negative dim": ({"shape": [5, -9]}, "negative"),
    "huge shape": ({"shape": [1 << 30, 1 << 30, 1 << 30]}, "too many elements"),
    "mode fast": ({"mode": "fast"}, "mode must be"),
    "scale/rings mismatch": ({"i_rings": [2]}, "f_scale must hold"),
    "n zero": ({"i_n": [0]}, "i_n must be"),
}


@pytest.mark.parametrize("name", sorted(ATTRIBUTE_CASES))
@pytest.mark.parametrize("mode", ["load", "call"])
def test_bad_attributes(tmp_path, name, mode):
    change, message = ATTRIBUTE_CASES[name]
    attrs = {**attributes(ENC), **change}
    path = save(decode_model(attrs, ENC.blob), tmp_path)
    with pytest.raises(Exception, match=message):
        runtime.session(path, mode=mode).run(None, {})


KRONECKER = codec.encode(np.linspace(-1, 1, 45, dtype=np.float32).reshape(5, 9), "kronecker", N=3, U=100)
KRONECKER_CASES = {
    "levels zero": ({"i_levels": [0]}, "i_levels must be in"),
    "levels huge": ({"i_levels": [1 << 40]}, "i_levels must be in"),
    "alpha short": ({"i_alpha": list(KRONECKER.ints["alpha"][:2])}, "i_alpha must hold group = 3"),
    "two widths": ({"f_width": [1.0, 2.0]}, "f_width must hold"),
    "no offset": ({"f_offset": None}, "f_offset"),
    "group 5": ({"group": 5, "i_alpha": [1, 2, 3, 4, 5]}, "group must be 2, 3 or 4"),
}


@pytest.mark.parametrize("name", sorted(KRONECKER_CASES))
def test_bad_kronecker_side_information(tmp_path, name):
    check_bad_side_information(tmp_path, KRONECKER, *KRONECKER_CASES[name], "call")


BLOCKVQ = codec.encode(np.linspace(-1, 1, 77, dtype=np.float32).reshape(7, 11), "blockvq", bits=3, block=16)
BLOCKVQ_CASES = {
    "levels 12": ({"i_levels": [12]}, "i_levels must be a power of two in 2..256, got 12"),
    "levels 1": ({"i_levels": [1], "bits": 0}, "bits must be in 1..32"),
    "levels 512": ({"i_levels": [512], "bits": 18}, "got 512"),
    "bits vs levels": ({"bits": 8}, "bits must be 2\\*log2\\(i_levels\\) = 6, got 8"),
    "group 3": ({"group": 3}, "group must be 2"),
    "block odd": ({"i_block": [15]}, "i_block must be even and in 2..4096, got 15"),
    "block 0": ({"i_block": [0]}, "got 0"),
    "block 8192": ({"i_block": [8192]}, "got 8192"),
    "books short": ({"f_books": list(BLOCKVQ.floats["books"][:-1])}, "f_books must hold 4\\*i_levels = 32 floats, got 31"),
    "books of 4 levels": ({"f_books": list(BLOCKVQ.floats["books"][:16])}, "got 16"),
    "no smax": ({"f_smax": None}, "f_smax"),
    "two smax": ({"f_smax": [1.0, 2.0]}, "f_smax must hold one float"),
    "no block": ({"i_block": None}, "i_block"),
}


@pytest.mark.parametrize("name", sorted(BLOCKVQ_CASES))
@pytest.mark.parametrize("mode", ["load", "call"])
def test_bad_blockvq_side_information(tmp_path, name, mode):
    check_bad_side_information(tmp_path, BLOCKVQ, *BLOCKVQ_CASES[name], mode)


# 77 weights, blocks of 16: 39 codes of 6 bits (30 bytes), then 5 headers of 10 bits (7 bytes).
BLOCKVQ_BLOBS = {
    "one byte short": lambda: BLOCKVQ.blob[:-1],
    "one byte long": lambda: np.append(BLOCKVQ.blob, np.uint8(0)),
    "codes only": lambda: BLOCKVQ.blob[:30],
    "empty": lambda: np.zeros(0, np.uint8),
}


@pytest.mark.parametrize("name", sorted(BLOCKVQ_BLOBS))
@pytest.mark.parametrize("mode", ["load", "call"])
def test_bad_blockvq_blob(tmp_path, name, mode):
    assert BLOCKVQ.blob.size == 37
    message = r"blob holds \d+ bytes, expected 37 \(39 codes of 6 bits \+ 5 block headers of 10 bits\)"
    path = save(decode_model(attributes(BLOCKVQ), BLOCKVQ_BLOBS[name]()), tmp_path)
    with pytest.raises(Exception, match=f"HyperDecode node 'decode_W'.*{message}"):
        runtime.session(path, mode=mode)
    path = save(decode_model(attributes(BLOCKVQ), None), tmp_path, "input.onnx")
    sess = runtime.session(path, mode=mode)
    with pytest.raises(Exception, match=message):
        sess.run(None, {"blob": BLOCKVQ_BLOBS[name]()})
    assert sess.run(None, {"blob": BLOCKVQ.blob})[0].tobytes() == codec.decode(BLOCKVQ).tobytes()  # still usable


def test_blockvq_every_header_is_valid(tmp_path):
    """A 10-bit header cannot hold a codebook id >= 4 (the format's `c < 4` check is implied): every header
    value 0..1023, one block of 2 weights each, decodes as the numpy reference does."""
    from hyperonnx.codec import bitpack

    enc = codec.encode(np.linspace(-1, 1, 64, dtype=np.float32), "blockvq", bits=3, block=2)
    theta = np.arange(1024, dtype=np.uint64) * 5 % 64
    blob = np.concatenate([bitpack.pack(theta, 6), bitpack.pack(np.arange(1024, dtype=np.uint64), 10)])
    enc = dataclasses.replace(enc, shape=(2048,), blob=blob)
    path = save(decode_model(attributes(enc), enc.blob), tmp_path)
    assert runtime.session(path, mode="call").run(None, {})[0].tobytes() == codec.decode(enc).tobytes()


BLOCKTCQ = codec.encode(np.linspace(-1, 1, 77, dtype=np.float32).reshape(7, 11), "blocktcq", bits=3, block=7)
BLOCKTCQ_CASES = {
    "levels 12": ({"i_levels": [12]}, "blocktcq codec: i_levels must be a power of two in 2..256, got 12"),
    "levels 1": ({"i_levels": [1], "bits": 0}, "bits must be in 1..32"),
    "levels 512": ({"i_levels": [512], "bits": 9}, "got 512"),
    "bits vs levels": ({"bits": 6}, "bits must be log2\\(i_levels\\) = 3, got 6"),
    "levels vs bits": ({"i_levels": [16]}, "bits must be log2\\(i_levels\\) = 4, got 3"),
    "group 2": ({"group": 2}, "group must be 1 \\(one code per weight\\), got 2"),
    "block 1": ({"i_block": [1]}, "i_block must be in 2..4096, got 1"),
    "block 0": ({"i_block": [0]}, "got 0"),
    "block 8192": ({"i_block": [8192]}, "got 8192"),
    "two blocks": ({"i_block": [7, 7]}, "i_block must hold one integer"),
    "books short": ({"f_books": list(BLOCKTCQ.floats["books"][:-1])},
                    "f_books must hold 2\\*i_levels = 16 floats, got 15"),
    "all four level sets": ({"f_books": list(BLOCKTCQ.floats["books"]) * 4}, "got 64"),
    "no smax": ({"f_smax": None}, "f_smax"),
    "two smax": ({"f_smax": [1.0, 2.0]}, "f_smax must hold one float"),
    "no block": ({"i_block": None}, "i_block"),
    "no levels": ({"i_levels": None}, "i_levels"),
}


@pytest.mark.parametrize("name", sorted(BLOCKTCQ_CASES))
@pytest.mark.parametrize("mode", ["load", "call"])
def test_bad_blocktcq_side_information(tmp_path, name, mode):
    check_bad_side_information(tmp_path, BLOCKTCQ, *BLOCKTCQ_CASES[name], mode)


# 77 weights, blocks of 7: 77 codes of 3 bits (29 bytes), then 11 headers of 10 bits (14 bytes).
BLOCKTCQ_BLOBS = {
    "one byte short": lambda: BLOCKTCQ.blob[:-1],
    "one byte long": lambda: np.append(BLOCKTCQ.blob, np.uint8(0)),
    "codes only": lambda: BLOCKTCQ.blob[:29],
    "empty": lambda: np.zeros(0, np.uint8),
}


@pytest.mark.parametrize("name", sorted(BLOCKTCQ_BLOBS))
@pytest.mark.parametrize("mode", ["load", "call"])
def test_bad_blocktcq_blob(tmp_path, name, mode):
    assert BLOCKTCQ.blob.size == 43
    message = r"blob holds \d+ bytes, expected 43 \(77 codes of 3 bits \+ 11 block headers of 10 bits\)"
    path = save(decode_model(attributes(BLOCKTCQ), BLOCKTCQ_BLOBS[name]()), tmp_path)
    with pytest.raises(Exception, match=f"HyperDecode node 'decode_W'.*{message}"):
        runtime.session(path, mode=mode)
    path = save(decode_model(attributes(BLOCKTCQ), None), tmp_path, "input.onnx")
    sess = runtime.session(path, mode=mode)
    with pytest.raises(Exception, match=message):
        sess.run(None, {"blob": BLOCKTCQ_BLOBS[name]()})
    assert sess.run(None, {"blob": BLOCKTCQ.blob})[0].tobytes() == codec.decode(BLOCKTCQ).tobytes()  # still usable


@pytest.mark.parametrize("block", [2, 7])
def test_blocktcq_every_header_is_valid(tmp_path, block):
    """A 10-bit header cannot hold a level set >= 4 (the format's `c < 4` check is implied): every header value
    0..1023 in turn, blocks of 2 and of 7 (odd; a partial last block), codes over the whole range, decodes as the
    numpy reference does."""
    from hyperonnx.codec import bitpack

    numel = 1024 * block - 1
    theta = np.random.default_rng(block).integers(0, 8, size=numel, dtype=np.uint64)
    blob = np.concatenate([bitpack.pack(theta, 3), bitpack.pack(np.arange(1024, dtype=np.uint64), 10)])
    enc = dataclasses.replace(BLOCKTCQ, shape=(numel,), ints={"block": (block,), "levels": (8,)}, blob=blob)
    path = save(decode_model(attributes(enc), enc.blob), tmp_path)
    assert runtime.session(path, mode="call").run(None, {})[0].tobytes() == codec.decode(enc).tobytes()


# ecsq and tcq share the layout, the side information and the stream framing: the same cases for both.
_X = (np.random.default_rng(3).standard_normal((7, 11)) * 0.1).astype(np.float32)
LEVEL_STREAMS = {name: codec.encode(_X, name, block=16) for name in ("ecsq", "tcq")}
ECSQ = LEVEL_STREAMS["ecsq"]
ECSQ_CASES = {
    "block 0": ({"i_block": [0]}, "i_block must be in 1..4096, got 0"),
    "block 4097": ({"i_block": [4097]}, "got 4097"),
    "two blocks": ({"i_block": [16, 16]}, "i_block must hold one integer"),
    "scale inf": ({"f_scale": [float("inf")]}, "not finite"),
    "scale nan": ({"f_scale": [float("nan")]}, "not finite"),
    "two scales": ({"f_scale": [1.0, 2.0]}, "f_scale must hold one float"),
    "no scale": ({"f_scale": None}, "f_scale"),
    "no block": ({"i_block": None}, "i_block"),
    "group 2": ({"group": 2}, "group must be 1"),
    "bits 4": ({"bits": 4}, "bits must be 8"),
}


@pytest.mark.parametrize("family", sorted(LEVEL_STREAMS))
@pytest.mark.parametrize("name", sorted(ECSQ_CASES))
@pytest.mark.parametrize("mode", ["load", "call"])
def test_bad_ecsq_side_information(tmp_path, family, name, mode):
    attrs, message = ECSQ_CASES[name]
    check_bad_side_information(tmp_path, LEVEL_STREAMS[family], attrs, f"(codec {family}|{family} codec): .*{message}", mode)


def level_stream_blobs(enc):
    """77 weights, blocks of 16: one stream of 8 lanes after the k and q frequency tables. Each: (blob, message)."""
    _, q_at, stream_at = table_offsets(enc.blob, 2)
    return {
        "empty": (lambda: np.zeros(0, np.uint8), r"blob holds 0 bytes, expected at least 48"),
        "tables only": (lambda: enc.blob[:stream_at], r"expected at least 48|truncated stream header"),
        "one byte short": (lambda: enc.blob[:-1], "segment 0: truncated stream"),
        "trailing byte": (lambda: np.append(enc.blob, np.uint8(0)), r"1 unexpected byte\(s\) after the last stream"),
        "bad frequency sum": (lambda: changed(enc, lambda b: put_u16(b, 4, u16_at(b, 4) + 1)),
                              "k model: frequencies sum to 4097"),
        "q alphabet beyond 254": (lambda: changed(enc, lambda b: put_u16(b, q_at, 256 - u16_at(b, q_at + 2))),
                                  "level alphabet beyond"),
        "k alphabet beyond 255": (lambda: changed(enc, lambda b: put_u16(b, 0, 300)), r"outside 0..255"),
        "state below 2^16": (lambda: changed(enc, lambda b: b.__setitem__(slice(stream_at, stream_at + 4),
                                                                          [255, 255, 0, 0])),
                             r"state out of range"),
        "wrong state": (lambda: changed(enc, lambda b: b.__setitem__(stream_at, b[stream_at] ^ 1)),
                        "segment 0: corrupt stream"),
        "flipped last word": (lambda: changed(enc, lambda b: b.__setitem__(-1, b[-1] ^ 0x21)),
                              "segment 0: corrupt stream"),
        "word count 2^32 - 1": (lambda: changed(enc, lambda b: b.__setitem__(slice(stream_at + 32, stream_at + 36),
                                                                             255)),
                                "truncated stream"),
    }


ECSQ_BLOBS = level_stream_blobs(ECSQ)


@pytest.mark.parametrize("family", sorted(LEVEL_STREAMS))
@pytest.mark.parametrize("name", sorted(ECSQ_BLOBS))
@pytest.mark.parametrize("mode", ["load", "call"])
def test_bad_ecsq_blob(tmp_path, family, name, mode):
    enc = LEVEL_STREAMS[family]
    check_bad_rans_blob(tmp_path, enc, *level_stream_blobs(enc)[name], mode)


@pytest.mark.parametrize("family", sorted(LEVEL_STREAMS))
def test_ecsq_every_byte_flip_is_safe(tmp_path, family):
    check_every_byte_flip_is_safe(tmp_path, LEVEL_STREAMS[family])


def test_kronecker_code_out_of_range(tmp_path):
    """U = 100 with 7-bit codes: codes 100..127 are representable and must be rejected."""
    path = save(decode_model(attributes(KRONECKER), bad_code_blob(KRONECKER, 7, 100)), tmp_path)
    with pytest.raises(Exception, match="code 100 at position 7 is out of range"):
        runtime.session(path, mode="call")


def test_missing_attribute(tmp_path):
    attrs = attributes(ENC)
    del attrs["i_rings"]
    path = save(decode_model(attrs, ENC.blob), tmp_path)
    with pytest.raises(Exception, match="i_rings"):
        runtime.session(path).run(None, {})


BLOB_CASES = {
    "one byte short": lambda: ENC.blob[:-1],
    "one byte long": lambda: np.append(ENC.blob, np.uint8(0)),
    "empty": lambda: np.zeros(0, np.uint8),
    "first code out of range": lambda: bad_code_blob(ENC, 0, entries(ENC)),
    "last code out of range": lambda: bad_code_blob(ENC, ENC.count - 1, (1 << ENC.bits) - 1),
}
BLOB_MESSAGES = {"first code out of range": "out of range", "last code out of range": "out of range"}


@pytest.mark.parametrize("name", sorted(BLOB_CASES))
@pytest.mark.parametrize("mode", ["load", "call"])
def test_bad_constant_blob_fails_at_session_creation(tmp_path, name, mode):
    path = save(decode_model(attributes(ENC), BLOB_CASES[name]()), tmp_path)
    with pytest.raises(Exception, match=f"HyperDecode node 'decode_W'.*{BLOB_MESSAGES.get(name, 'bytes, expected')}"):
        runtime.session(path, mode=mode)


@pytest.mark.parametrize("name", sorted(BLOB_CASES))
@pytest.mark.parametrize("mode", ["load", "call"])
def test_bad_runtime_blob_fails_the_run(tmp_path, name, mode):
    path = save(decode_model(attributes(ENC), None), tmp_path)
    sess = runtime.session(path, mode=mode)
    with pytest.raises(Exception, match="HyperDecode node 'decode_W'"):
        sess.run(None, {"blob": BLOB_CASES[name]()})
    assert sess.run(None, {"blob": ENC.blob})[0].tobytes() == codec.decode(ENC).tobytes()  # still usable


def test_bad_session_config(tmp_path):
    so = ort.SessionOptions()
    so.add_session_config_entry(runtime.CONFIG_DECODE_MODE, "sometimes")
    with pytest.raises(Exception, match="hyperonnx.decode_mode"):
        so.register_custom_ops_library(LIBRARY)
    so = ort.SessionOptions()
    so.add_session_config_entry(runtime.CONFIG_DECODE_THREADS, "0")
    with pytest.raises(Exception, match="hyperonnx.decode_threads"):
        so.register_custom_ops_library(LIBRARY)


def _grid_encoding() -> codec.Encoded:
    from hyperonnx.codec import grid

    rng = np.random.default_rng(5)
    d = (rng.random(6) * 0.02 + 1e-3).astype(np.float16)
    m = (-rng.random(6) * 0.1).astype(np.float16)
    q = rng.integers(0, 16, (6, 32))
    q[:, 0], q[:, -1] = 0, 15
    x = (d.astype(np.float32)[:, None] * q.astype(np.float32)).astype(np.float32) + m.astype(np.float32)[:, None]
    enc = grid.detect(np.ascontiguousarray(x.reshape(3, 64).T))  # [64, 3], blocks down axis 0
    assert enc is not None and enc.ints["transpose"] == (1,)
    return enc


def _grid_zero() -> codec.Encoded:
    from hyperonnx.codec import grid

    return grid.detect(np.zeros((4, 32), np.float32))


GRID = _grid_encoding()
GRID_ZERO = _grid_zero()
GRID_CASES = {
    "block 0": ({"i_block": [0]}, "i_block must be in 1..4096, got 0"),
    "block 4097": ({"i_block": [4097]}, "got 4097"),
    "two blocks": ({"i_block": [32, 32]}, "i_block must hold one integer"),
    "transpose 2": ({"i_transpose": [2]}, "i_transpose must be 0 or 1, got 2"),
    "transpose -1": ({"i_transpose": [-1]}, "i_transpose must be 0 or 1, got -1"),
    "two transposes": ({"i_transpose": [1, 0]}, "i_transpose must hold one integer"),
    "no transpose": ({"i_transpose": None}, "i_transpose"),
    "no block": ({"i_block": None}, "i_block"),
    "group 2": ({"group": 2}, "group must be 1"),
    "bits 4": ({"bits": 4}, "bits must be 8"),
}


@pytest.mark.parametrize("name", sorted(GRID_CASES))
@pytest.mark.parametrize("mode", ["load", "call"])
def test_bad_grid_side_information(tmp_path, name, mode):
    check_bad_side_information(tmp_path, GRID, *GRID_CASES[name], mode)


def test_grid_transpose_flipped_is_another_tensor(tmp_path):
    """i_transpose 1 -> 0 is no error (both are valid layouts): the op and the reference give the stream order."""
    flat = dataclasses.replace(GRID, ints={**GRID.ints, "transpose": (0,)})
    path = save(decode_model(attributes(flat), flat.blob), tmp_path)
    out = runtime.session(path, mode="call").run(None, {})[0]
    assert out.tobytes() == codec.decode(flat).tobytes() != codec.decode(GRID).tobytes()
    assert out.tobytes() == np.ascontiguousarray(codec.decode(GRID).reshape(64, 3).T).tobytes()


_G_TABLES = 20  # d_lo, d_hi, m_lo, m_hi, q0 … q15
_G_AT = table_offsets(GRID.blob, _G_TABLES)
_Z_AT = table_offsets(GRID_ZERO.blob, _G_TABLES)  # the zero tensor: one-symbol side tables (symbol 0), no words
_G_LEAST = 6 * _G_TABLES + 4 * 8 + 4  # one-symbol tables, then one stream of 8 lanes and no words
GRID_BLOBS = {  # each: (encoding, blob, message)
    "empty": (GRID, lambda: np.zeros(0, np.uint8), rf"blob holds 0 bytes, expected at least {_G_LEAST}"),
    "tables only": (GRID, lambda: GRID.blob[: _G_AT[_G_TABLES]], rf"expected at least {_G_LEAST}|truncated stream header"),
    "one byte short": (GRID, lambda: GRID.blob[:-1], "segment 0: truncated stream"),
    "trailing byte": (GRID, lambda: np.append(GRID.blob, np.uint8(0)), r"1 unexpected byte\(s\) after the last stream"),
    "bad frequency sum": (GRID, lambda: changed(GRID, lambda b: put_u16(b, 4, u16_at(b, 4) + 1)),
                          "d_lo model: frequencies sum to 4097"),
    "q alphabet beyond 255": (GRID, lambda: changed(GRID, lambda b: put_u16(b, _G_AT[4], 300)), r"outside 0..255"),
    "state below 2^16": (GRID, lambda: changed(GRID, lambda b: b.__setitem__(slice(_G_AT[_G_TABLES], _G_AT[_G_TABLES] + 4),
                                                                                 [255, 255, 0, 0])),
                         r"state out of range"),
    "wrong state": (GRID, lambda: changed(GRID, lambda b: b.__setitem__(_G_AT[_G_TABLES], b[_G_AT[_G_TABLES]] ^ 1)),
                    "segment 0: corrupt stream"),
    "flipped last word": (GRID, lambda: changed(GRID, lambda b: b.__setitem__(-1, b[-1] ^ 0x21)),
                          "segment 0: corrupt stream"),
    "infinite step": (GRID_ZERO, lambda: changed(GRID_ZERO, lambda b: put_u16(b, _Z_AT[1], 0x7C)),
                      "step or offset is not finite"),
    "NaN offset": (GRID_ZERO, lambda: changed(GRID_ZERO, lambda b: put_u16(b, _Z_AT[3], 0xFE)),
                   "step or offset is not finite"),
}


@pytest.mark.parametrize("name", sorted(GRID_BLOBS))
@pytest.mark.parametrize("mode", ["load", "call"])
def test_bad_grid_blob(tmp_path, name, mode):
    check_bad_rans_blob(tmp_path, *GRID_BLOBS[name], mode)


def test_grid_every_byte_flip_is_safe(tmp_path):
    check_every_byte_flip_is_safe(tmp_path, GRID)
