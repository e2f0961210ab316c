"""Read ahead: run a producer iterator (frame decoding) in a background thread.

OpenCV's decoders release the GIL, so the next frames are decoded while the current one is in
the network. Items keep their order; an exception raised by the producer is raised again in
the consumer at the same place of the sequence.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_END = object()


class Prefetch(Generic[T]):
    """Iterate ``items`` up to ``depth`` items ahead of the consumer in a daemon thread.

    ``wait_s`` adds up the seconds the consumer waited for an item (the part of the producer's
    time that was not hidden behind the consumer's own work). ``depth == 0`` iterates
    ``items`` in the caller's thread (no read-ahead; ``wait_s`` is then the whole producer
    time). :meth:`close` (also on garbage collection of a half-consumed iterator) stops the
    thread after its current item.
    """

    def __init__(self, items: Iterable[T], depth: int = 1) -> None:
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        self.wait_s = 0.0
        self._items = iter(items)
        self._depth = depth
        self._stop = threading.Event()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max(depth, 1))
        self._thread: threading.Thread | None = None
        if depth:
            self._thread = threading.Thread(target=self._produce, daemon=True)
            self._thread.start()

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, then the sequence ends
            if self._put(exc):
                self._put(_END)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        start = time.perf_counter()
        try:
            if self._thread is None:
                return next(self._items)
            item = self._queue.get()
        finally:
            self.wait_s += time.perf_counter() - start
        if item is _END:
            self._queue.put(_END)  # later calls end too
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the producer thread (it finishes the item it is producing)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def __del__(self) -> None:
        self._stop.set()
