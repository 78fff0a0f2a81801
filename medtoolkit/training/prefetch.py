"""Batches cut ahead of the training step, in a background thread.

Cutting a padded batch (:func:`~medtoolkit.data.batching.make_batch`, numpy) and adding
the task's items run while the previous step trains, so the step never waits for the
host-side work (on CUDA the batch is also pinned, so its copy to the device can overlap
compute). numpy and torch release the GIL in their kernels, so the thread runs in
parallel with the step on a second core.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

Item = TypeVar("Item")
Made = TypeVar("Made")

_DONE = object()


class _Failure:
    """An exception raised in the worker, re-raised in the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class Prefetcher(Generic[Item, Made]):
    """Iterate ``make(item)`` for every item, made ``depth`` items ahead in a daemon thread.

    The order is the items' order; an exception raised by ``make`` is raised by the
    iteration at the item that caused it. With ``depth=0`` everything runs in the calling
    thread (no thread is started).

    Args:
        items: what to make, in order (consumed by the worker thread).
        make: turns one item into what the consumer gets (e.g. cuts and pins a batch).
        depth: how many made items may wait (``>= 0``).

    Example::

        for batch in Prefetcher(chunks, lambda chunk: make_batch(data, chunk), depth=2):
            step(batch)
    """

    def __init__(self, items: Iterable[Item], make: Callable[[Item], Made], depth: int = 2) -> None:
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        self.items, self.make, self.depth = items, make, depth
        self._stop = threading.Event()

    def __iter__(self) -> Iterator[Made]:
        if self.depth == 0:
            for item in self.items:
                yield self.make(item)
            return
        waiting: queue.Queue[object] = queue.Queue(maxsize=self.depth)
        worker = threading.Thread(target=self._work, args=(waiting,), name="medtoolkit-prefetch", daemon=True)
        worker.start()
        try:
            while True:
                made = waiting.get()
                if made is _DONE:
                    return
                if isinstance(made, _Failure):
                    raise made.error
                yield made  # type: ignore[misc]
        finally:
            self._stop.set()
            while worker.is_alive():  # unblock a worker waiting on a full queue
                try:
                    waiting.get_nowait()
                except queue.Empty:
                    worker.join(timeout=0.05)

    def _work(self, waiting: "queue.Queue[object]") -> None:
        try:
            for item in self.items:
                if self._stop.is_set() or not self._put(waiting, self.make(item)):
                    return
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(waiting, _Failure(error))
            return
        self._put(waiting, _DONE)

    def _put(self, waiting: "queue.Queue[object]", value: object) -> bool:
        """Queue ``value``, waiting while the queue is full; False when the consumer has left."""
        while not self._stop.is_set():
            try:
                waiting.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False
