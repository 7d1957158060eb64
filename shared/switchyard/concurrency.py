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

# A batch's entities run side by side (``run_groups``), each with its own lookups side by side
# (``settle_all``). The groups get threads of their own per batch, so a group waiting on its lookups never
# holds a thread one of them needs, and one invocation's groups never queue behind another's (the local
# stack runs every function in one process, several invocations at once). SQS hands a worker at most 10
# records per batch here (FlowSizing). The lookups share one pool: they wait on nothing but the network.
IO_THREADS = 24


def _io_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="switchyard-io")


_POOL = _io_pool()


def _new_pool_after_fork() -> None:
    # A forked child inherits the pool but not its threads: it would count the parent's idle workers as
    # its own and never start one, so every submitted call would wait forever.
    global _POOL
    _POOL = _io_pool()


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
    with ThreadPoolExecutor(max_workers=len(calls) - 1, thread_name_prefix="switchyard-group") as groups:
        futures = [groups.submit(contextvars.copy_context().run, call) for call in calls[1:]]
        first = _settled(calls[0])
        return [first, *(_outcome(future) for future in futures)]


def _submit(call: Callable[[], Any]) -> Future[Any]:
    # the caller's context goes along (Powertools' logger keys, whatever tracks who is calling)
    return _POOL.submit(contextvars.copy_context().run, call)


def _settled(call: Callable[[], T]) -> Outcome[T]:
    try:
        return Outcome(value=call())
    except Exception as exc:  # handed to the caller, who raises it where it belongs
        return Outcome(error=exc)


def _outcome(future: Future[T]) -> Outcome[T]:
    error = future.exception()
    return Outcome(error=error) if error is not None else Outcome(value=future.result())
