"""`dav2 video`: parse, then hand the source, the frame selection and the options to the video job."""

import sys

import click

from dav2_cli.cli.app import command_epilog, run_job
from dav2_cli.cli.params import FiniteFloat, fps_option
from dav2_cli.cli.shared_options import depth_options, make_options, progress_options, show_progress, space_options
from dav2_cli.cli.stereo_flags import stereo_flags

VIDEO_FORMATS_HELP = """\b
Formats: color/gray: a depth video by OUT's extension: .mp4 (H.264), .webm (VP9),
.mkv (lossless FFV1); same frame count, size and exact frame rate as IN (an odd side
gets one repeated edge row/column in .mp4), --side-by-side doubles the width.
gray16: lossless 16-bit .mkv on one range for the whole video (two passes), with
OUT.json: depth = lo + v/65535*(hi-lo); larger v = nearer for relative models,
farther for metric ones. npy/exr/tiff: -o DIR gets DIR/frame_000000.npy, ... (float32,
the model's values, numbered in output order); ply: one point cloud per frame likewise.
--near/--far and --align-to scale the whole video once. Audio is copied into color/gray videos.

\b
Ctrl-C or SIGTERM: reading stops, the frames in flight are finished and OUT is closed as
a valid, shorter video (a frame folder keeps the frames done), exit 130/143; a second
Ctrl-C stops at once and leaves no unfinished video.
A damaged IN: depth for every frame that decodes, one error line, exit 1."""


@click.command(epilog=command_epilog("""\b
Examples:
  dav2 video clip.mp4                        # clip_depth.mp4 beside it, with clip's audio
  dav2 video clip.mp4 -o depth.webm --side-by-side --start 10 --end 20
  dav2 video clip.mp4 -o depth.mkv --format gray16    # + depth.mkv.json
  dav2 video clip.mp4 -o frames/ --format npy --every 5
  dav2 video renders/ --fps 24 -o depth.mp4          # numbered images as one video
  dav2 video film.mp4 --stereo half-sbs              # film_LR.mp4: 3D for VR players, with film's audio
""", VIDEO_FORMATS_HELP))
@click.argument("source", metavar="IN")
@click.option("-o", "--output", default=None, metavar="OUT|DIR",
              help="Output video (.mp4, .webm, .mkv) or, for npy/exr/tiff/ply, a folder. "
                   "Default: IN_depth.mp4 (gray16: .mkv; raw: a folder IN_depth/) beside IN.")
@depth_options
@space_options
@stereo_flags
@click.option("--normalize", type=click.Choice(("ema", "frame", "global")), default=None,
              help="How depth is mapped to brightness. ema (default): each frame's 1-99th percentiles, "
                   "smoothed over time: one pass, no flicker, adapts slowly after a scene cut. global: one "
                   "range for the whole video: perfectly stable, but the model runs twice (2x the time). "
                   "frame: each frame's own min/max: most contrast, flickers. gray16 always uses global.")
@click.option("--start", type=FiniteFloat(min=0), default=0.0, metavar="SECONDS",
              help="Skip the frames before this time.")
@click.option("--end", type=FiniteFloat(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Stop before the frame at this time.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, metavar="N",
              help="Write at most N frames.")
@click.option("--every", type=click.IntRange(1, 1000), default=1, show_default=True, metavar="N",
              help="Keep every Nth frame; the output's frame rate is IN's divided by N (exactly).")
@click.option("--fps", default=None, metavar="RATE", callback=fps_option,
              help="Frame rate to use when IN states none (or to override it): 25, 29.97, 30000/1001.")
@click.option("--batch-size", type=click.IntRange(1, 64), default=2, show_default=True, metavar="N",
              help="Frames per model call.")
@click.option("--no-audio", is_flag=True, help="Do not copy IN's audio.")
@click.option("--scene-cuts", type=click.Choice(("on", "off")), default="on", show_default=True,
              help="Find hard cuts (colour histograms of consecutive frames): Video Depth Anything starts a new "
                   "chain of windows there and the ema brightness range starts again, so nothing is carried "
                   "across a cut.")
@click.option("--overwrite", is_flag=True,
              help="npy/exr/tiff/ply: replace the frames an earlier run left in the -o folder (without it, such a "
                   "folder is refused, so two runs never mix).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]",
              help="IN is a folder (or .txt list) of videos, one per task on a Ray cluster, written under -o DIR as "
                   "`dav2 video` writes each: `auto` joins the running cluster, ADDRESS names one, alone starts a "
                   "local one. Needs the extra: pip install \"dav2-cli[ray]\".")
@click.option("--ray-actors", type=click.IntRange(1), default=None, metavar="N",
              help="With --ray: model copies. Default: one per GPU, else one per CPU less one.")
@click.option("--skip-existing", is_flag=True,
              help="With --ray: leave videos whose output is complete untouched (finish an interrupted run).")
@progress_options
def video(source, output, fmt, normalize, start, end, max_frames, every, fps, batch_size, no_audio, scene_cuts,
          overwrite, progress, ray_address, ray_actors, skip_existing, **values):
    """Depth video (or per-frame depth files) for video IN, streamed frame by frame.

    IN may also be a folder of numbered images, taken in natural order as one video (give --fps); with --ray, a
    folder or .txt list of videos."""
    if ray_address is None and (skip_existing or ray_actors is not None):
        raise click.UsageError(f"{'--skip-existing' if skip_existing else '--ray-actors'} applies to --ray runs "
                               f"over many videos")

    def job():
        from dav2_cli.jobs.paths import require_input

        if ray_address is None:  # a --ray job says it itself, after telling a URI from a mistyped name
            require_input(source)  # a mistyped name is said at once, before the video job's heavy imports
        from dav2_cli.jobs.plan import video_format
        from dav2_cli.jobs.video import VideoOptions, run_video

        options = VideoOptions(start=start, end=end, max_frames=max_frames, every=every, fps=fps, normalize=normalize,
                               batch_size=batch_size, audio=not no_audio, overwrite=overwrite,
                               scene_cuts=scene_cuts == "on", name_outputs=values["verbose"] or sys.stderr.isatty(),
                               progress=show_progress(progress))
        if ray_address is not None:
            from dav2_cli.jobs.image_depth import JobOptions
            from dav2_cli.jobs.ray_videos import run_videos_on_ray

            ray_job = JobOptions(skip_existing=skip_existing, ray=ray_address, ray_actors=ray_actors)
            return run_videos_on_ray(source, output, make_options(video_format(fmt), **values), options, ray_job)
        return run_video(source, output, make_options(video_format(fmt), **values), options)

    run_job(job)


for _param in video.params:  # the shared --format help describes pictures; say what each means for a video
    if _param.name == "fmt":
        _param.help = ("color (default) or gray: a depth video; gray16: a 16-bit .mkv of depth values; "
                       "npy/exr/tiff: a folder of float32 frames; ply: a folder of point clouds (see below). "
                       "png = color.")
