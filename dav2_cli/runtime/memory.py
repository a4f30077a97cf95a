"""Peak memory of a run, known before the model loads: a run that cannot fit says so in one line, or takes a path
that fits, instead of growing until the kernel kills it.

Why: attention computed as plain matrix products materialises heads x tokens² scores, which grow with the square
of the token count. torch's bf16 "matmul" attention form (form_tuning.tuned_attention_form, timed on native-bf16 CPUs)
does that: vits at `--input-size 2016` under `--backend auto` reached 24 GB (both backends are timed at a new size)
and was SIGKILLed, with no message and nothing written. torch's fused attention (flash/memory-efficient SDPA) and
OpenVINO's graph keep attention to tiles: measured, their peaks grow only linearly with the tokens. So the matmul
form is a candidate only where its scores fit easily (`matmul_attention_fits`), and every other term is linear.

The estimate (bytes) is the sum of
- the process with its libraries and the weights (RESIDENT_BYTES, for vits; other encoders add their extra weights,
  in as many copies as vits shows);
- per image of a batch and per token of the grid, the activations of one forward (PER_TOKEN_BYTES, vits), scaled
  for other encoders by their encoder and fusion widths (the encoder's residual stream and MLP, the decoder's maps
  at 8x and 14x the grid);
- the matmul form's scores where it may run, and a few bytes per pixel of the image for its decoding and rendering.
Measured for vits (benchmarks/peak_memory.py, peak RSS of `dav2 image` on a 320x240 image, 2-core AVX512-BF16 EPYC):

| backend, precision | 56 | 504 | 756 | 1008 | 1260 | 2016 |
|---|---|---|---|---|---|---|
| torch float32 | 469 MiB | 657 | 804 | 1130 | | 2814 |
| torch bfloat16 (matmul attention timed; 2016: fused, as it now is) | 395 | 449 | 719 | 1522 | | 1762 |
| OpenVINO float32 | 674 | 801 | 993 | 1279 | 1646 | 3128 |
| OpenVINO bfloat16 | 620 | 686 | 798 | 970 | 1203 | 2006 |

Where the estimate does not fit in what is available (MemAvailable, or the cgroup's limit): `--backend auto`
drops OpenVINO for torch where torch fits; otherwise the run stops with exit 2 and one line: the estimate, what
is available, and the largest --input-size that fits. Video Depth Anything (temporal windows) and GPU runs are not
estimated here: their peak lives in windows of frames and in the device's memory.
"""

from dataclasses import dataclass
from pathlib import Path

GIB = 1 << 30
MIB = 1 << 20
HEADROOM = 0.9  # of what is available: the page cache, other processes and the allocator's slack need the rest
MATMUL_SHARE = 0.25  # the most of the available memory the matmul form's scores may take: it only saves time

# vits at rest after loading, by backend and precision (the intercepts of the measurements above); weight copies:
# how many float32-sized copies of the weights that holds, for scaling to larger encoders
RESIDENT_BYTES = {("torch", "float32"): 475 * MIB, ("torch", "bfloat16"): 395 * MIB,
                  ("openvino", "float32"): 650 * MIB, ("openvino", "bfloat16"): 600 * MIB}
WEIGHT_COPIES = {("torch", "float32"): 2.0, ("torch", "bfloat16"): 1.5,
                 ("openvino", "float32"): 3.0, ("openvino", "bfloat16"): 2.5}
# vits, per token of the grid, per image (the slopes of the measurements above)
PER_TOKEN_BYTES = {("torch", "float32"): 0.100 * MIB, ("torch", "bfloat16"): 0.055 * MIB,
                   ("openvino", "float32"): 0.096 * MIB, ("openvino", "bfloat16"): 0.058 * MIB}
SCORE_BYTES = 3.0  # per attention score of the matmul form (bf16 scores and softmax's working copy), measured
PIXEL_BYTES = 40  # per pixel of the image: the decoded picture, its depth map and its rendering
ENCODER_VALUES = 16  # live values per token per encoder width; the decoder holds the rest of PER_TOKEN_BYTES

# what the catalogue's encoders are, for an estimate without reading the weights
ENCODER_SHAPES = {  # width, fusion channels, parameters
    "vits": (384, 64, 24.8e6),
    "vitb": (768, 128, 97.5e6),
    "vitl": (1024, 256, 335.3e6),
    "vitg": (1536, 384, 1.31e9),
}


@dataclass(frozen=True)
class ModelShape:
    """What memory depends on in the model: the encoder's width, the fusion width and the weight count."""

    encoder: str
    width: int
    fusion: int
    parameters: float

    @property
    def heads(self) -> int:
        return self.width // 64  # DINOv2's heads are 64 wide


def shape_of(encoder: str) -> ModelShape:
    width, fusion, parameters = ENCODER_SHAPES[encoder]
    return ModelShape(encoder, width, fusion, parameters)


def shape_from_file(path: Path) -> ModelShape | None:
    """The encoder a checkpoint file holds, from its size (float32 weights: 4 bytes each), the nearest of the
    known ones; None for a file of another kind. Reading the weights themselves would be the heavy step this
    module exists to come before."""
    try:
        size = path.stat().st_size if path.is_file() else sum(
            entry.stat().st_size for entry in path.iterdir() if entry.suffix in (".safetensors", ".bin", ".pth"))
    except OSError:
        return None
    if size <= 0:
        return None
    parameters = size / 4
    encoder = min(ENCODER_SHAPES, key=lambda name: abs(ENCODER_SHAPES[name][2] - parameters))
    return shape_of(encoder) if 0.5 < parameters / ENCODER_SHAPES[encoder][2] < 2 else None


