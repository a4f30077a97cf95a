"""dav2's model against upstream's, side by side on this machine: speed, error and memory per precision.

Timing: one process, the same seeded vits weights and the same prepared 504x756 input for every variant, the
variants interleaved run by run (so a slow spell on a shared machine hits them all alike), medians reported.
Peak RSS and start-up: each variant in a fresh process that loads the checkpoint file the way a user's run would
(upstream: its run.py's `torch.load` + `load_state_dict`; dav2: `load_model`) and predicts one image, so no
variant's allocations hide another's. On a CPU with native bf16 it also times bf16 with torch's fused attention
kernel in place of dav2's blocked one, the choice that decides bf16's speed there. The figures go to stdout
and, with the machine's description, to a markdown file (default /tmp/team/README-speed.md).

    python -m benchmarks.speed [--repeat 5] [--out /tmp/team/README-speed.md]
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

from benchmarks.upstream import UPSTREAM_CONFIGS, upstream_dpt, upstream_model  # noqa: E402
from dav2_cli import engine, prep  # noqa: E402
from dav2_cli.bench import count_flops, matmul_peak, synthetic_photo  # noqa: E402

IMAGE_HW = (504, 756)
INPUT_SIZE = 504
FUSED_BF16 = "bfloat16 fused-attention"


def our_variants() -> list[str]:
    """dav2's precisions worth timing here: float32, the auto choice, bf16 where native, int8 where offered."""
    names = ["float32"]
    if engine.cpu_has_native_bf16(engine.cpu_capabilities()):
        names += ["bfloat16", FUSED_BF16]  # dav2's blocked bf16 attention, and torch's fused kernel in its place
    if engine.quantized_engine() is not None:
        names.append("int8")
    return names


def load_variant(name: str, checkpoint: Path):
    if name == "upstream float32":
        dpt = upstream_dpt()
        model = dpt.DepthAnythingV2(**UPSTREAM_CONFIGS["vits"])
        model.load_state_dict(torch.load(checkpoint, map_location="cpu"))  # upstream run.py's way
        return model.eval()
    if name == f"dav2 {FUSED_BF16}":
        model = engine.load_model(checkpoint, "cpu", "bfloat16")
        model.image_encoder.use_blocked_attention(None)
        return model
    return engine.load_model(checkpoint, "cpu", name.removeprefix("dav2 "))


def child(name: str, checkpoint: Path) -> None:
    """Runs in a fresh process: load, predict one image, print peak RSS and time to the first depth map."""
    image_bgr = synthetic_photo(*IMAGE_HW, seed=1)
    model = load_variant(name, checkpoint)
    if name == "upstream float32":
        depth_hw = model.infer_image(image_bgr, INPUT_SIZE)
    else:
        depth_hw = engine.predict(model, image_bgr, INPUT_SIZE)
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
    outputs = {name: model(input_bchw) for name, model in models.items()}  # warm-up
    seconds = {name: [] for name in models}
    for _ in range(repeat):
        for name, model in models.items():
            began = time.perf_counter()
            model(input_bchw)
            seconds[name].append(time.perf_counter() - began)
    return seconds, outputs


