"""settle_all: calls side by side, every outcome kept in argument order."""

from __future__ import annotations

import threading
import time

import pytest
from switchyard.concurrency import settle_all


def test_settle_all_runs_calls_side_by_side_and_keeps_their_order() -> None:
    barrier = threading.Barrier(3, timeout=5)  # only passes if all three run at once

    def call(value: int):
        def run() -> int:
            barrier.wait()
            return value
        return run

    assert [o.get() for o in settle_all(call(1), call(2), call(3))] == [1, 2, 3]


def test_settle_all_waits_for_every_call_even_when_one_fails() -> None:
    finished = []

    def slow() -> str:
        time.sleep(0.05)
        finished.append("slow")
        return "done"

    def failing() -> str:
        raise ValueError("refused")

    failed, done = settle_all(failing, slow)
    assert finished == ["slow"] and done.get() == "done"
    assert isinstance(failed.error, ValueError)
    with pytest.raises(ValueError, match="refused"):
        failed.get()


def test_settle_all_of_one_call_runs_it_in_the_callers_thread() -> None:
    (outcome,) = settle_all(threading.get_ident)
    assert outcome.get() == threading.get_ident()


def test_calls_run_in_the_callers_context() -> None:
    # the local stack's IAM check knows which function calls DynamoDB from a context variable: a lookup
    # handed to another thread must still be that function's
    import contextvars

    from switchyard.concurrency import settle_all

    calling: contextvars.ContextVar[str | None] = contextvars.ContextVar("calling", default=None)
    calling.set("Worker")

    outcomes = settle_all(calling.get, calling.get, calling.get)

    assert [o.get() for o in outcomes] == ["Worker", "Worker", "Worker"]


def test_a_forked_process_runs_calls_side_by_side_too() -> None:
    # A forked child (mutation testing forks one per mutant) inherits the pool but not its threads;
    # without a fresh pool it would count the parent's idle workers and wait forever.
    assert [o.get() for o in settle_all(lambda: 1, lambda: 2)] == [1, 2]  # the parent's threads exist
    import os
    import signal

    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if both calls finished within two seconds
        signal.alarm(2)
        outcomes = settle_all(lambda: 1, lambda: 2, lambda: 3)
        os._exit(0 if [o.get() for o in outcomes] == [1, 2, 3] else 1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child never finished its calls")
    assert os.waitstatus_to_exitcode(status) == 0


def test_two_invocations_groups_never_queue_behind_each_other() -> None:
    # The local stack runs several invocations in one process: each batch's groups get threads of their own,
    # so 2 x 11 groups all run at once (a shared pool of 10 left some queued behind the other invocation's).
    from switchyard.concurrency import run_groups

    everyone = threading.Barrier(22, timeout=5)
    results: list[list[int]] = []

    def invocation() -> None:
        outcomes = run_groups(*(lambda: everyone.wait() >= 0 for _ in range(11)))
        results.append([int(o.get()) for o in outcomes])

    threads = [threading.Thread(target=invocation) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert results == [[1] * 11, [1] * 11]
