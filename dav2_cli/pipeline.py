"""One streamed pipeline for every job: a reader thread, the model on batches, a writer thread.

Folders of any size and videos of any length go through the same three stages joined by small bounded queues:
the reader thread decodes each input and prepares it for the model, the calling thread runs the model on
batches of same-sized inputs, and the writer thread renders, encodes and writes each result. Decoding, encoding
and fsync are hidden behind the model, which is the slow stage; torch, OpenCV and file writes release the GIL,
so the threads really overlap, even on two cores. At most about four batches of inputs are alive at a time,
however many there are, and the batcher never keeps more than one batch waiting for same-sized company.

The model runs in a thread of its own, which the calling thread waits on: a forward pass at a large size can
take minutes, and signals reach only the main thread, which must stay free to answer them.

One cancellation path serves every way a job ends early: a Ctrl-C or SIGTERM (`stop`) stops the reading and
starts no new model call; the batch in the model is still written if it ends within STOP_GRACE_S, and otherwise
left behind unwritten, so a job stops within seconds at any size (interrupts.py ends the process without waiting
for it). An exception in any stage cancels the others and is raised in the calling thread once they have ended,
so no stage is ever left running, except a model call that a stop or a second Ctrl-C left behind.
"""

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from dav2_cli.depth import sizing as prep
from dav2_cli.depth.sky import DEFAULT_SKY
from dav2_cli.errors import EXIT_SIGINT
from dav2_cli.runtime.interrupts import exit_without_waiting_for, held_elsewhere

_POLL_S = 0.05  # how often a blocked stage looks whether the job was stopped or another stage gave up
_END = object()  # end-of-stream marker passed down the queues
# On a 2-core CPU two frames per model call ran about 10% faster per frame than one, and four no faster than
# two (vits, input sizes 280 and 504) while holding twice the frames in memory.
DEFAULT_BATCH_SIZE = 2
# how long the model call in flight when a stop comes may still take to be written: most batches end well within
# it, while a forward at a large size (minutes) is left behind so that the job ends within ~10 s of the signal
STOP_GRACE_S = 3.0


@dataclass
class Frame:
    """One input on its way through: what the job calls it, the decoded picture, and the model's view of it."""

    key: Any  # the job's handle: a planned output, a frame index
    image: np.ndarray | None  # BGR (or gray) as decoded; None when reading failed
    model_input: np.ndarray | None = None  # float32 CHW at the model size (prep.to_model_input)
    error: BaseException | None = None  # why the input could not be read; it skips the model
    cut: bool = False  # the first frame of a new scene (videos); temporal stages restart there
    sky: np.ndarray | None = None  # a sky-head model's sky mask (bool, the image's size), set with its depth


class DepthStage(Protocol):
    """What runs in the model thread: frames in, (frame, depth at the frame's own size) out, in input order.

    A per-image model answers every frame at once; a temporal model may hold frames back until the window
    that finalises them has run, and hands out the rest at `finish`.
    """

    def push(self, frames: list[Frame]) -> list[tuple[Frame, np.ndarray]]: ...

    def finish(self) -> list[tuple[Frame, np.ndarray]]: ...


class PerImageDepth:
    """Depth-Anything V2 and the other per-image families: each batch of same-sized frames in one model call;
    `sky` is what becomes of a sky-head model's sky (depth/sky.py), whose mask goes on each frame."""

    def __init__(self, model, sky: str = DEFAULT_SKY):
        self.model = model
        self.sky = sky

    def push(self, frames: list[Frame]) -> list[tuple[Frame, np.ndarray]]:
        from dav2_cli.runtime.loading import predict_prepared

        batch_bchw = np.stack([frame.model_input for frame in frames])
        results = predict_prepared(self.model, batch_bchw, frames[0].image.shape[:2], self.sky)
        for frame, (_, sky_hw) in zip(frames, results):
            frame.sky = sky_hw
        return [(frame, depth_hw) for frame, (depth_hw, _) in zip(frames, results)]

    def finish(self) -> list[tuple[Frame, np.ndarray]]:
        return []


class SizeBatcher:
    """Groups items by a key (the image size) into batches of up to `batch_size`, holding at most one batch.

    `add` returns the batches ready to run: a group that reached `batch_size`, or, when `batch_size` items are
    waiting in mixed sizes, the largest group, so odd-sized images are not held back indefinitely. Items of one
    size keep their order, so a video's frames (all one size) come out in sequence.
    """

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self._groups: dict[Any, list] = {}  # insertion-ordered: ties go to the oldest group

    def waiting(self) -> int:
        return sum(len(group) for group in self._groups.values())

    def add(self, key, item) -> list[list]:
        self._groups.setdefault(key, []).append(item)
        if len(self._groups[key]) >= self.batch_size:
            return [self._groups.pop(key)]
        if self.waiting() >= self.batch_size:
            largest = max(self._groups, key=lambda k: len(self._groups[k]))
            return [self._groups.pop(largest)]
        return []

    def flush(self) -> list[list]:
        batches = list(self._groups.values())
        self._groups.clear()
        return batches


class _Channel:
    """A bounded queue whose blocking calls give up once the pipeline is cancelled (any of `cancels` is set)."""

    def __init__(self, size: int, *cancels: threading.Event):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, size))
        self._cancels = cancels

    def _cancelled(self) -> bool:
        return any(event.is_set() for event in self._cancels)

    def put(self, item) -> bool:
        """False when the pipeline was cancelled before there was room."""
        while not self._cancelled():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                pass
        return False

    def get(self):
        """The next item, or _END once the pipeline is cancelled."""
        while True:
            try:
                return self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                if self._cancelled():
                    return _END


