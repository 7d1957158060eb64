"""The local stack's in-process Lambda functions: their environment is applied per call without ever taking
away, even for an instant, a variable other threads read meanwhile (moto's Step Functions engine and the
sandboxes run in threads of the same process)."""

from __future__ import annotations

import io
import os
import sys
import threading
from pathlib import Path

import pytest
from switchyard_local.functions import InProcessFunction


def test_invoke_never_removes_a_variable_both_environments_have(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "handler.py").write_text("import os\n\ndef handler(event, context):\n"
                                         "    os.environ['SET_BY_HANDLER'] = '1'\n"
                                         "    return os.environ['FUNCTION_ONLY']\n")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("SHARED", "outside")
    monkeypatch.delenv("FUNCTION_ONLY", raising=False)
    function = InProcessFunction(logical_id="Probe", function_name="probe", arn="arn:aws:lambda:us-east-1:1:function:p",
                                 code_dir=tmp_path, handler="handler.handler",
                                 environment={"FUNCTION_ONLY": "yes", "SHARED": "inside"}, timeout_seconds=3,
                                 memory_mb=128, base_environment={"AWS_ACCESS_KEY_ID": "testing"})
    missing: list[str] = []
    done = threading.Event()

    def read_credentials() -> None:
        while not done.is_set():
            if os.environ.get("AWS_ACCESS_KEY_ID") is None:
                missing.append("AWS_ACCESS_KEY_ID")
    reader = threading.Thread(target=read_credentials)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: any window shows
    try:
        reader.start()
        results = {function.invoke({}) for _ in range(300)}
    finally:
        done.set()
        reader.join()
        sys.setswitchinterval(switch)

    assert results == {"yes"} and missing == []
    assert os.environ["SHARED"] == "outside"  # restored afterwards
    assert "FUNCTION_ONLY" not in os.environ and "SET_BY_HANDLER" not in os.environ


def test_other_threads_iterate_the_environment_while_functions_run(tmp_path: Path) -> None:
    # botocore's proxy lookup iterates os.environ when a client is made: a key a call removed meanwhile
    # was a KeyError in the chaos run's own thread
    (tmp_path / "handler.py").write_text("import os\n\ndef handler(event, context):\n"
                                         "    return os.environ['SWITCHYARD_PROBE_ONLY_HERE']\n")
    function = InProcessFunction(logical_id="Probe2", function_name="probe2",
                                 arn="arn:aws:lambda:us-east-1:1:function:p2", code_dir=tmp_path,
                                 handler="handler.handler", environment={"SWITCHYARD_PROBE_ONLY_HERE": "f"},
                                 timeout_seconds=3, memory_mb=128, base_environment={})
    assert "SWITCHYARD_PROBE_ONLY_HERE" not in os.environ  # a name no other test sets in the process
    errors: list[BaseException] = []
    seen: set[str] = set()
    done = threading.Event()

    def iterate() -> None:
        while not done.is_set():
            try:
                seen.update(name for name, _ in os.environ.items())
            except BaseException as exc:
                errors.append(exc)
    reader = threading.Thread(target=iterate)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        reader.start()
        results = {function.invoke({}) for _ in range(300)}
    finally:
        done.set()
        reader.join()
        sys.setswitchinterval(switch)

    assert results == {"f"} and errors == []
    assert "SWITCHYARD_PROBE_ONLY_HERE" not in seen  # the function's environment is its own thread's


def _waiting_function(tmp_path: Path, name: str, **lock: object) -> InProcessFunction:
    """A function that prints its name and its environment's NAME, then waits for ``event["go"]``."""
    code = tmp_path / name
    code.mkdir()
    (code / "handler.py").write_text("import os\n\ndef handler(event, context):\n"
                                     "    print(os.environ['NAME'])\n"
                                     "    event['started'].set()\n"
                                     "    assert event['go'].wait(10)\n"
                                     "    print(os.environ['NAME'])\n"
                                     "    return os.environ['NAME']\n")
    return InProcessFunction(logical_id=name, function_name=name, arn=f"arn:aws:lambda:us-east-1:1:function:{name}",
                             code_dir=code, handler="handler.handler", environment={"NAME": name},
                             timeout_seconds=10, memory_mb=128, base_environment={},
                             log_stream=io.StringIO(), **lock)  # type: ignore[arg-type]


def test_functions_with_their_own_locks_run_at_once_each_with_its_environment_and_log(tmp_path: Path) -> None:
    """The chaos harness's stack: a function waiting on a held vendor answer must not hold up the others
    (it did: every invocation took one process-wide turn), and their prints must not cross."""
    slow = _waiting_function(tmp_path, "slow", lock=threading.RLock())
    fast = _waiting_function(tmp_path, "fast", lock=threading.RLock())
    go_slow, started = threading.Event(), threading.Event()
    results: dict[str, str] = {}
    thread = threading.Thread(target=lambda: results.update(slow=slow.invoke({"go": go_slow, "started": started})))
    thread.start()
    try:
        assert started.wait(10)
        ready = threading.Event()
        ready.set()
        results["fast"] = fast.invoke({"go": ready, "started": threading.Event()})  # while slow waits
    finally:
        go_slow.set()
        thread.join(10)
    assert results == {"slow": "slow", "fast": "fast"}
    assert slow.log_stream.getvalue() == "slow\nslow\n" and fast.log_stream.getvalue() == "fast\nfast\n"
    print("after")  # the process's stdout again, not a function's log
    assert "after" not in slow.log_stream.getvalue() + fast.log_stream.getvalue()


def test_functions_sharing_the_default_lock_take_turns(tmp_path: Path) -> None:
    first, second = _waiting_function(tmp_path, "first"), _waiting_function(tmp_path, "second")
    go, started, second_started = threading.Event(), threading.Event(), threading.Event()
    thread = threading.Thread(target=lambda: first.invoke({"go": go, "started": started}))
    thread.start()
    try:
        assert started.wait(10)
        ready = threading.Event()
        ready.set()
        waiting = threading.Thread(target=lambda: second.invoke({"go": ready, "started": second_started}))
        waiting.start()
        assert not second_started.wait(0.3)  # its turn comes after the first one's
    finally:
        go.set()
        thread.join(10)
    assert second_started.wait(10)
    waiting.join(10)
