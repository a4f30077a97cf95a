"""The option groups several commands share: the model and how its depth is drawn, distances and point clouds,
and progress. One declaration each, so a flag reads and behaves alike on every command."""

import sys

import click

from dav2_cli.cli.params import FiniteFloat, device_option, model_option
from dav2_cli.depth.input_size import DEFAULT_INPUT_SIZE, MAX_INPUT_SIZE, MIN_INPUT_SIZE, SIZE_MULTIPLE
from dav2_cli.depth.sky import DEFAULT_SKY, SKY_MODES
from dav2_cli.outputs.colormaps import CMAPS
from dav2_cli.outputs.formats import FORMAT_ALIASES, FORMATS
from dav2_cli.weights.catalog import DEFAULT_MODEL, METRIC_DATASET_HINT  # rows only: no torch, no disk

MAX_IMAGE_SIDE = 1 << 20  # beyond any image OpenCV decodes: bounds for pixel counts, so numpy never overflows

FORMAT_CHOICES = (*FORMATS, *FORMAT_ALIASES)
CMAP_CHOICES = CMAPS

INPUT_SIZE_RANGE = click.IntRange(MIN_INPUT_SIZE, MAX_INPUT_SIZE)


def _apply(command, options):
    for option in reversed(options):
        command = option(command)
    return command


# which model runs, and how: shared by the depth commands and `dav2 models prepare`, which readies the model
# for the same settings
RUNNING_OPTIONS = [
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
    click.option("--backend", type=click.Choice(("auto", "torch", "openvino", "onnxruntime")), default="auto",
                 show_default=True, envvar="DAV2_BACKEND", show_envvar=True,
                 help="What runs the model. openvino (CPU; float32 or bfloat16): needs "
                      "`pip install \"dav2-cli[openvino]\"`. onnxruntime (CPU, or its CUDA/TensorRT/CoreML "
                      "providers by --device; float32, float16 on GPUs): runs dav2's own ONNX export, made "
                      "once per model and cached; needs `pip install \"dav2-cli[onnx]\"`. "
                      "auto: on the CPU with OpenVINO installed, "
                      "whichever of the two is faster on this machine, timed once per model and input size range and "
                      "remembered in the cache folder (the first run of a model converts it for OpenVINO, "
                      "a few seconds, once); "
                      "otherwise torch. The DAV2_BACKEND environment variable sets it for every command; "
                      "--backend overrides it."),
    click.option("--max-depth", type=FiniteFloat(min=0, min_open=True), default=None,
                 help=f"Metric checkpoints: override max depth in meters (default from the name: "
                      f"{METRIC_DATASET_HINT})."),
]


def running_options(command):
    """--device, --dtype, --backend and --max-depth."""
    return _apply(command, RUNNING_OPTIONS)


def depth_options(command):
    """The model and rendering options every command shares."""
    return _apply(command, [
        click.option("-m", "--model", default=DEFAULT_MODEL, show_default=True, metavar="NAME|PATH",
                     callback=model_option,
                     help="Model name (see `dav2 models`) or a checkpoint: upstream .pth, HuggingFace folder "
                          "or .safetensors. A bare word is a name first: write ./vits for a folder called vits."),
        click.option("--input-size", type=INPUT_SIZE_RANGE, default=DEFAULT_INPUT_SIZE, show_default=True,
                     help=f"Shorter side the model sees; sides are rounded to multiples of {SIZE_MULTIPLE} "
                          f"(upstream's default 518 becomes 532; {DEFAULT_INPUT_SIZE} is the nearest below)."),
        *RUNNING_OPTIONS,
        click.option("--sky", type=click.Choice(SKY_MODES), default=DEFAULT_SKY, show_default=True,
                     help="Sky pixels of a model with a sky head (Depth Anything 3): keep (the network's raw "
                          "depth), far (each image's farthest non-sky depth), mask (far, and the mask written "
                          "with npy/exr/tiff: docs/formats.md). ply/glb leave sky points out unless keep. Models "
                          "without a sky head: no effect."),
        click.option("--format", "fmt", type=click.Choice(FORMAT_CHOICES), default=None,
                     help="color (8-bit colormapped PNG, default), gray (8-bit), gray16 (16-bit PNG, full "
                          "0-65535 range, + OUT.json with lo/hi), npy/exr/tiff (float32 raw values), ply (a "
                          "coloured point cloud in meters; see the 3D options), glb (a textured mesh in meters, binary "
                          "glTF for browsers and Blender; same 3D options). png = color."),
        click.option("--cmap", type=click.Choice(CMAP_CHOICES), default="Spectral_r", show_default=True,
                     help="Colormap for --format color."),
        click.option("--invert", is_flag=True, help="Draw far as bright instead of near."),
        click.option("--side-by-side", is_flag=True, help="Put the input picture left of the depth picture."),
        click.option("-v", "--verbose", is_flag=True,
                     help="Say which model was loaded (encoder, relative/metric, max depth, file, device, "
                          "precision) on stderr."),
    ])


SPACE_FIELDS = ("fx", "fy", "cx", "cy", "hfov", "near", "far", "align_to", "mesh", "edge_threshold", "stride",
                "max_points", "y_up")


def space_options(command):
    """Distances and point clouds: the camera, relative-to-metric conversion, and what a cloud keeps."""
    positive = FiniteFloat(min=0, min_open=True)
    return _apply(command, [
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
                          "weight, image). Several inputs or a folder need the image column: which input each "
                          "row was measured on (its file name, or its path relative to the input folder); each "
                          "image is fitted to its own rows. A video fits once, on the first frame named. -v prints "
                          "the fit's error."),
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
    ])


def progress_options(command):
    """--progress / -q, alike on every command that works through several inputs or frames."""
    return _apply(command, [
        click.option("--progress", "progress", flag_value=True, default=None,
                     help="Show progress even when stderr is not a terminal."),
        click.option("-q", "--quiet", "progress", flag_value=False, help="No progress bar."),
    ])


def show_progress(progress: bool | None) -> bool:
    """A bar by default only where someone watches: stderr is a terminal."""
    return sys.stderr.isatty() if progress is None else progress


def make_options(fmt, **values):
    from dav2_cli.cli.stereo_flags import STEREO_FIELDS
    from dav2_cli.jobs.options import DepthOptions, SpaceOptions
    from dav2_cli.jobs.stereo import check_stereo, stereo_options

    space = SpaceOptions(**{name: values.pop(name) for name in SPACE_FIELDS})
    stereo = stereo_options(*(values.pop(name, None) for name in STEREO_FIELDS))
    options = DepthOptions(fmt=fmt, space=space, stereo=stereo, **values)
    check_stereo(options)
    return options
