"""What the written values mean: relative depth made metric, the camera it was seen through, and the description
every output carries.

Decided once per job from the command line and the model's kind (read off its name or config, never by loading
it), so a command that cannot give distances (a point cloud from a relative model with neither --near/--far nor
--align-to, say) stops with a usage error before any model loads or any file is written. Then applied to each
image or frame: convert, describe, encode.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dav2_cli.depth import alignment as align
from dav2_cli.depth.sizing import model_size

from dav2_cli.outputs import formats, metadata, render
from dav2_cli.outputs.ply import CloudRequest
from dav2_cli.errors import UsageError, UserError
from dav2_cli.depth.camera import DEFAULT_HFOV_DEG, resolve_intrinsics
from dav2_cli.depth.point_cloud import DEFAULT_EDGE_THRESHOLD, SATURATED_FRACTION, CloudOptions
from dav2_cli.outputs.atomic import STDIO
from dav2_cli.media.images import read_input_bytes
from dav2_cli.jobs.options import DepthOptions, note
from dav2_cli.jobs.plan import points_per_input
from dav2_cli.weights.catalog import METRIC_DEPTH, SKY_FAMILIES, larger_is_farther, output_kind


@dataclass
class Measure:
    """One job's rules for turning the model's output into the values written, and for describing them."""

    options: DepthOptions
    metric: bool | None  # the model's kind; None until known (see `use_model`)
    max_depth: float | None
    points: list | None = None  # from --align-to
    fixed: align.DisparityToDepth | None = None  # a video's conversion, fitted once and used for every frame
    points_by_source: dict[str, list] | None = None  # --align-to rows per input; None: all rows are the one's
    family: str | None = None  # the model's, for the metadata: looked up when first needed ("": unknown)
    kind: str | None = None  # what the model's raw numbers are (catalog.output_kind); None until known
    canonical_focal: float | None = None  # DA3 metric: metres = focal at the network's input * output / this
    sky_head: bool = False  # the model scores sky (DA3): --sky applies (depth/sky.py)
    _assumption_said: bool = field(default=False, repr=False)

    def family_name(self) -> str:
        if self.family is None:
            from dav2_cli.weights.kinds import model_family

            self.family = model_family(self.options.model)
        return self.family

    def match_inputs(self, inputs: list[tuple[str, str]]) -> None:
        """Give each input its own --align-to rows (see plan.points_per_input), before any work."""
        if self.points is not None:
            self.points_by_source = points_per_input(self.points, inputs, self.options.space.align_to)

    def points_for(self, name: str) -> list:
        if self.points_by_source is None:
            return self.points
        points = self.points_by_source.get(name)
        if not points:
            raise UserError(f"{name}: no rows of {self.options.space.align_to} name this image (its image column "
                            f"takes the file name or the path relative to the input folder)")
        return points

    def use_model(self, config) -> None:
        """Take the kind and range from the loaded model itself, which has the last word."""
        self.metric, self.max_depth = config.metric, config.max_depth
        self.kind = output_kind(self.family_name(), config.metric)
        self.canonical_focal = config.canonical_focal
        self.sky_head = config.sky_head

    @property
    def sky_mode(self) -> str | None:
        """--sky as the metadata records it: for a sky-head model only, since it changes nothing for others."""
        return self.options.sky if self.sky_head else None

    @property
    def raw_farther(self) -> bool:
        """Whether the model's own numbers grow with distance (depth, metric or not) rather than nearness."""
        return larger_is_farther(self.kind) if self.kind is not None else bool(self.metric)

    @property
    def converts(self) -> bool:
        return self.options.space.near is not None or self.points is not None

    @property
    def distances(self) -> bool:
        """Whether the values written grow with distance (metres, or a depth model's unitless depth) rather than
        being inverse depth: pictures, stereo and 3D read the direction here."""
        return self.raw_farther or self.converts

    def model_values(self, raw_hw, name: str, focal_35mm: float | None = None):
        """The model's output as the job reads it: DA3 metric's made metres by its focal rule, metres =
        focal_px * output / 300, the focal length in pixels of the network's input (the image's focal from
        --fx/--fy, --hfov, EXIF or the assumed field of view, scaled to the input grid; DA3 averages fx and fy);
        any other model's as it is. Returns (values, the focal record for the metadata or None)."""
        if self.canonical_focal is None:
            return raw_hw, None
        height, width = np.shape(raw_hw)
        intrinsics = self.intrinsics(width, height, name, focal_35mm, needed=True)
        net_h, net_w = model_size((height, width), self.options.input_size)
        focal_net = (intrinsics.fx * net_w / width + intrinsics.fy * net_h / height) / 2
        record = {"rule": f"metres = focal_px * output / {self.canonical_focal:g}", "focal_px": focal_net,
                  "network_input": [net_w, net_h], "image_focal_px": [intrinsics.fx, intrinsics.fy],
                  "source": intrinsics.source, "note": intrinsics.note}
        return np.asarray(raw_hw, dtype=np.float32) * np.float32(focal_net / self.canonical_focal), record

    def conversion(self, raw_hw, name: str, frame: int | None = None,
                   focal_35mm: float | None = None) -> align.DisparityToDepth | None:
        """The line from the model's disparity to 1/Z for this map: near/far, or a fit to the known points.

        A video (`frame` given) keeps the first one it makes, so every frame is scaled alike.
        """
        if not self.converts:
            return None
        if self.fixed is not None:
            return self.fixed
        raw_hw, _ = self.model_values(raw_hw, name, focal_35mm)
        disparity = align.model_disparity(raw_hw, self.raw_farther)
        space = self.options.space
        if space.near is not None:
            conversion = align.from_near_far(disparity, space.near, space.far)
            detail = f"inverse depth spread over {space.near:g}..{space.far:g} m (--near/--far)"
        else:
            points = self.points_for(name)
            if frame is not None and align.first_frame_with_points(points) is not None:
                points = [p for p in points if p.frame == align.first_frame_with_points(points)]
            conversion = align.fit_points(disparity, points, space.align_to)
            fit = conversion.details
            detail = (f"aligned to {fit['points']} points of {space.align_to}: 1/depth = {conversion.scale:.6g} "
                      f"* {align.disparity_name(self.raw_farther)} + {conversion.shift:.6g}, RMS relative error "
                      f"{100 * fit['rms_relative_error']:.2g}% (max {100 * fit['max_relative_error']:.2g}%)")
        if self.options.verbose:
            note(f"{name}: {detail}")
        if frame is not None:
            self.fixed = conversion
        return conversion

    def values(self, raw_hw, conversion: align.DisparityToDepth | None, name: str = "",
               focal_35mm: float | None = None) -> np.ndarray:
        """What is written: the model's values (DA3 metric's in metres), or metres when converted (NaN where a
        metric model saturated)."""
        raw_hw, _ = self.model_values(raw_hw, name, focal_35mm)
        if conversion is None:
            return raw_hw
        disparity = align.model_disparity(raw_hw, self.raw_farther)
        if self.metric and self.max_depth is not None:
            disparity[np.asarray(raw_hw) >= SATURATED_FRACTION * self.max_depth] = np.nan
        return conversion.apply(disparity)

    def frame_values(self, raw_hw, name: str, frame: int) -> np.ndarray:
        """A video frame's values as written: converted with the video's one conversion when there is one."""
        return self.values(raw_hw, self.conversion(raw_hw, name, frame), name)

    def intrinsics(self, width: int, height: int, name: str, focal_35mm: float | None = None, needed: bool = False):
        """The camera for one image; says once per job on stderr when it had to be assumed for a point cloud or
        for what `needed` it (DA3 metric's metres)."""
        space = self.options.space
        intrinsics = resolve_intrinsics(width, height, fx=space.fx, fy=space.fy, cx=space.cx, cy=space.cy,
                                        hfov=space.hfov, focal_35mm=focal_35mm)
        needed = needed or self.options.fmt in formats.CLOUD_FORMATS
        if intrinsics.source == "assumed" and needed and not self._assumption_said:
            self._assumption_said = True
            note(f"{name}: no focal length (no --fx/--fy, --hfov or EXIF FocalLengthIn35mmFilm); assuming a "
                 f"{DEFAULT_HFOV_DEG:g} degree horizontal field of view (fx = fy = {intrinsics.fx:.1f} px at "
                 f"{width}x{height}) "
                 f"for it and any other such input; give --hfov or --fx/--fy for true geometry")
        return intrinsics

    def described(self, raw_hw, *, name: str, focal_35mm: float | None = None, frame: int | None = None,
                  cloud: bool = False) -> tuple:
        """(the values written, their description, the intrinsics, the conversion) for one depth map."""
        options = self.options
        conversion = self.conversion(raw_hw, name, frame, focal_35mm)
        values = self.values(raw_hw, conversion, name, focal_35mm)
        _, focal = self.model_values(raw_hw, name, focal_35mm)
        height, width = values.shape
        intrinsics = self.intrinsics(width, height, name, focal_35mm)
        known = cloud or focal is not None or intrinsics.source != "assumed"
        description = metadata.describe(
            model=str(options.model), metric=self.metric, input_size=options.input_size, width=width,
            height=height, source=name, max_depth=self.max_depth, conversion=conversion,
            intrinsics=intrinsics if known else None, family=self.family_name(), kind=self.kind, focal=focal,
            sky=self.sky_mode)
        return values, description, intrinsics, conversion

    def encode(self, raw_hw, image_bgr, *, name: str, destination: str, focal_35mm: float | None = None,
               frame: int | None = None, value_range=None, sky_hw=None) -> list[tuple[str, bytes]]:
        """Every file one depth map becomes, [(suffix, bytes)], described; see render.encode_outputs. `sky_hw`:
        a sky-head model's sky mask, written with `--sky mask`; point clouds leave its points out unless
        `--sky keep` (sky has no surface to place them on)."""
        options = self.options
        cloud = options.fmt in formats.CLOUD_FORMATS
        values, description, intrinsics, conversion = self.described(raw_hw, name=name, focal_35mm=focal_35mm,
                                                                      frame=frame, cloud=cloud)
        if options.stereo is not None:
            from dav2_cli.jobs.stereo import encode_stereo

            return encode_stereo(self, values, image_bgr, description, destination)
        request = None
        mask_hw = sky_hw if options.sky == "mask" else None
        if mask_hw is not None:
            description["sky_mask"] = formats.BY_NAME[formats.canonical_format(options.fmt)].sky_mask
        if cloud:
            if sky_hw is not None:
                description["sky_points"] = "kept" if options.sky == "keep" else "dropped"
                if options.sky != "keep":
                    values = np.where(sky_hw, np.float32(np.nan), values)  # not a distance: no point (point_cloud.py)
            space = options.space
            edge = DEFAULT_EDGE_THRESHOLD if space.edge_threshold is None else space.edge_threshold
            request = CloudRequest(intrinsics, image_bgr, CloudOptions(
                edge_threshold=edge, stride=space.stride or 1, max_points=space.max_points, mesh=space.mesh,
                y_up=space.y_up), None if conversion is not None else self.max_depth)
        suffix = Path(destination).suffix.lower() if destination != STDIO else None
        outputs = render.encode_outputs(values, options.fmt, ext=suffix, cmap=options.cmap, invert=options.invert,
                                     metric=self.distances, value_range=value_range,
                                     image_bgr=image_bgr if options.side_by_side else None,
                                     description=description, cloud=request, sky_hw=mask_hw)
        return outputs


