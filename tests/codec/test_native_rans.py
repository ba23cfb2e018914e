"""The native rANS coder's two walks (custom_ops/src/encoders/rans.cc, the portable one; rans_avx512.cc, 16 lanes
of a step at a time) against numpy's `rans.encode`, the specification: byte-identical streams at lane counts below,
at and around multiples of 16 and up to the format's 4096, short last steps, narrow alphabets (looked up in
registers), wide ones (gathered), phase boundaries inside a vector, and symbols without frequency (numpy raises,
the library hands the stream back to numpy). HYPERONNX_ENCODERS_ISA=256 selects the portable walk."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pytest
from native_identity import assert_native_matches_numpy, needs_library

from hyperonnx.codec import native, rans

ISA_ENV = "HYPERONNX_ENCODERS_ISA"


def cpu_has_vector_walk() -> bool | None:
    """Whether this CPU has AVX-512 F, BW, VL and VBMI2 (None where /proc/cpuinfo cannot tell)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return False
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        return None
    flags = next((line.split(":", 1)[1].split() for line in info.read_text().splitlines()
                  if line.startswith("flags")), [])
    return all(f in flags for f in ("avx512f", "avx512bw", "avx512vl", "avx512_vbmi2"))


@pytest.fixture(params=["portable", "vector"])
def walk(request, monkeypatch) -> str:
    """Each walk in turn; the library must report the one it takes (the vector walk where the CPU has it)."""
    if request.param == "portable":
        monkeypatch.setenv(ISA_ENV, "256")
    else:
        monkeypatch.delenv(ISA_ENV, raising=False)
    monkeypatch.setenv(native.ENV, "1")
    has = cpu_has_vector_walk()
    if has is not None:
        assert native.library().hx_rans_vector_walk() == int(request.param == "vector" and has)
    return request.param


def model_of(kind: str, rng: np.random.Generator) -> rans.Model:
    """flat: all 256 symbols (gathered); skewed: a Laplace-like alphabet of 48 symbols from 100 (in a register
    window of 64); top / top128: symbols 200..255 and 140..255 (windows of 64 and 128 that must start below their
    first symbol); spanN: N symbols from 10, the edges of the windows of 64 and 128 and of the gathered tables,
    with the rarest frequency (1) first; single: one symbol of frequency 4096, which never sheds a word."""
    if kind == "flat":
        return rans.Model(0, rans.normalise(rng.integers(1, 100, 256)))
    if kind == "skewed":
        return rans.Model(100, rans.normalise(np.round(4000 * np.exp(-np.abs(np.arange(48) - 20) / 3)) + 1))
    if kind in ("top", "top128"):
        lo = 200 if kind == "top" else 140
        return rans.Model(lo, rans.normalise(rng.integers(1, 50, 256 - lo)))
    if kind.startswith("span"):
        width = int(kind[4:])
        freq = np.r_[1, np.full(width - 2, 2), 0]
        freq[-1] = 4096 - freq.sum()
        return rans.Model(10, freq)
    assert kind == "single"
    return rans.Model(77, np.array([4096]))


def draw(model: rans.Model, count: int, rng: np.random.Generator) -> np.ndarray:
    """count symbols of the model's alphabet, rare ones as often as common ones (the states range widest)."""
    used = np.flatnonzero(model.freq)
    return (rng.choice(used, count) + model.lo).astype(np.uint8)


def total_for(lanes: int, short_last_step: bool) -> int:
    """A symbol count that rans.lanes_for maps to ``lanes`` (8: a small one): whole steps, or a last step of about
    a third of the lanes."""
    total = lanes * (4096 if lanes > 8 else 1000)
    return total - (2 * lanes) // 3 if short_last_step else total


def phases_for(total: int, kinds: tuple[str, ...], rng: np.random.Generator) -> list:
    """Phases of the given alphabets splitting total symbols at cuts off a multiple of 16 (a boundary inside a
    vector), one phase empty where there are three."""
    cuts = [0, *sorted(int(c) for c in rng.choice(np.arange(1, total), len(kinds) - 1, replace=False)), total]
    phases = []
    for k, kind in enumerate(kinds):
        model = model_of(kind, rng)
        count = cuts[k + 1] - cuts[k] if not (len(kinds) == 3 and k == 1) else 0
        phases.append((draw(model, count, rng), model))
    if len(kinds) == 3:  # the empty middle phase's symbols go to the last
        extra = cuts[2] - cuts[1]
        phases[2] = (np.r_[draw(phases[2][1], extra, rng), phases[2][0]].astype(np.uint8), phases[2][1])
    return phases


def assert_identical(phases) -> None:
    got = native.rans_encode(phases)
    assert got is not None and got == rans.encode(phases)


