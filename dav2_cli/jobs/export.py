"""`dav2 export`: the model as an ONNX or OpenVINO IR file, checked against dav2's torch float32 before it appears.

A file that gives other depth than dav2 is worse than no file: users would ship it. So the export is written under
a temporary name, run by onnxruntime (ONNX) or OpenVINO (IR) at two patch grids on the same seeded input as torch
float32, and published under its name only when the largest difference, as a fraction of torch's depth range, is
within tolerance (1e-4 for float32, 1% for float16); otherwise it is removed and the command exits 1. With
`--fixed-size` the one size the graph accepts is checked.

Video Depth Anything is refused (exit 2): its network is only meaningful inside dav2's windowing (32-frame windows
stepping 22, keyframes carried between windows, scale/shift alignment and crossfades at the seams), which a bare
per-window graph would not carry; a user running it alone would get flickering depth.
"""

import tempfile
from pathlib import Path

import numpy as np

from dav2_cli.errors import EXIT_OK, UsageError, UserError
from dav2_cli.outputs import atomic

FORMATS = {".onnx": "ONNX", ".xml": "OpenVINO IR"}
TOLERANCE = {"float32": 1e-4, "float16": 1e-2}  # largest |export - torch float32| / torch's depth range
PATCH_SIZE = 14  # DINOv2's, in every model dav2 exports
CHECK_GRIDS = ((10, 15), (16, 12))  # patch grids checked (140x210 and 224x168): two aspects, an odd side
VIDEO_REFUSAL = ("{model} is a Video Depth Anything model: its network only gives steady depth inside dav2's "
                 "windowing (32-frame windows, keyframes carried over, alignment and crossfades at the seams), "
                 "which an exported graph cannot carry; export a per-image model (vits, vitb, vitl, metric...) or "
                 "run it with `dav2 video`")


def parse_fixed_size(text: str | None):
    """`HxW` → (H, W) or None."""
    if text is None:
        return None
    height, sep, width = text.lower().partition("x")
    if not sep or not height.isdigit() or not width.isdigit():
        raise UsageError(f"--fixed-size {text}: expected HxW, e.g. 518x700")
    return int(height), int(width)


def plan_export(output: str, dtype: str, overwrite: bool) -> Path:
    """The usage rules, before any model loads: a known suffix, its runtime installed, no silent overwrite."""
    from dav2_cli.runtime import onnxruntime_backend, openvino_backend

    path = Path(output)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"-o {output}: the format follows from the suffix: .onnx (ONNX) or .xml (OpenVINO IR)")
    onnxruntime_backend.require_installed("dav2 export")
    if suffix == ".xml":
        if not openvino_backend.installed():
            raise UsageError(f"-o {output}: OpenVINO IR needs OpenVINO: {openvino_backend.INSTALL_HINT}")
        if dtype != "float32":
            raise UsageError("--dtype float16 applies to .onnx; OpenVINO IR keeps float32 weights (OpenVINO picks "
                             "its own inference precision per device)")
    if path.is_dir():
        raise UsageError(f"-o {output} is a folder; name the file, e.g. {Path(output) / 'model.onnx'}")
    outputs = [path] + ([path.with_suffix(".bin")] if suffix == ".xml" else [])
    existing = [str(item) for item in outputs if item.exists()]
    if existing and not overwrite:
        raise UsageError(f"{existing[0]} exists; pass --overwrite to replace it")
    if not path.parent.is_dir():
        raise UsageError(f"-o {output}: folder {path.parent} does not exist")
    return path


def check_model_name(model_spec: str) -> None:
    from dav2_cli.weights.catalog import VIDEO_FAMILY
    from dav2_cli.weights.lookup import spec_for

    spec = spec_for(model_spec)
    if spec is not None and spec.family == VIDEO_FAMILY:
        raise UsageError(VIDEO_REFUSAL.format(model=model_spec))


def load_float32_model(model_spec: str, max_depth: float | None):
    """The checkpoint as a float32 torch model in its plain forms (fused attention, plain Linear layers): the
    reference the export is checked against, and what is traced."""
    from dav2_cli.model import VideoModelConfig
    from dav2_cli.weights.checkpoint import build_model, load_checkpoint

    check_model_name(model_spec)
    checkpoint = load_checkpoint(model_spec, max_depth=max_depth)
    if isinstance(checkpoint.config, VideoModelConfig):
        raise UsageError(VIDEO_REFUSAL.format(model=model_spec))
    model = build_model(checkpoint).eval()
    model.source = checkpoint.source
    return model


