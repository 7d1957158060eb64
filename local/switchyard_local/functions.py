"""Lambda functions of the synthesized template, run in this process.

Each function gets its own copy of its handler module (as separate Lambda containers would) and
runs with exactly the environment CloudFormation resolved for it, seen by its own thread only. A
function runs one invocation at a time (one container). By default every function shares one lock, so
all invocations take turns; a stack built with ``concurrent_functions`` gives each function its own
lock, so a function waiting on a slow vendor or sleeping out a backoff holds up only itself, as in AWS.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import io
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from switchyard_local.table_access import acting_as

_INVOKE_LOCK = threading.RLock()


class FunctionError(Exception):
    """The handler raised: what Lambda reports as a function error."""


@dataclass
class LambdaContext:
    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: int
    invoked_function_arn: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""
    _deadline: float = field(default=0.0)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class InProcessFunction:
    logical_id: str
    function_name: str
    arn: str
    code_dir: Path
    handler: str  # "module.function"
    environment: dict[str, str]
    timeout_seconds: int
    memory_mb: int
    base_environment: dict[str, str]
    log_stream: io.TextIOBase | Any = None
    # whose turn it is: every function's (the default) or this function's own (concurrent functions)
    lock: Any = field(default=_INVOKE_LOCK, repr=False)
    _module: ModuleType | None = None

    def _load(self) -> ModuleType:
        module_file, _, _ = self.handler.rpartition(".")
        path = self.code_dir / f"{module_file.replace('.', '/')}.py"
        name = f"switchyard_fn_{self.logical_id}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise FunctionError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def invoke(self, event: dict[str, Any]) -> Any:
        env = {
            **self.base_environment,
            **self.environment,
            "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
        }
        context = LambdaContext(
            function_name=self.function_name,
            memory_limit_in_mb=self.memory_mb,
            timeout_seconds=self.timeout_seconds,
            invoked_function_arn=self.arn,
            _deadline=time.monotonic() + self.timeout_seconds,
        )
        with self.lock, _patched_environ(env), _redirected(self.log_stream), acting_as(self.logical_id):
            if self._module is None:
                self._module = self._load()
            entry = getattr(self._module, self.handler.rpartition(".")[2])
            try:
                return entry(event, context)
            except Exception as exc:
                raise FunctionError(f"{self.logical_id}: {type(exc).__name__}: {exc}") from exc


class _FunctionEnviron(MutableMapping[str, str]):
    """``os.environ`` while the local stack runs: the process environment, plus, for the thread that is
    running a function, that function's environment on top. Swapping the process environment per call
    raced with other threads of this process (moto's Step Functions engine, the pollers, botocore's
    proxy lookup iterating ``os.environ``): a key vanished while they iterated (KeyError) or their
    credentials were gone for an instant. The overlay is a context variable: threads the handler starts
    with its context (``switchyard.concurrency``) see the function's values; any other thread sees, for
    keys the process does not have, those of the function that started last."""

    def __init__(self, process: MutableMapping[str, str]) -> None:
        self.process = process
        self._overlays: contextvars.ContextVar[tuple[dict[str, str], ...]] = contextvars.ContextVar(
            "function_environ", default=())
        self._active: dict[str, str] | None = None

    def _overlay(self) -> dict[str, str] | None:
        stack = self._overlays.get()
        return stack[-1] if stack else None

    @contextlib.contextmanager
    def applied(self, env: dict[str, str]):
        stack = self._overlays.get()
        overlay = {**(stack[-1] if stack else {}), **env}
        token = self._overlays.set((*stack, overlay))
        previous, self._active = self._active, overlay
        try:
            yield
        finally:
            self._overlays.reset(token)
            self._active = previous

    def __getitem__(self, key: str) -> str:
        overlay = self._overlay()
        if overlay is not None and key in overlay:
            return overlay[key]
        try:
            return self.process[key]
        except KeyError:
            active = self._active
            if overlay is None and active is not None and key in active:
                return active[key]
            raise

    def __setitem__(self, key: str, value: str) -> None:
        overlay = self._overlay()
        if overlay is not None:
            overlay[key] = value  # what a handler sets lives as long as its call, as in its own container
        else:
            self.process[key] = value

    def __delitem__(self, key: str) -> None:
        overlay = self._overlay()
        if overlay is not None and key in overlay:
            del overlay[key]
        else:
            del self.process[key]

    def _keys(self) -> list[str]:
        overlay = self._overlay()
        keys = list(self.process.copy())  # a snapshot: other threads may change it meanwhile
        return keys + [key for key in overlay if key not in keys] if overlay else keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def copy(self) -> dict[str, str]:
        return {key: self[key] for key in self._keys() if key in self}


def _function_environ() -> _FunctionEnviron:
    environ = os.environ
    if not isinstance(environ, _FunctionEnviron):
        environ = _FunctionEnviron(os.environ)
        os.environ = environ  # type: ignore[assignment]  # noqa: B003 (replaced, not cleared: on purpose)
    return environ


@contextlib.contextmanager
def _patched_environ(env: dict[str, str]):
    """The function's environment for one call, seen only by the calling thread (and threads it starts)."""
    with _function_environ().applied(env):
        yield


class _ThreadStdout(io.TextIOBase):
    """``sys.stdout`` while functions run: a running function's prints (Powertools' metrics) go to its log
    stream, seen by its own thread only; everything else to the stdout it replaced. ``redirect_stdout``
    swaps the process's stdout, which two functions running at once would leave pointing at the wrong
    stream."""

    def __init__(self, original: Any) -> None:
        self.original = original

    def target(self) -> Any:
        stream = _FUNCTION_STDOUT.get()
        return self.original if stream is None else stream

    @contextlib.contextmanager
    def to(self, stream: Any) -> Iterator[None]:
        token = _FUNCTION_STDOUT.set(stream)
        try:
            yield
        finally:
            _FUNCTION_STDOUT.reset(token)

    def write(self, text: str) -> int:
        return int(self.target().write(text))

    def flush(self) -> None:
        self.target().flush()

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno ... of the stream written to
        return getattr(self.target(), name)


_STDOUT_LOCK = threading.Lock()
_FUNCTION_STDOUT: contextvars.ContextVar[Any] = contextvars.ContextVar("function_stdout", default=None)


@contextlib.contextmanager
def _redirected(stream: Any):
    if stream is None:
        yield
        return
    with _STDOUT_LOCK:
        proxy = sys.stdout
        if not isinstance(proxy, _ThreadStdout):  # first call, or someone (pytest) replaced it since
            proxy = sys.stdout = _ThreadStdout(sys.stdout)
    with proxy.to(stream):
        yield
