"""Codec benchmark: bits/weight, SQNR and encode/decode throughput of every codec against INT-g128 RTN.

    python benchmarks/codec.py [--quick] [--per-tensor]
    python benchmarks/codec.py --json [--quick]     # encode/decode speed per codec, native beside numpy

SQNR = 10·log10(Σx² / Σ(x − x̂)²). Synthetic rows use N(0,1) and unit-variance Laplace samples (float32);
model columns aggregate over all ≥2-D weight tensors with ≥ 4096 elements (total signal / total noise, and
total stored bits / total weights). Bits/weight count everything stored: codes, side information, shape.
``--per-tensor`` adds a table where ecsq and tcq match INT4's stored size tensor by tensor (each tensor at the finest
step that stores no more than INT4 does for it) instead of with one step for the whole model: the aggregate then
weighs a dominant tensor at exactly INT4's bits, and the median / share of tensors ahead are printed beside it.
Throughput is single-threaded numpy on the N(0,1) array, median of a few repeats after a warm-up (which
also fills the codecs' per-setting caches), and as a fraction of ``np.copyto`` of the same float32 bytes.

``--json``: per codec at its defaults, on one core (native encoders and BLAS on one thread; CPU time of that
thread), M weights/s on the N(0,1) array: ``encode_mws_per_core`` (the encoders in use: native where built), ``encode_numpy_mws_per_core`` (numpy,
HYPERONNX_NATIVE=0, the same run), their ratio, whether the two blobs are identical, and ``decode_mws_per_core``
(the numpy reference decoder).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

if "--json" in sys.argv:  # one core: numpy's BLAS (the rank-1 fit) on one thread too, set before it loads
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _weights  # noqa: E402

import hyperonnx.codec as codec  # noqa: E402

MODELS = ("MobileNetV2", "MiniLM-L6", "TerrainUNet")
GROUP = 128


class IntRtn:
    """Asymmetric per-group-128 round-to-nearest INT: fp16 scale and fp16 zero point (the group minimum)."""

    def __init__(self, bits: int, clip: bool = False):
        self.bits, self.clip = bits, clip
        self.label = f"INT{bits} asym g128" + (" +clip" if clip else "")

    def encode(self, x: np.ndarray):
        flat = x.astype(np.float32).reshape(-1)
        groups = -(-flat.size // GROUP)
        padded = np.empty(groups * GROUP, np.float32)
        padded[: flat.size] = flat
        padded[flat.size :] = flat[-1]
        g = padded.reshape(groups, GROUP)
        best = None
        # Clip search: shrink each group's [min, max] range by a ratio 1.0 → 0.5 and keep the lowest squared
        # error per group (the strongest data-free INT baseline).
        for ratio in np.linspace(1.0, 0.5, 11) if self.clip else (1.0,):
            lo, hi = g.min(axis=1) * ratio, g.max(axis=1) * ratio
            zero = lo.astype(np.float16)
            scale = ((hi - zero.astype(np.float32)) / (2**self.bits - 1)).astype(np.float16)
            inv = np.where(scale > 0, 1 / np.maximum(scale.astype(np.float32), 1e-30), 0).astype(np.float32)
            q = np.rint((g - zero.astype(np.float32)[:, None]) * inv[:, None])
            q = np.clip(q, 0, 2**self.bits - 1).astype(np.uint8)
            rec = q.astype(np.float32) * scale.astype(np.float32)[:, None] + zero.astype(np.float32)[:, None]
            err = ((rec - g) ** 2).sum(axis=1)
            if best is None:
                best = [err, q, scale, zero]
            else:
                better = err < best[0]
                best[0] = np.where(better, err, best[0])
                best[1][better] = q[better]
                best[2] = np.where(better, scale, best[2])
                best[3] = np.where(better, zero, best[3])
        return best[1], best[2], best[3], x.shape, flat.size

    def decode(self, enc) -> np.ndarray:
        q, scale, zero, shape, size = enc
        out = q.astype(np.float32) * scale.astype(np.float32)[:, None] + zero.astype(np.float32)[:, None]
        return out.reshape(-1)[:size].reshape(shape)

    def stored_bits(self, enc) -> int:
        q, scale, _, _, size = enc
        return size * self.bits + 32 * scale.size


class HyperCodec:
    def __init__(self, name: str, label: str, **options):
        self.name, self.label, self.options = name, label, options

    def encode(self, x: np.ndarray):
        return codec.encode(x, self.name, **self.options)

    def decode(self, enc) -> np.ndarray:
        return codec.decode(enc)

    def stored_bits(self, enc) -> int:
        return 8 * enc.nbytes


def methods() -> list:
    rows = [HyperCodec("blocktcq", "blocktcq b=4 B=48", bits=4, block=48),
            HyperCodec("blocktcq", "blocktcq b=5 B=32 (default)", bits=5, block=32),
            HyperCodec("blockvq", "blockvq b=4 B=40", bits=4, block=40),
            HyperCodec("blockvq", "blockvq b=5 B=40", bits=5, block=40),
            HyperCodec("blockvq", "blockvq b=5 B=32", bits=5, block=32),
            HyperCodec("ecsq", "ecsq step=0.25 (rANS)", step=0.25),
            HyperCodec("ecsq", "ecsq step=0.125 (rANS)", step=0.125),
            HyperCodec("tcq", "tcq step=0.25 (trellis, rANS)", step=0.25),
            HyperCodec("tcq", "tcq step=0.125 (trellis, rANS)", step=0.125),
            HyperCodec("paper", "paper (n=1600)"), HyperCodec("paper-cnn", "paper-cnn (n=225)")]
    for name in codec.CODECS:  # codecs registered later get a default row too
        if name not in ("paper", "paper-cnn", "kronecker", "blocktcq", "blockvq", "ecsq", "tcq"):
            rows.append(HyperCodec(name, name))
    if "kronecker" in codec.CODECS:
        rows += [HyperCodec("kronecker", "kronecker N=2 U=4096", N=2, U=4096),
                 HyperCodec("kronecker", "kronecker N=2 U=256", N=2, U=256)]
    return rows + [IntRtn(4), IntRtn(4, clip=True), IntRtn(5, clip=True), IntRtn(8)]


def measure(method, tensors: list[np.ndarray]) -> tuple[float, float]:
    """(SQNR in dB, bits/weight) aggregated over ``tensors``."""
    signal = noise = 0.0
    bits = weights = 0
    for x in tensors:
        enc = method.encode(x)
        x64 = x.astype(np.float64)
        signal += float((x64**2).sum())
        noise += float(((x64 - method.decode(enc).astype(np.float64)) ** 2).sum())
        bits += method.stored_bits(enc)
        weights += x.size
    return 10 * math.log10(signal / noise) if noise else math.inf, bits / weights


def median_seconds(fn: Callable[[], object], repeats: int, clock: Callable[[], float] = time.perf_counter) -> float:
    fn()  # warm-up: caches, page faults
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller synthetic arrays (CI speed)")
    parser.add_argument("--per-tensor", action="store_true", help="also match INT4's size tensor by tensor (slow)")
    parser.add_argument("--json", action="store_true", help="encode/decode speed per codec as JSON, native and numpy")
    args = parser.parse_args(argv)
    if args.json:
        print(json.dumps(speed_report(1 << (18 if args.quick else 21), 3 if args.quick else 5), indent=1))
        return
    size = 1 << (18 if args.quick else 22)
    repeats = 3 if args.quick else 5
    rng = np.random.default_rng(0)
    gauss = rng.standard_normal(size).astype(np.float32)
    laplace = (rng.laplace(size=size) / math.sqrt(2)).astype(np.float32)

    models = {}
    for model in MODELS:
        try:
            models[model] = _weights.model_weights(model)
        except LookupError as err:
            print(f"skipping {model}: {err}", file=sys.stderr)
    dst = np.empty_like(gauss)
    copy_s = median_seconds(lambda: np.copyto(dst, gauss), 7)
    copy_rate = size / copy_s / 1e6
    print(f"# {size} N(0,1) float32 weights; np.copyto {copy_rate:.0f} M weights/s "
          f"({4 * size / copy_s / 1e9:.1f} GB/s); one thread")
    for model, tensors in models.items():
        print(f"# {model}: {len(tensors)} tensors, {sum(t.size for t in tensors) / 1e6:.2f} M weights")

    head = ["method", "bits/w", "N(0,1) dB", "Laplace dB"]
    head += [f"{m} dB (bits/w)" for m in models]
    head += ["enc Mw/s", "enc/copy", "dec Mw/s", "dec/copy"]
    rows = []
    for method in methods():
        db_g, bpw = measure(method, [gauss])
        db_l, _ = measure(method, [laplace])
        row = [method.label, f"{bpw:.3f}", f"{db_g:.2f}", f"{db_l:.2f}"]
        for tensors in models.values():
            db, b = measure(method, tensors)
            row.append(f"{db:.2f} ({b:.3f})")
        enc_s = median_seconds(lambda m=method: m.encode(gauss), repeats)
        enc = method.encode(gauss)
        dec_s = median_seconds(lambda m=method, e=enc: m.decode(e), repeats)
        enc_rate, dec_rate = size / enc_s / 1e6, size / dec_s / 1e6
        row += [f"{enc_rate:.1f}", f"{enc_rate / copy_rate:.3f}", f"{dec_rate:.0f}", f"{dec_rate / copy_rate:.3f}"]
        rows.append(row)
        print("  done:", method.label, file=sys.stderr, flush=True)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
    print("\n# At INT4-asym-g128's stored size (targets: default ≥ +0.5 dB fixed rate, entropy-coded ≥ +2 dB)")
    print("| data | INT4 g128 +clip dB (bits/w) | blockvq b=4 B=40 dB (bits/w) | blocktcq b=4 B=48 dB (bits/w) "
          "| ecsq dB (bits/w) | tcq dB (bits/w) | blocktcq gain | ecsq gain | tcq gain |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, tensors in [("N(0,1)", [gauss]), ("Laplace", [laplace]), *models.items()]:
        int4_db, int4_bpw = measure(IntRtn(4, clip=True), tensors)
        vq_db, vq_bpw = measure(HyperCodec("blockvq", "", bits=4, block=40), tensors)
        bt_db, bt_bpw = measure(HyperCodec("blocktcq", "", bits=4, block=48), tensors)
        ec_db, ec_bpw = entropy_coded_at_size("ecsq", tensors, int4_bpw)
        tc_db, tc_bpw = entropy_coded_at_size("tcq", tensors, int4_bpw)
        print(f"| {label} | {int4_db:.2f} ({int4_bpw:.3f}) | {vq_db:.2f} ({vq_bpw:.3f}) | {bt_db:.2f} ({bt_bpw:.3f}) "
              f"| {ec_db:.2f} ({ec_bpw:.3f}) | {tc_db:.2f} ({tc_bpw:.3f}) | {bt_db - int4_db:+.2f} dB "
              f"| {ec_db - int4_db:+.2f} dB | {tc_db - int4_db:+.2f} dB |")
    if args.per_tensor:
        print("\n# Entropy-coded codecs at INT4-asym-g128 + clip's stored size, tensor by tensor")
        print("| data | codec | INT4 dB (bits/w) | codec dB (bits/w) | aggregate gain | median tensor gain "
              "| tensors ahead |")
        print("|---|---|---|---|---|---|---|")
        for label, tensors in models.items():
            for name in ("ecsq", "tcq"):
                int4_db, int4_bpw, ec_db, ec_bpw, gains = entropy_coded_per_tensor(name, tensors)
                print(f"| {label} | {name} | {int4_db:.2f} ({int4_bpw:.3f}) | {ec_db:.2f} ({ec_bpw:.3f}) "
                      f"| {ec_db - int4_db:+.2f} dB | {statistics.median(gains):+.2f} dB "
                      f"| {sum(g > 0 for g in gains)}/{len(gains)} |")


def entropy_coded_at_size(name: str, tensors: list[np.ndarray], bpw: float) -> tuple[float, float]:
    """(SQNR, bits/weight) of codec ``name`` (ecsq, tcq) at the finest step (bisection, 7 rounds) storing at most
    ``bpw`` bits/weight."""
    lo, hi = 0.05, 1.0  # step: hi always fits
    best = measure(HyperCodec(name, "", step=hi), tensors)
    for _ in range(7):
        mid = math.sqrt(lo * hi)
        db, b = measure(HyperCodec(name, "", step=mid), tensors)
        if b <= bpw:
            hi, best = mid, (db, b)
        else:
            lo = mid
    return best


def entropy_coded_per_tensor(name: str, tensors: list[np.ndarray]) -> tuple[float, float, float, float, list[float]]:
    """INT4-g128+clip and codec ``name`` SQNR / bits per weight aggregated over ``tensors``, the codec's step
    bisected (9 rounds) per tensor to store at most INT4's bits for that tensor; plus each tensor's gain in dB."""
    int4 = IntRtn(4, clip=True)
    signal = int4_noise = ec_noise = 0.0
    int4_bits = ec_bits = weights = 0
    gains = []
    for x in tensors:
        x64 = x.astype(np.float64)
        enc = int4.encode(x)
        budget = int4.stored_bits(enc)
        noise = float(((x64 - int4.decode(enc)) ** 2).sum())
        lo, hi = 0.02, 2.0  # step: hi always fits
        best = None
        for step in [hi] + [None] * 9:
            step = step or math.sqrt(lo * hi)
            method = HyperCodec(name, "", step=step)
            e = method.encode(x)
            bits = method.stored_bits(e)
            if bits <= budget or best is None:
                hi, best = step, (float(((x64 - method.decode(e).astype(np.float64)) ** 2).sum()), bits)
            else:
                lo = step
        signal += float((x64**2).sum())
        int4_noise, ec_noise = int4_noise + noise, ec_noise + best[0]
        int4_bits, ec_bits, weights = int4_bits + budget, ec_bits + best[1], weights + x.size
        gains.append(10 * math.log10(noise / best[0]) if best[0] and noise else 0.0)
    return (10 * math.log10(signal / int4_noise), int4_bits / weights, 10 * math.log10(signal / ec_noise),
            ec_bits / weights, gains)



SPEED_CODECS = ("blocktcq", "tcq", "blockvq", "ecsq", "paper")
# The --json rates count the CPU time of the one thread that does all the work (native encoders on one thread,
# BLAS on one thread): what one core does, which other processes on a shared machine do not distort as they do
# wall-clock time.
CLOCK = time.thread_time


def speed_report(size: int, repeats: int) -> dict:
    """``--json``: one core, the native encoders (where built) and numpy's in the same run (median seconds)."""
    from hyperonnx.codec import native

    x = np.random.default_rng(0).standard_normal(size).astype(np.float32)
    native.set_threads(1)
    saved = os.environ.get(native.ENV)
    out = {"weights": size, "threads": 1, "clock": "CPU time of the encoding thread", "encoders": native.describe(),
           "codecs": {}}
    try:
        for name in SPEED_CODECS:
            impl = codec.get_codec(name)
            params = dict(impl.defaults)
            rates, blobs = {}, {}
            for label, flag in (("native", "1"), ("numpy", "0")):
                os.environ[native.ENV] = flag
                rates[label] = size / median_seconds(lambda c=impl, p=params: c.encode(x, p), repeats, CLOCK) / 1e6
                blobs[label] = impl.encode(x, params).blob.tobytes()
            enc = impl.encode(x, params)
            out["codecs"][name] = {
                "params": params,
                "encode_mws_per_core": round(rates["native"], 3),
                "encode_numpy_mws_per_core": round(rates["numpy"], 3),
                "encode_speedup": round(rates["native"] / rates["numpy"], 2),
                "identical": blobs["native"] == blobs["numpy"],
                "decode_mws_per_core": round(size / median_seconds(lambda c=impl, e=enc: c.decode(e), repeats, CLOCK)
                                             / 1e6, 3),
            }
            print("  done:", name, file=sys.stderr, flush=True)
    finally:
        native.set_threads(None)
        if saved is None:
            os.environ.pop(native.ENV, None)
        else:
            os.environ[native.ENV] = saved
    return out


if __name__ == "__main__":
    main()
