"""What choosing a backend costs a first folder job: `dav2 folder` over photos in ten sizes from a cold cache, from
a warm one, and the model's own forwards on the same photos.

`--backend auto` chooses by timing (runtime/auto_backend.py), and OpenVINO must first convert the model; a user's
first folder pays whatever that costs. Each round runs, in fresh processes with the default options:
- cold: `dav2 folder` over the photos (ten shapes, `--copies` of each) with an empty cache folder (and with
  `--before DIR`, another checkout's dav2 the same way, to compare with an earlier version);
- prepared: the same with an empty cache folder readied by `dav2 models prepare` first (its time shown apart);
- warm: the same with a cache folder where an earlier, longer job has timed and converted everything;
- start-up: the warm job over one small photo (imports, reading the weights, compiling a converted graph);
- the model alone: one forward of each photo (after one at its size, untimed) on what the warm cache chose.
It prints each job's time less the start-up as a ratio to the model's (the goal: <= 1.15 from a cold cache),
and what the cold cache cost over the warm one. `--loaded` runs it all beside one busy process per core;
`--backend torch` measures what a base install (torch alone) runs.

    python -m benchmarks.cold_folder [--rounds 3] [--input-size 504] [--copies 1] [--loaded] [--before DIR]
                                     [--backend NAME]
"""

import argparse
import contextlib
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.busy import BusyCores
from benchmarks.data import SHARED_DATA

ASPECTS = [(1, 1), (4, 3), (3, 2), (16, 9), (3, 4), (2, 3), (9, 16), (5, 4), (20, 9), (21, 9)]  # width:height
HERE = Path(__file__).resolve().parent.parent


def make_photos(folder: Path, copies: int = 1) -> list[Path]:
    """The shared photos cropped to ten aspect ratios (and `copies` copies of each), the sizes a folder of a
    phone's and a camera's pictures holds."""
    import cv2

    sources = sorted(SHARED_DATA.glob("*.jpg"))
    if not sources:
        raise SystemExit(f"{SHARED_DATA}: no photos")
    folder.mkdir(parents=True)
    made = []
    for index, (width, height) in enumerate(ASPECTS):
        image = cv2.imread(str(sources[index % len(sources)]))
        scale = min(image.shape[1] / width, image.shape[0] / height)
        crop_w, crop_h = int(width * scale), int(height * scale)
        top, left = (image.shape[0] - crop_h) // 2, (image.shape[1] - crop_w) // 2
        for copy in range(copies):
            made.append(folder / f"p{index:02d}_{copy}.jpg")
            cv2.imwrite(str(made[-1]), image[top:top + crop_h, left:left + crop_w])
    return made


def dav2_seconds(tree: Path, home: Path, *args) -> float:
    """Wall seconds of a dav2 command as a user runs it, but for the cache folder."""
    environment = {**os.environ, "DAV2_HOME": str(home), "PYTHONPATH": str(tree)}
    environment.pop("DAV2_BACKEND", None)
    began = time.perf_counter()
    # run from `tree`: `python -m` puts the working folder before PYTHONPATH
    subprocess.run([sys.executable, "-m", "dav2_cli", *map(str, args)], env=environment, check=True,
                   capture_output=True, cwd=tree)
    return time.perf_counter() - began


def job_seconds(tree: Path, source: Path, out: Path, checkpoint: Path, home: Path, input_size: int,
                options: tuple = ()) -> float:
    """Wall seconds of `dav2 folder` over `source` with the model file and `options`."""
    seconds = dav2_seconds(tree, home, "folder", source, "-o", out, "-m", checkpoint, "--input-size", input_size, "-q",
                           *options)
    shutil.rmtree(out)
    return seconds


MODEL_ONLY = """
import json, sys, time, cv2, torch
from dav2_cli.depth import sizing as prep
from dav2_cli.runtime.loading import load_model
model = load_model(sys.argv[1], backend=sys.argv[3] or None)
total, chosen = 0.0, set()
with torch.inference_mode():
    for path in sys.argv[4:]:
        image = cv2.imread(path)
        x = torch.from_numpy(prep.to_model_input(image, prep.model_size(image.shape[:2], int(sys.argv[2])))[None])
        model(x)
        began = time.perf_counter()
        model(x)
        total += time.perf_counter() - began
print(json.dumps({"seconds": total, "backends": sorted(set(getattr(model, "chosen", {"": "torch"}).values()))}))
"""