class _LeftBehind(Exception):
    """The model call in flight when the job stopped did not end within STOP_GRACE_S."""


class _ModelThread:
    """One long-lived thread that runs the stage's calls, one at a time, while the calling thread waits where a
    signal can reach it. One thread for the whole job, not one per call: torch's thread pool and oneDNN's caches
    belong to the thread that calls them, and would be built again for every new one."""

    def __init__(self):
        self._calls: queue.Queue = queue.Queue()
        self._done = threading.Event()
        self._result: tuple = ()
        self.busy = False
        self.thread = threading.Thread(target=self._serve, name="dav2-model", daemon=True)
        self.thread.start()

    def _serve(self):
        while (call := self._calls.get()) is not None:
            try:
                self._result = (True, call())
            except BaseException as exc:  # noqa: BLE001 - raised again in the calling thread
                self._result = (False, exc)
            self._done.set()

    def run(self, call: Callable, stopped: Callable[[], bool]):
        """`call()`'s result, computed in the model thread; `_LeftBehind` when the job stopped and it did not end
        within STOP_GRACE_S (waiting longer while a held block, such as OpenVINO's conversion, runs there)."""
        self._done.clear()
        self.busy = True
        self._calls.put(call)
        grace_ends = None
        while not self._done.wait(_POLL_S):
            if stopped():
                grace_ends = grace_ends or time.monotonic() + STOP_GRACE_S
                if time.monotonic() > grace_ends and not held_elsewhere():
                    raise _LeftBehind
        self.busy = False
        ok, value = self._result
        self._result = ()
        if ok:
            return value
        raise value

    def close(self, exit_code: Callable[[], int]) -> None:
        """Ends the thread once it is idle; a call still running is left behind, and the process will not wait
        for it at exit (interrupts.exit_without_waiting_for)."""
        self._calls.put(None)
        if self.busy:
            exit_without_waiting_for(self.thread, exit_code)
        else:
            self.thread.join()


def run_pipeline(source: Iterable, stage: DepthStage, consume: Callable[[Frame, np.ndarray], None], *,
                 input_size: int, batch_size: int = DEFAULT_BATCH_SIZE, stop=None,
                 fail: Callable[[Frame], None] | None = None) -> None:
    """Depth for every input `source` yields, handed to `consume(frame, depth_hw)` in the writer thread.

    `source` yields `(key, image_bgr)`, or `(key, exception)` for an input that could not be read, or a `Frame`
    (to say more about it, such as a scene cut); it is iterated in the reader thread (so decoding it happens
    there) and closed there when it has a `close`. Inputs that failed go to `fail(frame)` in the writer thread,
    in their turn. `stop` (a GracefulStop) ends the reading and the model calls; the call in flight is written if
    it ends within STOP_GRACE_S. An exception in any stage cancels the others and is raised here once every
    thread has ended, the model call a stop left behind aside. (OpenCV is held to one thread meanwhile by the job:
    these stages are the parallelism beside torch's.)
    """
    cancel = threading.Event()
    reading_ended = threading.Event()  # the model stage takes no more inputs: the reader need not wait for room
    # single frames: the next batch decodes while the model runs
    frames_in = _Channel(batch_size, cancel, reading_ended)
    depths_out = _Channel(1, cancel)  # whole batches: one waits while the previous one is written
    failures: list[BaseException] = []

    def stopped() -> bool:
        return stop is not None and stop.requested

    def read():
        try:
            for entry in source:
                frame = entry if isinstance(entry, Frame) else Frame(*entry)
                if isinstance(frame.image, BaseException):
                    frame.image, frame.error = None, frame.image
                elif frame.error is None:
                    size_hw = prep.model_size(frame.image.shape[:2], input_size)
                    frame.model_input = prep.to_model_input(frame.image, size_hw)
                if not frames_in.put(frame) or stopped():
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread, which raises it
            failures.append(exc)
            cancel.set()
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()
            frames_in.put(_END)

    def write():
        try:
            while (results := depths_out.get()) is not _END:
                for frame, depth_hw in results:
                    if cancel.is_set():
                        return
                    if frame.error is not None:
                        if fail is None:
                            raise frame.error
                        fail(frame)
                    else:
                        consume(frame, depth_hw)
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread, which raises it
            failures.append(exc)
            cancel.set()

    threads = [threading.Thread(target=read, name="dav2-read", daemon=True),
               threading.Thread(target=write, name="dav2-write", daemon=True)]
    for thread in threads:
        thread.start()
    model = _ModelThread()
    batcher = SizeBatcher(batch_size)

    def run_model(call) -> bool:
        """Runs a stage call and queues its results for writing; False once the job stopped."""
        if stopped():
            return False
        results = model.run(call, stopped)
        depths_out.put(results)
        return not stopped()

    try:
        while (frame := frames_in.get()) is not _END:
            if frame.error is not None:
                depths_out.put([(frame, None)])
                continue
            batches = batcher.add((frame.image.shape[:2], frame.model_input.shape), frame)
            if not all(run_model(lambda batch=batch: stage.push(batch)) for batch in batches):
                break
        if not cancel.is_set() and all(run_model(lambda batch=batch: stage.push(batch))
                                       for batch in batcher.flush()):
            run_model(stage.finish)
        depths_out.put(_END)
    except _LeftBehind:
        depths_out.put(_END)  # what was computed before is still written
    except BaseException:
        cancel.set()
        raise
    finally:
        reading_ended.set()
        model.close(lambda: stop.exit_code if stop is not None and stop.requested else EXIT_SIGINT)
        for thread in threads:
            thread.join()
    if failures:
        raise failures[0]
