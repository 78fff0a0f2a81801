"""Batches made ahead in a background thread: order, errors, early exit."""

from __future__ import annotations

import threading
import time

import pytest

from medtoolkit.training.prefetch import Prefetcher


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_items_come_in_order(depth: int) -> None:
    assert list(Prefetcher(range(20), lambda item: item * item, depth)) == [i * i for i in range(20)]


def test_depth_zero_makes_in_the_calling_thread_and_depth_two_in_another() -> None:
    threads: list[str] = []
    list(Prefetcher(range(3), lambda item: threads.append(threading.current_thread().name), depth=0))
    assert set(threads) == {threading.current_thread().name}
    threads.clear()
    list(Prefetcher(range(3), lambda item: threads.append(threading.current_thread().name), depth=2))
    assert set(threads) == {"medtoolkit-prefetch"}


def test_an_error_in_make_is_raised_at_its_item() -> None:
    def make(item: int) -> int:
        if item == 3:
            raise ValueError("bad item 3")
        return item

    seen = []
    with pytest.raises(ValueError, match="bad item 3"):
        for value in Prefetcher(range(10), make, depth=2):
            seen.append(value)
    assert seen == [0, 1, 2]


def test_work_runs_ahead_of_the_consumer_by_at_most_depth() -> None:
    made: list[int] = []

    def make(item: int) -> int:
        made.append(item)
        return item

    iterator = iter(Prefetcher(range(100), make, depth=2))
    assert next(iterator) == 0
    time.sleep(0.3)
    assert len(made) <= 4  # the one handed out, two waiting, one blocked on the full queue
    iterator.close()


def test_leaving_early_stops_the_worker() -> None:
    before = threading.active_count()
    for value in Prefetcher(range(1000), lambda item: item, depth=2):
        if value == 5:
            break
    deadline = time.time() + 5
    while threading.active_count() > before and time.time() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before


def test_negative_depth_is_refused() -> None:
    with pytest.raises(ValueError, match="depth must be >= 0"):
        Prefetcher(range(3), lambda item: item, depth=-1)
