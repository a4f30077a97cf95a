"""`dav2 models prepare`: pay a model's one-time costs on this machine before the first real job does.

With `--backend auto` a model's first run in a new input size range (runtime/size_buckets.py) times torch against
OpenVINO, and its first run with OpenVINO converts the model (~4 s for vits on 2 cores); torch's own attention and
Linear forms are timed once per range too. All of it is kept in the cache folder, so later runs start at full
speed, but a short first job pays it: a first folder of ten photos took ~1.5x the model's own time on an AVX2 EPYC
and ~2.8x on an AMX Xeon (docs/performance.md), where a longer job hides it. Preparing runs the model once at each
input size, through the same loading and pipeline as `dav2 folder`, on a synthetic photo: every answer a job would
time or convert is then already in the cache, under the same keys (tuning_cache.py), and the job's depth is what it
would have been.
"""

from dataclasses import replace

import numpy as np

from dav2_cli.errors import EXIT_OK
from dav2_cli.jobs.options import DepthOptions, is_video_model, load_job_model
from dav2_cli.pipeline import PerImageDepth, run_pipeline
from dav2_cli.runtime.interrupts import GracefulStop
from dav2_cli.runtime.memory_fit import fitting_backend

PHOTO_ASPECT = 4 / 3  # a camera's landscape photo; one input size is one timing whatever the aspect ratio


def photo_hw(input_size: int) -> tuple[int, int]:
    """A landscape photo's size whose shorter side is `input_size`: the model sees it unresized."""
    return input_size, round(input_size * PHOTO_ASPECT)


def photo_at(input_size: int, seed: int = 0) -> np.ndarray:
    from dav2_cli.jobs.bench import synthetic_photo

    return synthetic_photo(*photo_hw(input_size), seed)


def what_runs(model, size_hw: tuple[int, int]) -> tuple[str, str | None]:
    """The backend a job at this model size runs, and the timing's cache key (None where nothing is timed)."""
    from dav2_cli.runtime import size_buckets
    from dav2_cli.runtime.auto_backend import FastestBackend

    if not isinstance(model, FastestBackend):
        return getattr(model, "backend", "torch"), None
    bucket = size_buckets.of_image(size_hw, model.config.patch_size)
    return model.chosen.get(bucket, "?"), model.timing_key(bucket)


def run_prepare(options: DepthOptions, input_sizes: list[int], echo) -> int:
    """Run the model once at each input size; one line per size on stdout: what a job at that size runs, and
    whether it was timed now or read from the cache."""
    from dav2_cli.depth import sizing
    from dav2_cli.runtime import tuning_cache

    sizes = sorted(set(input_sizes))
    fits = {size: fitting_backend(options.model, options.device, options.dtype, options.backend, size, 1,
                                  [photo_hw(size)], verbose=options.verbose) for size in sizes}
    backend = options.backend if options.backend in fits.values() else next(iter(fits.values()))
    model = load_job_model(replace(options, backend=backend, input_size=sizes[0]), repeated=len(sizes) > 1)
    if is_video_model(model):
        echo(f"{options.model}: Video Depth Anything runs on torch, which has nothing to time or convert")
        return EXIT_OK
    timed_before = {}
    for size in sizes:
        _, key = what_runs(model, sizing.model_size(photo_hw(size), size))
        timed_before[size] = key is not None and tuning_cache.cached_answer(key, model.names) is not None
    with GracefulStop() as stop:
        for size in sizes:
            if fits[size] == backend and not stop.requested:
                run_pipeline([(size, photo_at(size))], PerImageDepth(model, options.sky),
                             lambda frame, depth: None, input_size=size, batch_size=1, stop=stop)
        if stop.requested:
            return stop.exit_code
    for size in sizes:
        if fits[size] != options.backend:
            echo(f"--input-size {size}: {fits[size]} (OpenVINO would not fit in memory at this size)")
            continue
        name, key = what_runs(model, sizing.model_size(photo_hw(size), size))
        how = "timed before" if timed_before[size] else "timed now" if key else "the only backend here"
        echo(f"--input-size {size}: {name} in {model.precision} ({how})")
    return EXIT_OK