def targets(names: list[str], seconds: dict, outputs: dict, memory: dict, auto_name: str) -> list[str]:
    """The speed targets, each judged from this run's figures."""
    reference = outputs["upstream float32"]
    spread = float(reference.max() - reference.min())
    base = statistics.median(seconds["upstream float32"])

    def speedup(name):
        return base / statistics.median(seconds[name])

    def error(name, reduce):
        return float(reduce((outputs[name] - reference).abs())) / spread

    def verdict(ok):
        return "met" if ok else "NOT met"

    fp32, auto_error = "dav2 float32", error(auto_name, torch.mean)
    lines = [f"- float32 >= 1.25x upstream with max error <= 1e-4 of range: {speedup(fp32):.2f}x, "
             f"{error(fp32, torch.max):.1e}: {verdict(speedup(fp32) >= 1.25 and error(fp32, torch.max) <= 1e-4)}",
             f"- default (`--dtype auto` = {auto_name.split()[1]}) >= 4x with mean error <= 1%: "
             f"{speedup(auto_name):.2f}x, {auto_error:.2%}: "
             f"{verdict(speedup(auto_name) >= 4 and auto_error <= 0.01)}"]
    for name in names[1:]:
        if name not in (fp32, auto_name):
            lines.append(f"- {name.removeprefix('dav2 ')} (not the default) >= 4x with mean error <= 1%: "
                         f"{speedup(name):.2f}x, "
                         f"{error(name, torch.mean):.2%}: "
                         f"{verdict(speedup(name) >= 4 and error(name, torch.mean) <= 0.01)}")
    ours_rss, upstream_rss = memory[auto_name]["rss_mib"], memory["upstream float32"]["rss_mib"]
    lines.append(f"- peak RSS for one image no higher than upstream's: {ours_rss:.0f} vs {upstream_rss:.0f} MiB: "
                 f"{verdict(ours_rss <= upstream_rss)}")
    return lines


def machine_description() -> list[str]:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout if os.path.exists("/usr/bin/lscpu") \
        else ""
    model_name = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                       if line.startswith("Model name")), platform.processor() or platform.machine())
    capabilities = engine.cpu_capabilities()
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
        memory = {name: in_fresh_process(name, checkpoint) for name in names}
        models = {name: load_variant(name, checkpoint) for name in names}
        image_bgr = synthetic_photo(*IMAGE_HW, seed=1)
        input_bchw = torch.from_numpy(prep.to_model_input(image_bgr, prep.model_size(IMAGE_HW, INPUT_SIZE)))[None]
        seconds, outputs = interleaved(models, input_bchw, args.repeat)

    flops = count_flops(models["dav2 float32"].config, tuple(input_bchw.shape[2:]))
    peak = matmul_peak(torch.device("cpu"), "float32")
    reference = outputs["upstream float32"]
    spread = float(reference.max() - reference.min())
    base = statistics.median(seconds["upstream float32"])
    auto = engine.auto_precision(torch.device("cpu"))
    header = ("variant", "median s", "min s", "vs upstream", "GFLOP/s", "max err", "mean err", "peak RSS MiB",
              "first depth s")
    rows = [header]
    for name in names:
        median = statistics.median(seconds[name])
        error = (outputs[name] - reference).abs()
        label = name + (" (auto)" if name == f"dav2 {auto}" else "")
        rows.append((label, f"{median:.3f}", f"{min(seconds[name]):.3f}", f"{base / median:.2f}x",
                     f"{flops / median / 1e9:.0f}", f"{float(error.max()) / spread:.1e}",
                     f"{float(error.mean()) / spread:.1e}", f"{memory[name]['rss_mib']:.0f}",
                     f"{memory[name]['first_depth_s']:.1f}"))
    table = ["| " + " | ".join(row) + " |" for row in rows]
    table.insert(1, "|" + "---|" * len(header))
    table += ["", *targets(names, seconds, outputs, memory, f"dav2 {auto}")]
    lines = ["## Speed (measured by `python -m benchmarks.speed`)", "",
             f"vits, seeded random weights, {IMAGE_HW[1]}x{IMAGE_HW[0]} image at input size {INPUT_SIZE} "
             f"({flops / 1e9:.1f} GFLOP per forward), one process, variants interleaved, median of {args.repeat} "
             f"forward passes each after one warm-up; errors are of upstream float32's depth range. Peak RSS and "
             f"time to the first depth map (imports included) come from a fresh process per variant that "
             f"loads the checkpoint file and predicts one image. This machine's float32 matmul peak: "
             f"{peak / 1e9:.0f} GFLOP/s.", "", *table, "", "Machine:", *machine_description(), ""]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
