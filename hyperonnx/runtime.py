"""Running hyperonnx models in ONNX Runtime: find the op library and make sessions (docs/ops.md).

``HyperDecode`` nodes run in the C++ library ``libhyperonnx_ops.so`` (built from ``custom_ops/``). Decode modes:

* ``load``: the kernel decodes once per session and serves the cached tensor on every run (the format's default);
* ``call``: the kernel decodes on every run and keeps nothing decoded;
* ``init`` (sessions made here only): the fast path (:mod:`hyperonnx.fastpath`): every HyperDecode node whose
  θ blob is an initializer is decoded once by the library's own ONNX rewriter, and ORT gets a model with plain
  constant initializers in their place. No HyperDecode node is left, so runs cost what the original model costs
  (MatMul/Conv prepacking applies), and no decoded copy stays beside ORT's.

``mode=None`` (the default) keeps each node's own ``mode`` attribute and serves ``load`` nodes the ``init`` way:
measured in benchmarks/runtime.py, copying the kernel's cached tensor into the output on every run (and losing
MatMul's weight prepacking) costs several times the original latency, while ``init`` runs at the original's
speed. A mode given to :func:`session_options` becomes the session config entry ``hyperonnx.decode_mode``, which
overrides every node's attribute inside the kernel (plain ``onnxruntime`` sessions use that).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: library_path() needs no onnxruntime (tests/platform/test_startup.py)
    import onnxruntime as ort

from hyperonnx.library import (  # noqa: F401  (the runtime's public names)
    CONFIG_DECODE_MODE,
    CONFIG_DECODE_THREADS,
    KERNEL_MODES,
    LIBRARY_ENV,
    LIBRARY_NAME,
    library_path,
    session_options,
)
from hyperonnx.ops.names import DOMAIN, OP_TYPE

SESSION_MODES = (*KERNEL_MODES, "init")
# ONNX TensorProto element types of the decoded outputs (docs/format.md).
_DTYPES = {1: "FLOAT", 10: "FLOAT16", 11: "DOUBLE", 16: "BFLOAT16"}
_ITEMSIZE = {1: 4, 10: 2, 11: 8, 16: 2}


def session(path: str | os.PathLike, sess_options: ort.SessionOptions | None = None,
            providers: Sequence[str] | None = None, provider_options: Sequence[dict] | None = None, *,
            mode: str | None = None, options: ort.SessionOptions | None = None) -> ort.InferenceSession:
    """An ``InferenceSession`` for a hyperonnx model, taking ``InferenceSession``'s own arguments (``options`` is
    an alias of ``sess_options``).

    ``mode`` None (the default) or "init": the fast path. The op library decodes every HyperDecode node whose θ
    blob is an initializer (None: the nodes whose ``mode`` attribute is load; "init": call-mode nodes too) and
    ONNX Runtime gets the model with plain constant initializers in their place, so it runs and holds memory like
    the original (prepacking, NCHWc, constant folding). Nodes fed at run time stay kernels. "load"/"call": plain
    ONNX Runtime with the op library registered and every node's mode overridden. ``sess_options`` is used as
    given (config entries included); the fast path registers the op library on it only when kernels remain."""
    if mode is not None and mode not in SESSION_MODES:
        raise ValueError(f"decode mode {mode!r} is not one of {', '.join(SESSION_MODES)}")
    import onnxruntime as ort

    if sess_options is not None and options is not None and sess_options is not options:
        raise ValueError("pass either sess_options or options, not both")
    so = sess_options if sess_options is not None else options
    providers = list(providers) if providers else ["CPUExecutionProvider"]
    if mode in ("init", None):
        from hyperonnx import fastpath

        return fastpath.session(str(path), so, providers, provider_options, decode_call_nodes=mode == "init",
                                fallback=_session_with_initializers)
    return ort.InferenceSession(str(path), session_options(mode, options=so), providers=providers,
                                provider_options=provider_options)


def _session_with_initializers(path: str, providers: list[str], options: ort.SessionOptions | None,
                               only_load_nodes: bool = False, provider_options: Sequence[dict] | None = None):
    """Decode constant HyperDecode nodes once, then run the model with the weights as plain initializers
    (``only_load_nodes``: only nodes whose ``mode`` attribute is load; call nodes stay kernels). The fast path's
    fallback for models whose decoded weights exceed protobuf's 2 GiB (ONNX Runtime's Python API can take them
    only as ``add_external_initializers``, which the options then keep referenced)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    model = onnx.load(path)
    graph = model.graph
    blobs = {t.name: t for t in graph.initializer}
    decoders = [n for n in graph.node if n.domain == DOMAIN and n.op_type == OP_TYPE and n.input[0] in blobs
                and not (only_load_nodes and _node_mode(n) == "call")]
    if not decoders:
        return ort.InferenceSession(path, session_options(options=options), providers=providers,
                                    provider_options=provider_options)

    # 1. A helper model holding only the decoders; the library decodes every tensor (multi-threaded, in C++).
    outputs = []
    for node in decoders:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        elem = getattr(TensorProto, _DTYPES.get(int(attrs.get("dtype", 0)), "UNDEFINED"))
        outputs.append(helper.make_tensor_value_info(node.output[0], elem, list(attrs.get("shape", []))))
    used_blobs = list(dict.fromkeys(n.input[0] for n in decoders))
    helper_graph = helper.make_graph(list(decoders), "hyperonnx_decode", [], outputs,
                                     initializer=[blobs[name] for name in used_blobs])
    helper_model = helper.make_model(helper_graph, opset_imports=list(model.opset_import),
                                     ir_version=model.ir_version)
    decoder_session = ort.InferenceSession(helper_model.SerializeToString(), session_options(mode="call"),
                                           providers=["CPUExecutionProvider"])
    # ORT accepts only user-owned buffers here, so the kernels decode straight into numpy arrays we own.
    binding = decoder_session.io_binding()
    values = [_empty_value(o) for o in outputs]
    for info, value in zip(outputs, values):
        binding.bind_ortvalue_output(info.name, value)
    decoder_session.run_with_iobinding(binding)
    del binding, decoder_session, helper_model, helper_graph

    # 2. The model without those decoders: each weight becomes an EXTERNAL initializer stub (ORT only lets
    #    add_external_initializers replace those; the placeholder file is never read).
    decoder_ids = {id(n) for n in decoders}
    rest = [n for n in graph.node if id(n) not in decoder_ids]
    consumed = {i for n in rest for i in n.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name not in used_blobs or t.name in consumed]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    del graph.node[:]
    graph.node.extend(rest)
    for info in outputs:
        stub = TensorProto(name=info.name, data_type=info.type.tensor_type.elem_type,
                           dims=[d.dim_value for d in info.type.tensor_type.shape.dim])
        stub.data_location = TensorProto.EXTERNAL
        nbytes = math.prod(stub.dims) * _ITEMSIZE[stub.data_type]
        for key, value in (("location", "hyperonnx-decoded.placeholder"), ("offset", "0"), ("length", str(nbytes))):
            entry = stub.external_data.add()
            entry.key, entry.value = key, value
        graph.initializer.append(stub)
    if not any(n.domain == DOMAIN for n in graph.node):
        keep_opsets = [o for o in model.opset_import if o.domain != DOMAIN]
        del model.opset_import[:]
        model.opset_import.extend(keep_opsets)

    so = options if options is not None else ort.SessionOptions()
    if any(n.domain == DOMAIN for n in graph.node):  # decoders fed at run time stay kernels
        session_options(options=so)
    so.add_external_initializers([o.name for o in outputs], values)
    return ort.InferenceSession(model.SerializeToString(), so, providers=providers, provider_options=provider_options)


def _node_mode(node) -> str:
    for attr in node.attribute:
        if attr.name == "mode":
            return attr.s.decode()
    return "load"


def _empty_value(info) -> ort.OrtValue:
    """A user-owned, uninitialized OrtValue with the type and shape of value info ``info``."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto

    elem = info.type.tensor_type.elem_type
    shape = [d.dim_value for d in info.type.tensor_type.shape.dim]
    if elem == TensorProto.BFLOAT16:  # numpy has no bfloat16: raw 16-bit storage, typed for ORT
        return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(np.empty(shape, np.uint16), elem)
    dtype = {TensorProto.FLOAT: np.float32, TensorProto.FLOAT16: np.float16, TensorProto.DOUBLE: np.float64}[elem]
    return ort.OrtValue.ortvalue_from_numpy(np.empty(shape, dtype))
