"""dav2's model against upstream's and the peers CPU users pick instead, side by side on this machine.

Timing: one process, the same seeded vits weights and the same prepared 504x756 input for every variant, the
variants interleaved run by run (so a slow spell on a shared machine hits them all alike), medians reported.
Every variant is timed twice: on the machine as it is ("quiet"), then with one busy process per core beside it
("loaded"), which is what README's `parallel -j` sharding recipe does by design and where some kernels collapse.
Peak RSS and start-up: each variant in a fresh process that loads the checkpoint file the way a user's run would
(upstream: its run.py's `torch.load` + `load_state_dict`; dav2: `load_model`) and predicts one image, so no
variant's allocations hide another's. With the openvino extra installed, dav2's own OpenVINO backend runs too, at
its auto precision and at float32 (`--backend openvino`). On a CPU with native bf16 it also times bf16 in each
attention form, beside the one `auto` chose here; float32 (and bf16 with the fused attention) also runs with the
plain Linear layers, beside the form timed faster here. Peers (`--peers`, on by default): upstream's model exported
to ONNX, run by OpenVINO at its default precision (bf16 where the CPU has it) and at f32, and by onnxruntime; they
are installed from PyPI into .cache/peers on first use, never dependencies of dav2. The figures go to stdout and,
with the machine's description, to a markdown file (default /tmp/team/README-speed.md).

    python -m benchmarks.speed [--repeat 5] [--no-peers] [--no-loaded] [--out /tmp/team/README-speed.md]
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STARTED = time.perf_counter()  # before torch is imported: the child's start-up figure includes the imports

import torch  # noqa: E402

from benchmarks.busy import BusyCores  # noqa: E402
from benchmarks.upstream import UPSTREAM_CONFIGS, upstream_dpt, upstream_model  # noqa: E402
from dav2_cli.model.int8 import quantized_engine  # noqa: E402
from dav2_cli.runtime import device as devices  # noqa: E402
from dav2_cli.runtime import openvino_backend  # noqa: E402
from dav2_cli.runtime.loading import load_model, predict  # noqa: E402
from dav2_cli.depth import sizing as prep  # noqa: E402
from dav2_cli.jobs.bench import count_flops, matmul_peak, synthetic_photo  # noqa: E402
from dav2_cli.model.onednn_linear import LINEAR_FORMS  # noqa: E402

IMAGE_HW = (504, 756)
INPUT_SIZE = 504
PEERS_DIR = Path(__file__).resolve().parent.parent / ".cache" / "peers"
PEER_PACKAGES = ("openvino", "onnxruntime", "onnx")  # onnx: torch's exporter needs it to write the file
BF16_FORMS = ("fused", "matmul", "blocked")


def our_variants() -> list[str]:
    """dav2's variants worth timing here. "auto" and "float32" are what a user gets with `--dtype auto` (the
    default) and `--dtype float32` (`DAV2_DTYPE=float32`), each with the default `--backend auto`; the rest
    are one backend's own paths: torch in each precision and, where native, each bf16 attention form, and
    OpenVINO where the optional extra is installed."""
    names = ["auto", "float32"]
    if openvino_backend.installed():  # `--backend auto` may pick OpenVINO: time torch's own float32 too
        names.append("torch float32")
    names.append("torch float32 plain")  # the Linear form timed against the packed one
    if devices.cpu_has_native_bf16():
        names += [f"torch bfloat16 {form}" for form in BF16_FORMS] + ["torch bfloat16 fused plain"]
    if quantized_engine() is not None:
        names.append("torch int8")
    if openvino_backend.installed():  # the optional backend (`pip install "dav2-cli[openvino]"`)
        names += ["openvino auto", "openvino float32"]
    return names


def load_variant(name: str, checkpoint: Path):
    if name == "upstream float32":
        dpt = upstream_dpt()
        model = dpt.DepthAnythingV2(**UPSTREAM_CONFIGS["vits"])
        model.load_state_dict(torch.load(checkpoint, map_location="cpu"))  # upstream run.py's way
        return model.eval()
    words = name.removeprefix("dav2 ").split()
    backend = words.pop(0) if words[0] in ("torch", "openvino") else "auto"
    model = load_model(checkpoint, "cpu", words[0], backend=backend)
    for form in words[1:]:  # an attention form, or a Linear form: their names differ
        if form in LINEAR_FORMS:
            model.image_encoder.set_linear_form(form)
        else:
            model.image_encoder.set_attention_form(form)
    return model


def ensure_peers() -> bool:
    """OpenVINO, onnxruntime and onnx importable from .cache/peers (installed from PyPI on first use)."""
    if not all((PEERS_DIR / package).is_dir() for package in PEER_PACKAGES):
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(PEERS_DIR), *PEER_PACKAGES]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            print(f"peers not installed, skipped:\n{result.stderr[-2000:]}", file=sys.stderr)
            return False
    if str(PEERS_DIR) not in sys.path:
        sys.path.append(str(PEERS_DIR))  # appended: this environment's own numpy and friends stay first
    return True


def peer_variants(upstream: torch.nn.Module, input_bchw: torch.Tensor, folder: Path) -> dict:
    """name -> callable on the input: upstream's model exported once to ONNX, run by each peer."""
    import onnxruntime
    import openvino

    onnx_path = folder / "upstream_vits.onnx"
    with torch.no_grad():
        torch.onnx.export(upstream, (input_bchw,), str(onnx_path), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["depth"])
    core = openvino.Core()
    network = core.read_model(str(onnx_path))
    ov_default = core.compile_model(network, "CPU")
    ov_f32 = core.compile_model(network, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    default_precision = ov_default.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # bf16 or f32
    ort = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    array = input_bchw.numpy()

    def run(compiled):
        return lambda _: torch.from_numpy(compiled(array)[0].copy())

    return {f"OpenVINO {openvino.__version__.split('-')[0]} default ({default_precision})": run(ov_default),
            "OpenVINO f32": run(ov_f32),
            f"onnxruntime {onnxruntime.__version__} fp32":
                lambda _: torch.from_numpy(ort.run(None, {"image": array})[0])}


def child(name: str, checkpoint: Path) -> None:
    """Runs in a fresh process: load, predict one image, print peak RSS and time to the first depth map."""
    image_bgr = synthetic_photo(*IMAGE_HW, seed=1)
    model = load_variant(name, checkpoint)
    if name == "upstream float32":
        depth_hw = model.infer_image(image_bgr, INPUT_SIZE)
    else:
        depth_hw = predict(model, image_bgr, INPUT_SIZE)
    assert depth_hw.shape == IMAGE_HW
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    print(json.dumps({"rss_mib": peak_kib / 1024, "first_depth_s": time.perf_counter() - STARTED}))


def in_fresh_process(name: str, checkpoint: Path) -> dict:
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-m", "benchmarks.speed", "--child", name, "--checkpoint",
                             str(checkpoint)], cwd=root, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


