"""hyperonnx.evaluate: the one set of metrics and input checks that verify, --target-cosine, --sensitivity and
bench share; and the layering it made possible (no import cycle, no private name imported across modules)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from toymodels import conv_mlp

import hyperonnx
from hyperonnx import api, bench, evaluate
from hyperonnx.errors import HyperonnxError, short_reason

PACKAGE = Path(hyperonnx.__file__).parent


def test_sample_cosines_per_row_and_whole():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 3, 5))
    b = a.copy()
    b[1] = -b[1]  # opposite
    b[2] = 0.0  # one zero sample against a non-zero one
    per_row = evaluate.sample_cosines(a, b, split=True)
    np.testing.assert_allclose(per_row, [1.0, -1.0, 0.0, 1.0])
    whole = a.ravel() @ b.ravel() / (np.linalg.norm(a) * np.linalg.norm(b))
    assert evaluate.cosine(a, b) == pytest.approx(whole, rel=1e-12)
    assert evaluate.cosine(np.zeros(3), np.zeros(3)) == 1.0  # two zero outputs agree
    assert np.isnan(evaluate.cosine(a, b[:2]))  # shapes differ: nothing to compare
    b[3, 0, 0] = np.nan
    per_row = evaluate.sample_cosines(a, b, split=True)
    assert np.isnan(per_row[3]) and not np.isnan(per_row[:3]).any()  # the NaN stays in its own sample
    fid = evaluate.Fidelity(["y"])
    fid.add(0, per_row)  # the search's metric counts a NaN sample as the worst it can be: 0
    assert fid.value == pytest.approx((1.0 - 1.0 + 0.0 + 0.0) / 4)


def test_top1_counts_finite_rows_only_in_verify_and_bench():
    """A NaN row's argmax says nothing: both verify's and bench's top-1 leave such rows out (bench counted them)."""
    a = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], np.float32)
    b = a.copy()
    b[1] = [0.1, 0.9]  # disagrees
    b[2] = [np.nan, np.nan]  # the converted model's NaN row
    assert evaluate.top1_agreement(a, b) == pytest.approx(2 / 3)
    assert bench.fidelity([a], [b])["top1_agreement"] == pytest.approx(2 / 3)
    assert evaluate.top1_agreement(a[:, :1], b[:, :1]) is None  # one class: not a classifier
    assert evaluate.top1_agreement((10 * a).astype(np.int64), (10 * a).astype(np.int64)) is None
    assert evaluate.top1_agreement(a, np.full_like(a, np.nan)) is None  # no finite row


def test_kl_divergence():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    assert evaluate.kl_divergence(logits, logits) == pytest.approx(0.0, abs=1e-15)
    assert evaluate.kl_divergence(logits, logits + 7.0) == pytest.approx(0.0, abs=1e-12)  # softmax is shift-free
    other = logits[:, ::-1].copy()
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    q = np.exp(other) / np.exp(other).sum(-1, keepdims=True)
    assert evaluate.kl_divergence(logits, other) == pytest.approx(float((p * np.log(p / q)).sum(-1).mean()))
    with_nan = other.copy()
    with_nan[1, 0] = np.nan  # only the finite row counts
    assert evaluate.kl_divergence(logits, with_nan) == pytest.approx(float((p[0] * np.log(p[0] / q[0])).sum()))


def _toy_session(tmp_path):
    path = tmp_path / "toy.onnx"
    onnx.save(conv_mlp(), str(path))
    return path, evaluate.make_session(path)


def test_input_names_are_checked_the_same_way_everywhere(tmp_path):
    path, session = _toy_session(tmp_path)
    bad = {"not_x": np.zeros((1, 8, 8, 8), np.float32)}
    with pytest.raises(HyperonnxError, match=r"inputs \['not_x'\] do not match the model's inputs \['x'\]"):
        evaluate.check_input_names(bad, session)
    with pytest.raises(HyperonnxError, match="do not match"):
        api.verify(path, path, bad)
    with pytest.raises(HyperonnxError, match="do not match"):
        evaluate.load_samples(session, bad)
    with pytest.raises(HyperonnxError, match="do not match"):
        bench.bench(path, inputs=bad, codecs=["blocktcq:bits=4"], repeats=1, min_seconds=0.0)


