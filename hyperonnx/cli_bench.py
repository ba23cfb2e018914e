"""``hyperonnx bench``: the click command over :func:`hyperonnx.bench.bench` (registered by hyperonnx/cli.py).

Kept in its own module so the sweep's options live beside the sweep; cli.py adds it with
``cli.add_command(bench_command)``.
"""

from __future__ import annotations

from pathlib import Path

import click

from hyperonnx import bench as bench_module
from hyperonnx import jsonout


@click.command("bench")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--inputs", type=click.Path(dir_okay=False),
              help=".npz of input arrays, one per model input (default: generated from the signature).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Folder for bench.md, bench.json, bench.png (default: MODEL-STEM.bench beside the current folder).")
@click.option("--codecs", multiple=True, metavar="SPEC[,SPEC…]",
              help="Variants as NAME[:KEY=VALUE…], comma-separated or repeated: hyperonnx codecs (blockvq:bits=4, "
                   "paper, paper-cnn, …), ort-int8, ort-nbits:bits=4:block=32:algo=rtn|hqq; groups default, "
                   "quick, hyperonnx, ort. Default: default (quick with --quick).")
@click.option("--quick", is_flag=True, help="Fewer variants (the quick group) and fewer latency runs.")
@click.option("--threads", type=int, default=bench_module.DEFAULT_THREADS, show_default=True,
              help="intra-op threads of every session (0: ONNX Runtime's default).")
@click.option("--repeats", type=int, default=None, help="Latency runs per variant (default 20, 5 with --quick).")
@click.option("--keep-models", is_flag=True, help="Keep every variant's model under OUT/models/.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report instead of the table.")
def bench_command(model, inputs, out_dir, codecs, quick, threads, repeats, keep_models, as_json) -> None:
    """Sweep hyperonnx codecs and ONNX Runtime's quantizers on MODEL: size, fidelity, latency in one table."""
    if out_dir is None:
        out_dir = f"{Path(model).stem}.bench"
    result = bench_module.bench(
        model, inputs=inputs, out_dir=out_dir, codecs=codecs or None, quick=quick,
        progress=lambda line: click.echo(line, err=True), threads=threads or None, repeats=repeats,
        keep_models=keep_models)
    if as_json:
        payload = {k: v for k, v in result.items() if k != "markdown"}
        click.echo(jsonout.dumps(payload))
        return
    click.echo(result["markdown"])
    click.echo(f"wrote {', '.join(result['files'].values())}", err=True)
