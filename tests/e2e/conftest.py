"""One local stack shared by consecutive end-to-end modules (per xdist worker).

Starting a stack costs 30 to 45 s on this project's 2-core machine (synthesis alone ~17 s), so the modules
share one instead of starting one each. Each module keeps to its own orders, customers and event ids and
leaves the queues drained, so sharing is safe. moto's backends are process-wide, so the shared stack is
closed as soon as the next test on this worker does not use it (another test's ``mock_aws`` would reset it
under the stack's feet), and a module that needs a fresh stack (the demo) asks for ``own_stack``. The modules
on the shared stack run one after another, before those with their own (``pytest_collection_modifyitems``):
in file order they alternated, and each switch closed the shared stack and started it again.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from switchyard_local.stack import LocalStack


class _StackPool:
    def __init__(self) -> None:
        self._shared: LocalStack | None = None

    def shared(self) -> LocalStack:
        if self._shared is None:
            self._shared = LocalStack().start()
        return self._shared

    def close_shared(self) -> None:
        shared, self._shared = self._shared, None
        if shared is not None:
            shared.stop()


_POOL = _StackPool()


def _uses_shared_stack(item: pytest.Item | None) -> bool:
    return (item is not None and Path(item.path).is_relative_to(Path(__file__).parent)
            and "stack" in getattr(item, "fixturenames", ()))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    try:
        return (yield)  # the test's own fixtures are torn down first: they may still use the stack
    finally:
        if not _uses_shared_stack(nextitem):
            _POOL.close_shared()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end modules on the shared stack first, then the others (a stack of their own, or none), each
    module whole (a stable sort over the end-to-end positions only; every other test keeps its place)."""
    here = Path(__file__).parent
    positions = [index for index, item in enumerate(items) if Path(item.path).is_relative_to(here)]
    uses = {(items[index].path, name) for index in positions for name in ("stack", "own_stack")
            if name in getattr(items[index], "fixturenames", ())}
    shared = {path for path, name in uses if name == "stack"} - {path for path, name in uses if name == "own_stack"}
    ordered = sorted((items[index] for index in positions), key=lambda item: item.path not in shared)
    for index, item in zip(positions, ordered, strict=True):
        items[index] = item


def pytest_sessionfinish(session: pytest.Session) -> None:
    _POOL.close_shared()


@pytest.fixture(scope="module")
def stack() -> LocalStack:
    return _POOL.shared()


@pytest.fixture(scope="module")
def own_stack() -> Iterator[LocalStack]:
    _POOL.close_shared()
    with LocalStack() as running:
        yield running


# --- the operator's CLI against a stack (the modules that run `switchyard ... --local`) -------------------------

@pytest.fixture(scope="module")
def endpoint(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The module's stack served as ``make dev`` serves it: an AWS endpoint and the folder with its endpoint file
    (a module that overrides ``stack`` gets its own stack's endpoint)."""
    from switchyard_cli.target import LOCAL_ENDPOINT_FILE
    from switchyard_local.devmode import aws_endpoint

    workdir = tmp_path_factory.mktemp("operator")
    with aws_endpoint(endpoint_file=workdir / LOCAL_ENDPOINT_FILE, stack_name="Switchyard-dev") as url:
        yield {"url": url, "workdir": workdir}


@pytest.fixture
def cli(endpoint: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[Any, str]]:
    """``switchyard ARGS --local``, run from the folder ``make dev`` wrote its endpoint file into: returns
    (the JSON it printed, or its text; what it said on stderr) and checks the exit code."""
    import json

    from switchyard_cli import main as cli_main

    monkeypatch.chdir(endpoint["workdir"])
    monkeypatch.setattr(cli_main.out, "width", 250)  # a wide terminal: tables unfolded

    def run(*argv: str, code: int = 0, local: bool = True) -> tuple[Any, str]:
        capsys.readouterr()
        assert cli_main.main([*argv, *(["--local"] if local else [])]) == code
        captured = capsys.readouterr()
        try:
            return json.loads(captured.out), captured.err
        except ValueError:
            return captured.out, captured.err

    return run
