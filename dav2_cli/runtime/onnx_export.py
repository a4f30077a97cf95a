"""dav2's float32 model written out as ONNX (and, from that, OpenVINO IR) that any runtime can run, and the record
of what it is.

The graph: one input `image` (N,3,H,W) float32, ImageNet-normalised RGB with H and W multiples of 14, and one
output `depth` (N,H,W): inverse depth for relative models, metres (max_depth applied) for metric ones, exactly the
torch model's output before the resize back to the image. Batch, H and W are dynamic unless a fixed size is
asked for; the position embedding is computed inside the graph (export_graph.py), so every grid is upstream's.

Why the TorchScript exporter (`dynamo=False`): the dynamo exporter gives the same graph to ~1e-6 but took ~64 s
for vits on a loaded 2-core machine against ~7 s, needs onnxscript, and specialises a batch of one. Opset 17 is
the first with LayerNormalization, which keeps the graph small and is what TensorRT 8.6+ and onnxruntime 1.14+
fuse.

float16: matmuls and convolutions compute in float16 with float16 weights (the Tensor-Core work on a GPU), while
LayerNorm, softmax, the residual stream and the input and output stay float32. DINOv2's residual activations reach
the thousands, and community fp16 exports that cast everything overflow to inf or NaN; this split cannot, since
no float16 tensor carries the residual stream.

The metadata (ONNX metadata_props, OpenVINO rt_info under "dav2") is what a consumer needs to preprocess from the
file alone: see `export_metadata`.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from dav2_cli.runtime import openvino_backend

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "depth"
FLOAT16_OPS = ("MatMul", "Conv", "Gemm")  # what float16 computes; everything else stays float32
EXPORT_DTYPES = ("float32", "float16")
RESIZE_RULE = ("shorter side to input_size (default 504) keeping the aspect ratio, each side rounded to a multiple "
               "of 28 (round half to even, up if below input_size), bicubic (OpenCV INTER_CUBIC) on RGB/255; "
               "the output is resized back to the image with bilinear, align_corners=True")


def installed_version() -> str:
    """dav2's version as installed (pyproject reads it from the package face; asked here through the package's
    metadata so that the runtime never imports the face, which imports the runtime)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dav2-cli")
    except PackageNotFoundError:
        return "unknown"


SKY_NOTE = ("; sky pixels (the sky head's score >= 0.3) are negated: the depth is the absolute value, sky where "
            "negative (dav2 sets sky to the image's farthest non-sky depth)")


def export_metadata(config, model_name: str, dtype: str, fixed_size_hw=None) -> dict:
    """Everything a consumer needs to feed the graph and read its output, as strings (ONNX metadata_props are)."""
    from dav2_cli.depth import sizing

    return {
        "dav2_version": installed_version(),
        "model": model_name,
        "encoder": config.encoder,
        "kind": config.kind,
        "unit": "metre" if config.metric else "none (inverse depth: larger is nearer)",
        "max_depth": "" if config.max_depth is None or not config.metric else f"{config.max_depth:g}",
        "patch_size": str(config.patch_size),
        "size_multiple": str(sizing.SIZE_MULTIPLE),
        "default_input_size": str(sizing.DEFAULT_INPUT_SIZE),
        "input": f"{INPUT_NAME}: float32 N x 3 x H x W, RGB, (pixel / 255 - mean) / std, H and W multiples of "
                 f"{config.patch_size}",
        "output": f"{OUTPUT_NAME}: float32 N x H x W" + (SKY_NOTE if config.sky_head else ""),
        "color_order": "RGB",
        "mean": json.dumps([round(float(v), 6) for v in sizing.IMAGENET_MEAN_RGB]),
        "std": json.dumps([round(float(v), 6) for v in sizing.IMAGENET_STD_RGB]),
        "resize_rule": RESIZE_RULE,
        "shape": "dynamic" if fixed_size_hw is None else f"fixed {fixed_size_hw[0]}x{fixed_size_hw[1]}",
        "dtype": dtype,
        "opset": str(OPSET),
    }


