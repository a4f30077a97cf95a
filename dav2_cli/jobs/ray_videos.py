"""`dav2 video DIR --ray`: many videos on a Ray cluster, one video per actor call, since temporal depth runs
frame after frame within a video.

The driver lists the videos once, names each output as a folder job names images (the input tree mirrored under
OUT), checks every name as `dav2 video IN -o NAME` would, and leaves out the finished ones with
--skip-existing. Each actor loads the model once and runs the local video job (jobs/video.py) on each video it
is given, so every output has the bytes, name, sidecars and atomic write of `dav2 video IN -o NAME`. A bad video
is one error line and a failed count; the others still finish.
"""

import os
import sys
from dataclasses import replace
from pathlib import Path

from dav2_cli.errors import EXIT_FAILED, EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM, UsageError, UserError
from dav2_cli.jobs.image_depth import JobOptions, Tally
from dav2_cli.jobs.options import DepthOptions, report
from dav2_cli.jobs.plan import GRAY16_EXTENSION, Item, default_folder_output, distinct_names, plan_output
from dav2_cli.jobs.ray_cluster import Pool, ShareResult, actor_count, check_ray_installed, count_result, \
    join_cluster, run_shares, stderr_lines
from dav2_cli.jobs.stereo import output_tail
from dav2_cli.jobs.video import VideoOptions, check_combination
from dav2_cli.outputs import formats

# what a folder of videos is searched for, by extension (any case); a list names its videos itself
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
                    ".wmv", ".flv", ".3gp", ".ogv")


def is_video_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(VIDEO_EXTENSIONS)


def output_extension(fmt: str) -> str:
    """What `dav2 video IN` names its output by default: a .mp4, gray16's .mkv, or a folder of frames."""
    if fmt in formats.FILE_PER_FRAME_FORMATS:
        return ""
    return GRAY16_EXTENSION if fmt == "gray16" else ".mp4"


def plan_videos(source: str, output: str | None, options: DepthOptions, video: VideoOptions, *,
                skip_existing: bool) -> tuple[list[Item], Path]:
    """Every video in folder `source` (recursively) or named in a .txt list, with its output under OUT, each
    checked as `dav2 video IN -o OUT/NAME` checks it. Usage errors come before any work, as locally."""
    from dav2_cli.jobs.paths import is_same_file, require_input
    from dav2_cli.media.images import read_path_list, scan_folder

    from dav2_cli.jobs.uri_files import is_uri

    if is_uri(source) or is_uri(output):
        raise UsageError(f"{source if is_uri(source) else output}: videos are read and written by path (FFmpeg "
                         f"reads files); `dav2 folder --ray` takes URIs")
    require_input(source)
    check_combination(options.fmt, options, video)
    if options.space.align_to is not None:
        raise UsageError("--align-to names points of one video; give that video without --ray")
    path = Path(source)
    out = Path(output) if output is not None else default_folder_output(path)
    if path.is_dir():
        if is_same_file(path, out):
            raise UsageError(f"{out}: the output folder is the input folder; choose another with -o")
        relatives, problems = scan_folder(path, exclude=out, keep=is_video_name)
        for problem in problems:
            report(problem)
        sources = [path / relative for relative in relatives]
    elif path.is_file() and path.suffix.lower() == ".txt":
        sources = list(dict.fromkeys(read_path_list(path)))
        base = path.parent.resolve()
        relatives = [p.resolve().relative_to(base) if p.resolve().is_relative_to(base) else Path(p.name)
                     for p in sources]
    else:
        raise UsageError(f"{source}: --ray takes a folder of videos or a .txt list of them; for one video, leave "
                         f"out --ray")
    if not sources:
        raise UserError(f"{source}: no videos found ({', '.join(e[1:] for e in VIDEO_EXTENSIONS)})")
    # a frame folder that --skip-existing finds part-done is finished by the actor, which knows its length
    overwrite = video.overwrite or (skip_existing and options.fmt in formats.FILE_PER_FRAME_FORMATS)
    names = distinct_names(relatives, output_tail(options, "") + output_extension(options.fmt))
    items = [Item(str(video_path), str(out / name), relative.as_posix())
             for video_path, relative, name in zip(sources, relatives, names)]
    for item in items:
        plan_output(Path(item.source), item.destination, options.fmt, overwrite=overwrite)
    return items, out


