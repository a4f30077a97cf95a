"""`dav2 export`: the model as a file other runtimes run (ONNX, OpenVINO IR), checked before it is written."""

import click

from dav2_cli.cli.app import EXIT_CODES, run_job
from dav2_cli.cli.params import FiniteFloat, model_option
from dav2_cli.errors import UsageError


def export_model_option(ctx, param, value):
    """The shared model check, after export's own word on video models (why they cannot be exported)."""
    from dav2_cli.jobs.export import check_model_name

    try:
        check_model_name(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc)) from None
    return model_option(ctx, param, value)


@click.command(epilog="""\b
Examples:
  dav2 export -m vits -o vits.onnx                  # dynamic batch, height and width
  dav2 export -m vits -o vits-fp16.onnx --dtype float16   # for GPUs (matmuls and convs in fp16)
  dav2 export -m vits -o vits.onnx --fixed-size 518x700   # static shapes
  dav2 export -m metric-indoor-vits -o indoor.xml   # OpenVINO IR
  dav2 info vits.onnx                               # what the file holds and how to feed it

\b
Input `image`: float32 N x 3 x H x W, RGB, (pixel/255 - mean)/std, H and W multiples
of 14. Output `depth`: float32 N x H x W, inverse depth (relative models, larger =
nearer) or metres (metric models). The file records model, kind, unit, mean/std and the
resize rule. Before it is written, the export is run (onnxruntime or OpenVINO) at two
sizes against dav2's torch float32; beyond 1e-4 of the depth range (1% in float16)
nothing is written and the exit code is 1.
""" + "\n" + EXIT_CODES)
@click.option("-m", "--model", default="vits", show_default=True, metavar="NAME|PATH", callback=export_model_option,
              help="Model name (see `dav2 models`) or a checkpoint, as for the other commands.")
@click.option("-o", "--output", required=True, metavar="FILE.onnx|FILE.xml",
              help="Where to write; the suffix picks the format (.xml also writes FILE.bin).")
@click.option("--dtype", type=click.Choice(("float32", "float16")), default="float32", show_default=True,
              help="float16: matmuls and convolutions in float16 for GPUs; norms, softmax and the residual "
                   "stream stay float32, so the output stays finite. ONNX only.")
@click.option("--fixed-size", default=None, metavar="HxW",
              help="Static input size (multiples of 14), batch 1, for runtimes that want one. Default: dynamic "
                   "batch, height and width.")
@click.option("--max-depth", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Metric checkpoints: max depth in meters baked into the graph (default from the name).")
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
def export(model, output, dtype, fixed_size, max_depth, overwrite):
    """Write the model as ONNX or OpenVINO IR, self-describing and checked against dav2."""
    from dav2_cli.jobs.export import run_export

    run_job(lambda: run_export(model, output, dtype=dtype, fixed_size=fixed_size, max_depth=max_depth,
                               overwrite=overwrite, echo=click.echo))
