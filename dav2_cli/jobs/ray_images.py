"""`dav2 folder --ray`: the folder job's remaining images spread over the actors of a Ray cluster.

The driver plans, skips and counts exactly as a local run does (jobs/images.py); only the depth of the images
left to do moves. Each actor loads the model once and runs the local job's own per-image code on its share, so
every output has the same bytes, name, sidecars and atomic write as a local run's. Ray's built-in writers are
not used: they name files by UUID and cannot resume. A bad image is one error line and a failed count, never an
exception, because Ray would fail the whole job on an exception raised by user code.
"""

import contextlib
import importlib.util
import io
import os
import sys
from dataclasses import replace

from dav2_cli.errors import UsageError, UserError

RAY_EXTRA = 'dav2 --ray needs Ray: pip install "dav2-cli[ray]"'


def check_ray_installed() -> None:
    """A usage error before any work when the `ray` extra is missing; looks for Ray without importing it."""
    try:
        found = importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise UsageError(RAY_EXTRA)


def actor_count(requested: int | None, resources: dict) -> int:
    """--ray-actors, else one per GPU, else enough CPU actors to leave one CPU for reading: actors that take
    every CPU starve Ray's readers and the job hangs (ray#44687)."""
    if requested is not None:
        return requested
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return gpus
    return max(1, int(resources.get("CPU", 1)) - 1)


class FolderWorker:
    """One actor: the job's model, loaded once, and the local job's code for a batch of items."""

    def __init__(self, measure, job):
        from dav2_cli.jobs.options import VIDEO_MODEL_FOR_IMAGES, is_video_model, load_job_model

        self.measure, self.job, self.model, self.fatal = measure, job, None, ""
        try:  # a model that cannot load stops every image: one line on the driver, not a trace per actor
            self.model = load_job_model(measure.options)
            if is_video_model(self.model):
                raise UsageError(VIDEO_MODEL_FOR_IMAGES.format(model=measure.options.model))
        except UserError as exc:
            self.fatal = f"{'usage:' if isinstance(exc, UsageError) else 'user:'}{exc}"
            return
        measure.use_model(self.model.config)

    def __call__(self, batch: dict) -> dict:
        from dav2_cli.jobs.image_depth import Tally, depth_for_items
        from dav2_cli.jobs.plan import Item

        if self.fatal:
            return {"done": [0], "failed": [0], "lines": [""], "stopped": [""], "fatal": [self.fatal]}
        items = [Item(str(s), str(d), str(r) or None)
                 for s, d, r in zip(batch["source"], batch["destination"], batch["relative"])]
        tally = Tally(total=len(items))
        lines = io.StringIO()
        with contextlib.redirect_stderr(lines):  # the driver prints them, once, in order with its bar
            stopped_by = depth_for_items(items, self.measure, self.job, tally, model=self.model)
        return {"done": [tally.done], "failed": [tally.failed], "lines": [lines.getvalue()],
                "stopped": [stopped_by or ""], "fatal": [""]}


def depth_on_ray(todo: list, measure, job, tally) -> str | None:
    """Depth for `todo` on the cluster `job.ray` names; counts into `tally`; returns why it stopped, if it did."""
    import ray
    from tqdm import tqdm

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not ray.is_initialized():
        ray.init(address=None if job.ray == "" else job.ray, include_dashboard=False,
                 log_to_driver=True, logging_level="ERROR")
    actors = actor_count(job.ray_actors, ray.cluster_resources())
    gpus = 1 if measure.options.device not in ("cpu",) and ray.cluster_resources().get("GPU") else 0
    worker_job = replace(job, progress=False, ray=None)
    rows = [{"source": item.source, "destination": item.destination, "relative": item.relative or ""}
            for item in todo]
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), actors * 4)))
    results = dataset.map_batches(FolderWorker, fn_constructor_kwargs={"measure": measure, "job": worker_job},
                                  compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=gpus,
                                  batch_size=job.batch_size, batch_format="numpy")
    stopped_by = None
    with tqdm(total=len(todo), unit="img", file=sys.stderr, dynamic_ncols=True, disable=not job.progress) as bar:
        for row in results.iter_rows():
            if row["fatal"]:
                kind, message = str(row["fatal"]).split(":", 1)
                raise UsageError(message) if kind == "usage" else UserError(message)
            for line in str(row["lines"]).splitlines():
                tqdm.write(line, file=sys.stderr)
            tally.done += int(row["done"])
            tally.failed += int(row["failed"])
            stopped_by = stopped_by or (str(row["stopped"]) or None)
            bar.update(int(row["done"]) + int(row["failed"]))
    return stopped_by
