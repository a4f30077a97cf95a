"""Planning and feeding a batch job: shards, same-size batches, and reading ahead of the model.

Long jobs run on many machines and are restarted after interruptions, so everything here is deterministic:
a shard is fixed by the sorted input list alone (N machines cover every input exactly once without talking to
each other), and grouping never changes a result, only how many images share one model call. Memory stays
bounded however many images a folder holds: the reader thread runs at most one batch ahead, and the batcher
never keeps more than one batch of decoded images waiting for same-sized company.
"""

import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_POLL_S = 0.05  # how often the blocked reader looks whether the job was stopped


def parse_shard(text: str) -> tuple[int, int]:
    """"K/N" → (K, N), 1 <= K <= N; ValueError with the reason otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not K/N (for example 1/4)")
    k, n = int(match[1]), int(match[2])
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"{text!r}: K must be between 1 and N (K/N is 1-based, for example 1/4 ... 4/4)")
    return k, n


def take_shard(items: list, shard: tuple[int, int] | None) -> list:
    """The items shard K of N handles: every N-th of the sorted list, starting at the K-th."""
    if shard is None:
        return list(items)
    k, n = shard
    return items[k - 1::n]


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
