"""What every `--ray` job shares: the extra's check, joining a cluster quietly, sizing the pool of actors, and
keeping them fed with shares of the work while the driver prints their lines and counts.

The jobs use plain Ray actors rather than Ray Data: each actor reads and writes its own files, so Ray Data would
only carry file names, and its actor pool keeps its arguments in the object store, which Ray's C++ core then
warns about on the terminal. Actors restart after system faults and their calls are retried; exceptions of our
own code never reach Ray: an actor returns them as lines, so one bad input never fails the job.
"""

import atexit
import contextlib
import importlib.util
import io
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from dav2_cli.errors import UsageError, UserError

RAY_EXTRA = 'dav2 --ray needs Ray: pip install "dav2-cli[ray]"'
IN_FLIGHT_PER_ACTOR = 2  # one call running and one waiting, so an actor never idles while the driver answers


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
    every CPU starve Ray's own workers and the job hangs (ray#44687)."""
    if requested is not None:
        return requested
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return gpus
    return max(1, int(resources.get("CPU", 1)) - 1)


def join_cluster(address: str) -> None:
    """Connect to the cluster `--ray` names (`auto`, an address, or "" to start a local one), printing nothing.

    The user sees dav2's bar and lines only: no usage-stats notice (RAY_USAGE_STATS_ENABLED, read by the cluster
    this starts), no "Started a local Ray instance" (logging_level), no dashboard, and no copy of the actors'
    own output (log_to_driver), since actors hand their lines back with their results.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():  # a caller's own session (tests, a notebook): use it as it is
        return
    try:
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    except ConnectionError as exc:
        raise UserError(f"--ray {address}: no Ray cluster there ({_gist(exc)})") from None
    # Ray's CLI logger starts colorama, whose exit hook writes an ANSI reset on a terminal's stdout: a stray
    # sequence on the stream that carries dav2's results
    for name, module in list(sys.modules.items()):
        if name.endswith("colorama.initialise") and hasattr(module, "reset_all"):
            atexit.unregister(module.reset_all)


@dataclass
class ShareResult:
    """What an actor did with one share of the work; exceptions never leave an actor, they come back as lines."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    lines: str = ""  # its stderr: error and -v lines, printed by the driver around the bar
    stopped: str | None = None  # why its share stopped early (a full disk), if it did
    fatal: str = ""  # "usage:..." or "user:...": a fault that stops every share (the model cannot load)

    @staticmethod
    def fatal_error(exc: UserError) -> str:
        return f"{'usage' if isinstance(exc, UsageError) else 'user'}:{exc}"


@dataclass
class Pool:
    """The actors of one job; `shares` are handed out as actors finish earlier ones."""

    worker: type
    kwargs: dict
    size: int
    gpus: float = 0
    actors: list = field(default_factory=list)


@contextlib.contextmanager
def stderr_lines():
    """Whatever dav2's code writes on stderr inside the block, kept for the driver to print."""
    lines = io.StringIO()
    with contextlib.redirect_stderr(lines):
        yield lines


def driver_settings() -> dict[str, str]:
    """The environment that changes what dav2 does (DAV2_HOME, DAV2_MAX_MEGAPIXELS, HF_HOME, ...): an actor on a
    cluster someone else started would otherwise run with other settings than the command line's."""
    return {name: value for name, value in os.environ.items() if name.startswith(("DAV2_", "HF_"))}


class _Actor:
    """A worker as Ray runs it: in the driver's folder, so the paths of the command line (relative ones too,
    on a file system the nodes share) name the same files, and the names written into outputs are a local
    run's."""

    def __init__(self, worker: type, kwargs: dict, cwd: str):
        with contextlib.suppress(OSError):  # a node without that folder: absolute paths still work
            os.chdir(cwd)
        self.worker = worker(**kwargs)

    def run(self, share: list) -> ShareResult:
        return self.worker.run(share)


def run_shares(pool: Pool, shares: list, halted: Callable[[], bool]) -> Iterator[ShareResult]:
    """Each share's result, in the order they finish. Once `halted()` (Ctrl-C, SIGTERM, a full disk), no new
    share is sent and the ones in flight are awaited, so what they write is whole."""
    import ray

    remote = ray.remote(num_cpus=1, num_gpus=pool.gpus, max_restarts=-1, max_task_retries=-1,
                        runtime_env={"env_vars": driver_settings()})(_Actor)
    pool.actors = [remote.remote(pool.worker, pool.kwargs, os.getcwd())
                   for _ in range(min(pool.size, len(shares)))]
    waiting = list(reversed(shares))
    running = {}

    def send(actor):
        if waiting and not halted():
            running[actor.run.remote(waiting.pop())] = actor

    for actor in pool.actors:
        for _ in range(IN_FLIGHT_PER_ACTOR):
            send(actor)
    while running:
        ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)  # a signal is handled between waits
        if not ready:
            continue
        actor = running.pop(ready[0])
        try:
            result = ray.get(ready[0])
        except ray.exceptions.RayError as exc:  # not our code's error: a worker Ray could not keep alive
            raise UserError(f"a Ray worker failed: {_gist(exc)}") from None
        yield result
        send(actor)


def count_result(result: ShareResult, tally, bar) -> None:
    """A finished share on the driver: its lines printed around the bar, its counts added; a fatal fault raised
    as the one error a local run would give."""
    from tqdm import tqdm

    if result.fatal:
        kind, message = result.fatal.split(":", 1)
        raise UsageError(message) if kind == "usage" else UserError(message)
    for line in result.lines.splitlines():
        tqdm.write(line, file=sys.stderr)
    tally.done += result.done
    tally.failed += result.failed
    tally.skipped += result.skipped
    bar.update(result.done + result.failed + result.skipped)


def _gist(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else exc.__class__.__name__