def model_seconds(photos: list[Path], checkpoint: Path, home: Path, input_size: int, backend: str | None) -> dict:
    """The model's forwards alone over `photos`, on what the warm cache chose, in a fresh process."""
    environment = {**os.environ, "DAV2_HOME": str(home), "PYTHONPATH": str(HERE)}
    environment.pop("DAV2_BACKEND", None)
    result = subprocess.run([sys.executable, "-c", MODEL_ONLY, str(checkpoint), str(input_size), backend or "",
                             *map(str, photos)], env=environment, check=True, capture_output=True, text=True, cwd=HERE)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--input-size", type=int, default=504)
    parser.add_argument("--copies", type=int, default=1, help="photos of each aspect ratio in the folder")
    parser.add_argument("--loaded", action="store_true", help="beside one busy process per core")
    parser.add_argument("--before", type=Path, help="another checkout whose dav2 runs a cold job too")
    parser.add_argument("--backend", help="passed to every job (default: none, as users run it)")
    args = parser.parse_args(argv)

    import cv2
    import torch

    from benchmarks.upstream import upstream_model

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        checkpoint = folder / "depth_anything_v2_vits.pth"
        torch.save(upstream_model("vits", seed=0).state_dict(), checkpoint)
        photos = make_photos(folder / "ten", copies=args.copies)
        make_photos(folder / "long", copies=10)
        (folder / "one").mkdir()
        cv2.imwrite(str(folder / "one" / "small.jpg"), cv2.imread(str(photos[0]))[:48, :64])
        warm_home = folder / "warm-home"
        backend = ("--backend", args.backend) if args.backend else ()
        job = functools.partial(job_seconds, checkpoint=checkpoint, input_size=args.input_size, options=backend)
        job(HERE, folder / "long", folder / "out", home=warm_home)  # warms it
        count = len(photos)
        ratios = {"cold": [], "prepared": [], "warm": [], "cold before": []}
        model, taxes, preparing = [], [], []
        with BusyCores() if args.loaded else contextlib.nullcontext():
            for round_number in range(1, args.rounds + 1):
                seconds = {}
                for name, tree in (("cold before", args.before), ("cold", HERE)):
                    if tree is not None:
                        seconds[name] = job(tree, folder / "ten", folder / "out",
                                            home=folder / f"{name}-home-{round_number}")
                prepared_home = folder / f"prepared-home-{round_number}"
                preparing.append(dav2_seconds(HERE, prepared_home, "models", "prepare", checkpoint,
                                              "--input-size", args.input_size, *backend))
                seconds["prepared"] = job(HERE, folder / "ten", folder / "out", home=prepared_home)
                seconds["warm"] = job(HERE, folder / "ten", folder / "out", home=warm_home)
                start_up = job(HERE, folder / "one", folder / "out", home=warm_home)
                alone = model_seconds(photos, checkpoint, warm_home, args.input_size, args.backend)
                model.append(alone["seconds"] / count)
                for name, wall in seconds.items():
                    ratios[name].append((wall - start_up) / alone["seconds"])
                taxes.append(seconds["cold"] - seconds["warm"])
                print(f"round {round_number}: " + ", ".join(f"{name} {wall:.1f} s ({ratios[name][-1]:.2f}x)"
                                                            for name, wall in seconds.items())
                      + f"; preparing {preparing[-1]:.1f} s; start-up {start_up:.1f} s, "
                      f"model alone {alone['seconds']:.1f} s on {'+'.join(alone['backends'])}; "
                      f"load average {os.getloadavg()[0]:.1f}", flush=True)
    print(f"{'loaded' if args.loaded else 'quiet'}, {count} photos at --input-size {args.input_size}"
          f"{', --backend ' + args.backend if args.backend else ''}, median of "
          f"{args.rounds}: model {1000 * statistics.median(model):.0f} ms/image; "
          + ", ".join(f"{name} {statistics.median(values):.2f}x the model" for name, values in ratios.items()
                      if values)
          + f" (goal for cold: <= 1.15); cold minus warm {statistics.median(taxes):+.1f} s; "
          f"`dav2 models prepare` {statistics.median(preparing):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
