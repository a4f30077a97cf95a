"""The catalogue: every model name dav2 knows, one row each, and the training data behind metric ranges.

A row says where upstream publishes the file (HuggingFace repo and file name), what its numbers mean (relative
or metric, and the metric range), its family and its licence. Adding a model family is rows here plus a reader
for its layout (see checkpoint.py); where the rows' files are looked for and how they are fetched live in
lookup.py, locations.py and download.py, and need no change.

Distill-Any-Depth and Depth-Anything-AC are DA-V2's network with other weights: relative inverse depth, run
exactly as DA-V2 is. Distill-Any-Depth's own demo resizes every image to 700x700 without keeping its aspect;
dav2 keeps DA-V2's aspect-preserving sizing on the 14-pixel grid for every family, so its maps follow the image's
shape (their raw scale differs between sizes and from DA-V2's, as any relative model's may).

Depth Anything 3's mono and metric networks are DA-V2-L's with a few differences (model/config.py) and another
output: depth, larger = farther, not inverse depth. What a model's numbers mean is said here alone
(`output_kind`), for names, files and loaded models alike; pictures, stereo, 3D and alignment ask it.

Pure data: nothing here touches the disk or the network, so `dav2 models` and `-m` checks stay cheap.
"""

from dataclasses import dataclass

DEFAULT_MODEL = "vits"
DAV2_FAMILY = "Depth-Anything V2"
VIDEO_FAMILY = "Video Depth Anything"  # one depth map per window of frames, not per image
DISTILL_FAMILY = "Distill-Any-Depth"
AC_FAMILY = "Depth-Anything-AC"
DA3_FAMILY = "Depth Anything 3"

# What a model's numbers mean. Every family but DA3 outputs inverse depth when relative.
INVERSE_DEPTH = "inverse depth"  # larger = nearer, no unit, unknown scale and shift
RELATIVE_DEPTH = "relative depth"  # larger = farther, no unit, unknown scale
METRIC_DEPTH = "metric depth"  # metres, larger = farther
DEPTH_FAMILIES = (DA3_FAMILY,)  # families whose relative output is depth itself
SKY_FAMILIES = (DA3_FAMILY,)  # families whose networks have a sky head: --sky applies to them alone
DA3_CANONICAL_FOCAL = 300.0  # DA3 metric: metres = focal_px * output / 300, the focal at the network's input


def output_kind(family: str, metric: bool) -> str:
    """The one rule for what a model's raw numbers are: its family and whether it is metric decide."""
    if metric:
        return METRIC_DEPTH
    return RELATIVE_DEPTH if family in DEPTH_FAMILIES else INVERSE_DEPTH


def larger_is_farther(kind: str) -> bool:
    return kind != INVERSE_DEPTH


@dataclass(frozen=True)
class MetricDataset:
    """A metric training set: upstream names its checkpoints after it and scales their sigmoid by `max_depth`."""
    key: str  # as it appears in upstream's file names
    place: str  # the word our model names use
    max_depth: float  # metres


METRIC_DATASETS = (MetricDataset("hypersim", "indoor", 20.0), MetricDataset("vkitti", "outdoor", 80.0))
METRIC_DATASET_HINT = ", ".join(f"{d.max_depth:g} for {d.place}/{d.key}" for d in METRIC_DATASETS)


def metric_dataset(file_name: str) -> MetricDataset | None:
    """The training set a metric checkpoint's file name names (upstream's only record of its range)."""
    name = file_name.lower()
    return next((dataset for dataset in METRIC_DATASETS if dataset.key in name), None)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    aliases: tuple[str, ...]
    encoder: str
    kind: str  # "relative" (inverse depth, no unit) or "metric" (meters)
    repo: str  # upstream's HuggingFace repo holding `filename`
    filename: str  # upstream's file name: relative/metric and the dataset are read off it
    hf_repo: str  # the transformers-layout copy, used only when already in the HuggingFace cache ("": none)
    size: str
    licence: str
    family: str = DAV2_FAMILY
    companion: str = ""  # a file that must sit beside `filename` (DA3's config.json says mono or metric)
    local_folder: str = ""  # where under DAV2_HOME its files go, when `filename` alone would collide

    @property
    def output_kind(self) -> str:
        return output_kind(self.family, self.kind == "metric")

    @property
    def max_depth(self) -> float | None:
        """A metric DA-V2's range, from its file name: the one rule `--max-depth` defaults to (VDA has none)."""
        if self.kind != "metric" or self.family != DAV2_FAMILY:
            return None
        return metric_dataset(self.filename).max_depth

    @property
    def label(self) -> str:
        """The kind as a user should read it: what the numbers mean, and which family."""
        if self.family == VIDEO_FAMILY:
            return "video metric m" if self.kind == "metric" else "video relative"
        if self.family in DEPTH_FAMILIES:
            return "metric m (focal)" if self.kind == "metric" else "relative depth"
        return f"metric {self.max_depth:g} m" if self.kind == "metric" else "relative"

    @property
    def non_commercial(self) -> bool:
        """Whether the licence forbids commercial use: said on stderr when such a model is downloaded."""
        return "-NC" in self.licence.upper()


