"""The command line as a user meets it: outputs, JSON, and one clear line (exit 2) for every bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import onnx
import pytest
from toymodels import conv_mlp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def hx(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("HYPERONNX_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "hyperonnx", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


@pytest.fixture
def toy(tmp_path):
    path = tmp_path / "toy.onnx"
    onnx.save(conv_mlp(), str(path))
    return path


def test_convert_prints_a_summary_and_writes_a_json_report(toy, tmp_path):
    out, report = tmp_path / "out.onnx", tmp_path / "report.json"
    result = hx("convert", toy, "-o", out, "--min-elements", "1000", "--report", report)
    assert result.returncode == 0, result.stderr
    assert "compressed 2 tensors" in result.stdout and "x, whole file" in result.stdout
    data = json.loads(report.read_text())
    assert data["totals"]["tensors_compressed"] == 2
    assert data["totals"]["bytes_after"] == out.stat().st_size


def test_convert_json_and_codec_options(toy, tmp_path):
    out = tmp_path / "out.onnx"
    result = hx("convert", toy, "-o", out, "--min-elements", "1", "--json", "--codec", "paper", "--codec-opt", "n=225")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {t["name"] for t in data["tensors"]} == {"conv.weight", "fc1.weight", "fc2.weight"}
    fc1 = next(t for t in data["tensors"] if t["name"] == "fc1.weight")
    assert fc1["bits_per_weight"] < 5.1  # n=225: 10-bit pair codes


@pytest.mark.slow  # converts and inspects as processes
def test_inspect_json_shape(toy, tmp_path):
    out = tmp_path / "out.onnx"
    assert hx("convert", toy, "-o", out, "--min-elements", "1").returncode == 0
    result = hx("inspect", out, "--json")
    data = json.loads(result.stdout)
    assert set(data) == {"tensors", "totals"}
    assert {"bytes_before", "bytes_after", "ratio"} <= set(data["totals"])
    for key in ("name", "shape", "dtype", "codec", "bits_per_weight", "sqnr_db", "bytes_before", "bytes_after"):
        assert all(key in t for t in data["tensors"])


@pytest.mark.slow  # converts, inspects and verifies as processes
def test_rank1_term_end_to_end(tmp_path):
    """A MatMul whose weight is nearly one outer product, converted with tcq: the weight gets the rank-1 term
    (format version 2, shown by inspect), the model runs in ONNX Runtime with the op library as numpy decodes it,
    and decompress gives the same weight back."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from hyperonnx.passes import decoders

    rng = np.random.default_rng(3)
    w = (np.outer(rng.standard_normal(96) + 2, rng.standard_normal(160)) + 0.02 * rng.standard_normal((96, 160)))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "rank1",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 96])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 160])],
        [numpy_helper.from_array(w.astype(np.float32), "w")])
    src, out, plain = tmp_path / "m.onnx", tmp_path / "out.onnx", tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    assert hx("convert", src, "-o", out, "--codec", "tcq", "--min-elements", "1").returncode == 0
    data = json.loads(hx("inspect", out, "--json").stdout)
    assert [(t["name"], t["codec"], t["format"]) for t in data["tensors"]] == [("w", "tcq", 2)]
    assert "tcq+r1" in hx("inspect", out).stdout
    (decoder,) = decoders.find_decoders(onnx.load(str(out)))
    reference = decoder.decode()
    assert 10 * np.log10((w**2).sum() / ((w - reference) ** 2).sum()) > 40
    verified = json.loads(hx("verify", src, out, "--json").stdout)
    assert verified["cosine_min"] > 0.9999
    assert hx("decompress", out, "-o", plain).returncode == 0
    restored = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(plain)).graph.initializer}["w"]
    assert restored.tobytes() == reference.tobytes()


@pytest.mark.slow  # converts and verifies as processes
def test_verify_portable_passes_and_fails_by_threshold(toy, tmp_path):
    out = tmp_path / "out.onnx"
    assert hx("convert", toy, "-o", out, "--min-elements", "1", "--runtime", "portable").returncode == 0
    ok = hx("verify", toy, out, "--json", "--min-cosine", "0.95")
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["passed"] and 0.95 < data["cosine_min"] < 1.0
    assert {"size_ratio", "load_seconds", "latency_seconds"} <= set(data)
    strict = hx("verify", toy, out, "--min-cosine", "0.9999999")
    assert strict.returncode == 1 and "FAIL" in strict.stdout