def test_generated_inputs_that_keep_the_original_finite(tmp_path):
    """finite_generated skips the seeds on which the original's outputs are NaN (here: negative x under Sqrt)."""
    graph = helper.make_graph([helper.make_node("Sqrt", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    found = evaluate.finite_generated(session, model, 3, 32)
    assert len(found) == 3
    for seed, feeds, outputs in found:
        assert (feeds["x"] >= 0).all() and np.isfinite(outputs[0]).all()
        np.testing.assert_array_equal(feeds["x"], evaluate.generated_inputs(session, seed, model)["x"])
    assert [seed for seed, _, _ in found] == sorted(seed for seed, _, _ in found)
    assert evaluate.finite_generated(session, model, 3, 0) == []


def test_short_reason_is_one_line():
    exc = RuntimeError("\n  first line\nsecond line")
    assert short_reason(exc) == "first line"
    assert short_reason(exc, typed=True) == "RuntimeError: first line"
    assert short_reason(ValueError("x" * 500)) == "x" * 300
    assert short_reason(KeyError()) == "KeyError"


def test_convert_options_are_validated_once_and_passed_by_keyword(tmp_path):
    path = tmp_path / "toy.onnx"
    onnx.save(conv_mlp(), str(path))
    with pytest.raises(HyperonnxError, match="--target-bpw or --max-size, not both"):
        api.ConvertOptions(target_bpw=4.0, max_size=1000)
    with pytest.raises(HyperonnxError, match="has no portable decoder"):
        api.ConvertOptions(codec_name="tcq", runtime="portable")
    with pytest.raises(HyperonnxError, match="unknown runtime"):
        api.ConvertOptions(runtime="tensorrt")
    with pytest.raises(TypeError):
        api.ConvertOptions("tcq")  # keyword only
    with pytest.raises(TypeError):
        api.convert(path, tmp_path / "a.onnx", "tcq")  # no positional options
    with pytest.raises(HyperonnxError, match="no_such_option"):
        api.convert(path, tmp_path / "a.onnx", no_such_option=1)
    config = api.ConvertOptions(codec_name="tcq", min_elements=1000)
    totals, names = [], []
    one = api.convert(path, tmp_path / "a.onnx", config=config, on_start=totals.append, progress=names.append)
    two = api.convert(path, tmp_path / "b.onnx", codec_name="tcq", min_elements=1000)
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    assert totals == [len(one.report.tensors)] and names == [t.name for t in one.report.tensors]
    three = api.convert(path, tmp_path / "c.onnx", config=config, min_elements=100_000)  # keywords replace config's
    assert len(three.report.tensors) < len(two.report.tensors)


def _modules() -> dict[str, Path]:
    mods = {}
    for file in PACKAGE.rglob("*.py"):
        name = ".".join(("hyperonnx", *file.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        mods[name] = file
    return mods


def _imports(name: str, file: Path, mods: dict[str, Path]) -> list[tuple[str, str]]:
    """(imported module, imported name or "") for every hyperonnx import of a module, lazy ones included."""
    package = name if file.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.append((target, "") if target in mods else (base, alias.name))
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names if alias.name in mods]
    return [(m, n) for m, n in found if m in mods and m != name]


def test_no_import_cycles_and_no_private_names_across_modules():
    """verify, tune, bench and the size budget reach sessions and metrics through hyperonnx.evaluate, and the
    tuner reaches the compression pass through its public interface: no two modules import each other (lazily
    or not), and no module imports another's private names (``_x``)."""
    mods = _modules()
    edges = {name: {m for m, _ in _imports(name, file, mods)} for name, file in mods.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            here = todo.pop()
            for nxt in edges[here]:
                if nxt == goal:
                    return True
                if nxt not in seen and not goal.startswith(nxt + ".") and nxt != "hyperonnx":
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    for name in ("hyperonnx.api", "hyperonnx.tune", "hyperonnx.evaluate", "hyperonnx.sensitivity",
                 "hyperonnx.bench", "hyperonnx.passes.compress"):
        assert not reaches(name, name), f"{name} imports itself through other modules"
    assert not reaches("hyperonnx.tune", "hyperonnx.api")  # the tuner takes sessions from evaluate, not the API
    assert not reaches("hyperonnx.sensitivity", "hyperonnx.tune")  # a size budget does not import the tuner
    mine = ("hyperonnx.api", "hyperonnx.tune", "hyperonnx.evaluate", "hyperonnx.sensitivity", "hyperonnx.bench",
            "hyperonnx.cli_bench", "hyperonnx.passes.compress")
    private = [(name, m, n) for name in mine for m, n in _imports(name, mods[name], mods)
               if n.startswith("_") and not n.startswith("__")]
    assert private == []
    uses = []
    for name in mine:
        tree = ast.parse(mods[name].read_text())
        aliases = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom | ast.Import)
                   for a in node.names if not a.name.startswith("_")}
        uses += [(name, f"{node.value.id}.{node.attr}") for node in ast.walk(tree)
                 if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                 and node.value.id in aliases and node.attr.startswith("_") and not node.attr.startswith("__")]
    assert uses == []


def test_a_conversion_under_a_size_budget_with_sensitivity_does_not_load_the_tuner(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "toy.onnx"
    onnx.save(conv_mlp(), str(path))
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(1).standard_normal((4, 8, 8, 8)).astype(np.float32))
    code = ("import sys, hyperonnx; "
            f"r = hyperonnx.convert({str(path)!r}, {str(tmp_path / 'o.onnx')!r}, target_bpw=4.5, min_elements=1000, "
            f"inputs={str(tmp_path / 'x.npz')!r}); "
            "assert 'sensitivity' in r.extra; print('hyperonnx.tune' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_weights_as_inputs_session_matches_the_model(tmp_path):
    """The sensitivity session (every selected tensor a graph input) gives the original's outputs when fed the
    original weights: its fidelity to them is exactly 1."""
    from hyperonnx import sensitivity
    from hyperonnx.passes.select import Selection, choose, find_sites

    path, session = _toy_session(tmp_path)
    model = onnx.load(str(path))
    selection = Selection(min_elements=1000)
    chosen, _ = choose(find_sites(model), selection)
    originals = [numpy_helper.to_array(site.tensor) for site in chosen]
    samples = evaluate.load_samples(session, {"x": np.random.default_rng(2).standard_normal((5, 8, 8, 8))
                                              .astype(np.float32)})
    lifted = sensitivity.WeightsAsInputs(model, selection, originals, samples, evaluate.float_outputs(session))
    assert lifted.fidelity(originals).value == pytest.approx(1.0, abs=1e-12)
    noisy = [w + 0.5 * np.abs(w).mean() for w in originals]
    assert lifted.fidelity(noisy).value < 0.999
