"""The ``hyperonnx`` command: a thin click shell over :mod:`hyperonnx.api`.

User errors print one line on stderr and exit with status 2; set HYPERONNX_DEBUG=1 for a traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys

import click

from hyperonnx import __version__, api, codec, interrupts, jsonout
from hyperonnx.errors import HyperonnxError


def _parse_options(pairs: tuple[str, ...]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise HyperonnxError(f"--codec-opt expects KEY=VALUE, got {pair!r}")
        options[key.strip()] = value.strip()
    return options


def _parse_size(text: str | None) -> int | None:
    """'2500000', '2.5M', '900K', '1.5G' → bytes (powers of 1024 for the suffixes)."""
    if text is None:
        return None
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    cleaned = text.strip().upper().removesuffix("B").removesuffix("I")
    factor = units.get(cleaned[-1:], 1)
    number = cleaned[:-1] if cleaned[-1:] in units else cleaned
    try:
        return int(float(number) * factor)
    except ValueError:
        raise HyperonnxError(f"--max-size expects a size like 2500000, 900K or 2.5M, got {text!r}") from None


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GB"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, message="hyperonnx %(version)s")  # works from a source tree too
def cli() -> None:
    """Hyper-Compression for ONNX models: weights become integer θ codes plus HyperDecode nodes."""


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .onnx path.")
@click.option("--codec", "codec_name", default=None,
              help=f"One of: {', '.join(sorted(codec.CODECS))}. Default: the default policy (a weight-SQNR target per "
                   f"tensor, docs/default.md); {codec.DEFAULT_CODEC} with --codec-opt, a budget or a target.")
@click.option("--codec-opt", multiple=True, metavar="KEY=VALUE", help="Codec option (repeatable), e.g. n=225.")
@click.option("--runtime", type=click.Choice(["ort", "portable"]), default="ort", show_default=True,
              help="ort: HyperDecode nodes (op library); portable: standard ONNX ops only.")
@click.option("--decode", "decode_mode", type=click.Choice(["load", "call"]), default="load", show_default=True,
              help="When the op library decodes: once per session, or on every run.")
@click.option("--min-elements", type=int, default=None,
              help="Keep smaller tensors raw (default: 1024 under the default policy, else 4096).")
@click.option("--include", multiple=True, metavar="GLOB", help="Compress only tensors matching (repeatable).")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Never compress tensors matching (repeatable).")
@click.option("--all-ops", is_flag=True, help="Compress weights whatever op consumes them.")
@click.option("--jobs", type=int, default=None, help="Tensors encoded in parallel (default: all cores).")
@click.option("--external-data/--no-external-data", default=None,
              help="Store tensors in OUT.data (default: when the input had it or the model passes 2 GiB).")
@click.option("--target-bpw", type=float, default=None,
              help="Allocate bits per tensor to this average (bits per compressed weight, all stored bytes counted).")
@click.option("--max-size", default=None, metavar="BYTES", help="Allocate bits so the whole file fits (e.g. 2.5M).")
@click.option("--target-cosine", type=float, default=None,
              help="Smallest model whose outputs keep this cosine to the original's (e.g. 0.995): bits per tensor "
                   "from measured sensitivity, searched and validated by running both models.")
@click.option("--inputs", type=click.Path(dir_okay=False), default=None,
              help="With --target-cosine or a size budget: .npz of input arrays keyed by input name (rows of the "
                   "leading dimension are samples). Default: generated inputs; real inputs make the target "
                   "meaningful. With a budget it implies --sensitivity.")
@click.option("--sensitivity", is_flag=True,
              help="With --target-bpw/--max-size: spend the budget by each tensor's measured effect on the outputs "
                   "(runs the model once per tensor, on --inputs or generated inputs).")
@click.option("--strip-debug-info", is_flag=True, help="Drop exporter debug data (node metadata, doc strings).")
@click.option("--exact-grids/--no-exact-grids", default=True, show_default=True,
              help="Store weights already on a float16 block grid (from a GGUF checkpoint) exactly.")
@click.option("--report", type=click.Path(dir_okay=False), help="Write a JSON report here.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
def convert(model, output, codec_name, codec_opt, runtime, decode_mode, min_elements, include, exclude, all_ops,
            jobs, external_data, target_bpw, max_size, target_cosine, inputs, sensitivity, strip_debug_info,
            exact_grids, report, as_json) -> None:
    """Compress the weights of MODEL into OUTPUT."""
    # every option checked here, before any work (a bad codec option encodes a small probe to find out)
    config = api.ConvertOptions(
        codec_name=codec_name, options=_parse_options(codec_opt), runtime=runtime, decode=decode_mode,
        min_elements=min_elements, include=include, exclude=exclude, all_ops=all_ops, jobs=jobs,
        external_data=external_data, target_bpw=target_bpw, max_size=_parse_size(max_size),
        strip_debug_info=strip_debug_info, target_cosine=target_cosine, inputs=inputs, exact_grids=exact_grids,
        sensitivity=sensitivity)
    if report:
        _check_report_path(report, model, output)
    people = not as_json and sys.stderr.isatty()  # progress is for people; scripts and logs get the summary only
    if people and config.measures_sensitivity:
        click.echo("hyperonnx: measuring each tensor's sensitivity (one model run per tensor)", err=True)
    if people and config.target_cosine is not None:  # the search's steps, a line each
        result = api.convert(model, output, config=config,
                             progress=lambda message: click.echo(f"hyperonnx: {message}", err=True))
    else:
        with _ProgressBar(people) as bar:
            result = api.convert(model, output, config=config, on_start=bar.start, progress=bar.step)
    data = result.as_dict()
    if "floor_db" in data:  # measured on generated inputs: one line, whatever the output format
        click.echo("hyperonnx: warning: no --inputs: measured on generated inputs, which may not represent real "
                   f"data; no tensor went below the {data['floor_db']:g} dB floor of weight SQNR", err=True)
    if "warning" in data:
        click.echo(f"hyperonnx: warning: {data['warning']}", err=True)
    if report:
        _write_atomically(report, jsonout.dumps(data) + "\n")
    if as_json:
        click.echo(jsonout.dumps(data))
        return
    totals = data["totals"]
    click.echo(f"{'tensor':48} {'shape':>18} {'bpw':>6} {'SQNR dB':>8}" + ("  why" if "policy" in data else ""))
    for t in result.report.tensors[:30]:
        why = f"  {t.reason} ({t.target_db:.1f} dB)" if t.reason else ""
        click.echo(f"{t.name[:48]:48} {str(list(t.shape))[:18]:>18} {t.bits_per_weight:6.2f} {t.sqnr_db:8.2f}{why}")
    if len(result.report.tensors) > 30:
        click.echo(f"... and {len(result.report.tensors) - 30} more")
    click.echo(f"compressed {totals['tensors_compressed']} tensors ({len(data['skipped'])} kept raw) in "
               f"{totals['seconds']:.1f} s: {_human(totals['bytes_before'])} -> {_human(totals['bytes_after'])} "
               f"({totals['ratio']:.2f}x, whole file)")
    if "tune" in data:
        tuned = data["tune"]
        click.echo(f"fidelity: cosine {tuned['cosine']:.6f} >= target {tuned['target_cosine']} on "
                   f"{tuned['samples']} samples of {tuned['inputs']} ({tuned['metric']}), "
                   f"{len(tuned['evaluations'])} evaluations")
    if "sensitivity" in data:
        measured = data["sensitivity"]
        click.echo(f"budget spent by sensitivity measured on {measured['samples']} samples of {measured['inputs']} "
                   f"({measured['seconds']:.1f} s)")


class _ProgressBar:
    """A bar of the tensors encoded, opened once the conversion says how many there are (none when ``shown`` is
    False, or nothing is to be encoded)."""

    def __init__(self, shown: bool):
        self.shown = shown
        self.bar = None

    def __enter__(self) -> _ProgressBar:
        return self

    def start(self, total: int) -> None:
        if self.shown and total:
            self.bar = click.progressbar(length=total, label="encoding", file=sys.stderr)
            self.bar.__enter__()

    def step(self, _name: str) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _check_report_path(report: str, model: str, output: str) -> None:
    """--report must not name the input, its external data, the output or the output's data: any of them would
    be replaced by the report."""
    from hyperonnx import model_io

    taken = [("the input model", model), ("the output", output), ("the output's data", model_io.data_file(output))]
    try:
        taken += [("the input's external data", p) for p in model_io.external_files(model)]
    except Exception:  # an unreadable input: convert reports that, in its own words
        pass
    for what, path in taken:
        if model_io.same_path(report, path):
            raise HyperonnxError(f"--report {report}: writing it would overwrite {what} {path}; choose another path")
    folder = os.path.dirname(os.path.abspath(report))
    if not os.path.isdir(folder):  # found now, not after the conversion's work
        raise HyperonnxError(f"--report {report}: folder {folder} does not exist")


def _write_atomically(path: str, text: str) -> None:
    """A whole file or none: written beside ``path`` under a temporary name, then renamed over it."""
    import secrets

    folder = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(folder, f".hyperonnx-report-{secrets.token_hex(6)}")
    try:
        with open(temporary, "x") as out:  # the usual permissions (mkstemp's would be 0600)
            out.write(text)
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise HyperonnxError(f"{path}: cannot write ({exc.strerror or exc})") from None
        raise


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def inspect(model, as_json) -> None:
    """List the compressed tensors of MODEL."""
    data = api.inspect(model)
    if as_json:
        click.echo(jsonout.dumps(data))
        return
    why = "  why (target)" if any(t.get("reason") for t in data["tensors"]) else ""
    click.echo(f"{'tensor':48} {'shape':>18} {'codec':>10} {'bpw':>6} {'SQNR dB':>8} {'before':>10} {'after':>10}{why}")
    for t in data["tensors"]:
        sqnr = f"{t['sqnr_db']:8.2f}" if t["sqnr_db"] is not None else "     inf"
        codec = t["codec"] + ("+r1" if t["format"] == 2 else "")  # the rank-1 term
        why = f"  {t['reason']} ({t['target_db']:.1f} dB)" if t.get("reason") else ""
        click.echo(f"{t['name'][:48]:48} {str(t['shape'])[:18]:>18} {codec:>10} {t['bits_per_weight']:6.2f} "
                   f"{sqnr} {_human(t['bytes_before'] or 0):>10} {_human(t['bytes_after']):>10}{why}"
                   + ("  fused" if t.get("fused") else ""))
    totals = data["totals"]
    ratio = f"{totals['ratio']:.2f}x" if totals["ratio"] else "-"
    click.echo(f"{totals['tensors']} compressed tensors: {_human(totals['bytes_before'])} -> "
               f"{_human(totals['bytes_after'])} ({ratio}); file {_human(totals['file_bytes'])}")


@cli.command()
@click.argument("original", type=click.Path(dir_okay=False))
@click.argument("compressed", type=click.Path(dir_okay=False))
@click.option("--inputs", type=click.Path(dir_okay=False), help=".npz of input arrays (default: generated).")
@click.option("--min-cosine", type=float, default=None, help="Exit 1 when any output's cosine is below this.")
@click.option("--mode", type=click.Choice(["load", "call"]), default=None, help="Override the decode mode.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def verify(original, compressed, inputs, min_cosine, mode, as_json) -> None:
    """Run ORIGINAL and COMPRESSED on the same inputs and compare."""
    data = api.verify(original, compressed, inputs, mode=mode)
    failed = min_cosine is not None and not data["cosine_min"] >= min_cosine  # a NaN cosine fails
    data["passed"] = not failed
    if as_json:
        click.echo(jsonout.dumps(data))
    else:
        for o in data["outputs"]:
            top1 = f"  top-1 agreement {o['top1_agreement']:.3f}" if "top1_agreement" in o else ""
            bad = o.get("non_finite", {})
            odd = (f"  (NaN/inf values: {bad['original']} in the original, {bad['compressed']} compressed)"
                   if any(bad.values()) else "")
            click.echo(f"{o['name']}: cosine {o['cosine']:.6f}  max abs error {o['max_abs_error']:.3g}{top1}{odd}")
        lat, load = data["latency_seconds"], data["load_seconds"]
        click.echo(f"size {_human(data['size_bytes']['original'])} -> {_human(data['size_bytes']['compressed'])} "
                   f"({data['size_ratio']:.2f}x smaller)")
        click.echo(f"load {load['original'] * 1e3:.1f} ms -> {load['compressed'] * 1e3:.1f} ms; median latency "
                   f"{lat['original'] * 1e3:.2f} ms -> {lat['compressed'] * 1e3:.2f} ms ({data['latency_ratio']:.2f}x)")
        if min_cosine is not None:
            click.echo(f"{'FAIL' if failed else 'PASS'}: cosine_min {data['cosine_min']:.6f} vs --min-cosine {min_cosine}")
    if failed:
        sys.exit(1)


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .onnx path.")
def decompress(model, output) -> None:
    """Write MODEL back as a plain ONNX model with decoded weights."""
    count = api.decompress(model, output)
    click.echo(f"decoded {count} tensors into {output}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def doctor(as_json) -> None:
    """Versions, op library and whether it loads, available providers."""
    data = api.doctor()
    from hyperonnx.codec import native

    data["encoders"] = native.describe()  # native (the library's path) or numpy (why)
    if as_json:
        click.echo(jsonout.dumps(data))
        return
    for key, value in data.items():
        click.echo(f"{key:16} {value}")


def _quiet_native_logs() -> None:
    # ONNX Runtime logs a failed session creation on stderr itself, before it raises the exception that we turn
    # into our one error line: keep its logger to fatal messages (HYPERONNX_DEBUG=1 keeps them all).
    if os.environ.get("HYPERONNX_DEBUG"):
        return
    try:
        import onnxruntime

        onnxruntime.set_default_logger_severity(4)
    except Exception:  # onnxruntime missing or too old: commands that need it say so themselves
        pass


def _register_bench() -> None:
    from hyperonnx.cli_bench import bench_command

    cli.add_command(bench_command)


_register_bench()


def main() -> None:
    _quiet_native_logs()  # imports onnxruntime: a Ctrl-C until release() is one line, exit 130 (interrupts.py)
    try:
        interrupts.release()  # from here a Ctrl-C is a KeyboardInterrupt, handled below (partial output cleaned up)
        # cli.main() without its own exception handling: on Ctrl-C click's main() prints a blank line first.
        with cli.make_context("hyperonnx", sys.argv[1:]) as ctx:
            cli.invoke(ctx)
    except click.exceptions.Exit as exc:  # --help, --version
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("hyperonnx: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.ClickException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `hyperonnx`: the help text is the answer
            exc.show()
            sys.exit(2)
        # One line like every other error (click's own form is usage + hint + blank line + message).
        message = " ".join(exc.format_message().split())
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if isinstance(exc, click.UsageError) and ctx else ""
        click.echo(f"hyperonnx: error: {message}{hint}", err=True)
        sys.exit(exc.exit_code if exc.exit_code in (1, 2) else 2)
    except (HyperonnxError, ValueError, FileNotFoundError) as exc:
        if os.environ.get("HYPERONNX_DEBUG"):
            raise
        click.echo(f"hyperonnx: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("hyperonnx: interrupted", err=True)
        sys.exit(130)
    except OSError as exc:  # the system said no (disk full, permissions, --report path): the user's to fix
        if os.environ.get("HYPERONNX_DEBUG"):
            raise
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        click.echo(f"hyperonnx: error: {where}{exc.strerror or exc}", err=True)
        sys.exit(2)
    except Exception as exc:  # a bug, not a user error: still one line, and a way to see more
        if os.environ.get("HYPERONNX_DEBUG"):
            raise
        click.echo(f"hyperonnx: internal error: {type(exc).__name__}: {exc} (HYPERONNX_DEBUG=1 for details)", err=True)
        sys.exit(1)
    finally:
        interrupts.settle()  # a Ctrl-C from here on, while Python shuts down, is one line too


if __name__ == "__main__":
    main()
