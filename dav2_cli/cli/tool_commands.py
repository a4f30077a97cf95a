"""The commands around the depth jobs: `dav2 models` (names and the cache), `dav2 info` (what a file holds) and
`dav2 bench` (what each precision and backend gives on this machine)."""

import click

from dav2_cli.cli.app import EXIT_CODES, run_job
from dav2_cli.cli.params import image_size_option, model_argument, pixel_option
from dav2_cli.cli.shared_options import INPUT_SIZE_RANGE, running_options
from dav2_cli.depth.input_size import DEFAULT_INPUT_SIZE
from dav2_cli.errors import EXIT_OK

MODELS_EPILOG = """\b
Names download upstream's files (.pth, .safetensors) once, through huggingface_hub, into the HuggingFace
cache shared with transformers and ComfyUI ($HF_HUB_CACHE, else $HF_HOME/hub, else
~/.cache/huggingface/hub), or into $DAV2_HOME when it is set (`dav2 models path`).
Looked up first: a file under upstream's name in $DAV2_HOME (else ~/.cache/dav2), put
there by hand; then the HuggingFace cache (upstream's repo, then its -hf copy). -m also
takes upstream's file name (depth_anything_v2_vits.pth) from any folder. Offline
(DAV2_OFFLINE=1 or HF_HUB_OFFLINE=1) the error names the file, its URL and where to put
it. HF_TOKEN and HF_ENDPOINT (or DAV2_HF_ENDPOINT, dav2 alone) are honoured.
"""


@click.group(invoke_without_command=True, epilog=MODELS_EPILOG)
@click.pass_context
def models(ctx):
    """List the model names with family, kind, size, licence and cached path."""
    if ctx.invoked_subcommand is not None:
        return
    from dav2_cli.weights.lookup import list_models

    rows = [("NAME", "ALIAS", "FAMILY", "KIND", "SIZE", "LICENCE", "CACHED")]
    for model in list_models():
        rows.append((model["name"], ",".join(model["aliases"]), model["family"], model["label"], model["size"],
                     model["licence"], str(model["cached"]) if model["cached"] else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join([cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]))


@models.command("download")
@click.argument("name")
def models_download(name):
    """Fetch model NAME into the cache unless it is already on disk; print its path. (`dav2 models prepare
    NAME` also readies it for this machine.)"""
    from dav2_cli.weights.catalog import find_spec
    from dav2_cli.weights.lookup import resolve

    if find_spec(name) is None:
        raise click.BadParameter(f"{name!r} is not a model name (see `dav2 models`)", param_hint="NAME")

    def job():
        click.echo(resolve(name))
        return EXIT_OK

    run_job(job)


@models.command("prepare", epilog="""\b
Examples:
  dav2 models prepare vits                          # before a first short job at the default size
  dav2 models prepare vitl --input-size 504 --input-size 1008
  dav2 models prepare ./my_metric.pth --max-depth 20

\b
A model's first run in a new input size range times torch against OpenVINO (--backend auto)
and converts the model for OpenVINO, a few seconds once per model, precision and
machine; a long job hides it, a first job of a few photos does not. This pays it now,
on a synthetic photo, and keeps it in the cache folder for every later job: their
depth is what it would have been. Run it again after upgrading dav2 or its libraries.
Prints, for each input size, what jobs at that size run here.
""" + "\n" + EXIT_CODES)
@click.argument("model", metavar="NAME|PATH", callback=model_argument)
@click.option("--input-size", "input_sizes", type=INPUT_SIZE_RANGE, multiple=True, default=[DEFAULT_INPUT_SIZE],
              show_default=True, help="An input size the jobs will use; repeat it for several.")
@running_options
@click.option("-v", "--verbose", is_flag=True, help="Say what was loaded and what memory it needs on stderr.")
def models_prepare(model, input_sizes, device, dtype, backend, max_depth, verbose):
    """Time and convert model NAME|PATH for this machine now, so the first job runs at full speed."""
    from dav2_cli.jobs.options import DepthOptions
    from dav2_cli.jobs.prepare import run_prepare

    options = DepthOptions(model=model, device=device, dtype=dtype, backend=backend, max_depth=max_depth,
                           verbose=verbose)
    run_job(lambda: run_prepare(options, list(input_sizes), echo=click.echo))


@models.command("path")
def models_path():
    """Print the cache folder that model names download into."""
    from dav2_cli.weights.locations import download_folder

    click.echo(download_folder())


@click.command(epilog="""\b
Examples:
  dav2 info depth.png                       # model, kind, unit, lo/hi, size, intrinsics...
  dav2 info depth.png --at 320,240          # the depth at column 320, row 240
  dav2 info cloud.ply                       # the PLY header's description and axes
  dav2 info depth.mkv                       # a gray16 video's description (depth.mkv.json)
  dav2 info                                 # dav2's caches: where, how large, how to clear them

\b
Reads PNG (text chunks, or OUT.json beside a gray16 PNG), JPEG (comment), EXR (header
attributes), TIFF (ImageDescription), npy (OUT.npy.json), PLY (header comments) and the
.json beside a gray16 video. Pictures are turned back into depth with their lo/hi.
""" + "\n" + EXIT_CODES)
@click.argument("file", metavar="[FILE]", required=False)
@click.option("--at", default=None, metavar="X,Y", callback=pixel_option,
              help="Also print the depth at this pixel (column X, row Y, from 0).")
def info(file, at):
    """Print what a file dav2 wrote holds: model, kind, unit, range, size, camera, alignment."""
    from dav2_cli.jobs.info import run_cache_info, run_info

    if file is None:  # no file: dav2's own caches, what they weigh and how to clear them
        if at is not None:
            raise click.UsageError("--at needs a FILE to read the depth from")
        run_job(lambda: run_cache_info(echo=click.echo))
        return
    run_job(lambda: run_info(file, at, echo=click.echo))


@click.command(epilog="""\b
Examples:
  dav2 bench                                # random-init vits, 756x504, every precision and backend here
  dav2 bench -m vitb --image-size 1920x1080 --repeat 5
""")
@click.option("-m", "--model", default=None, metavar="NAME|PATH",
              help="Model name or checkpoint. Default: random-init vits (no download; speed ignores the values).")
@click.option("--input-size", type=INPUT_SIZE_RANGE, default=DEFAULT_INPUT_SIZE, show_default=True,
              help="Shorter side the model sees, as for the other commands.")
@click.option("--image-size", default="756x504", show_default=True, callback=image_size_option,
              metavar="WxH", help="Size of the synthetic test image.")
@click.option("--repeat", type=click.IntRange(min=1), default=3, show_default=True, metavar="N",
              help="Timed runs per variant (the median is shown).")
@click.option("--warmup", type=click.IntRange(min=0), default=1, show_default=True, metavar="N",
              help="Untimed runs first (allocations, caches).")
def bench(model, input_size, image_size, repeat, warmup):
    """Speed of each precision and backend this machine offers (ms/image, GFLOP/s, share of peak) and its error;
    (auto) marks what the default runs here."""
    from dav2_cli.jobs.bench import run_bench

    def job():
        run_bench(model, input_size, image_size, repeat, warmup, echo=click.echo)
        return EXIT_OK

    run_job(job)