def check_input(batch: int, size_hw: tuple[int, int], seed: int = 0):
    """A seeded, smooth, photo-like normalised input: random noise alone exercises the model less evenly."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, max(2, size_hw[0] // 28), max(2, size_hw[1] // 28), generator=generator)
    image = torch.nn.functional.interpolate(coarse, size=size_hw, mode="bicubic", align_corners=False).clamp(0, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (image - mean) / std


def range_error(ours: np.ndarray, reference: np.ndarray) -> float:
    spread = float(reference.max() - reference.min())
    return float(np.abs(ours - reference).max()) / spread if spread > 0 else float(np.abs(ours - reference).max())


def run_onnx(path: Path):
    from dav2_cli.runtime import onnxruntime_backend

    session = onnxruntime_backend.session(path, ["CPUExecutionProvider"])
    return lambda array: session.run(None, {"image": array})[0], "onnxruntime (CPU provider)"


def run_ir(xml_path: Path):
    from dav2_cli.runtime import openvino_backend

    compiled = openvino_backend.compile_for_cpu(openvino_backend.import_openvino().Core(), str(xml_path),
                                                {"INFERENCE_PRECISION_HINT": "f32"})
    return lambda array: np.array(compiled([array])[0], dtype=np.float32), "OpenVINO (CPU, f32)"


def verify(model, run, sizes) -> float:
    """Largest error, as a fraction of torch float32's depth range, over `sizes` (batch, H, W), against the graph
    torch computes (`signed_depth`: a sky-head model's sky negated, as the file gives it)."""
    import torch

    worst = 0.0
    for index, (batch, height, width) in enumerate(sizes):
        image = check_input(batch, (height, width), seed=index)
        with torch.inference_mode():
            reference = model.signed_depth(image).numpy()
        worst = max(worst, range_error(run(image.numpy()), reference))
    return worst


def check_sizes(patch: int, fixed_size_hw):
    if fixed_size_hw is not None:
        return [(1, *fixed_size_hw)]
    return [(1 + index, grid_h * patch, grid_w * patch) for index, (grid_h, grid_w) in enumerate(CHECK_GRIDS)]


def run_export(model_spec: str, output: str, *, dtype: str = "float32", fixed_size: str | None = None,
               max_depth: float | None = None, overwrite: bool = False, echo=print) -> int:
    from dav2_cli.runtime import onnx_export

    if dtype not in onnx_export.EXPORT_DTYPES:
        raise UsageError(f"--dtype {dtype}: expected {' or '.join(onnx_export.EXPORT_DTYPES)}")
    fixed_size_hw = parse_fixed_size(fixed_size)
    onnx_export.check_fixed_size(fixed_size_hw, PATCH_SIZE)  # every family's patch: checked before loading
    path = plan_export(output, dtype, overwrite)
    check_model_name(model_spec)
    model = load_float32_model(model_spec, max_depth)
    name = Path(model.source).name if model.source else model_spec
    metadata = onnx_export.export_metadata(model.config, name, dtype, fixed_size_hw)
    with tempfile.TemporaryDirectory(prefix="dav2-export-") as work:
        graph = Path(work) / "model.onnx"
        onnx_export.export_onnx(model, graph, metadata, dtype=dtype, fixed_size_hw=fixed_size_hw)
        if path.suffix.lower() == ".xml":
            onnx_export.onnx_to_ir(graph, Path(work) / "model.xml", metadata)
            made = {path: Path(work) / "model.xml", path.with_suffix(".bin"): Path(work) / "model.bin"}
            run, runtime = run_ir(Path(work) / "model.xml")
        else:
            made = {path: graph}
            run, runtime = run_onnx(graph)
        sizes = check_sizes(model.config.patch_size, fixed_size_hw)
        error = verify(model, run, sizes)
        checked = " and ".join(f"{batch}x{height}x{width}" for batch, height, width in sizes)
        line = (f"checked on {runtime} at N x H x W = {checked} against torch float32: max error {error:.1e} of "
                f"the depth range (tolerance {TOLERANCE[dtype]:.0e})")
        if not error <= TOLERANCE[dtype]:
            raise UserError(f"{path}: not written: the export gives other depth than dav2; {line}")
        publish_all(made)
    echo(f"wrote {path} ({FORMATS[path.suffix.lower()]}, {dtype}, {metadata['shape']} shape, {metadata['kind']} "
         f"{model.config.encoder}); {line}")
    return EXIT_OK


def publish_all(made: dict) -> None:
    """Each file copied beside its destination under a temporary name, then renamed: a reader never sees half a
    file, and an interrupt leaves no temporary behind (atomic's exit hook)."""
    import shutil

    temps = {}
    try:
        for final, source in made.items():
            temps[final] = atomic.reserve_temp(final)
            shutil.copyfile(source, temps[final])
        for final in sorted(made, key=lambda item: item.suffix != ".bin"):  # an IR's weights before its graph
            atomic.publish(temps.pop(final), final)
    finally:
        for temp in temps.values():
            atomic.discard(temp)


def read_export_description(path: Path) -> tuple[str, dict]:
    """(kind in words, the metadata) of a file `dav2 export` wrote, for `dav2 info`."""
    from dav2_cli.runtime import onnx_export, onnxruntime_backend, openvino_backend

    if not path.is_file():
        raise UserError(f"{path}: no such file")
    suffix = path.suffix.lower()
    reader = onnx_export.read_onnx_metadata if suffix == ".onnx" else onnx_export.read_ir_metadata
    if not (onnxruntime_backend.installed() if suffix == ".onnx" else openvino_backend.installed()):
        hint = onnxruntime_backend.INSTALL_HINT if suffix == ".onnx" else openvino_backend.INSTALL_HINT
        raise UsageError(f"{path}: reading a {FORMATS[suffix]} file needs its library: {hint}")
    try:
        description = reader(path)
    except Exception as exc:  # onnx's DecodeError, OpenVINO's RuntimeError: a damaged or foreign file
        raise UserError(f"{path}: not a readable {FORMATS[suffix]} file ({type(exc).__name__})") from None
    return f"{FORMATS[suffix]} model", description
