"""What every command shares: how to run the model and draw its depth, loading it, and reporting a failure."""

import sys
from dataclasses import dataclass

from dav2_cli.depth.sky import DEFAULT_SKY
from dav2_cli.jobs.stereo import StereoOptions


@dataclass(frozen=True)
class SpaceOptions:
    """How depth becomes distances and points: the camera, relative-to-metric conversion, and the point cloud.

    Every field defaults to "not given"; `jobs.measure` decides what each absence means (documented in
    docs/3d.md) and refuses combinations that cannot work before any model loads.
    """

    fx: float | None = None
    fy: float | None = None
    cx: float | None = None
    cy: float | None = None
    hfov: float | None = None  # degrees, horizontal
    near: float | None = None  # metres: where a relative map's largest value is put
    far: float | None = None  # metres: where its smallest value is put
    align_to: str | None = None  # a CSV of x,y,depth_m[,frame]
    mesh: bool = False
    edge_threshold: float | None = None  # None: geometry.DEFAULT_EDGE_THRESHOLD
    stride: int | None = None
    max_points: int | None = None
    y_up: bool = False

    def cloud_only(self) -> list[str]:
        """The flags given that only a point cloud uses."""
        given = {"--mesh": self.mesh, "--edge-threshold": self.edge_threshold is not None,
                 "--stride": self.stride is not None, "--max-points": self.max_points is not None,
                 "--y-up": self.y_up}
        return [flag for flag, used in given.items() if used]


@dataclass(frozen=True)
class DepthOptions:
    """How to run the model and how to draw or store its depth; shared by every command."""

    model: str = "vits"
    device: str = "auto"
    dtype: str = "auto"
    backend: str = "auto"  # torch, openvino, or auto: the faster of the two here (runtime/auto_backend.py)
    input_size: int = 504
    max_depth: float | None = None
    fmt: str = "color"
    cmap: str = "Spectral_r"
    invert: bool = False
    side_by_side: bool = False
    verbose: bool = False
    space: SpaceOptions = SpaceOptions()
    stereo: StereoOptions | None = None  # --stereo: the input seen by two eyes instead of its depth picture
    sky: str = DEFAULT_SKY  # --sky: what becomes of a sky-head model's sky pixels (depth/sky.py)


def load_job_model(options: DepthOptions, *, repeated: bool = True):
    """The job's model; with --verbose, one line on stderr saying what was loaded, from where, and how it runs.

    `repeated`: the model will run more than once (a folder, a video), so the memory each run frees is kept for
    the next; a single image gains nothing from that and would hold ~25 MB more at its peak.
    """
    import cv2

    from dav2_cli.runtime.allocator import keep_freed_memory
    from dav2_cli.runtime.device import model_device
    from dav2_cli.runtime.loading import load_model

    cv2.setNumThreads(1)  # the pipeline's threads run beside torch's pool: see "Threads" in runtime/loading.py
    if repeated:
        keep_freed_memory()  # no page faults on every batch's memory: see allocator.py
    model = load_model(options.model, options.device, options.dtype, max_depth=options.max_depth,
                       backend=options.backend)
    if options.verbose:
        model.say_when_timing = True  # where auto times the backends (runtime/auto_backend.py)
        print(f"dav2: {loaded_model_line(model, model_device(model))}", file=sys.stderr, flush=True)
    return model


def loaded_model_line(model, device) -> str:
    """What -v says was loaded: which network (a video model by its family's name), what its values mean, from
    where, and how it runs."""
    config = model.config
    name = f"Video Depth Anything {config.encoder}" if is_video_model(model) else config.encoder
    meaning = "metric: meters, larger = farther" if config.metric else "relative: inverse depth, larger = nearer"
    if config.max_depth is not None:  # metric Video Depth Anything outputs metres with no fixed limit
        meaning += f", max_depth {config.max_depth:g} m"
    backend = {"openvino": " on OpenVINO", "onnxruntime": " on onnxruntime",
               "auto": " (torch or OpenVINO, whichever is timed faster here)"}
    return (f"model {name} ({meaning}) from {model.source} on {device} "
            f"in {model.precision}{backend.get(getattr(model, 'backend', 'torch'), '')}")


VIDEO_MODEL_FOR_IMAGES = ("{model} is a Video Depth Anything model, which needs a sequence of frames: use it with "
                          "`dav2 video` (a folder of numbered images works too), or a per-image model such as vits")


def is_video_model(model) -> bool:
    """Video Depth Anything (windows of frames in, consistent depth out) rather than a per-image model."""
    from dav2_cli.model import VideoModelConfig

    return isinstance(model.config, VideoModelConfig)


def note(message: str) -> None:
    """One line on stderr, written around any progress bar so neither garbles the other."""
    from tqdm import tqdm

    tqdm.write(f"dav2: {message}", file=sys.stderr)
    sys.stderr.flush()


def report(message: str) -> None:
    """One error line on stderr naming the file and the reason."""
    note(f"error: {message}")
