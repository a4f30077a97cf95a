"""The `dav2` command line: parse, validate, hand over to the runner.

Nothing here imports torch, so `dav2 --help` answers instantly; the runner is imported inside each command.
"""

import math
import os
import re
import sys

import click

from dav2_cli import __version__
from dav2_cli.errors import EXIT_FAILED, EXIT_OK, EXIT_SIGINT, EXIT_USAGE, UsageError, UserError

DEPTH_MEANING = """\b
Relative models (vits, vitb, vitl) output inverse depth: larger = NEARER, no unit.
Metric models output depth in meters: larger = FARTHER.
Every picture format draws near as bright, for both kinds; raw formats (npy, exr,
tiff) store the model's values untouched. --near/--far or --align-to turn a relative
map into meters (larger = farther); a point cloud (ply) needs meters. Every depth file
says what it holds: `dav2 info FILE` (a gray16 video in its .json; colour and gray
videos are pictures only)."""

EXIT_CODES = """\b
Exit codes: 0 all done, 1 some inputs failed (each named on stderr),
2 bad usage, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM)."""

MAX_IMAGE_SIDE = 1 << 20  # beyond any image OpenCV decodes: bounds for pixel counts, so numpy never overflows

# render.FORMATS (+ its aliases) and render.CMAPS, spelled out because importing render loads OpenCV and
# `dav2 --help` must stay instant; tests/test_cli_image.py keeps the two in step
FORMAT_CHOICES = ("color", "gray", "gray16", "npy", "exr", "tiff", "ply", "png")
CMAP_CHOICES = ("Spectral_r", "turbo", "inferno", "magma", "viridis", "gray", "plasma", "cividis", "jet", "bone")


def report_os_error(exc: OSError) -> None:
    """A path the system refuses (a name too long, ...) where no check expected one: one line, not a traceback."""
    from dav2_cli.outputs.atomic import describe_os_error

    click.echo(f"dav2: error: {describe_os_error(exc.filename or 'output', exc)}", err=True)


def silence_opencv_log() -> None:
    """Every failure a command meets gets dav2's own one line; OpenCV's log lines about the same file (a damaged
    TIFF or BMP, a video it cannot open) would only repeat it, less clearly. OPENCV_LOG_LEVEL, if set, wins."""
    if "OPENCV_LOG_LEVEL" in os.environ:
        return
    if "cv2" in sys.modules:
        sys.modules["cv2"].utils.logging.setLogLevel(sys.modules["cv2"].utils.logging.LOG_LEVEL_SILENT)
    else:  # read when OpenCV is imported: commands that never need it do not pay for its import here
        os.environ["OPENCV_LOG_LEVEL"] = "SILENT"


def run_job(job, *args) -> None:
    """Run a runner job and turn its outcome into the documented exit code, without tracebacks for users."""
    silence_opencv_log()
    try:
        code = job(*args)
    except UserError as exc:
        click.echo(f"dav2: error: {exc}", err=True)
        code = EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILED
    except OSError as exc:
        report_os_error(exc)
        code = EXIT_FAILED
    except KeyboardInterrupt:
        click.echo("dav2: interrupted", err=True)
        code = EXIT_SIGINT
    sys.exit(code)


class FiniteFloat(click.FloatRange):
    """A FloatRange that also refuses nan and inf, which pass its bounds (every comparison with nan is false)."""

    name = "finite number"

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?", re.IGNORECASE)


def model_option(ctx, param, value):
    """A model name or an existing file or folder, checked before anything loads (see catalog.looks_like_path)."""
    if value is None:
        return value
    from dav2_cli.weights.catalog import check_model_argument

    try:
        check_model_argument(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc).removeprefix(f"-m {value}: ")) from None
    if ctx.command.name != "video":
        from dav2_cli.weights.catalog import VIDEO_FAMILY, find_spec, looks_like_path

        spec = None if looks_like_path(value) else find_spec(value)
        if spec is not None and spec.family == VIDEO_FAMILY:
            from dav2_cli.jobs.options import VIDEO_MODEL_FOR_IMAGES

            raise click.BadParameter(VIDEO_MODEL_FOR_IMAGES.format(model=value))
    return value


def device_option(ctx, param, value):
    if not DEVICE_PATTERN.fullmatch(value.strip()):
        raise click.BadParameter(f"{value!r}: expected auto, cpu, cuda, cuda:N or mps")
    return value.strip().lower()