@torch.inference_mode()
def interleaved(models: dict, input_bchw: torch.Tensor, repeat: int) -> tuple[dict, dict]:
    """Per variant: forward seconds of each run (variants alternate within every round), and its output."""
    outputs = {name: model(input_bchw).reshape(-1, *input_bchw.shape[2:]) for name, model in models.items()}
    seconds = {name: [] for name in models}
    for _ in range(repeat):
        for name, model in models.items():
            began = time.perf_counter()
            model(input_bchw)
            seconds[name].append(time.perf_counter() - began)
    return seconds, outputs


def cpu_kind(capabilities: dict) -> str:
    if capabilities.get("amx_bf16"):
        return "amx"
    return "avx512_bf16" if capabilities.get("avx512_bf16") else "avx2"


# issue 10's targets for `auto`, per kind of CPU: times upstream quiet, times upstream loaded
AUTO_TARGETS = {"amx": (6.0, 3.0), "avx512_bf16": (4.0, 2.5), "avx2": (1.8, 1.5)}


def targets(runs: dict, outputs: dict, memory: dict, peers: list[str]) -> list[str]:
    """The speed targets, each judged from this run's figures (`runs`: "quiet"/"loaded" -> seconds per variant)."""
    reference = outputs["upstream float32"]
    spread = float(reference.max() - reference.min())

    def speedup(name, run="quiet"):
        return statistics.median(runs[run]["upstream float32"]) / statistics.median(runs[run][name])

    def error(name, reduce):
        return float(reduce((outputs[name] - reference).abs())) / spread

    def verdict(ok):
        return "met" if ok else "NOT met"

    fp32, auto = "dav2 float32", "dav2 auto"
    quiet_goal, loaded_goal = AUTO_TARGETS[cpu_kind(devices.cpu_capabilities())]
    lines = [f"- float32 >= 1.25x upstream with max error <= 1e-4 of range: {speedup(fp32):.2f}x, "
             f"{error(fp32, torch.max):.1e}: {verdict(speedup(fp32) >= 1.25 and error(fp32, torch.max) <= 1e-4)}",
             f"- auto >= {quiet_goal}x upstream quiet with mean error <= 1%: {speedup(auto):.2f}x, "
             f"{error(auto, torch.mean):.2%}: {verdict(speedup(auto) >= quiet_goal and error(auto, torch.mean) <= 0.01)}"]
    for run in runs:
        if run != "quiet":
            lines.append(f"- auto >= {loaded_goal}x upstream {run}: {speedup(auto, run):.2f}x: "
                         f"{verdict(speedup(auto, run) >= loaded_goal)}")
        lines.append(f"- auto no slower than dav2 float32, {run}: {speedup(auto, run) / speedup(fp32, run):.2f}x "
                     f"float32: {verdict(speedup(auto, run) >= speedup(fp32, run))}")
        for peer in peers:
            if peer.startswith("OpenVINO f32"):
                lines.append(f"- float32 no slower than {peer}, {run}: {speedup(fp32, run):.2f}x vs "
                             f"{speedup(peer, run):.2f}x: {verdict(speedup(fp32, run) >= speedup(peer, run))}")
            elif "default" in peer:
                lines.append(f"- auto faster than {peer}, {run}: {speedup(auto, run):.2f}x vs "
                             f"{speedup(peer, run):.2f}x: {verdict(speedup(auto, run) > speedup(peer, run))}")
    ours_rss, upstream_rss = memory[auto]["rss_mib"], memory["upstream float32"]["rss_mib"]
    lines.append(f"- peak RSS for one image no higher than upstream's: {ours_rss:.0f} vs {upstream_rss:.0f} MiB: "
                 f"{verdict(ours_rss <= upstream_rss)}")
    return lines


