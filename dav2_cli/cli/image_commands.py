"""`dav2 image` and `dav2 folder`: parse, then hand the inputs and options to the images job."""

import sys

import click

from dav2_cli.cli.app import command_epilog, run_job
from dav2_cli.cli.params import shard_option
from dav2_cli.cli.shared_options import depth_options, make_options, progress_options, show_progress, space_options
from dav2_cli.cli.stereo_flags import stereo_flags


@click.command(epilog=command_epilog("""\b
Examples:
  dav2 image photo.jpg                      # photo_depth.png beside it
  dav2 image a.jpg b.jpg -o out/ --format npy
  dav2 image photo.jpg -o depth.tiff        # float32 raw values
  dav2 image room.jpg -m metric-indoor-vits -o room.ply --hfov 70 --mesh
  dav2 image photo.jpg -o photo.ply --near 0.5 --far 12   # relative model → meters
  cat photo.jpg | dav2 image - -o - > depth.png
  dav2 image photo.jpg --stereo half-sbs    # photo_LR.png: 3D for VR players and TVs
  dav2 image photo.jpg --depth photo_depth.npy --stereo anaglyph --divergence 3
"""))
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--output", default=None, metavar="PATH|DIR|-",
              help="Output file (one input; format from its extension), folder, or - for stdout. "
                   "Default: <stem>_depth.<ext> beside each input.")
@depth_options
@space_options
@stereo_flags
@click.option("--depth", "depth_file", default=None, metavar="FILE",
              help="Use this depth map instead of running a model (one INPUT): a file dav2 wrote (npy, exr, "
                   "tiff, gray16 or colour PNG; its description says what it holds) or a plain .npy/.exr/16-bit "
                   "PNG of the image's size, read as a relative model's output (larger = nearer).")
@click.option("--skip-existing", is_flag=True,
              help="Leave outputs that already exist untouched (finish an interrupted run).")
@progress_options
def image(inputs, output, fmt, skip_existing, depth_file, progress, **values):
    """Depth maps for one or more images (INPUT `-` reads stdin)."""
    from dav2_cli.jobs.images import JobOptions, run_images
    from dav2_cli.jobs.plan import output_format

    def job():
        options = make_options(output_format(output, fmt, list(inputs)), **values)
        # a bar only when asked: one image or a few are done before a bar would say anything
        job = JobOptions(skip_existing=skip_existing, name_outputs=values["verbose"] or sys.stderr.isatty(),
                         progress=bool(progress))
        if depth_file is not None:
            from dav2_cli.jobs.given_depth import run_given_depth

            return run_given_depth(list(inputs), output, options, job, depth_file)
        return run_images(list(inputs), output, options, job)

    run_job(job)


@click.command(epilog=command_epilog("""\b
Examples:
  dav2 folder photos/                       # photos_depth/ beside it, same tree, colour PNGs
  dav2 folder photos/ -o depth/ --format npy --skip-existing
  dav2 folder list.txt -o depth/            # paths in list.txt, relative to its folder
  dav2 folder photos/ --shard 2/4           # this machine's quarter (1/4 .. 4/4 cover all)
  dav2 folder photos/ -o depth/ --ray auto  # on the running Ray cluster

\b
Output: DIR/a/x.jpg becomes OUT/a/x.<ext>. Inputs of one folder that would share
a name (x.jpg, x.png) keep their extension in it: x.jpg.png, x.png.png. Images are
found by extension (jpg jpeg png bmp tif tiff webp, any case) and decoded by content;
hidden files and folders, other files, OUT itself and depth maps dav2 wrote beside
their images (x_depth.png holding dav2's description) are left alone. Outputs appear
complete or not at all: Ctrl-C finishes the batch in hand, and --skip-existing later
does exactly what is missing. A summary line (done, skipped, failed) ends every run.
Images over 200 megapixels (see DAV2_MAX_MEGAPIXELS) or longer than 16:1 are refused.
"""))
@click.argument("source", metavar="DIR|LIST.txt")
@click.option("-o", "--output", default=None, metavar="OUT",
              help="Output folder, mirroring DIR's tree. Default: DIR_depth/ beside DIR (LIST_depth/ beside a "
                   "list).")
@depth_options
@space_options
@stereo_flags
@click.option("--recursive/--no-recursive", default=True, show_default=True,
              help="Include images in subfolders.")
# measured on a 2-core CPU, vits at --input-size 280: 4 costs about half of 1 per image, and 8 is no faster
@click.option("--batch-size", type=click.IntRange(1, 256), default=4, show_default=True, metavar="N",
              help="Images of one size per model call; larger uses more memory.")
@click.option("--skip-existing", is_flag=True,
              help="Leave outputs that already exist untouched (finish an interrupted run); counted as skipped.")
@click.option("--shard", default=None, metavar="K/N", callback=shard_option,
              help="Do only inputs K, K+N, K+2N, ... (1-based) of the sorted list, so N machines (K = 1..N) "
                   "cover the folder exactly once without coordination.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]",
              help="Run on a Ray cluster: `auto` joins the running one, ADDRESS names one, alone starts a local "
                   "one. Same outputs as without it. Needs the extra: pip install \"dav2-cli[ray]\".")
@click.option("--ray-actors", type=click.IntRange(1), default=None, metavar="N",
              help="Model copies on the Ray cluster. Default: one per GPU, else one per CPU less one for reading.")
@progress_options
def folder(source, output, fmt, recursive, batch_size, skip_existing, shard, progress, ray_address, ray_actors,
           **values):
    """Depth maps for every image in folder DIR (recursively) or listed in LIST.txt."""
    from dav2_cli.jobs.images import JobOptions, run_folder

    job = JobOptions(batch_size=batch_size, shard=shard, skip_existing=skip_existing, name_outputs=values["verbose"],
                     progress=show_progress(progress), ray=ray_address, ray_actors=ray_actors)
    run_job(lambda: run_folder(source, output, make_options(fmt or "color", **values), job, recursive=recursive))