@pytest.mark.slow  # several command runs, each a new process
def test_decompress_and_doctor(toy, tmp_path):
    out, plain = tmp_path / "out.onnx", tmp_path / "plain.onnx"
    assert hx("convert", toy, "-o", out, "--min-elements", "1").returncode == 0
    result = hx("decompress", out, "-o", plain)
    assert result.returncode == 0 and "decoded 3 tensors" in result.stdout
    doctor = hx("doctor", "--json")
    assert doctor.returncode == 0
    info = json.loads(doctor.stdout)
    assert "CPUExecutionProvider" in info["providers"] and "paper" in info["codecs"]


@pytest.mark.slow  # every command on the portable form, as processes
@pytest.mark.parametrize("codec_name", ["blockvq", "blocktcq"])
def test_portable_inspect_and_decompress_round_trip(toy, tmp_path, codec_name):
    """inspect reads the portable decoders back (codes and block headers stored in bit planes) and decompress
    writes weights equal to what the portable graph computes in ONNX Runtime, bit for bit."""
    import numpy as np
    import onnxruntime as ort

    out, plain = tmp_path / "out.onnx", tmp_path / "plain.onnx"
    convert = hx("convert", toy, "-o", out, "--min-elements", "1", "--runtime", "portable", "--codec", codec_name)
    assert convert.returncode == 0, convert.stderr
    inspect = hx("inspect", out, "--json")
    assert inspect.returncode == 0, inspect.stderr
    tensors = json.loads(inspect.stdout)["tensors"]
    assert {t["name"] for t in tensors} == {"conv.weight", "fc1.weight", "fc2.weight"}
    assert all(t["form"] == "portable" and t["codec"] == codec_name and t["bits_per_weight"] > 0 for t in tensors)
    result = hx("decompress", out, "-o", plain)
    assert result.returncode == 0 and "decoded 3 tensors" in result.stdout, result.stderr
    x = {"x": np.random.default_rng(0).standard_normal((2, 8, 8, 8)).astype(np.float32)}
    runs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, x)[0] for p in (out, plain)]
    assert runs[0].tobytes() == runs[1].tobytes()


