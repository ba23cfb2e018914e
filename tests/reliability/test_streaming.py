"""Streaming conversion (model_io.BlobSpool): an output with external data gets each θ blob written out as the
rewriter adds it, not held until the save. The files are the bytes the in-memory path writes, the converter holds
only the tensors in flight, and a failed or interrupted conversion leaves nothing in the output folder.
(Peak RSS against model size is measured in benchmarks/convert_rate.py; tests/reliability/test_scale.py
converts a model over 2 GiB.)"""

from __future__ import annotations

import errno
import hashlib
import os
import weakref
from pathlib import Path

import numpy as np
import onnx
import pytest
import toymodels
from onnx import TensorProto, external_data_helper, helper, numpy_helper

import hyperonnx
import hyperonnx.codec
from hyperonnx import model_io
from hyperonnx.errors import HyperonnxError
from hyperonnx.passes import compress, policy

CONFIGS = {
    "default": {},
    "call": {"decode": "call"},
    "portable": {"runtime": "portable"},
    "target-bpw": {"codec_name": "tcq", "target_bpw": 4.5},
    "blocktcq-some-kept": {"codec_name": "blocktcq", "exclude": ("conv.weight",), "min_elements": 1024},
}


def _inline(folder: Path) -> Path:
    path = folder / "inline.onnx"
    onnx.save(toymodels.conv_mlp(), path)
    return path


def _external(folder: Path) -> Path:
    """Weights (and the kept int64 shape and bias) in the input's external data."""
    path = folder / "ext.onnx"
    onnx.save(toymodels.conv_mlp(seed=3), path, save_as_external_data=True, location="ext.onnx.data",
              size_threshold=0)
    return path


def _subgraphs(folder: Path) -> Path:
    """Constant nodes and If branches: their θ initializers are not in selection order in the data file."""
    path = folder / "sub.onnx"
    onnx.save(toymodels.constants_and_subgraphs(seed=5), path, save_as_external_data=True,
              location="sub.onnx.data", size_threshold=0)
    return path


