"""Planning and feeding a batch job: shards, same-size batches, and reading ahead of the model.

Long jobs run on many machines and are restarted after interruptions, so everything here is deterministic:
a shard is fixed by the sorted input list alone (N machines cover every input exactly once without talking to
each other), and grouping never changes a result, only how many images share one model call. Memory stays
bounded however many images a folder holds: the reader thread runs at most one batch ahead, and the batcher
never keeps more than one batch of decoded images waiting for same-sized company.
"""

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from . import prep
from .errors import UserError
from .interrupts import GracefulStop

_POLL_S = 0.05  # how often a blocked stage looks whether the job was stopped or the others gave up
_END = object()  # end-of-stream marker passed down the queues
# On a 2-core CPU two frames per model call ran about 10% faster per frame than one, and four no faster than
# two (vits, input sizes 280 and 504) while holding twice the frames in memory.
DEFAULT_BATCH_SIZE = 2


class SizeBatcher:
    """Groups items by a key (the image size) into batches of up to `batch_size`, holding at most one batch.

    `add` returns the batches ready to run: a group that reached `batch_size`, or, when `batch_size` items are
    waiting in mixed sizes, the largest group, so odd-sized images are not held back indefinitely.
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


class ReadAhead:
    """`load(item)` for each item in a background thread, at most `ahead` results ahead of the consumer.

    Iterating yields (item, result, error) in input order; error is what `load` raised when it is a `catch`
    (result is None then). Anything else `load` raises is a bug and is raised again in the consumer's thread.
    `close()` stops the thread early; leaving the context manager always does.
    """

    _END = object()

    def __init__(self, items: Iterable, load: Callable, *, ahead: int, catch: type[BaseException] = Exception):
        self._items = items
        self._load = load
        self._catch = catch
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, ahead))
        self._closed = threading.Event()
        self._failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="dav2-read", daemon=True)

    def __enter__(self) -> "ReadAhead":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        self._thread.join()

    def _put(self, entry) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                pass
        return False

    def _run(self) -> None:
        try:
            for item in self._items:
                if self._closed.is_set():
                    return
                try:
                    entry = (item, self._load(item), None)
                except self._catch as exc:
                    entry = (item, None, exc)
                if not self._put(entry):
                    return
        except BaseException as exc:  # noqa: BLE001 - a bug in `load`: raised again in the consumer's thread
            self._failure.append(exc)
        self._put(self._END)

    def __iter__(self) -> Iterator[tuple[Any, Any, BaseException | None]]:
        while True:
            entry = self._queue.get()
            if entry is self._END:
                if self._failure:
                    raise self._failure[0]
                return
            yield entry


def _put(channel: queue.Queue, item, cancel: threading.Event) -> bool:
    """Put unless the pipeline is cancelled first; False when it was."""
    while not cancel.is_set():
        try:
            channel.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            pass
    return False


def _get(channel: queue.Queue, cancel: threading.Event):
    while True:
        try:
            return channel.get(timeout=_POLL_S)
        except queue.Empty:
            if cancel.is_set():
                return _END


def run_pipeline(model, reader, consume: Callable[[int, np.ndarray, np.ndarray], None], *,
                 input_size: int, batch_size: int = DEFAULT_BATCH_SIZE, stop: GracefulStop | None = None) -> None:
    """Depth for every frame `reader` yields, handed in order to `consume(index, frame_bgr, depth_hw)`.

    `reader` is decoded (and each frame resized and normalised for the model) in one thread, which also
    closes it; the model runs here on batches of `batch_size`; `consume` runs in a third thread. The queues
    hold one batch each, so at most about four batches of frames are alive at any time, however long the
    video. When `stop` is requested, reading stops and the frames already read are still finished. An
    exception in any stage cancels the others and is raised here once all threads have ended. (OpenCV is
    held to one thread by `engine.load_model`: these stages are the parallelism beside torch's.)
    """
    from ..engine import predict_prepared

    frames_in = queue.Queue(maxsize=batch_size)  # single frames: the next batch decodes while the model runs
    depths_out = queue.Queue(maxsize=1)  # whole batches: one waits while the previous one is encoded
    cancel = threading.Event()
    failures: list[BaseException] = []

    def decode():
        try:
            frame_hw = size_hw = None
            while stop is None or not stop.requested:
                item = next(reader, None)
                if item is None:
                    break
                index, frame_bgr = item
                if frame_hw is None:
                    frame_hw = frame_bgr.shape[:2]
                    size_hw = prep.model_size(frame_hw, input_size)
                elif frame_bgr.shape[:2] != frame_hw:
                    raise UserError(f"{reader.path}: frame {index} is "
                                    f"{frame_bgr.shape[1]}x{frame_bgr.shape[0]} but the video began at "
                                    f"{frame_hw[1]}x{frame_hw[0]}; videos that change size are not supported")
                if not _put(frames_in, (index, frame_bgr, prep.to_model_input(frame_bgr, size_hw)), cancel):
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            failures.append(exc)
            cancel.set()
        finally:
            reader.close()
            _put(frames_in, _END, cancel)

    def encode():
        try:
            while (batch := _get(depths_out, cancel)) is not _END:
                for index, frame_bgr, depth_hw in batch:
                    if cancel.is_set():
                        return
                    consume(index, frame_bgr, depth_hw)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            failures.append(exc)
            cancel.set()

    threads = [threading.Thread(target=decode, name="dav2-decode", daemon=True),
               threading.Thread(target=encode, name="dav2-encode", daemon=True)]
    for thread in threads:
        thread.start()
    try:
        ended = False
        while not ended and not cancel.is_set():
            batch = []
            while len(batch) < batch_size:
                item = _get(frames_in, cancel)
                if item is _END:
                    ended = True
                    break
                batch.append(item)
            if batch and not cancel.is_set():
                frame_hw = batch[0][1].shape[:2]
                depths = predict_prepared(model, np.stack([chw for _, _, chw in batch]), frame_hw)
                _put(depths_out, [(index, frame, depth) for (index, frame, _), depth in zip(batch, depths)], cancel)
        _put(depths_out, _END, cancel)
    except BaseException:
        cancel.set()
        raise
    finally:
        for thread in threads:
            thread.join()
    if failures:
        raise failures[0]