class VideoWorker:
    """One actor: the job's model, loaded once, and the local video job for each video it is given."""

    def __init__(self, options: DepthOptions, video: VideoOptions, skip_existing: bool):
        from dav2_cli.jobs.options import load_job_model

        self.options, self.video, self.skip_existing, self.models, self.fatal = options, video, skip_existing, {}, ""
        try:  # a model that cannot load stops every video: one line on the driver, not a trace per actor
            self.models[options.backend] = load_job_model(options)
        except UserError as exc:
            self.fatal = ShareResult.fatal_error(exc)

    def run(self, items: list[Item]) -> ShareResult:
        if self.fatal:
            return ShareResult(fatal=self.fatal)
        result = ShareResult()
        with stderr_lines() as lines:  # the driver prints them, in order with its bar
            for item in items:
                outcome = self._one(item)
                setattr(result, outcome, getattr(result, outcome) + 1)
        result.lines = lines.getvalue()
        return result

    def _one(self, item: Item) -> str:
        """Depth for one video as `dav2 video` makes it; returns which count it adds to."""
        from dav2_cli.jobs.video import depth_video, plan_video
        from dav2_cli.runtime.interrupts import GracefulStop

        try:
            job = plan_video(item.source, item.destination, self.options, replace(self.video, overwrite=True))
            if self.skip_existing and _frames_complete(job, self.options.fmt):
                return "skipped"
            with GracefulStop() as stop:
                code = depth_video(self._model(job.info), job, self.options, self.video, stop)
        except UserError as exc:
            message = str(exc)
            report(message if item.source in message else f"{item.source}: {message}")
            return "failed"
        return "done" if code == EXIT_OK else "failed"  # a damaged video's line is already said

    def _model(self, info):
        """The model for this video's size: the backend `dav2 video` would pick for it (memory_fit.py)."""
        from dav2_cli.jobs.options import load_job_model
        from dav2_cli.runtime.memory_fit import fitting_backend

        options = self.options
        backend = fitting_backend(options.model, options.device, options.dtype, options.backend, options.input_size,
                                  self.video.batch_size, [(info.height, info.width)], verbose=options.verbose)
        if backend not in self.models:
            self.models[backend] = load_job_model(replace(options, backend=backend))
        return self.models[backend]


def _frames_complete(job, fmt: str) -> bool:
    """A frame folder holding its video's last frame: what a finished run leaves, since frames are written in
    order, each whole with its sidecar before it. One without it is what a killed run left, and is done again."""
    from dav2_cli.media.frame_sequence import frame_file_name

    if job.total is None or fmt not in formats.FILE_PER_FRAME_FORMATS:
        return False
    return (job.out / frame_file_name(job.total - 1, formats.extension_for(fmt))).is_file()


def run_videos_on_ray(source: str, output: str | None, options: DepthOptions, video: VideoOptions,
                      job: JobOptions) -> int:
    """The videos of folder or list `source` on the cluster `job.ray` names; prints the summary line."""
    import ray
    from tqdm import tqdm

    from dav2_cli.jobs.paths import unreadable_input
    from dav2_cli.outputs.atomic import prepare_output_folder
    from dav2_cli.runtime.interrupts import GracefulStop

    check_ray_installed()
    items, out = plan_videos(source, output, options, video, skip_existing=job.skip_existing)
    prepare_output_folder(out)
    tally = Tally(total=len(items))
    todo = []
    for item in items:
        problem = unreadable_input(item.source)
        if problem:  # a list's missing entry, said before any actor starts
            report(problem)
            tally.failed += 1
        elif job.skip_existing and os.path.isfile(item.destination):  # a video appears only when complete
            tally.skipped += 1
        else:
            todo.append(item)
    stopped_by = None
    if todo:
        join_cluster(job.ray)
        resources = ray.cluster_resources()
        gpus = 1 if options.device != "cpu" and resources.get("GPU") else 0
        worker_video = replace(video, progress=False)
        pool = Pool(VideoWorker, {"options": options, "video": worker_video, "skip_existing": job.skip_existing},
                    actor_count(job.ray_actors, resources), gpus)
        with GracefulStop() as stop, tqdm(total=len(todo), unit="video", file=sys.stderr, dynamic_ncols=True,
                                         disable=not video.progress) as bar:
            for result in run_shares(pool, [[item] for item in todo], lambda: stop.requested):
                count_result(result, tally, bar)
        if stop.requested:
            stopped_by = "terminated" if stop.exit_code == EXIT_SIGTERM else "interrupted"
    print(tally.line(stopped_by), file=sys.stderr, flush=True)
    if stopped_by is not None:
        return EXIT_SIGTERM if stopped_by == "terminated" else EXIT_SIGINT
    return EXIT_FAILED if tally.failed else EXIT_OK
