"""The `dav2` command line: click commands that parse, check single values, and hand over to a job.

`app` holds the group and how outcomes become exit codes, `params` the one-value checks, `shared_options` the
flags several commands share, and one module per family of commands. Nothing here imports torch or OpenCV, so
`dav2 --help` answers instantly.
"""

from dav2_cli.cli.app import main
from dav2_cli.cli.export_command import export
from dav2_cli.cli.image_commands import folder, image
from dav2_cli.cli.tool_commands import bench, info, models
from dav2_cli.cli.video_command import video

for _command in (image, folder, video, models, info, bench, export):
    main.add_command(_command)

__all__ = ["main"]
