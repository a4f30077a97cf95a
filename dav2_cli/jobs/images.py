"""Jobs over images: plan where each result goes, run the model on batches, report, and decide the exit code.

A bad input is reported in one line and skipped so the rest still get done; only a problem that stops every
input (no model, an output location that refuses every write) ends the job early. `image` and `folder` share
one path through here, so both get the same guarantees: outputs appear whole or not at all, Ctrl-C and SIGTERM
finish the batch in hand, and `--skip-existing` resumes without rewriting anything finished.
"""

import sys
from dataclasses import replace
from pathlib import Path

from dav2_cli.errors import EXIT_FAILED, EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM, UserError
from dav2_cli.jobs.image_depth import JobOptions, Tally, depth_for_items, fitted_options
from dav2_cli.jobs.measure import Measure, plan_measure
from dav2_cli.jobs.options import DepthOptions, report
from dav2_cli.jobs.paths import refuse_outputs_onto_inputs, unreadable_input
from dav2_cli.jobs.plan import Item, default_folder_output, plan_folder, plan_image_outputs, take_shard
from dav2_cli.jobs.stereo import output_tail
from dav2_cli.jobs.uri_files import existing_outputs, is_uri, require_ray_for_uris
from dav2_cli.media.images import max_megapixels
from dav2_cli.outputs import formats
from dav2_cli.outputs.atomic import prepare_output_folder

__all__ = ["JobOptions", "run_folder", "run_images", "run_items"]


def run_images(inputs: list[str], output: str | None, options: DepthOptions,
               job: JobOptions = JobOptions()) -> int:
    pairs = plan_image_outputs(inputs, output, options.fmt, tail=output_tail(options))
    formats.check_side_by_side(options.fmt, options.side_by_side)
    measure = plan_measure(options)
    items = [Item(source, destination) for source, destination in pairs]
    measure.match_inputs([(item.name, item.source) for item in items])
    return run_items(items, measure, job, summary=False)


def run_folder(source: str, output: str | None, options: DepthOptions, job: JobOptions, *,
               recursive: bool = True) -> int:
    require_ray_for_uris(source, output, job.ray)
    if job.ray is not None:
        from dav2_cli.jobs.ray_cluster import check_ray_installed

        check_ray_installed()
    options = replace(options, fmt=formats.canonical_format(options.fmt))
    if is_uri(source) or is_uri(output):
        from dav2_cli.jobs.uri_files import plan_uri_folder, prepare_output

        formats.check_side_by_side(options.fmt, options.side_by_side)
        measure = plan_measure(options)
        items, output_uri = plan_uri_folder(source, output, options.fmt, recursive=recursive,
                                            tail=output_tail(options, ""),
                                            default_tail="_3d" if options.stereo is not None else "_depth")
        measure.match_inputs([(item.name, item.relative) for item in items])
        prepare_output(output_uri)
        return run_items(items, measure, job, summary=True)
    source_path = Path(source)
    if not source_path.exists():
        raise UserError(f"{source}: no such file or folder")
    output_path = Path(output) if output is not None else default_folder_output(
        source_path, "_3d" if options.stereo is not None else "_depth")
    formats.check_side_by_side(options.fmt, options.side_by_side)
    measure = plan_measure(options)
    items, problems = plan_folder(source_path, output_path, options.fmt, recursive=recursive,
                                  tail=output_tail(options, ""))
    measure.match_inputs([(item.name, item.relative) for item in items])
    for problem in problems:
        report(problem)
    prepare_output_folder(output_path)
    return run_items(items, measure, job, summary=True, failed_before=len(problems))


def run_items(items: list[Item], measure: Measure, job: JobOptions, *, summary: bool,
              failed_before: int = 0) -> int:
    """Depth for each item of this job's shard, skipping finished ones when asked; prints the summary line.

    The model is loaded only when something is left to do, so a finished job resumes instantly.
    """
    max_megapixels()  # a bad DAV2_MAX_MEGAPIXELS is one error up front, not one per image
    refuse_outputs_onto_inputs(items)
    items = take_shard(items, job.shard)
    tally = Tally(total=len(items) + failed_before, failed=failed_before)
    existing = existing_outputs([item.destination for item in items]) if job.skip_existing else set()
    todo = []
    for item in items:
        problem = None if is_uri(item.source) else unreadable_input(item.source)  # a URI was just listed
        if problem:  # found in a stat, so a mistyped name is reported at once, before the model loads
            report(problem)
            tally.failed += 1
        elif item.destination in existing:
            tally.skipped += 1
        else:
            todo.append(item)
    stopped_by = None
    if todo and job.ray is not None:
        from dav2_cli.jobs.ray_images import depth_on_ray

        measure = replace(measure, options=fitted_options(todo, measure.options, job))
        stopped_by = depth_on_ray(todo, measure, job, tally)
    elif todo:
        stopped_by = depth_for_items(todo, measure, job, tally)
    if summary or stopped_by:
        print(tally.line(stopped_by), file=sys.stderr, flush=True)
    if stopped_by in ("interrupted", "terminated"):
        return EXIT_SIGTERM if stopped_by == "terminated" else EXIT_SIGINT
    return EXIT_FAILED if tally.failed or stopped_by else EXIT_OK