def _files(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _initializers(path: Path) -> list[TensorProto]:
    """Every initializer, subgraphs' included."""
    model = onnx.load(path, load_external_data=False)
    return list(external_data_helper._get_initializer_tensors(model))


class _Spooled:
    """Counts the tensors BlobSpool.take moved out and the θ blobs BlobSpool.put wrote."""

    def __init__(self, monkeypatch):
        self.moved = 0
        take, put = model_io.BlobSpool.take, model_io.BlobSpool.put

        def counting(spool, tensor):
            taken = take(spool, tensor)
            self.moved += taken.data_location == TensorProto.EXTERNAL and taken is not tensor
            return taken

        def counting_put(spool, name, blob):
            put_there = put(spool, name, blob)
            self.moved += put_there.data_location == TensorProto.EXTERNAL
            return put_there

        monkeypatch.setattr(model_io.BlobSpool, "take", counting)
        monkeypatch.setattr(model_io.BlobSpool, "put", counting_put)


@pytest.mark.parametrize("config", CONFIGS, ids=list(CONFIGS))
@pytest.mark.parametrize("make", [_inline, _external, _subgraphs], ids=["inline-input", "external-input",
                                                                        "subgraphs"])
def test_streamed_files_equal_in_memory_ones(tmp_path, monkeypatch, make, config):
    """Forced to external data (or given it): the streamed conversion's OUT and OUT.data are the bytes of the
    conversion that keeps every blob in memory until the save (what every release before wrote)."""
    src = make(tmp_path)
    settings = dict(CONFIGS[config], jobs=2, external_data=True)
    if make is _subgraphs and "exclude" in settings:
        settings["exclude"] = ("w_main",)
    streamed, in_memory = tmp_path / "streamed", tmp_path / "in_memory"
    streamed.mkdir()
    in_memory.mkdir()
    with monkeypatch.context() as patch:
        spooled = _Spooled(patch)
        hyperonnx.convert(src, streamed / "out.onnx", **settings)
    # every initializer the conversion made that went to OUT.data went through the spool
    made = {t.name for t in _initializers(streamed / "out.onnx") if model_io.is_external(t)}
    made -= {t.name for t in _initializers(src)}
    assert made and spooled.moved == len(made)
    with monkeypatch.context() as patch:
        patch.setattr(model_io.BlobSpool, "take", lambda spool, tensor: tensor)  # every blob stays in memory
        patch.setattr(model_io.BlobSpool, "put", lambda spool, name, blob: numpy_helper.from_array(blob, name))
        hyperonnx.convert(src, in_memory / "out.onnx", **settings)
    assert _files(streamed) == _files(in_memory)
    assert sorted(_files(streamed)) == ["out.onnx", "out.onnx.data"]
    # and it loads: every external reference is inside OUT.data
    loaded = model_io.load(streamed / "out.onnx")
    assert not any(model_io.is_external(t) for t in loaded.graph.initializer)


def _refusing(errno_value: int, after: int = 0):
    """A copy_file_range that copies ``after`` bytes of its first call, then refuses with ``errno_value``."""
    real, calls = os.copy_file_range, []

    def copy(src, dst, count, offset_src=None, offset_dst=None):
        calls.append(count)
        if len(calls) == 1 and after:
            return real(src, dst, min(count, after), offset_src, offset_dst)
        raise OSError(errno_value, os.strerror(errno_value))

    return copy, calls


@pytest.mark.skipif(not hasattr(os, "copy_file_range"), reason="no copy_file_range on this platform")
@pytest.mark.parametrize("how", ["kernel", "refused", "refused-midway", "short-calls"])
def test_kernel_copies_write_the_same_files(tmp_path, monkeypatch, how):
    """The save copies θ blobs (from the spool) and kept tensors (from the input's data) inside the kernel where
    it can; refused (another file system), refused after part of a tensor, or copying a little each call, the
    files are the bytes of a save that copies through its own buffer."""
    src = _external(tmp_path)
    settings = {"codec_name": "blocktcq", "exclude": ("conv.weight",), "min_elements": 1024, "jobs": 2}
    plain, tried = tmp_path / "plain", tmp_path / "tried"
    plain.mkdir()
    tried.mkdir()
    with monkeypatch.context() as patch:
        patch.delattr(os, "copy_file_range")
        hyperonnx.convert(src, plain / "out.onnx", **settings)
    calls: list[int] = []
    with monkeypatch.context() as patch:
        if how == "refused":
            patch.setattr(os, "copy_file_range", _refusing(errno.EXDEV)[0])
        elif how == "refused-midway":
            patch.setattr(os, "copy_file_range", _refusing(errno.EXDEV, after=100)[0])
        elif how == "short-calls":
            real = os.copy_file_range

            def short(src_fd, dst_fd, count, offset_src=None, offset_dst=None):
                calls.append(count)
                return real(src_fd, dst_fd, min(count, 333), offset_src, offset_dst)

            patch.setattr(os, "copy_file_range", short)
        else:
            real = os.copy_file_range
            patch.setattr(os, "copy_file_range", lambda *a: calls.append(a[2]) or real(*a))
        hyperonnx.convert(src, tried / "out.onnx", **settings)
    assert _files(tried) == _files(plain)
    if how in ("kernel", "short-calls"):
        assert calls  # the kernel did copy
    if how == "short-calls":
        assert calls[1] == calls[0] - 333  # the rest of the same tensor, in the next call


def test_a_failing_kernel_copy_is_one_clear_error(tmp_path, monkeypatch):
    """An I/O error inside the kernel's copy (not a refusal) is the output's error, not a traceback."""
    src = _external(tmp_path)
    if not hasattr(os, "copy_file_range"):
        pytest.skip("no copy_file_range on this platform")
    monkeypatch.setattr(os, "copy_file_range", _refusing(errno.EIO)[0])
    with pytest.raises(HyperonnxError, match="cannot copy external data"):
        hyperonnx.convert(src, tmp_path / "out.onnx", codec_name="blocktcq", jobs=2)
    assert not (tmp_path / "out.onnx").exists() and not (tmp_path / "out.onnx.data").exists()


def test_inline_output_does_not_stream(tmp_path, monkeypatch):
    """An inline input converted to an inline output holds its blobs, as the whole model is in memory anyway."""
    src = _inline(tmp_path)
    spooled = _Spooled(monkeypatch)
    hyperonnx.convert(src, tmp_path / "out.onnx", jobs=2)
    assert spooled.moved == 0
    assert not model_io.data_file(tmp_path / "out.onnx").exists()


def _wide(folder: Path, layers: int = 8, side: int = 256) -> Path:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((side, side), dtype=np.float32) * np.float32(0.02), f"w{i}")
             for i in range(layers)]
    nodes = [helper.make_node("MatMul", ["x" if i == 0 else f"h{i - 1}", f"w{i}"], [f"h{i}"]) for i in range(layers)]
    graph = helper.make_graph(nodes, "wide", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", side])],
                              [helper.make_tensor_value_info(f"h{layers - 1}", TensorProto.FLOAT, ["N", side])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "wide.onnx"
    onnx.save(model, path, save_as_external_data=True, location="wide.onnx.data", size_threshold=0)
    return path


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "held"])
def test_blobs_held_stay_at_the_tensors_in_flight(tmp_path, monkeypatch, stream):
    """What the converter holds of its output while it runs: the encodings of the tensors in flight (at most
    jobs + 1 finished, plus the one being added) and no θ bytes in the graph rewriter. Without the spool ("held")
    the rewriter's bytes grow with every tensor, which this check would catch."""
    jobs, layers = 2, 8
    src = _wide(tmp_path, layers)
    blobs: list[weakref.ref] = []
    encode = hyperonnx.codec.encode

    def tracked(*args, **kwargs):
        enc = encode(*args, **kwargs)
        blobs.append(weakref.ref(enc.blob))
        return enc

    monkeypatch.setattr(hyperonnx.codec, "encode", tracked)
    if not stream:
        monkeypatch.setattr(model_io.BlobSpool, "take", lambda spool, tensor: tensor)
        monkeypatch.setattr(model_io.BlobSpool, "put", lambda spool, name, blob: numpy_helper.from_array(blob, name))
    held, alive = [], []
    add = compress.GraphRewriter.add

    def watched(rewriter, site, result, *args, **kwargs):
        add(rewriter, site, result, *args, **kwargs)
        alive.append(sum(ref() is not None for ref in blobs))
        held.append(sum(len(t.raw_data) for _, rewrites in rewriter.rewrites.values()
                        for r in rewrites for t in r.initializers))

    monkeypatch.setattr(compress.GraphRewriter, "add", watched)
    result = hyperonnx.convert(src, tmp_path / "out.onnx", jobs=jobs, codec_name="blocktcq")
    assert len(result.report.tensors) == layers == len(held)
    assert max(alive) <= jobs + 2, alive
    if stream:
        assert max(held) == 0, held
    else:
        assert held[-1] >= 0.9 * layers * held[0] > 0, held