_DA = "depth-anything/"
_NC = "CC-BY-NC-4.0"
_V2 = "depth_anything_v2_"
_DISTILL = "xingyang1/Distill-Any-Depth"

# Relative licences: upstream's README and model cards (only Small is Apache-2.0). Metric DA-V2: each repo's card
# declares apache-2.0, Base and Large included. VDA: relative Small Apache-2.0, Base and Large CC-BY-NC-4.0,
# metric Small Apache-2.0; the metric Base and Large cards could not be read when this was written.
# Distill-Any-Depth: its weights repo's card declares apache-2.0 (its code is MIT); S and L have transformers copies
# (`-hf`), B has none. Depth-Anything-AC: CC-BY-NC-4.0 (its model card), fine-tuned from DA-V2 Small. DA3 MONO-LARGE
# and METRIC-LARGE: Apache-2.0, code and weights (the package's README table); the other DA3 models are multi-view.
CATALOGUE = (
    # name, aliases, encoder, kind, upstream repo, upstream file, transformers copy, size, licence[, family]
    ModelSpec("vits", ("small",), "vits", "relative", _DA + "Depth-Anything-V2-Small", _V2 + "vits.pth",
              _DA + "Depth-Anything-V2-Small-hf", "99 MB", "Apache-2.0"),
    ModelSpec("vitb", ("base",), "vitb", "relative", _DA + "Depth-Anything-V2-Base", _V2 + "vitb.pth",
              _DA + "Depth-Anything-V2-Base-hf", "390 MB", _NC),
    ModelSpec("vitl", ("large",), "vitl", "relative", _DA + "Depth-Anything-V2-Large", _V2 + "vitl.pth",
              _DA + "Depth-Anything-V2-Large-hf", "1.3 GB", _NC),
    ModelSpec("metric-indoor-vits", ("metric-indoor-small",), "vits", "metric",
              _DA + "Depth-Anything-V2-Metric-Hypersim-Small", _V2 + "metric_hypersim_vits.pth",
              _DA + "Depth-Anything-V2-Metric-Indoor-Small-hf", "99 MB", "Apache-2.0"),
    ModelSpec("metric-indoor-vitb", ("metric-indoor-base",), "vitb", "metric",
              _DA + "Depth-Anything-V2-Metric-Hypersim-Base", _V2 + "metric_hypersim_vitb.pth",
              _DA + "Depth-Anything-V2-Metric-Indoor-Base-hf", "390 MB", "Apache-2.0"),
    ModelSpec("metric-indoor-vitl", ("metric-indoor-large",), "vitl", "metric",
              _DA + "Depth-Anything-V2-Metric-Hypersim-Large", _V2 + "metric_hypersim_vitl.pth",
              _DA + "Depth-Anything-V2-Metric-Indoor-Large-hf", "1.3 GB", "Apache-2.0"),
    ModelSpec("metric-outdoor-vits", ("metric-outdoor-small",), "vits", "metric",
              _DA + "Depth-Anything-V2-Metric-VKITTI-Small", _V2 + "metric_vkitti_vits.pth",
              _DA + "Depth-Anything-V2-Metric-Outdoor-Small-hf", "99 MB", "Apache-2.0"),
    ModelSpec("metric-outdoor-vitb", ("metric-outdoor-base",), "vitb", "metric",
              _DA + "Depth-Anything-V2-Metric-VKITTI-Base", _V2 + "metric_vkitti_vitb.pth",
              _DA + "Depth-Anything-V2-Metric-Outdoor-Base-hf", "390 MB", "Apache-2.0"),
    ModelSpec("metric-outdoor-vitl", ("metric-outdoor-large",), "vitl", "metric",
              _DA + "Depth-Anything-V2-Metric-VKITTI-Large", _V2 + "metric_vkitti_vitl.pth",
              _DA + "Depth-Anything-V2-Metric-Outdoor-Large-hf", "1.3 GB", "Apache-2.0"),
    ModelSpec("video-vits", ("video-small",), "vits", "relative", _DA + "Video-Depth-Anything-Small",
              "video_depth_anything_vits.pth", "", "116 MB", "Apache-2.0", VIDEO_FAMILY),
    ModelSpec("video-vitb", ("video-base",), "vitb", "relative", _DA + "Video-Depth-Anything-Base",
              "video_depth_anything_vitb.pth", "", "458 MB", _NC, VIDEO_FAMILY),
    ModelSpec("video-vitl", ("video-large",), "vitl", "relative", _DA + "Video-Depth-Anything-Large",
              "video_depth_anything_vitl.pth", "", "1.5 GB", _NC, VIDEO_FAMILY),
    ModelSpec("metric-video-vits", ("metric-video-small",), "vits", "metric", _DA + "Metric-Video-Depth-Anything-Small",
              "metric_video_depth_anything_vits.pth", "", "116 MB", "Apache-2.0", VIDEO_FAMILY),
    ModelSpec("metric-video-vitb", ("metric-video-base",), "vitb", "metric", _DA + "Metric-Video-Depth-Anything-Base",
              "metric_video_depth_anything_vitb.pth", "", "458 MB", "see model card", VIDEO_FAMILY),
    ModelSpec("metric-video-vitl", ("metric-video-large",), "vitl", "metric", _DA + "Metric-Video-Depth-Anything-Large",
              "metric_video_depth_anything_vitl.pth", "", "1.5 GB", "see model card", VIDEO_FAMILY),
    ModelSpec("distill-any-depth-s", ("distill-any-depth-small",), "vits", "relative", _DISTILL,
              "small/model.safetensors", _DISTILL + "-Small-hf", "99 MB", "Apache-2.0", DISTILL_FAMILY),
    ModelSpec("distill-any-depth-b", ("distill-any-depth-base",), "vitb", "relative", _DISTILL,
              "base/model.safetensors", "", "390 MB", "Apache-2.0", DISTILL_FAMILY),
    ModelSpec("distill-any-depth-l", ("distill-any-depth-large",), "vitl", "relative", _DISTILL,
              "large/model.safetensors", _DISTILL + "-Large-hf", "1.3 GB", "Apache-2.0", DISTILL_FAMILY),
    ModelSpec("depth-anything-ac-s", ("depth-anything-ac-small",), "vits", "relative",
              "ghost233lism/DepthAnything-AC", "checkpoints/depth_anything_AC_vits.pth", "", "99 MB", _NC,
              AC_FAMILY),
    ModelSpec("da3-mono-l", ("da3-mono-large",), "vitl", "relative", _DA + "DA3MONO-LARGE", "model.safetensors", "",
              "1.4 GB", "Apache-2.0", DA3_FAMILY, "config.json", "DA3MONO-LARGE"),
    ModelSpec("da3-metric-l", ("da3-metric-large",), "vitl", "metric", _DA + "DA3METRIC-LARGE", "model.safetensors",
              "", "1.4 GB", "Apache-2.0", DA3_FAMILY, "config.json", "DA3METRIC-LARGE"),
)

_BY_NAME = {key: spec for spec in CATALOGUE for key in (spec.name, *spec.aliases)}
_BASE_NAMES = [spec.filename.rsplit("/", 1)[-1].lower() for spec in CATALOGUE]
# a file's own name, without upstream's folder, where it names one row (`model.safetensors` names none)
_BY_FILENAME = {name: spec for name, spec in zip(_BASE_NAMES, CATALOGUE) if _BASE_NAMES.count(name) == 1}


def find_spec(name: str) -> ModelSpec | None:
    """The row a model name or alias (any case, surrounding blanks ignored) stands for."""
    return _BY_NAME.get(name.strip().lower())


def find_by_filename(filename: str) -> ModelSpec | None:
    """The row whose upstream file is called `filename` (any case), as in `load_model("depth_anything_v2_vits.pth")`."""
    return _BY_FILENAME.get(filename.strip().lower())