def check_fixed_size(fixed_size_hw, patch_size: int) -> None:
    from dav2_cli.errors import UsageError

    if fixed_size_hw is not None and (min(fixed_size_hw) < patch_size or any(s % patch_size for s in fixed_size_hw)):
        raise UsageError(f"--fixed-size {fixed_size_hw[0]}x{fixed_size_hw[1]}: each side must be a positive "
                         f"multiple of {patch_size}")


def export_onnx(model: torch.nn.Module, path: Path, metadata: dict, *, dtype: str = "float32",
                fixed_size_hw=None) -> None:
    """Writes `model` (a float32 Depth-Anything V2 with plain forms, as `build_model` makes it) to `path`."""
    import onnx

    from dav2_cli.runtime.export_graph import ExportableDepth

    patch = model.config.patch_size
    size_hw = fixed_size_hw or (4 * patch, 6 * patch)
    example = torch.zeros(1, 3, *size_hw)
    dynamic = None if fixed_size_hw is not None else {
        INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, OUTPUT_NAME: {0: "batch", 1: "height", 2: "width"}}
    wrapper = ExportableDepth(model).eval()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings on the input checks' fixed branches
        torch.onnx.export(wrapper, (example,), str(path), dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=dynamic)
    graph = onnx.load(str(path))
    if dtype == "float16":
        compute_matmuls_in_float16(graph)
    for key, value in metadata.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    graph.producer_name = "dav2"
    onnx.save(graph, str(path))


def compute_matmuls_in_float16(graph) -> None:
    """In place: FLOAT16_OPS take float16 inputs (weights stored as float16) and give float32 back."""
    from onnx import TensorProto, helper, numpy_helper

    consumers = {}
    for node in graph.graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    # weights read only by float16 ops are stored as float16; one shared with a float32 op is cast where read
    initializers = {init.name: init for init in graph.graph.initializer
                    if init.data_type == TensorProto.FLOAT and consumers.get(init.name, set()) <= set(FLOAT16_OPS)}
    halved = set()
    nodes = []
    for node in graph.graph.node:
        if node.op_type not in FLOAT16_OPS:
            nodes.append(node)
            continue
        for index, name in enumerate(node.input):
            if not name:
                continue
            if name in initializers:
                if name not in halved:
                    array = numpy_helper.to_array(initializers[name]).astype(np.float16)
                    initializers[name].CopyFrom(numpy_helper.from_array(array, name))
                    halved.add(name)
                continue
            cast_name = f"{name}__float16_for_{node.name or id(node)}"
            nodes.append(helper.make_node("Cast", [name], [cast_name], to=TensorProto.FLOAT16))
            node.input[index] = cast_name
        output = node.output[0]
        node.output[0] = f"{output}__float16"
        nodes.append(node)
        nodes.append(helper.make_node("Cast", [node.output[0]], [output], to=TensorProto.FLOAT))
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    del graph.graph.value_info[:]  # shapes stand, element types changed: let runtimes infer them again


def read_onnx_metadata(path: Path) -> dict:
    import onnx

    graph = onnx.load(str(path), load_external_data=False)
    return {entry.key: entry.value for entry in graph.metadata_props}


def onnx_to_ir(onnx_path: Path, xml_path: Path, metadata: dict) -> None:
    """OpenVINO IR of the ONNX graph, float32 weights (no fp16 compression), the metadata in rt_info["dav2"]."""
    openvino = openvino_backend.import_openvino()

    network = openvino_backend.convert(str(onnx_path))
    for key, value in metadata.items():
        network.set_rt_info(value, ["dav2", key])
    openvino.save_model(network, str(xml_path), compress_to_fp16=False)


def read_ir_metadata(xml_path: Path) -> dict:
    openvino = openvino_backend.import_openvino()

    network = openvino.Core().read_model(str(xml_path))
    if not network.has_rt_info(["dav2"]):
        return {}
    return {key: value.astype(str) for key, value in network.get_rt_info()["dav2"].items()}