def test_failed_conversion_leaves_nothing(tmp_path, monkeypatch):
    """An encoder failing after some blobs were spooled: one error, no temporary file in the output folder (the
    spool has no name there, even while the conversion runs), the spool closed, a previous OUT and OUT.data as
    they were, and the input untouched."""
    (tmp_path / "in").mkdir()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    src = _wide(tmp_path / "in")
    out = out_dir / "out.onnx"
    hyperonnx.convert(_inline(tmp_path), out, external_data=True, jobs=2)  # a previous output
    inputs, previous = _files(tmp_path / "in"), _files(out_dir)
    assert sorted(previous) == ["out.onnx", "out.onnx.data"]
    spools, seen, calls = [], [], []
    take, encode_to_target = model_io.BlobSpool.take, policy.encode_to_target

    def watched(spool, tensor):
        spools.append(spool)
        taken = take(spool, tensor)
        seen.append(sorted(p.name for p in out_dir.iterdir()))
        return taken

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise HyperonnxError("injected failure")
        return encode_to_target(*args, **kwargs)

    monkeypatch.setattr(model_io.BlobSpool, "take", watched)
    monkeypatch.setattr(policy, "encode_to_target", failing)
    with pytest.raises(HyperonnxError, match="injected failure"):
        hyperonnx.convert(src, out, jobs=1)
    assert spools and all(s._file.closed for s in spools)
    assert seen and all(names == ["out.onnx", "out.onnx.data"] for names in seen), seen
    assert _files(out_dir) == previous
    assert _files(tmp_path / "in") == inputs


def test_interrupted_conversion_leaves_nothing(tmp_path, monkeypatch):
    """Ctrl-C (KeyboardInterrupt) after blobs were spooled, then during the save: nothing left behind."""
    src = _wide(tmp_path)
    for moment in ("encoding", "saving"):
        out_dir = tmp_path / moment
        out_dir.mkdir()
        with monkeypatch.context() as patch:
            if moment == "encoding":
                take = model_io.BlobSpool.take

                def interrupted(spool, tensor, take=take):
                    taken = take(spool, tensor)
                    if spool.taken == 2:
                        raise KeyboardInterrupt
                    return taken

                patch.setattr(model_io.BlobSpool, "take", interrupted)
            else:
                def interrupted_copy(*args, **kwargs):
                    raise KeyboardInterrupt

                patch.setattr(model_io, "_copy", interrupted_copy)
            with pytest.raises(KeyboardInterrupt):
                hyperonnx.convert(src, out_dir / "out.onnx", jobs=2)
        assert list(out_dir.iterdir()) == [], moment


def test_spool_refuses_a_missing_folder(tmp_path):
    with pytest.raises(HyperonnxError, match="does not exist"):
        model_io.BlobSpool(tmp_path / "nowhere" / "out.onnx")