@needs_library
@pytest.mark.parametrize("lanes", [8, 9, 15, 16, 17, 31, 33])
def test_streams_match_numpy_at_every_lane_count(lanes, walk):
    rng = np.random.default_rng(lanes)
    for short, kinds in ((False, ("skewed",)), (True, ("flat", "skewed")), (True, ("top", "span65", "span64")),
                         (False, ("single", "span128", "flat")), (True, ("top128", "span129"))):
        total = total_for(lanes, short)
        assert rans.lanes_for(total) == lanes and (total % lanes != 0) == short
        assert_identical(phases_for(total, kinds, rng))


@needs_library
def test_streams_match_numpy_at_2048_lanes(walk):
    rng = np.random.default_rng(2048)
    total = total_for(2048, True)
    assert_identical(phases_for(total, ("skewed", "flat", "top128"), rng))


@needs_library
@pytest.mark.slow  # 16.8 M symbols: numpy's coder holds about 0.7 GB of per-symbol arrays
def test_streams_match_numpy_at_4096_lanes(walk):
    """The format's most lanes (past 16.8 M symbols): 256 vectors a step."""
    rng = np.random.default_rng(4096)
    total = 4096 * 4096 + 4096 * 3 + 1001
    assert rans.lanes_for(total) == 4096
    assert_identical(phases_for(total, ("span64", "flat"), rng))


@needs_library
@pytest.mark.parametrize("lanes", [8, 17, 33, 2048])
def test_a_symbol_without_frequency_goes_back_to_numpy(lanes, walk):
    """Anywhere in the walk (the last position, a lane above the last whole vector, inside a vector, the first
    position, either side of a phase boundary) and in every lookup: below a register window (64 or 128), in a gap
    inside it, above it, and in a gathered table's gap or past its end. numpy raises; the library hands the stream back
    (None), writing nothing that counts."""
    rng = np.random.default_rng(lanes + 1)
    total = total_for(lanes, True)
    narrow = rans.Model(100, np.r_[196, np.full(19, 100), 0, np.full(20, 100)])  # 64 in registers; 120 missing
    middle = rans.Model(60, np.r_[176, np.full(59, 40), 0, np.full(39, 40)])  # 128 in registers; 120 missing
    wide_freq = rans.normalise(rng.integers(1, 50, 200))  # gathered; 120 and 200..255 missing
    wide_freq[0] += wide_freq[120]
    wide_freq[120] = 0
    wide = rans.Model(0, wide_freq)
    cut = total // 3 + 7
    last_scalar = total - 1 - (total % lanes) // 2  # a lane of the short last step above its last whole vector
    places = sorted({total - 1, last_scalar, total // 2, 0, cut, cut - 1})
    for models in ((narrow, wide), (wide, middle)):
        phases = [(draw(models[0], cut, rng), models[0]), (draw(models[1], total - cut, rng), models[1])]
        assert native.rans_encode(phases) is not None
        for place in places:
            k = int(place >= cut)
            symbols, model = phases[k]
            at = place - k * cut
            for bad in (5, 120, 250):
                if model.lo <= bad < model.lo + model.freq.size and model.freq[bad - model.lo] > 0:
                    continue
                keep = symbols[at]
                symbols[at] = bad
                if lanes < 2048:  # numpy's check does not depend on the size
                    with pytest.raises(ValueError, match="no frequency"):
                        rans.encode(phases)
                assert native.rans_encode(phases) is None, (place, bad)
                symbols[at] = keep


@needs_library
@pytest.mark.parametrize("name", ["tcq", "ecsq"])
def test_codec_blobs_match_numpy_through_both_walks(name, walk, monkeypatch):
    """As a conversion codes them: tensors of 17 and 40 lanes, their levels and block scales (several phases)."""
    rng = np.random.default_rng(7)
    for shape in ((256, 260), (400, 410)):
        x = rng.standard_normal(shape).astype(np.float32) * 0.02
        assert_native_matches_numpy(name, x, {}, monkeypatch)


@needs_library
def test_the_coder_benchmark_times_both_walks_and_checks_their_bytes():
    """benchmarks/rans_encode.py as a user runs it, on a small stream (its structure and its byte check; speed is
    the benchmark's business): both walks and a baseline library timed, every stream equal to numpy's."""
    import json
    import subprocess
    import sys

    root = Path(__file__).parents[2]
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "rans_encode.py"), "--symbols", "1e5",
                          "--rounds", "2", "--baseline", native.library_path(), "--json"],
                         capture_output=True, text=True, check=True, timeout=120)
    row = json.loads(out.stdout)
    assert row["lanes"] == rans.lanes_for(row["symbols"]) >= 16
    for walk in ("portable", "vector", "baseline"):
        assert row[f"{walk}_ms"] > 0, walk
