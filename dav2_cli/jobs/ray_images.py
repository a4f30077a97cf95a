"""`dav2 folder --ray`: the folder job's remaining images spread over the actors of a Ray cluster.

The driver plans, skips and counts exactly as a local run does (jobs/images.py); only the depth of the images
left to do moves. Each actor loads the model once and runs the local job's own per-image code on its shares, so
every output has the same bytes, name, sidecars and atomic write as a local run's. Ray's built-in writers are
not used: they name files by UUID and cannot resume.
"""

import math
import sys
from dataclasses import replace

from dav2_cli.errors import UsageError, UserError
from dav2_cli.jobs.ray_cluster import Pool, ShareResult, actor_count, count_result, join_cluster, run_shares, \
    stderr_lines

SHARES_PER_ACTOR = 4  # enough shares that a fast actor takes more of them, few enough that each fills batches


class FolderWorker:
    """One actor: the job's model, loaded once, and the local job's code for each share of items."""

    def __init__(self, measure, job):
        from dav2_cli.jobs.options import VIDEO_MODEL_FOR_IMAGES, is_video_model, load_job_model

        self.measure, self.job, self.model, self.fatal = measure, job, None, ""
        try:  # a model that cannot load stops every image: one line on the driver, not a trace per actor
            self.model = load_job_model(measure.options)
            if is_video_model(self.model):
                raise UsageError(VIDEO_MODEL_FOR_IMAGES.format(model=measure.options.model))
        except UserError as exc:
            self.fatal = ShareResult.fatal_error(exc)
            return
        measure.use_model(self.model.config)

    def run(self, items: list) -> ShareResult:
        from dav2_cli.jobs.image_depth import Tally, depth_for_items

        if self.fatal:
            return ShareResult(fatal=self.fatal)
        tally = Tally(total=len(items))
        with stderr_lines() as lines:  # the driver prints them, once, in order with its bar
            stopped_by = depth_for_items(items, self.measure, self.job, tally, model=self.model)
        return ShareResult(done=tally.done, failed=tally.failed, lines=lines.getvalue(), stopped=stopped_by)


def depth_on_ray(todo: list, measure, job, tally) -> str | None:
    """Depth for `todo` on the cluster `job.ray` names; counts into `tally`; returns why it stopped, if it did."""
    import ray
    from tqdm import tqdm

    from dav2_cli.errors import EXIT_SIGTERM
    from dav2_cli.runtime.interrupts import GracefulStop

    join_cluster(job.ray)
    resources = ray.cluster_resources()
    actors = actor_count(job.ray_actors, resources)
    gpus = 1 if measure.options.device != "cpu" and resources.get("GPU") else 0
    size = max(job.batch_size, min(job.batch_size * SHARES_PER_ACTOR, math.ceil(len(todo) / actors)))
    shares = [todo[start:start + size] for start in range(0, len(todo), size)]
    pool = Pool(FolderWorker, {"measure": measure, "job": replace(job, progress=False, ray=None)}, actors, gpus)
    stopped_by = None
    with GracefulStop() as stop, tqdm(total=len(todo), unit="img", file=sys.stderr, dynamic_ncols=True,
                                     disable=not job.progress) as bar:
        for result in run_shares(pool, shares, lambda: stop.requested or stopped_by is not None):
            count_result(result, tally, bar)
            stopped_by = stopped_by or result.stopped
    if stop.requested:
        return "terminated" if stop.exit_code == EXIT_SIGTERM else "interrupted"
    return stopped_by
