"""Lambda functions of the synthesized template, run in this process.

Each function gets its own copy of its handler module (as separate Lambda containers would) and
runs with exactly the environment CloudFormation resolved for it. Invocations are serialised:
the process environment is swapped per call.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import threading
import time
import uuid
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
        with _INVOKE_LOCK, _patched_environ(env), _redirected(self.log_stream), acting_as(self.logical_id):
            if self._module is None:
                self._module = self._load()
            entry = getattr(self._module, self.handler.rpartition(".")[2])
            try:
                return entry(event, context)
            except Exception as exc:
                raise FunctionError(f"{self.logical_id}: {type(exc).__name__}: {exc}") from exc


@contextlib.contextmanager
def _patched_environ(env: dict[str, str]):
    """The function's environment for one call, changed and restored key by key: other threads of this process
    (moto's Step Functions engine, the sandboxes, the pollers) read ``os.environ`` meanwhile, and clearing it
    to restore it took their AWS credentials away for an instant (a task then failed before it ran)."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        for key in [key for key in os.environ if key not in saved]:
            os.environ.pop(key, None)
        for key, value in saved.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


@contextlib.contextmanager
def _redirected(stream: Any):
    if stream is None:
        yield
        return
    with contextlib.redirect_stdout(stream):
        yield
