"""Run a blocking iterator in its own worker thread, ahead of the coroutine that consumes it.

Speech is made piece by piece: while the first piece is being sent to the client, the next one
should already be synthesising. ``run_ahead`` starts a thread that pulls items from the iterator
(at most ``depth`` items beyond what the consumer has taken) and hands them to the event loop.
Closing the async iterator early stops the thread after the item it is making and closes the
iterator in that thread (a generator must be closed by the thread that runs it).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

__all__ = ["run_ahead"]

T = TypeVar("T")
_DONE = object()


async def run_ahead(iterator: Iterator[T], *, depth: int = 2, name: str = "ahead") -> AsyncIterator[T]:
    """The items of ``iterator``, made in a worker thread up to ``depth`` items ahead; an exception
    raised by the iterator is raised here, at the item where it happened."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[object, BaseException | None]] = asyncio.Queue()
    room = threading.Semaphore(depth)
    stop = threading.Event()

    def hand(item: object, error: BaseException | None = None) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (item, error))
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            stop.set()

    def produce() -> None:
        try:
            while True:
                room.acquire()
                if stop.is_set():
                    return
                item = next(iterator, _DONE)
                if item is _DONE:
                    hand(_DONE)
                    return
                hand(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            hand(_DONE, exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item, error = await queue.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            room.release()
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        room.release()  # wakes a producer waiting for room, so it sees ``stop`` and ends