def plan_measure(options: DepthOptions) -> Measure:
    """Check the 3D, conversion and --sky flags against --format and the model's kind; read --align-to's points."""
    space, fmt = options.space, formats.canonical_format(options.fmt)
    if space.hfov is not None and (space.fx is not None or space.fy is not None):
        raise UsageError("--hfov and --fx/--fy both set the focal length; give one of them")
    if (space.near is None) != (space.far is None):
        raise UsageError("--near and --far go together: the distances the map's nearest and farthest values get")
    if space.near is not None and space.align_to is not None:
        raise UsageError("--near/--far and --align-to both make depth metric; give one of them")
    if space.near is not None and not space.near < space.far:
        raise UsageError(f"--near {space.near:g} --far {space.far:g}: near must be less than far")
    if options.sky == "mask":  # a model without a sky head ignores --sky, mask or not (depth/sky.py)
        from dav2_cli.weights.kinds import model_family

        if model_family(options.model) in SKY_FAMILIES:
            formats.check_sky_mask(fmt, options.sky, options.stereo is not None)
    if fmt not in formats.CLOUD_FORMATS and space.cloud_only():
        raise UsageError(f"{', '.join(space.cloud_only())}: only for point clouds; add --format ply (or glb)")
    metric = max_depth = kind = None
    if (fmt in formats.CLOUD_FORMATS or space.near is not None or space.align_to is not None
            or options.max_depth is not None):
        # only these depend on the kind (--max-depth: whether the model takes one); otherwise the model is not
        # even looked up (a finished --skip-existing job never touches it); torch is imported only then
        from dav2_cli.weights.kinds import model_family, model_kind

        metric, max_depth = model_kind(options.model, options.max_depth)
        kind = output_kind(model_family(options.model), metric)
    if metric and space.near is not None:
        raise UsageError(f"--near/--far spread a relative model's inverse depth; {options.model} is a metric model "
                         f"and already gives meters (--align-to can correct its scale)")
    if fmt in formats.CLOUD_FORMATS and not metric and space.near is None and space.align_to is None:
        raise UsageError(f"--format {fmt} needs distances, but {options.model} is a relative model ({kind} "
                         f"with unknown scale); add --near N --far F (meters), --align-to points.csv "
                         f"(x,y,depth_m rows), or use a metric model (e.g. -m metric-indoor-vits)")
    points = None
    if space.align_to is not None:
        text = read_input_bytes(space.align_to)
        try:
            points = align.parse_points(text.decode("utf-8-sig"), space.align_to)
        except UnicodeDecodeError:
            raise UserError(f"{space.align_to}: not a UTF-8 text file of x,y,depth_m rows") from None
    return Measure(options, metric, max_depth, points, kind=kind)