def _one_line_error(result, *needles):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip() and line.strip() != "encoding"]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.slow  # dozens of command runs, each a new process
def test_bad_inputs_get_one_line_and_exit_2(toy, tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\xffnot a model at all" * 10)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(toy.read_bytes()[: toy.stat().st_size // 2])
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    out = tmp_path / "out.onnx"
    _one_line_error(hx("convert", tmp_path / "missing.onnx", "-o", out), "no such file")
    _one_line_error(hx("convert", garbage, "-o", out), "garbage.onnx")
    _one_line_error(hx("convert", truncated, "-o", out), "truncated.onnx")
    _one_line_error(hx("convert", empty, "-o", out), "empty.onnx")
    _one_line_error(hx("convert", toy, "-o", toy), "output path is the input path")
    _one_line_error(hx("convert", toy, "-o", out, "--codec", "zip"), "unknown codec")
    _one_line_error(hx("convert", toy, "-o", out, "--codec-opt", "bogus=1"), "no option 'bogus'")
    _one_line_error(hx("convert", toy, "-o", out, "--codec-opt", "n"), "KEY=VALUE")
    _one_line_error(hx("convert", toy, "-o", out, "--codec-opt", "n=abc"))
    # values out of range used to skip every weight and write an uncompressed copy, exit 0
    _one_line_error(hx("convert", toy, "-o", out, "--codec-opt", "bits=99"), "bits must be in 1..8, got 99")
    _one_line_error(hx("convert", toy, "-o", out, "--codec", "ecsq", "--codec-opt", "step=-1"), "step must be in")
    _one_line_error(hx("bench", toy, "--codecs", "blocktcq:bits=0", "--out", tmp_path / "b"), "bits must be in")
    _one_line_error(hx("convert", toy, "-o", tmp_path / "nowhere" / "out.onnx"), "does not exist")
    _one_line_error(hx("convert", toy, "-o", out, "--min-elements", "0"), "min-elements")
    _one_line_error(hx("inspect", garbage), "garbage.onnx")
    _one_line_error(hx("verify", toy, garbage), "garbage.onnx")
    _one_line_error(hx("decompress", truncated, "-o", out), "truncated.onnx")
    assert not out.exists()


@pytest.mark.slow  # a command run per command
def test_a_name_that_is_not_utf8_gets_one_line(toy, tmp_path):
    """ONNX is proto2: protobuf parses a string field holding invalid UTF-8 and returns bytes. Every command
    refuses such a file in one line naming the field (before this, convert failed with an internal TypeError on
    a graph input's name; the fuzzer found it)."""
    import onnx

    model = onnx.load(str(toy))
    name = model.graph.input[0].name.encode()
    broken = tmp_path / "broken.onnx"
    data = model.SerializeToString()
    assert data.count(name) >= 2  # the graph input and the node that reads it
    broken.write_bytes(data.replace(name, b"\xff" + name[1:]))
    out = tmp_path / "out.onnx"
    for args in (("convert", broken, "-o", out), ("inspect", broken), ("decompress", broken, "-o", out),
                 ("verify", toy, broken)):
        _one_line_error(hx(*args), "broken.onnx", "is not UTF-8 text")
    assert not out.exists()

    # free text (doc strings, metadata) is only carried over: any bytes there still convert, and pass through
    model.doc_string, model.graph.node[0].doc_string = "MODEL-DOC", "NODE-DOC"
    onnx.helper.set_model_props(model, {"about": "MODEL-META"})
    model.graph.node[0].metadata_props.add(key="source", value="NODE-META")
    data = model.SerializeToString()
    for text in (b"MODEL-DOC", b"NODE-DOC", b"MODEL-META", b"NODE-META"):
        data = data.replace(text, b"\xff" + text[1:])
    odd = tmp_path / "odd-text.onnx"
    odd.write_bytes(data)
    assert hx("convert", odd, "-o", out, "--min-elements", "1").returncode == 0
    assert b"\xffODEL-DOC" in out.read_bytes() and b"\xffODE-META" in out.read_bytes()


@pytest.mark.slow  # a command run per kind of broken file
def test_input_files_that_cannot_be_read_get_one_line(toy, tmp_path):
    """--inputs is a file from elsewhere: truncated, not a zip, a bare .npy, pickled objects, no sample at all."""
    import numpy as np

    out = tmp_path / "out.onnx"
    assert hx("convert", toy, "-o", out, "--min-elements", "1000").returncode == 0
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "good.npz", x=x)
    whole = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04" + bytes(100))
    np.save(tmp_path / "bare.npy", x)
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}], dtype=object))
    np.savez(tmp_path / "empty.npz", x=x[:0])
    cases = {"truncated.npz": "cannot read inputs", "garbage.npz": "cannot read inputs",
             "bare.npy": "not an .npz archive", "objects.npz": "cannot read inputs", "empty.npz": "empty"}
    for name, needle in cases.items():
        inputs = tmp_path / name
        _one_line_error(hx("verify", toy, out, "--inputs", inputs), needle)
        _one_line_error(hx("convert", toy, "-o", tmp_path / "t.onnx", "--min-elements", "1000",
                           "--target-cosine", "0.99", "--inputs", inputs), needle)
    assert not (tmp_path / "t.onnx").exists()