def model_shape(model: str) -> ModelShape | None:
    """The shape of `-m`'s model: a catalogue name, or a file or folder; None where it cannot be told cheaply, or
    for Video Depth Anything."""
    from dav2_cli.weights import catalog, lookup

    spec = lookup.spec_for(model)
    if spec is not None:
        return None if spec.family == catalog.VIDEO_FAMILY else shape_of(spec.encoder)
    if model in ENCODER_SHAPES:
        return shape_of(model)
    path = Path(model)
    if "video" in path.name.lower():
        return None
    return shape_from_file(path)


def matmul_attention_bytes(heads: int, tokens: int, batch: int = 1) -> int:
    """The scores the matmul attention form materialises in one block: heads x tokens² per image."""
    return int(SCORE_BYTES * batch * heads * tokens * tokens)


def matmul_attention_fits(heads: int, tokens: int, batch: int = 1) -> bool:
    """Whether the matmul form may be timed and run at this size: its scores take under MATMUL_SHARE of what is
    available (always, where that cannot be read). At vits' 2016 grid they would take ~14 GB, for a form that
    only ever saves time."""
    room = available_bytes()
    return room is None or matmul_attention_bytes(heads, tokens, batch) <= MATMUL_SHARE * room


def estimate(shape: ModelShape, backend: str, precision: str, batch: int, grid_hw: tuple[int, int],
             image_pixels: int = 0, *, matmul_attention: bool = False) -> int:
    """Peak RSS in bytes of a run with one backend (torch, openvino, or auto, which times both at a new size) at
    one model grid (in patches). `matmul_attention`: torch may run the matmul form (bf16 on native-bf16 CPUs)."""
    if backend == "auto":  # timing a new size runs both, one after the other, each keeping what it allocated
        both = (estimate(shape, "openvino", precision, batch, grid_hw, image_pixels)
                + estimate(shape, "torch", precision, batch, grid_hw, matmul_attention=matmul_attention))
        return both - RESIDENT_BYTES[("torch", _known(precision))] + WEIGHT_COPIES[("torch", _known(precision))] * 4 * (
            shape.parameters)
    key = (backend, _known(precision))
    vits = shape_of("vits")
    tokens = grid_hw[0] * grid_hw[1]
    resident = RESIDENT_BYTES[key] + WEIGHT_COPIES[key] * 4 * (shape.parameters - vits.parameters)
    encoder_share = ENCODER_VALUES * vits.width * (2 if "16" in precision else 4)
    decoder_share = max(PER_TOKEN_BYTES[key] - encoder_share, 0)
    per_token = encoder_share * shape.width / vits.width + decoder_share * shape.fusion / vits.fusion
    per_image = tokens * per_token + PIXEL_BYTES * image_pixels
    scores = 0
    if backend == "torch" and matmul_attention and matmul_attention_fits(shape.heads, tokens, batch):
        scores = matmul_attention_bytes(shape.heads, tokens, batch)
    return int(resident + batch * per_image + scores)


def _known(precision: str) -> str:
    """The measured precision nearest in memory: float16 is bf16's size, int8 keeps float32 activations."""
    return "bfloat16" if precision in ("bfloat16", "float16") else "float32"


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """What the process's cgroup still allows (v2, else v1); None where it sets no limit."""
    try:
        line = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for entry in line:
        _, controllers, relative = entry.split(":", 2)
        root = Path("/sys/fs/cgroup") / relative.lstrip("/")
        pairs = [(root / "memory.max", root / "memory.current")] if controllers == "" else []
        if "memory" in controllers.split(","):
            base = Path("/sys/fs/cgroup/memory") / relative.lstrip("/")
            pairs.append((base / "memory.limit_in_bytes", base / "memory.usage_in_bytes"))
        for limit_file, usage_file in pairs:
            try:
                limit, usage = limit_file.read_text().strip(), int(usage_file.read_text().strip())
            except (OSError, ValueError):
                continue
            if limit != "max" and int(limit) < 1 << 60:
                return max(0, int(limit) - usage)
    return None


def available_bytes() -> int | None:
    """Memory this process can still take without being killed: the smaller of MemAvailable and what its cgroup
    allows; None where neither can be read (not Linux)."""
    known = [room for room in (_meminfo_available(), _cgroup_room()) if room is not None]
    return min(known) if known else None


def largest_fitting_size(shape: ModelShape, backend: str, precision: str, batch: int, image_hw: tuple[int, int],
                         room: int, *, matmul_attention: bool = False) -> int | None:
    """The largest --input-size (a multiple of 28) whose run fits in `room` bytes for images of `image_hw`."""
    from dav2_cli.depth import sizing

    patch = 14
    for size in range(sizing.MAX_INPUT_SIZE - sizing.MAX_INPUT_SIZE % 28, 27, -28):
        height, width = sizing.model_size(image_hw, size)
        needed = estimate(shape, backend, precision, batch, (height // patch, width // patch),
                          image_hw[0] * image_hw[1], matmul_attention=matmul_attention)
        if needed <= room:
            return size
    return None


def describe(size: float) -> str:
    return f"{size / GIB:.1f} GB"
