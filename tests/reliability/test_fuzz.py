"""Bounded fuzzing in CI: the command line over mutated ONNX files, and the op library's attribute
parser, blob decoders and the fast path's ONNX reader/rewriter under libFuzzer with ASan + UBSan. Findings are kept
in tests/fuzz_corpus/ as a
regression corpus; docs/reliability.md records what each run found.

HX_FUZZ_SECONDS (default 35) sets each fuzzer's time budget; 0 skips the timed runs (the corpus replays stay).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fuzz_corpus"
FUZZ_CLI = ROOT / "tools" / "fuzz" / "fuzz_cli.py"
SECONDS = int(os.environ.get("HX_FUZZ_SECONDS", "35"))


def _clang() -> str | None:
    for name in ("clang++", "clang++-14", "clang++-15", "clang++-16", "clang++-17", "clang++-18", "clang++-19"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _reproducers(paths: list[Path], limit: int = 64 << 10) -> str:
    """The inputs a fuzzer saved, base64-encoded for the failure message: CI runs on a fresh machine, and the
    temporary folder is gone once the run ends, so the log is the only place a rare finding can be recovered."""
    import base64

    parts = []
    for path in paths:
        data = path.read_bytes()
        shown = base64.b64encode(data[:limit]).decode() + ("" if len(data) <= limit else " (truncated)")
        parts.append(f"--- {path.name}, {len(data)} bytes, base64 ---\n{shown}")
    return "\n".join(parts)


def _python_fuzz(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop("HYPERONNX_DEBUG", None)
    return subprocess.run([sys.executable, str(FUZZ_CLI), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env)


# ---- command line ---------------------------------------------------------------------------------------

def test_cli_corpus_replay():
    """Every file of the regression corpus (seeds and past findings) keeps the CLI contract, in-process."""
    files = sorted((CORPUS / "onnx").iterdir()) + sorted((CORPUS / "cli").glob("*"))
    proc = _python_fuzz("--replay", *map(str, files), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert f"{len(files)} inputs" in proc.stdout


@pytest.mark.slow  # every command on each corpus file, as processes (the in-process replay is fast)
@pytest.mark.parametrize("name", sorted(p.name for p in (CORPUS / "cli").glob("*")) or ["-"])
def test_cli_corpus_subprocess(name, tmp_path):
    """The real command, as a user runs it (no --json, progress bar on): exit 0/1/2, one stderr line on error."""
    if name == "-":
        pytest.skip("no files in tests/fuzz_corpus/cli")
    src = tmp_path / "in.onnx"
    shutil.copy(CORPUS / "cli" / name, src)
    before = src.read_bytes()
    env = {k: v for k, v in os.environ.items() if k != "HYPERONNX_DEBUG"}
    for argv in (["convert", str(src), "-o", str(tmp_path / "out.onnx")], ["inspect", str(src)],
                 ["decompress", str(src), "-o", str(tmp_path / "dec.onnx")]):
        proc = subprocess.run([sys.executable, "-m", "hyperonnx", *argv], capture_output=True, text=True, env=env,
                              timeout=120)
        assert proc.returncode in (0, 2), (argv, proc.returncode, proc.stderr)
        assert "Traceback" not in proc.stderr
        if proc.returncode:
            assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert src.read_bytes() == before
    assert not list(tmp_path.glob(".hyperonnx-*"))


@pytest.mark.slow  # fuzzes for HX_FUZZ_SECONDS (35 s) of CPU
@pytest.mark.skipif(SECONDS <= 0, reason="HX_FUZZ_SECONDS=0")
def test_cli_fuzz_bounded(tmp_path):
    """atheris (coverage-guided, hyperonnx's Python instrumented) over convert / inspect / decompress / verify."""
    try:
        import atheris  # noqa: F401
        engine = "atheris"
    except ImportError:  # still fuzz, without coverage feedback; CI installs atheris (Makefile)
        engine = "random"
    proc = _python_fuzz("--engine", engine, "--seconds", str(SECONDS), "--work", str(tmp_path), "--seed", "1",
                        timeout=SECONDS + 240)
    summary = [line for line in proc.stdout.splitlines() if line.startswith("fuzz_cli:")]
    if (tmp_path / "summary.txt").exists():
        summary.append((tmp_path / "summary.txt").read_text().strip())
    summary += [line for line in proc.stderr.splitlines() if line.startswith(("stat::number_of_executed", "Done"))]
    print("\n".join(summary))
    findings = sorted(tmp_path.glob("finding-*.txt"))
    crashes = sorted(tmp_path.glob("crash-*"))
    detail = "\n".join(f.read_text() for f in findings) or proc.stderr[-4000:]
    inputs = [f.with_suffix("") for f in findings] + crashes
    assert proc.returncode == 0 and not findings and not crashes, (
        f"fuzzer found a problem (inputs saved in {tmp_path}; add them to tests/fuzz_corpus/cli/):\n{detail}\n"
        f"{_reproducers([p for p in inputs if p.is_file()])}")
    assert summary, proc.stdout[-2000:] + proc.stderr[-2000:]


# Bugs the fuzzers found, fixed since; their reproducers stay as regression tests.
KNOWN_CLI = {
    "inspect-keyerror-no-dtype.onnx": "api.inspect: a HyperDecode node without a 'dtype' attribute -> KeyError "
                                      "(internal error, exit 1) instead of a one-line user error (exit 2)",
    "inspect-keyerror-theta-not-initializer.onnx": "passes/decoders.py bytes_after: theta input that is not an "
                                                   "initializer -> KeyError (internal error, exit 1)",
    "select-bytes-op-type.onnx": "passes/select.py choose: an op_type that is not valid UTF-8 reaches "
                                 "', '.join(ops) as bytes -> TypeError (internal error, exit 1)",
}


@pytest.mark.slow  # the fuzzer's replay started as a process per reproducer
@pytest.mark.parametrize("name", sorted(KNOWN_CLI))
def test_cli_known_bugs(name):
    proc = _python_fuzz("--replay", str(CORPUS / "known" / name), "--strict", timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


# ---- op library: libFuzzer + ASan + UBSan -----------------------------------------------------------------

@pytest.fixture(scope="module")
def decoder_fuzz(tmp_path_factory):
    if not _clang():
        pytest.skip("clang++ not found (Debian: apt-get install clang-14 libclang-rt-14-dev)")
    out = ROOT / "build-fuzz" / "decoder_fuzz"
    env = {**os.environ, "CXX_FUZZ": _clang()}
    proc = subprocess.run(["sh", str(ROOT / "tools" / "fuzz" / "build_decoder_fuzz.sh"), str(out)],
                          capture_output=True, text=True, timeout=600, env=env)
    if proc.returncode and "fsanitize=fuzzer" in proc.stderr and "cannot find" in proc.stderr:
        pytest.skip("clang has no libFuzzer runtime (Debian: apt-get install libclang-rt-14-dev)")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def _run_decoder_fuzz(binary: Path, args: list[str], timeout: float, env: dict | None = None):
    # Started from a small shell that forks it: Linux carries a process's peak RSS across exec, so a fuzzer
    # exec'd straight from this (by then multi-GB) pytest process would start "over" -rss_limit_mb.
    command = [str(binary), "-rss_limit_mb=2560", "-malloc_limit_mb=1024", "-timeout=20", *args]
    return subprocess.run(["sh", "-c", '"$@"; exit $?', "sh", *command],
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.slow  # builds the libFuzzer target with clang first (~20 s)
def test_decoder_corpus_replay(decoder_fuzz):
    files = sorted(str(p) for p in (CORPUS / "decoder").iterdir())
    proc = _run_decoder_fuzz(decoder_fuzz, files, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.mark.slow  # fuzzes for HX_FUZZ_SECONDS (35 s) of CPU
@pytest.mark.skipif(SECONDS <= 0, reason="HX_FUZZ_SECONDS=0")
def test_decoder_fuzz_bounded(decoder_fuzz, tmp_path):
    work = tmp_path / "corpus"
    work.mkdir()
    proc = _run_decoder_fuzz(decoder_fuzz, [f"-max_total_time={SECONDS}", "-seed=1", "-print_final_stats=1",
                                            f"-dict={ROOT / 'tools' / 'fuzz' / 'decoder.dict'}",
                                            f"-artifact_prefix={tmp_path}/", str(work), str(CORPUS / "decoder")],
                             timeout=SECONDS + 240)
    stats = [line for line in proc.stderr.splitlines() if line.startswith(("stat::", "Done"))]
    print("\n".join(stats))
    artifacts = sorted(p for p in tmp_path.iterdir() if p.name.startswith(("crash-", "leak-", "oom-", "timeout-")))
    assert proc.returncode == 0 and not artifacts, (
        f"libFuzzer found {[p.name for p in artifacts]} in {tmp_path} (add to tests/fuzz_corpus/decoder/):\n"
        f"{proc.stderr[-6000:]}\n{_reproducers(artifacts)}")


def test_fast_corpus_replay(decoder_fuzz):
    """The fast path's ONNX reader/rewriter (tools/fuzz/fast_fuzz.cc) over its seed models."""
    files = sorted(str(p) for p in (CORPUS / "fast").iterdir())
    proc = _run_decoder_fuzz(decoder_fuzz.parent / "fast_fuzz", files, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.mark.skipif(SECONDS <= 0, reason="HX_FUZZ_SECONDS=0")
def test_fast_fuzz_bounded(decoder_fuzz, tmp_path):
    work = tmp_path / "corpus"
    work.mkdir()
    proc = _run_decoder_fuzz(decoder_fuzz.parent / "fast_fuzz",
                             [f"-max_total_time={SECONDS}", "-seed=1", "-print_final_stats=1",
                              f"-artifact_prefix={tmp_path}/", str(work), str(CORPUS / "fast")], timeout=SECONDS + 240)
    print("\n".join(line for line in proc.stderr.splitlines() if line.startswith(("stat::", "Done"))))
    artifacts = sorted(p for p in tmp_path.iterdir() if p.name.startswith(("crash-", "leak-", "oom-", "timeout-")))
    assert proc.returncode == 0 and not artifacts, (
        f"libFuzzer found {[p.name for p in artifacts]} in {tmp_path} (add to tests/fuzz_corpus/fast/):\n"
        f"{proc.stderr[-6000:]}\n{_reproducers(artifacts)}")


KNOWN_DECODER = {
    "absurd-table-paper": "custom_ops/src/decoder.cc Decoder::create: a node claiming shape [2^40] with bits=32, "
                          "paper i_n=2^24, i_rings=255 builds the whole 2^32-row table (32 GiB) before any blob is "
                          "seen (table_rows <= count), so a 1 KB model exhausts memory at session creation",
}


@pytest.mark.slow  # builds the libFuzzer target with clang first (~20 s)
@pytest.mark.parametrize("name", sorted(KNOWN_DECODER))
def test_decoder_known_bugs(decoder_fuzz, name):
    proc = _run_decoder_fuzz(decoder_fuzz, [str(CORPUS / "decoder_known" / name)], timeout=120,
                             env={"HX_FUZZ_NO_FILTER": "1"})
    assert proc.returncode == 0, proc.stderr[-1500:]