@pytest.mark.slow  # several verify runs as processes
def test_nan_outputs_fail_min_cosine_and_are_counted(toy, tmp_path):
    """A NaN cosine used to PASS --min-cosine (every comparison with NaN is false); it fails now, the NaN and inf
    values are counted per output, and --target-cosine refuses inputs on which the original is not finite."""
    import numpy as np

    out = tmp_path / "out.onnx"
    assert hx("convert", toy, "-o", out, "--min-elements", "1000").returncode == 0
    np.savez(tmp_path / "nan.npz", x=np.full((2, 8, 8, 8), np.nan, np.float32))
    result = hx("verify", toy, out, "--inputs", tmp_path / "nan.npz", "--min-cosine", "0.5")
    assert result.returncode == 1 and "FAIL: cosine_min nan" in result.stdout, result.stdout + result.stderr
    assert "NaN/inf values: 20 in the original, 20 compressed" in result.stdout
    data = json.loads(hx("verify", toy, out, "--inputs", tmp_path / "nan.npz", "--json").stdout)
    assert data["cosine_min"] is None and data["outputs"][0]["non_finite"] == {"original": 20, "compressed": 20}
    assert "top1_agreement" not in data["outputs"][0]  # argmax of NaN rows agreed "100 %" before
    _one_line_error(hx("convert", toy, "-o", tmp_path / "t.onnx", "--min-elements", "1000", "--target-cosine",
                       "0.99", "--inputs", tmp_path / "nan.npz"), "not finite")


def test_json_is_strict_where_values_are_not_finite(tmp_path):
    """An exactly stored (grid) tensor's SQNR is infinite: --json and --report write null, not Infinity, which
    JSON parsers outside Python reject."""
    from test_grid import _matmul_model, gguf_like

    def strict(text: str):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))

    src = tmp_path / "grid.onnx"
    _matmul_model(gguf_like(256, 96), src)
    report = tmp_path / "r.json"
    result = hx("convert", src, "-o", tmp_path / "g.onnx", "--codec", "ecsq", "--json", "--report", report)
    assert result.returncode == 0, result.stderr
    for data in (strict(result.stdout), strict(report.read_text())):
        (tensor,) = data["tensors"]
        assert tensor["codec"] == "grid" and tensor["sqnr_db"] is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_folder(toy, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    _one_line_error(hx("convert", toy, "-o", locked / "out.onnx"), "not writable")


@pytest.mark.slow  # several budget conversions as processes
def test_budget_options_from_the_command_line(toy, tmp_path):
    out = tmp_path / "b.onnx"
    result = hx("convert", toy, "-o", out, "--codec", "blockvq", "--min-elements", "1", "--max-size", "19.5K",
                "--strip-debug-info", "--json")
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size <= 19.5 * 1024
    data = json.loads(result.stdout)
    assert data["budget"]["chosen_bytes"] <= data["budget"]["limit_bytes"]
    result = hx("convert", toy, "-o", out, "--codec", "blockvq", "--target-bpw", "4", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["budget"]["weights"] > 0
    _one_line_error(hx("convert", toy, "-o", out, "--max-size", "lots"), "--max-size")
    _one_line_error(hx("convert", toy, "-o", out, "--target-bpw", "0.1"), "--target-bpw")
    _one_line_error(hx("convert", toy, "-o", out, "--codec", "paper", "--target-bpw", "5"), "bits option")


def test_version_matches_the_package_metadata():
    """`hyperonnx --version` answers from a source tree as from an install, with pyproject's version."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    result = hx("--version")
    assert result.returncode == 0, result.stderr
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert result.stdout.strip() == f"hyperonnx {project['version']}"


def test_a_terminal_gets_a_progress_bar_of_the_selected_tensors(toy, tmp_path):
    """On a terminal, convert shows a bar sized by the conversion itself (no second load of the model): it ends at
    the number of tensors compressed. Without a terminal (scripts, logs) there is no bar."""
    import pty

    leader, follower = pty.openpty()
    env = dict(os.environ, PYTHONPATH=ROOT, COLUMNS="100")
    env.pop("HYPERONNX_DEBUG", None)
    out = tmp_path / "out.onnx"
    done = subprocess.run([sys.executable, "-m", "hyperonnx", "convert", str(toy), "-o", str(out), "--min-elements",
                           "1000"], stdout=subprocess.PIPE, stderr=follower, env=env, timeout=120, text=True)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal's other end is closed: all read
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert done.returncode == 0, seen
    assert "compressed 2 tensors" in done.stdout
    text = seen.decode(errors="replace")
    assert "encoding" in text and "50%" in text and text.rstrip().endswith("100%\x1b[?25h"), text  # 1 of 2, 2 of 2
    plain = hx("convert", toy, "-o", tmp_path / "plain.onnx", "--min-elements", "1000")
    assert plain.returncode == 0 and "encoding" not in plain.stderr
