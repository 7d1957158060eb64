"""Independent I/O-bound calls (one per target entity) run side by side, so a worker waits for the
slowest round trip instead of their sum. Each call keeps its own order of requests; the caller decides
what to do with each outcome, so a failure of one never hides what the others did.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# A Lambda runs one invocation at a time. Its batch's entities run side by side (``run_groups``), each
# with its own lookups side by side (``settle_all``): two pools, so a group waiting on its lookups never
# holds the thread one of them needs. SQS hands a worker at most 10 records per batch here (FlowSizing).
GROUP_THREADS = 10
IO_THREADS = 24


def _pools() -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
    return (ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="switchyard-io"),
            ThreadPoolExecutor(max_workers=GROUP_THREADS, thread_name_prefix="switchyard-group"))


_POOL, _GROUP_POOL = _pools()


def _new_pool_after_fork() -> None:
    # A forked child inherits the pools but not their threads: a pool would count the parent's idle
    # workers as its own and never start one, so every submitted call would wait forever.
    global _POOL, _GROUP_POOL
    _POOL, _GROUP_POOL = _pools()


os.register_at_fork(after_in_child=_new_pool_after_fork)


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What one call gave: its value, or the exception it raised."""

    value: T | None = None
    error: BaseException | None = None

    def get(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


def settle_all(*calls: Callable[[], Any]) -> list[Outcome[Any]]:
    """Run ``calls`` concurrently and wait for every one of them; the outcomes in argument order."""
    if len(calls) <= 1:
        return [_settled(call) for call in calls]
    futures = [_submit(call) for call in calls[1:]]
    first = _settled(calls[0])  # the caller's thread does one of them
    return [first, *(_outcome(future) for future in futures)]


def run_groups(*calls: Callable[[], Any]) -> list[Outcome[Any]]:
    """Like ``settle_all``, for the independent groups of one batch (each doing its own ``settle_all``)."""
    if len(calls) <= 1:
        return [_settled(call) for call in calls]
    futures = [_submit(call, groups=True) for call in calls[1:]]
    first = _settled(calls[0])
    return [first, *(_outcome(future) for future in futures)]


def _submit(call: Callable[[], Any], *, groups: bool = False) -> Future[Any]:
    # the caller's context goes along (Powertools' logger keys, whatever tracks who is calling)
    return (_GROUP_POOL if groups else _POOL).submit(contextvars.copy_context().run, call)


def _settled(call: Callable[[], T]) -> Outcome[T]:
    try:
        return Outcome(value=call())
    except Exception as exc:  # handed to the caller, who raises it where it belongs
        return Outcome(error=exc)


def _outcome(future: Future[T]) -> Outcome[T]:
    error = future.exception()
    return Outcome(error=error) if error is not None else Outcome(value=future.result())