def machine_description() -> list[str]:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout if os.path.exists("/usr/bin/lscpu") \
        else ""
    model_name = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                       if line.startswith("Model name")), platform.processor() or platform.machine())
    capabilities = devices.cpu_capabilities()
    wanted = ("avx2", "fma3", "avx512_f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    flags = ", ".join(f"{flag} {'yes' if capabilities.get(flag) else 'no'}" for flag in wanted)
    load = os.getloadavg()
    return [f"- CPU: {model_name}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}",
            f"- flags: {flags}; torch CPU capability {torch.backends.cpu.get_cpu_capability()}",
            f"- torch {torch.__version__}, Python {platform.python_version()}, {platform.system()} "
            f"{platform.release()}",
            f"- load average at the end of the run: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-peers", dest="peers", action="store_false", help="skip OpenVINO and onnxruntime")
    parser.add_argument("--no-loaded", dest="loaded", action="store_false", help="skip the run beside busy cores")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path("/tmp/team/README-speed.md"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.checkpoint)
        return

    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "depth_anything_v2_vits.pth"
        torch.save(upstream_model("vits", seed=0).state_dict(), checkpoint)
        names = ["upstream float32"] + [f"dav2 {name}" for name in our_variants()]
        memory = {name: in_fresh_process(name, checkpoint) if args.memory else {"rss_mib": 0, "first_depth_s": 0}
                  for name in names}
        models = {name: load_variant(name, checkpoint) for name in names}
        image_bgr = synthetic_photo(*IMAGE_HW, seed=1)
        input_bchw = torch.from_numpy(prep.to_model_input(image_bgr, prep.model_size(IMAGE_HW, INPUT_SIZE)))[None]
        peers = []
        if args.peers and ensure_peers():
            peer_runs = peer_variants(models["upstream float32"], input_bchw, Path(folder))
            peers = list(peer_runs)
            models.update(peer_runs)
        runs, load = {}, {}
        runs["quiet"], outputs = interleaved(models, input_bchw, args.repeat)
        load["quiet"] = os.getloadavg()[0]
        if args.loaded:
            with BusyCores():
                runs["loaded"], _ = interleaved(models, input_bchw, args.repeat)
                load["loaded"] = os.getloadavg()[0]

    auto_form = models["dav2 auto"].attention_form
    auto_linears = getattr(models["dav2 auto"], "linear_form", "openvino")
    flops = count_flops(models["dav2 float32"].config, tuple(input_bchw.shape[2:]))
    peak = matmul_peak(torch.device("cpu"), "float32")
    reference = outputs["upstream float32"]
    spread = float(reference.max() - reference.min())
    header = ["variant", "quiet median s", "vs upstream"]
    if "loaded" in runs:
        header += ["loaded median s", "vs upstream (loaded)"]
    header += ["GFLOP/s", "max err", "mean err", "peak RSS MiB", "first depth s"]
    rows = [header]
    for name in names + peers:
        quiet = statistics.median(runs["quiet"][name])
        error = (outputs[name] - reference).abs()
        label = name
        if name in ("dav2 auto", "dav2 float32"):
            chosen = set(getattr(models[name], "chosen", {}).values())  # --backend auto, OpenVINO installed
            form = "" if chosen == {"openvino"} else f", {models[name].linear_form} Linear layers"
            if chosen != {"openvino"} and models[name].precision == "bfloat16":
                form += f", {models[name].attention_form} attention"
            label += f" = {models[name].precision}{form}" + (f", {'/'.join(sorted(chosen))} backend (timed)"
                                                             if chosen else "")
        elif name.startswith("dav2 openvino"):
            label += f" = {models[name].precision}"
        row = [label, f"{quiet:.3f}", f"{statistics.median(runs['quiet']['upstream float32']) / quiet:.2f}x"]
        if "loaded" in runs:
            loaded = statistics.median(runs["loaded"][name])
            row += [f"{loaded:.3f}", f"{statistics.median(runs['loaded']['upstream float32']) / loaded:.2f}x"]
        row += [f"{flops / quiet / 1e9:.0f}", f"{float(error.max()) / spread:.1e}", f"{float(error.mean()) / spread:.1e}"]
        row += ([f"{memory[name]['rss_mib']:.0f}", f"{memory[name]['first_depth_s']:.1f}"] if name in memory and
                args.memory else ["-", "-"])
        rows.append(row)
    table = ["| " + " | ".join(row) + " |" for row in rows]
    table.insert(1, "|" + "---|" * len(header))
    table += ["", *targets(runs, outputs, memory, peers)]
    lines = ["## Speed (measured by `python -m benchmarks.speed`)", "",
             f"vits, seeded random weights, {IMAGE_HW[1]}x{IMAGE_HW[0]} image at input size {INPUT_SIZE} "
             f"({flops / 1e9:.1f} GFLOP per forward), one process, variants interleaved, median of {args.repeat} "
             f"forward passes each after one warm-up, on the machine as it was (quiet) and with one busy process "
             f"per core beside it (loaded); errors are of upstream float32's depth range. Peak RSS and "
             f"time to the first depth map (imports included) come from a fresh process per variant that "
             f"loads the checkpoint file and predicts one image. `auto` here: {models['dav2 auto'].precision}, "
             f"attention form {auto_form}, Linear form {auto_linears}. This machine's float32 matmul peak: "
             f"{peak / 1e9:.0f} GFLOP/s.", "",
             *table, "", "Machine:", *machine_description(),
             "- 1-minute load average at the end of each run: " + ", ".join(f"{run} {value:.1f}"
                                                                           for run, value in load.items()), ""]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
