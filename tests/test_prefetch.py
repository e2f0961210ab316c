"""Read-ahead keeps order, hands producer errors to the consumer and stops when closed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from fabricnms.engine.prefetch import Prefetch


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_items_arrive_in_order(depth: int) -> None:
    assert list(Prefetch(range(20), depth)) == list(range(20))


def test_producer_runs_ahead_in_another_thread() -> None:
    seen: list[str] = []

    def produce() -> Iterator[int]:
        for i in range(3):
            seen.append(threading.current_thread().name)
            yield i

    source = Prefetch(produce(), depth=2)
    assert next(source) == 0
    time.sleep(0.2)  # the producer fills the queue meanwhile
    assert len(seen) == 3
    assert threading.current_thread().name not in seen
    assert list(source) == [1, 2]


def test_a_producer_error_is_raised_in_order_then_the_sequence_ends() -> None:
    def produce() -> Iterator[int]:
        yield 1
        raise OSError("disk gone")

    source = Prefetch(produce(), depth=2)
    assert next(source) == 1
    with pytest.raises(OSError, match="disk gone"):
        next(source)
    with pytest.raises(StopIteration):
        next(source)


def test_close_stops_an_endless_producer() -> None:
    def endless() -> Iterator[int]:
        i = 0
        while True:
            i += 1
            yield i

    source = Prefetch(endless(), depth=2)
    assert next(source) == 1
    source.close()
    assert source._thread is not None and not source._thread.is_alive()
