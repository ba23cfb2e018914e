"""The codec traits are hyperonnx's one list of codec facts: the Python codec classes, the C++ CodecSpec table
and docs/format.md name the same side-information keys; the HyperDecode schema, the budget ladders and the
portable form derive from the classes; and a model holding each codec passes onnx's full check."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, defs, helper, numpy_helper
from toymodels import conv_mlp

import hyperonnx
from hyperonnx import codec
from hyperonnx.codec import grid
from hyperonnx.ops import names
from hyperonnx.passes import budget
from hyperonnx.passes.portable.emit import portable_bytes

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = codec.families()


def _cpp_specs() -> dict[str, tuple[set[str], set[str]]]:
    """name → (int keys, float keys) of every ``const CodecSpec kX = {"name", {ints}, {floats}, ...}`` in the C++
    codecs (custom_ops/src/codecs/*.cc)."""
    spec = re.compile(r'const CodecSpec \w+ = \{\s*"(\w+)",\s*\{([^}]*)\},\s*\{([^}]*)\}')
    found = {}
    for path in sorted((ROOT / "custom_ops" / "src" / "codecs").glob("*.cc")):
        for name, ints, floats in spec.findall(path.read_text()):
            found[name] = (set(re.findall(r'"(\w+)"', ints)), set(re.findall(r'"(\w+)"', floats)))
    return found


def _doc_sections() -> dict[str, tuple[set[str], set[str]]]:
    """name → (i_ keys, f_ keys) named in each codec's section of docs/format.md (``### `name` ``)."""
    text = (ROOT / "docs" / "format.md").read_text()
    found = {}
    for name, body in re.findall(r"^### `(\w+)`\n(.*?)(?=^##)", text, flags=re.M | re.S):
        found[name] = (set(re.findall(r"`i_(\w+)", body)), set(re.findall(r"`f_(\w+)", body)))
    return found


def test_python_cpp_and_format_doc_name_the_same_side_information():
    python = {name: (set(c.int_keys), set(c.float_keys)) for name, c in FAMILIES.items()}
    cpp, doc = _cpp_specs(), _doc_sections()
    assert set(python) == set(cpp) == set(doc), (sorted(python), sorted(cpp), sorted(doc))
    for name in python:
        assert python[name] == cpp[name] == doc[name], name
    listed = re.search(r"^\| `codec` \|[^|]*\|([^|]*)\|", (ROOT / "docs" / "format.md").read_text(), flags=re.M)
    assert set(re.findall(r"`(\w+)`", listed.group(1))) == set(python)  # the Attributes table's codec families


def _encodings() -> list[codec.Encoded]:
    """One encoding of every codec (presets included), a rank-1 ecsq/tcq one (format 2), and a `grid` one."""
    x = (np.random.default_rng(0).standard_normal((48, 40)) * 0.05).astype(np.float32)
    low_rank = np.outer(np.linspace(1, 2, 48), np.linspace(-1, 1, 40)).astype(np.float32) + 0.01 * x
    out = [codec.encode(x, name) for name in codec.CODECS]
    out += [codec.encode(low_rank, name) for name in ("ecsq", "tcq")]
    out.append(grid.detect(_grid_weight(64, 48)))
    return out


def _grid_weight(rows: int, cols: int) -> np.ndarray:
    """Values on a float16 grid of 32-element blocks (a llama.cpp Q8_0-like tensor): `grid` stores it exactly."""
    rng = np.random.default_rng(1)
    d = rng.uniform(0.001, 0.02, rows * cols // 32).astype(np.float16).astype(np.float32)
    q = rng.integers(-127, 128, (rows * cols // 32, 32)).astype(np.float32)
    q[:, 0] = 127
    return (d[:, None] * q).reshape(rows, cols)


def test_encodings_hold_exactly_their_codecs_keys():
    encodings = _encodings()
    assert {e.codec for e in encodings} == set(FAMILIES) and {e.format_version for e in encodings} == {1, 2}
    for enc in encodings:
        family = FAMILIES[enc.codec]
        assert (tuple(enc.ints), tuple(enc.floats)) == (family.int_keys, family.float_keys), enc.codec


def test_the_schema_accepts_every_side_information_attribute():
    hyperonnx.ops.register_schemas()
    schema = defs.get_schema(names.OP_TYPE, names.OPSET_VERSION, names.DOMAIN)
    side = {a for a in schema.attributes if a[:2] in ("i_", "f_")}
    assert side == {f"i_{k}" for c in FAMILIES.values() for k in c.int_keys} | {
        f"f_{k}" for c in FAMILIES.values() for k in c.float_keys}


def test_budget_ladders_and_portable_builders_come_from_the_traits():
    assert budget.BUDGET_OPTIONS == {n: list(c.budget_ladder) for n, c in FAMILIES.items() if c.budget_ladder}
    assert budget.CONTINUOUS_OPTIONS == {n: c.continuous_option for n, c in FAMILIES.items() if c.continuous_option}
    x = (np.random.default_rng(2).standard_normal(4096) * 0.05).astype(np.float32)
    for family, rungs in budget.BUDGET_OPTIONS.items():  # smallest encoding first
        sizes = [codec.encode(x, family, **rung).nbytes for rung in rungs]
        assert sizes == sorted(sizes), family
    for enc in _encodings():
        if FAMILIES[enc.codec].portable is None:
            with pytest.raises(ValueError, match="no portable form"):
                portable_bytes(enc)
        elif FAMILIES[enc.codec].portable == "table":  # a stored table is counted, a generated one is not
            assert portable_bytes(enc) > codec.table(enc).nbytes
        elif enc.codec == "paper":
            assert portable_bytes(enc) < codec.table(enc).nbytes


def _grid_model(path: Path) -> None:
    weight = _grid_weight(64, 96)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "grid",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 96])],
                              [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


FAMILIES_OF = {name: c.family for name, c in codec.CODECS.items()}
CASES = [(name, "ort") for name in sorted(codec.CODECS)] + [
    (name, "portable") for name in sorted(codec.CODECS) if codec.CODECS[name].portable]


@pytest.mark.parametrize("codec_name, runtime", CASES + [("grid", "ort")])
def test_a_converted_model_of_each_codec_passes_the_full_check(codec_name, runtime, tmp_path):
    """With hyperonnx's schemas registered (importing hyperonnx does it), onnx's checker with full_check (types,
    shapes, every attribute known) accepts a model converted with each codec; `grid` is detected, not chosen."""
    src, out = tmp_path / "m.onnx", tmp_path / "out.onnx"
    if codec_name == "grid":
        _grid_model(src)
        result = hyperonnx.convert(src, out)
    else:
        onnx.save(conv_mlp(), src)
        result = hyperonnx.convert(src, out, codec_name=codec_name, runtime=runtime, min_elements=1000)
    assert {t.codec for t in result.report.tensors} == {FAMILIES_OF.get(codec_name, codec_name)}
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)


def test_names_module_imports_nothing():
    """hyperonnx.runtime takes DOMAIN and OP_TYPE from ops/names.py, which must stay free of imports (no onnx);
    ops/__init__.py imports only it (the schema, and onnx with it, on first use)."""
    tree = ast.parse((ROOT / "hyperonnx" / "ops" / "names.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    init = ast.parse((ROOT / "hyperonnx" / "ops" / "__init__.py").read_text())
    top = [n for n in init.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert [(n.module, [a.name for a in n.names]) for n in top] == [
        ("hyperonnx.ops.names", ["DOMAIN", "OP_TYPE", "OPSET_VERSION"])]
    assert {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.BFLOAT16: "bfloat16",
            TensorProto.DOUBLE: "float64"} == names.FLOAT_TYPES


def _imports(path: Path) -> set[str]:
    """The modules ``path`` imports (``from a import b`` counts as a.b and a)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_the_portable_reader_imports_the_layout_not_the_writer():
    """decoders.py reads what the layout module describes; neither it, the layout nor the package's __init__ (which
    Python runs on the way) imports the writer's modules."""
    passes = ROOT / "hyperonnx" / "passes"
    portable_modules = {f"hyperonnx.passes.portable.{p.stem}" for p in (passes / "portable").glob("*.py")}
    writer = portable_modules - {"hyperonnx.passes.portable.layout", "hyperonnx.passes.portable.__init__"}
    assert _imports(passes / "portable" / "__init__.py") == set()
    assert not _imports(passes / "portable" / "layout.py") & {*writer, "hyperonnx.passes.emit"}
    reader = _imports(passes / "decoders.py")
    assert "hyperonnx.passes.portable.layout" in reader and not reader & {*writer, "hyperonnx.passes.emit"}
