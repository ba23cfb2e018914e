"""Soak: the Python API in one long-lived process (a service that converts and checks models all day) must not
grow. Resident memory is read after a garbage collection and ``malloc_trim``, so freed memory that the allocator
kept does not count; what remains growing is memory still referenced (a cache without a bound, a leaked session
or buffer).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hyperonnx
from hyperonnx import api

WARM_UP_ROUNDS = 20
MEASURED_ROUNDS = 60
WEIGHT_BYTES = 2 * 512 * 512 * 4
# A fifth of the model's weights a round: leaking any per-call copy of a weight, a decoded tensor or an ONNX
# Runtime session shows well above it, while the allocator's own swings (the encoder's worker threads each get
# a malloc arena) stay a few MiB under it.
ALLOWED_GROWTH = MEASURED_ROUNDS * WEIGHT_BYTES // 5


def _two_layer_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((512, 512)).astype(np.float32) / 23, f"w{i}")
               for i in range(2)]
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w1"], ["y"])]
    graph = helper.make_graph(nodes, "soak", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 512])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 512])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _resident_bytes() -> int:
    gc.collect()
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc_trim(0)
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow  # 80 rounds of every command
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm, uses glibc malloc_trim")
def test_api_calls_do_not_grow_the_process(tmp_path):
    source, converted = tmp_path / "in.onnx", tmp_path / "out.onnx"
    onnx.save(_two_layer_model(), str(source))

    def one_round() -> None:
        result = hyperonnx.convert(source, converted)
        assert len(result.report.tensors) == 2
        assert len(api.inspect(converted)["tensors"]) == 2
        assert api.decompress(converted, tmp_path / "plain.onnx") == 2
        assert api.verify(source, converted)["cosine_min"] > 0.99

    for _ in range(WARM_UP_ROUNDS):  # first-use caches (imports, ORT kernels, interned names) fill here
        one_round()
    before = _resident_bytes()
    for _ in range(MEASURED_ROUNDS):
        one_round()
    growth = _resident_bytes() - before
    assert growth < ALLOWED_GROWTH, f"resident memory grew {growth / 2**20:.1f} MiB over {MEASURED_ROUNDS} rounds"
