"""The `dav2` group itself: how every outcome becomes one stderr line and a documented exit code.

Nothing here imports torch or OpenCV, so `dav2 --help` answers instantly; each command imports its job after
parsing.
"""

import os
import select
import sys

import click

from dav2_cli import __version__
from dav2_cli.errors import EXIT_FAILED, EXIT_OK, EXIT_SIGINT, EXIT_USAGE, UsageError, UserError

DEPTH_MEANING = """\b
Relative models (vits, vitb, vitl) output inverse depth: larger = NEARER, no unit.
Metric models output depth in meters: larger = FARTHER.
Every picture format draws near as bright, for both kinds; raw formats (npy, exr,
tiff) store the model's values untouched. --near/--far or --align-to turn a relative
map into meters (larger = farther); a point cloud (ply) needs meters. Every depth file
says what it holds: `dav2 info FILE` (a gray16 video in its .json; colour and gray
videos are pictures only)."""

EXIT_CODES = """\b
Exit codes: 0 all done, 1 some inputs failed (each named on stderr),
2 bad usage, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM)."""


def command_epilog(*parts: str) -> str:
    """A command's help ends with its own examples, then what depth values mean, then the exit codes."""
    return "\n\n".join(part.rstrip("\n") for part in (*parts, DEPTH_MEANING, EXIT_CODES))


def report_os_error(exc: OSError) -> None:
    """A path the system refuses (a name too long, ...) where no check expected one: one line, not a traceback."""
    from dav2_cli.outputs.atomic import describe_os_error

    click.echo(f"dav2: error: {describe_os_error(exc.filename or 'output', exc)}", err=True)


def silence_opencv_log() -> None:
    """Every failure a command meets gets dav2's own one line; OpenCV's log lines about the same file (a damaged
    TIFF or BMP, a video it cannot open) would only repeat it, less clearly. OPENCV_LOG_LEVEL, if set, wins."""
    if "OPENCV_LOG_LEVEL" in os.environ:
        return
    if "cv2" in sys.modules:
        sys.modules["cv2"].utils.logging.setLogLevel(sys.modules["cv2"].utils.logging.LOG_LEVEL_SILENT)
    else:  # read when OpenCV is imported: commands that never need it do not pay for its import here
        os.environ["OPENCV_LOG_LEVEL"] = "SILENT"


def stdout_reader_gone() -> bool:
    """Whether our standard output is a pipe nobody reads any more (`dav2 models | head -1`). Asked of the pipe
    itself, so a broken pipe elsewhere (the video encoder's) is never mistaken for it."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll here, or stdout is not a file (a test's buffer)
        return False


def quit_quietly_if_stdout_closed(exc: BaseException) -> None:
    """A reader that stops early has what it wanted, as with `cat`: exit 0, nothing on stderr. Python would
    otherwise report the unflushed rest of stdout as an error on its way out, so stdout is pointed at devnull."""
    if isinstance(exc, BrokenPipeError) and stdout_reader_gone():
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_OK)


def flush_stdout() -> None:
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except BrokenPipeError as exc:
        quit_quietly_if_stdout_closed(exc)


def run_job(job, *args) -> None:
    """Run a job and turn its outcome into the documented exit code, without tracebacks for users."""
    silence_opencv_log()
    try:
        code = job(*args)
    except UserError as exc:
        click.echo(f"dav2: error: {exc}", err=True)
        code = EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILED
    except OSError as exc:
        quit_quietly_if_stdout_closed(exc)
        report_os_error(exc)
        code = EXIT_FAILED
    except KeyboardInterrupt:
        click.echo("dav2: interrupted", err=True)
        code = EXIT_SIGINT
    sys.exit(code)


NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click 8.2+; 8.1 shows the help itself


class OneLineErrors(click.Group):
    """click's own usage errors (an unknown flag, a bad choice, a missing argument) as one line like every other
    error, `dav2: error: <reason> (see `dav2 CMD --help`)`, instead of the usage block click prints first."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:  # a caller that handles click's exceptions itself
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            self._main_in_one_line(args, prog_name, complete_var, **extra)
        finally:  # every way out: what is left of stdout is written now, where a closed pipe can be told apart
            flush_stdout()

    def make_context(self, *args, **kwargs):  # --help and --version write while the command line is parsed
        try:
            return super().make_context(*args, **kwargs)
        except BrokenPipeError as exc:
            quit_quietly_if_stdout_closed(exc)
            raise

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:  # before click's own handling, which exits 1
            quit_quietly_if_stdout_closed(exc)
            raise

    def _main_in_one_line(self, args, prog_name, complete_var, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NO_ARGS_IS_HELP as exc:  # a bare `dav2` or `dav2 models`-like group: the help, as click shows it
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            reason = " ".join(exc.format_message().split())
            click.echo(f"dav2: error: {reason}{where}", err=True)
            sys.exit(EXIT_USAGE)
        except click.ClickException as exc:
            click.echo(f"dav2: error: {' '.join(exc.format_message().split())}", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:  # met while checking the command line (`-m` names a file, ...)
            quit_quietly_if_stdout_closed(exc)
            report_os_error(exc)
            sys.exit(EXIT_FAILED)
        except click.Abort:  # Ctrl-C before any job began (a job reports its own interruption)
            click.echo("dav2: interrupted", err=True)
            sys.exit(EXIT_SIGINT)
        sys.exit(code if isinstance(code, int) else EXIT_OK)  # --help and --version return 0


@click.group(cls=OneLineErrors,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=DEPTH_MEANING + "\n\n" + EXIT_CODES)
@click.version_option(__version__, "-V", "--version", prog_name="dav2")
def main():
    """Depth maps from photos, image folders and videos with Depth-Anything V2."""