def depth_options(command):
    """The model and rendering options every command shares."""
    options = [
        click.option("-m", "--model", default="vits", show_default=True, metavar="NAME|PATH",
                     callback=model_option,
                     help="Model name (see `dav2 models`) or a checkpoint: upstream .pth, HuggingFace folder "
                          "or .safetensors. A bare word is a name first: write ./vits for a folder called vits."),
        click.option("--input-size", type=click.IntRange(28, 4200), default=504, show_default=True,
                     help="Shorter side the model sees; sides are rounded to multiples of 28 "
                          "(upstream's default 518 becomes 532; 504 is the nearest below)."),
        click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:i]|mps",
                     callback=device_option, help="Where to run the model."),
        click.option("--dtype", type=click.Choice(("auto", "float32", "bfloat16", "float16", "int8")),
                     default="auto", show_default=True, envvar="DAV2_DTYPE", show_envvar=True,
                     help="Compute precision; output is always float32. auto: bfloat16 on GPUs and CPUs with "
                          "native bf16 (AVX512-BF16/AMX), float16 on older GPUs, exact float32 on other CPUs. "
                          "int8 (x86 CPUs): encoder Linear layers in int8: somewhat faster, not exact "
                          "(~0.5-1% of the depth range off float32). The DAV2_DTYPE environment variable sets "
                          "it for every command; --dtype overrides it. "
                          "`dav2 bench` shows what each gives on this machine."),
        click.option("--backend", type=click.Choice(("auto", "torch", "openvino")), default="auto",
                     show_default=True, envvar="DAV2_BACKEND", show_envvar=True,
                     help="What runs the model. openvino (CPU; float32 or bfloat16): needs "
                          "`pip install \"dav2-cli[openvino]\"`. auto: on the CPU with OpenVINO installed, "
                          "whichever of the two is faster on this machine, timed once per input size and "
                          "remembered in the cache folder (the first run of a model converts it for OpenVINO, "
                          "a few seconds, once); "
                          "otherwise torch. The DAV2_BACKEND environment variable sets it for every command; "
                          "--backend overrides it."),
        click.option("--max-depth", type=FiniteFloat(min=0, min_open=True), default=None,
                     help="Metric checkpoints: override max depth in meters (default from the name: 20 for "
                          "hypersim/indoor, 80 for vkitti/outdoor)."),
        click.option("--format", "fmt", type=click.Choice(FORMAT_CHOICES), default=None,
                     help="color (8-bit colormapped PNG, default), gray (8-bit), gray16 (16-bit PNG, full "
                          "0-65535 range, + OUT.json with lo/hi), npy/exr/tiff (float32 raw values), ply (a "
                          "coloured point cloud in meters; see the 3D options). png = color."),
        click.option("--cmap", type=click.Choice(CMAP_CHOICES), default="Spectral_r", show_default=True,
                     help="Colormap for --format color."),
        click.option("--invert", is_flag=True, help="Draw far as bright instead of near."),
        click.option("--side-by-side", is_flag=True, help="Put the input picture left of the depth picture."),
        click.option("-v", "--verbose", is_flag=True,
                     help="Say which model was loaded (encoder, relative/metric, max depth, file, device, "
                          "precision) on stderr."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


SPACE_FIELDS = ("fx", "fy", "cx", "cy", "hfov", "near", "far", "align_to", "mesh", "edge_threshold", "stride",
                "max_points", "y_up")


def space_options(command):
    """Distances and point clouds: the camera, relative-to-metric conversion, and what a cloud keeps."""
    positive = FiniteFloat(min=0, min_open=True)
    options = [
        click.option("--fx", type=positive, default=None, metavar="PX",
                     help="Focal length across, in pixels of the image as decoded (EXIF rotation applied). "
                          "--fy defaults to it (square pixels)."),
        click.option("--fy", type=positive, default=None, metavar="PX", help="Focal length down, in pixels."),
        click.option("--cx", type=FiniteFloat(), default=None, metavar="PX",
                     help="Principal point column (pixel u's centre is at u). Default: (W-1)/2."),
        click.option("--cy", type=FiniteFloat(), default=None, metavar="PX",
                     help="Principal point row. Default: (H-1)/2."),
        click.option("--hfov", type=FiniteFloat(0, 180, min_open=True, max_open=True), default=None,
                     metavar="DEG", help="Horizontal field of view instead of --fx/--fy: fx = fy = W/(2 tan(hfov/2)). "
                                         "Without either: the photo's EXIF 35 mm focal length, else 60 degrees "
                                         "(said on stderr)."),
        click.option("--near", type=positive, default=None, metavar="M",
                     help="Relative models: the distance in meters of the map's nearest value (with --far); "
                          "outputs become meters, larger = farther."),
        click.option("--far", type=positive, default=None, metavar="M",
                     help="Relative models: the distance in meters of the map's farthest value."),
        click.option("--align-to", default=None, metavar="CSV",
                     help="Make depth metric by fitting scale and shift of inverse depth to known points: rows "
                          "x,y,depth_m (pixels of the image as decoded; a header may name x, y, depth_m, frame, "
                          "weight). A video fits once, on the first frame named. -v prints the fit's error."),
        click.option("--mesh", is_flag=True,
                     help="ply: add faces between neighbouring points, never across a depth edge."),
        click.option("--edge-threshold", type=FiniteFloat(min=0), default=None, metavar="G",
                     help="ply: drop points where ln(depth) changes faster than G per radian of view angle "
                          "(about tan of how edge-on the surface is seen) [default: 20, ~3 degrees from edge-on; "
                          "0 keeps every point]."),
        click.option("--stride", type=click.IntRange(1, MAX_IMAGE_SIDE), default=None, metavar="N",
                     help="ply: one point per N x N pixels (every Nth row and column)."),
        click.option("--max-points", type=click.IntRange(1, MAX_IMAGE_SIDE ** 2), default=None, metavar="N",
                     help="ply: the smallest stride that keeps at most N points."),
        click.option("--y-up", is_flag=True,
                     help="ply: y up, z backward (Blender, three.js) instead of OpenCV's y down, z forward."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def make_options(fmt, **values):
    from dav2_cli.jobs.options import DepthOptions, SpaceOptions

    space = SpaceOptions(**{name: values.pop(name) for name in SPACE_FIELDS})
    return DepthOptions(fmt=fmt, space=space, **values)


NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click 8.2+; 8.1 shows the help itself


class OneLineErrors(click.Group):
    """click's own usage errors (an unknown flag, a bad choice, a missing argument) as one line like every other
    error, `dav2: error: <reason> (see `dav2 CMD --help`)`, instead of the usage block click prints first."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:  # a caller that handles click's exceptions itself
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NO_ARGS_IS_HELP as exc:  # a bare `dav2` or `dav2 models`-like group: the help, as click shows it
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            reason = " ".join(exc.format_message().split())
            click.echo(f"dav2: error: {reason}{where}", err=True)
            sys.exit(EXIT_USAGE)
        except click.ClickException as exc:
            click.echo(f"dav2: error: {' '.join(exc.format_message().split())}", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:  # met while checking the command line (`-m` names a file, ...)
            report_os_error(exc)
            sys.exit(EXIT_FAILED)
        except click.Abort:  # Ctrl-C before any job began (a job reports its own interruption)
            click.echo("dav2: interrupted", err=True)
            sys.exit(EXIT_SIGINT)
        sys.exit(code if isinstance(code, int) else EXIT_OK)  # --help and --version return 0


@click.group(cls=OneLineErrors,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=DEPTH_MEANING + "\n\n" + EXIT_CODES)
@click.version_option(__version__, "-V", "--version", prog_name="dav2")
def main():
    """Depth maps from photos, image folders and videos with Depth-Anything V2."""


@main.command(epilog="""\b
Examples:
  dav2 image photo.jpg                      # photo_depth.png beside it
  dav2 image a.jpg b.jpg -o out/ --format npy
  dav2 image photo.jpg -o depth.tiff        # float32 raw values
  dav2 image room.jpg -m metric-indoor-vits -o room.ply --hfov 70 --mesh
  dav2 image photo.jpg -o photo.ply --near 0.5 --far 12   # relative model → meters
  cat photo.jpg | dav2 image - -o - > depth.png
""" + "\n" + DEPTH_MEANING + "\n\n" + EXIT_CODES)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--output", default=None, metavar="PATH|DIR|-",
              help="Output file (one input; format from its extension), folder, or - for stdout. "
                   "Default: <stem>_depth.<ext> beside each input.")
@depth_options
@space_options
@click.option("--skip-existing", is_flag=True,
              help="Leave outputs that already exist untouched (finish an interrupted run).")
def image(inputs, output, fmt, skip_existing, **values):
    """Depth maps for one or more images (INPUT `-` reads stdin)."""
    from dav2_cli.jobs.images import JobOptions, run_images
    from dav2_cli.jobs.plan import output_format

    def job():
        options = make_options(output_format(output, fmt, list(inputs)), **values)
        job = JobOptions(skip_existing=skip_existing, name_outputs=values["verbose"] or sys.stderr.isatty())
        return run_images(list(inputs), output, options, job)

    run_job(job)


def shard_option(ctx, param, value):
    from dav2_cli.jobs.plan import parse_shard

    try:
        return None if value is None else parse_shard(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command(epilog="""\b
Examples:
  dav2 folder photos/                       # photos_depth/ beside it, same tree, colour PNGs
  dav2 folder photos/ -o depth/ --format npy --skip-existing
  dav2 folder list.txt -o depth/            # paths in list.txt, relative to its folder
  dav2 folder photos/ --shard 2/4           # this machine's quarter (1/4 .. 4/4 cover all)

\b
Output: DIR/a/x.jpg becomes OUT/a/x.<ext>. Inputs of one folder that would share
a name (x.jpg, x.png) keep their extension in it: x.jpg.png, x.png.png. Images are
found by extension (jpg jpeg png bmp tif tiff webp, any case) and decoded by content;
hidden files and folders, other files and OUT itself are left alone. Outputs appear
complete or not at all: Ctrl-C finishes the batch in hand, and --skip-existing later
does exactly what is missing. A summary line (done, skipped, failed) ends every run.
Images over 200 megapixels (see DAV2_MAX_MEGAPIXELS) or longer than 16:1 are refused.
""" + "\n" + DEPTH_MEANING + "\n\n" + EXIT_CODES)
@click.argument("source", metavar="DIR|LIST.txt")
@click.option("-o", "--output", default=None, metavar="OUT",
              help="Output folder, mirroring DIR's tree. Default: DIR_depth/ beside DIR (LIST_depth/ beside a "
                   "list).")
@depth_options
@space_options
@click.option("--recursive/--no-recursive", default=True, show_default=True,
              help="Include images in subfolders.")
# measured on a 2-core CPU, vits at --input-size 280: 4 costs about half of 1 per image, and 8 is no faster
@click.option("--batch-size", type=click.IntRange(1, 256), default=4, show_default=True, metavar="N",
              help="Images of one size per model call; larger uses more memory.")
@click.option("--skip-existing", is_flag=True,
              help="Leave outputs that already exist untouched (finish an interrupted run); counted as skipped.")
@click.option("--shard", default=None, metavar="K/N", callback=shard_option,
              help="Do only inputs K, K+N, K+2N, ... (1-based) of the sorted list, so N machines (K = 1..N) "
                   "cover the folder exactly once without coordination.")
@click.option("--progress", "progress", flag_value=True, default=None,
              help="Show progress even when stderr is not a terminal.")
@click.option("-q", "--quiet", "progress", flag_value=False, help="No progress bar.")
def folder(source, output, fmt, recursive, batch_size, skip_existing, shard, progress, **values):
    """Depth maps for every image in folder DIR (recursively) or listed in LIST.txt."""
    from dav2_cli.jobs.images import JobOptions, run_folder

    job = JobOptions(batch_size=batch_size, shard=shard, skip_existing=skip_existing, name_outputs=values["verbose"],
                     progress=sys.stderr.isatty() if progress is None else progress)
    run_job(lambda: run_folder(source, output, make_options(fmt or "color", **values), job, recursive=recursive))


def fps_option(ctx, param, value):
    if value is None:
        return None
    from dav2_cli.media.video_probe import parse_rate

    try:
        return parse_rate(value)
    except UserError as exc:
        raise click.BadParameter(str(exc)) from None


VIDEO_FORMATS_HELP = """\b
Formats: color/gray: a depth video by OUT's extension: .mp4 (H.264), .webm (VP9),
.mkv (lossless FFV1); same frame count, size and exact frame rate as IN (an odd side
gets one repeated edge row/column in .mp4), --side-by-side doubles the width.
gray16: lossless 16-bit .mkv on one range for the whole video (two passes), with
OUT.json: depth = lo + v/65535*(hi-lo); larger v = nearer for relative models,
farther for metric ones. npy/exr/tiff: -o DIR gets DIR/frame_000000.npy, ... (float32,
the model's values, numbered in output order); ply: one point cloud per frame likewise.
--near/--far and --align-to scale the whole video once. Audio is copied into color/gray videos.

\b
Ctrl-C or SIGTERM: reading stops, the frames in flight are finished and OUT is closed as
a valid, shorter video (a frame folder keeps the frames done), exit 130/143; a second
Ctrl-C stops at once and leaves no unfinished video.
A damaged IN: depth for every frame that decodes, one error line, exit 1."""


@main.command(epilog="""\b
Examples:
  dav2 video clip.mp4                        # clip_depth.mp4 beside it, with clip's audio
  dav2 video clip.mp4 -o depth.webm --side-by-side --start 10 --end 20
  dav2 video clip.mp4 -o depth.mkv --format gray16    # + depth.mkv.json
  dav2 video clip.mp4 -o frames/ --format npy --every 5
  dav2 video renders/ --fps 24 -o depth.mp4          # numbered images as one video
""" + "\n" + VIDEO_FORMATS_HELP + "\n\n" + DEPTH_MEANING + "\n\n" + EXIT_CODES)
@click.argument("source", metavar="IN")
@click.option("-o", "--output", default=None, metavar="OUT|DIR",
              help="Output video (.mp4, .webm, .mkv) or, for npy/exr/tiff/ply, a folder. "
                   "Default: IN_depth.mp4 (gray16: .mkv; raw: a folder IN_depth/) beside IN.")
@depth_options
@space_options
@click.option("--normalize", type=click.Choice(("ema", "frame", "global")), default=None,
              help="How depth is mapped to brightness. ema (default): each frame's 1-99th percentiles, "
                   "smoothed over time: one pass, no flicker, adapts slowly after a scene cut. global: one "
                   "range for the whole video: perfectly stable, but the model runs twice (2x the time). "
                   "frame: each frame's own min/max: most contrast, flickers. gray16 always uses global.")
@click.option("--start", type=FiniteFloat(min=0), default=0.0, metavar="SECONDS",
              help="Skip the frames before this time.")
@click.option("--end", type=FiniteFloat(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Stop before the frame at this time.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, metavar="N",
              help="Write at most N frames.")
@click.option("--every", type=click.IntRange(1, 1000), default=1, show_default=True, metavar="N",
              help="Keep every Nth frame; the output's frame rate is IN's divided by N (exactly).")
@click.option("--fps", default=None, metavar="RATE", callback=fps_option,
              help="Frame rate to use when IN states none (or to override it): 25, 29.97, 30000/1001.")
@click.option("--batch-size", type=click.IntRange(1, 64), default=2, show_default=True, metavar="N",
              help="Frames per model call.")
@click.option("--no-audio", is_flag=True, help="Do not copy IN's audio.")
@click.option("--scene-cuts", type=click.Choice(("on", "off")), default="on", show_default=True,
              help="Find hard cuts (colour histograms of consecutive frames): Video Depth Anything starts a new "
                   "chain of windows there and the ema brightness range starts again, so nothing is carried "
                   "across a cut.")
@click.option("--overwrite", is_flag=True,
              help="npy/exr/tiff/ply: replace the frames an earlier run left in the -o folder (without it, such a "
                   "folder is refused, so two runs never mix).")
@click.option("--progress", "progress", flag_value=True, default=None,
              help="Show progress even when stderr is not a terminal.")
@click.option("-q", "--quiet", "progress", flag_value=False, help="No progress bar.")
def video(source, output, fmt, normalize, start, end, max_frames, every, fps, batch_size, no_audio, scene_cuts,
          overwrite, progress, **values):
    """Depth video (or per-frame depth files) for video IN, streamed frame by frame.

    IN may also be a folder of numbered images, taken in natural order as one video (give --fps)."""
    from dav2_cli.jobs.plan import video_format
    from dav2_cli.jobs.video import VideoOptions, run_video

    options = VideoOptions(start=start, end=end, max_frames=max_frames, every=every, fps=fps, normalize=normalize,
                           batch_size=batch_size, audio=not no_audio, overwrite=overwrite,
                           scene_cuts=scene_cuts == "on", name_outputs=values["verbose"] or sys.stderr.isatty(),
                           progress=sys.stderr.isatty() if progress is None else progress)
    run_job(lambda: run_video(source, output, make_options(video_format(fmt), **values), options))


for _param in video.params:  # the shared --format help describes pictures; say what each means for a video
    if _param.name == "fmt":
        _param.help = ("color (default) or gray: a depth video; gray16: a 16-bit .mkv of depth values; "
                       "npy/exr/tiff: a folder of float32 frames; ply: a folder of point clouds (see below). "
                       "png = color.")


MODELS_EPILOG = """\b
Names download upstream's .pth files once into the cache folder (`dav2 models path`:
$DAV2_HOME, else $XDG_CACHE_HOME/dav2, else ~/.cache/dav2). A file put there by hand
under upstream's name is used as is; models already in the HuggingFace cache (-hf repos)
are used where they are. Offline (no network, DAV2_OFFLINE=1 or HF_HUB_OFFLINE=1), the
error names the file, its URL and where to put it. Mirror: DAV2_HF_ENDPOINT or HF_ENDPOINT.
"""


@main.group(invoke_without_command=True, epilog=MODELS_EPILOG)
@click.pass_context
def models(ctx):
    """List the model names with size, licence, kind and cached path."""
    if ctx.invoked_subcommand is not None:
        return
    from dav2_cli.weights.catalog import list_models

    rows = [("NAME", "ALIAS", "KIND", "SIZE", "LICENCE", "CACHED")]
    for model in list_models():
        kind = model["label"]
        rows.append((model["name"], ",".join(model["aliases"]), kind, model["size"], model["licence"],
                     str(model["cached"]) if model["cached"] else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join([cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]))


@models.command("download")
@click.argument("name")
def models_download(name):
    """Fetch model NAME into the cache unless it is already on disk; print its path."""
    from dav2_cli.weights.catalog import (  # here, not at the top: `dav2 --help` skips urllib's import cost
        find_spec,
        resolve,
    )

    if find_spec(name) is None:
        raise click.BadParameter(f"{name!r} is not a model name (see `dav2 models`)", param_hint="NAME")

    def job():
        click.echo(resolve(name))
        return EXIT_OK

    run_job(job)


@models.command("path")
def models_path():
    """Print the cache folder that model names download into."""
    from dav2_cli.weights.catalog import dav2_home

    click.echo(dav2_home())


def pixel_option(ctx, param, value):
    """X,Y → (x, y), whole pixels of the depth map (0,0 is the top-left pixel)."""
    if value is None:
        return None
    try:
        x, y = (int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected X,Y in whole pixels, e.g. 320,240") from None
    if x < 0 or y < 0:
        raise click.BadParameter(f"{value!r}: pixels count from 0,0 at the top left")
    return x, y


@main.command(epilog="""\b
Examples:
  dav2 info depth.png                       # model, kind, unit, lo/hi, size, intrinsics...
  dav2 info depth.png --at 320,240          # the depth at column 320, row 240
  dav2 info cloud.ply                       # the PLY header's description and axes
  dav2 info depth.mkv                       # a gray16 video's description (depth.mkv.json)

\b
Reads PNG (text chunks, or OUT.json beside a gray16 PNG), JPEG (comment), EXR (header
attributes), TIFF (ImageDescription), npy (OUT.npy.json), PLY (header comments) and the
.json beside a gray16 video. Pictures are turned back into depth with their lo/hi.
""" + "\n" + EXIT_CODES)
@click.argument("file", metavar="FILE")
@click.option("--at", default=None, metavar="X,Y", callback=pixel_option,
              help="Also print the depth at this pixel (column X, row Y, from 0).")
def info(file, at):
    """Print what a file dav2 wrote holds: model, kind, unit, range, size, camera, alignment."""
    from dav2_cli.jobs.info import run_info

    run_job(lambda: run_info(file, at, echo=click.echo))


def image_size_option(ctx, param, value):
    """WIDTHxHEIGHT → (height, width)."""
    try:
        width, height = (int(side) for side in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected WIDTHxHEIGHT, e.g. 756x504") from None
    if not (14 <= width <= 16384 and 14 <= height <= 16384):
        raise click.BadParameter(f"{value!r}: each side must be 14 to 16384 pixels")
    return height, width


@main.command(epilog="""\b
Examples:
  dav2 bench                                # random-init vits, 756x504, every precision and backend here
  dav2 bench -m vitb --image-size 1920x1080 --repeat 5
""")
@click.option("-m", "--model", default=None, metavar="NAME|PATH",
              help="Model name or checkpoint. Default: random-init vits (no download; speed ignores the values).")
@click.option("--input-size", type=click.IntRange(28, 4200), default=504, show_default=True,
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
