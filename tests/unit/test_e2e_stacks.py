"""The end-to-end modules get their local stack from tests/e2e/conftest.py (``stack`` shared, ``own_stack``
fresh): moto's backends are process-wide, so a module that starts a stack of its own beside the shared one
finds that stack's resources and fails every later module of its worker."""

from __future__ import annotations

from pathlib import Path

E2E = Path(__file__).resolve().parents[1] / "e2e"


def test_no_e2e_module_starts_a_local_stack_of_its_own():
    offenders = [path.name for path in sorted(E2E.glob("test_*.py")) if "LocalStack(" in path.read_text()]
    assert offenders == [], f"use the conftest's stack or own_stack fixture in {offenders}"


def test_no_two_test_modules_share_a_file_name() -> None:
    """pytest imports test modules by their base name (rootdir-relative packages are not used here), so a second
    module with the same name stops the whole run at collection with an 'import file mismatch'."""
    tests_root = Path(__file__).resolve().parents[1]
    seen: dict[str, Path] = {}
    clashes = []
    for module in sorted(tests_root.rglob("test_*.py")):
        if module.name in seen:
            clashes.append(f"{seen[module.name].relative_to(tests_root)} and {module.relative_to(tests_root)}")
        seen.setdefault(module.name, module)
    assert not clashes, "test modules with the same file name: " + "; ".join(clashes)


def _e2e_conftest():
    import importlib.util

    spec = importlib.util.spec_from_file_location("e2e_conftest_under_test", E2E / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Item:
    def __init__(self, module: str, name: str, *fixtures: str) -> None:
        self.path = E2E / module if module.startswith("test_") else Path("/elsewhere") / module
        self.name = name
        self.fixturenames = fixtures


def test_shared_stack_modules_run_together_so_the_stack_starts_once():
    # in file order an own-stack module (or one without a stack) between two shared ones closes the shared
    # stack, and the next shared module starts it again (30-45 s each)
    items = [_Item("unit_a.py", "u1"),
             _Item("test_a.py", "a1", "stack"), _Item("test_b.py", "b1", "stack", "own_stack"),
             _Item("test_b.py", "b2", "cli"), _Item("test_c.py", "c1", "stack"), _Item("test_d.py", "d1"),
             _Item("test_e.py", "e1", "stack"), _Item("unit_z.py", "u2")]

    _e2e_conftest().pytest_collection_modifyitems(items)

    assert [item.name for item in items] == ["u1", "a1", "c1", "e1", "b1", "b2", "d1", "u2"]


def test_loadgroup_groups_under_pytest_9_so_the_e2e_modules_share_one_worker():
    # pytest-xdist 3.8 appends "@<group>" to item._nodeid, which pytest 9 no longer reads (item._id): without
    # the root conftest's hook every grouped test went to any worker and the shared stack restarted over and over
    import importlib.util
    from types import SimpleNamespace

    import pytest
    from _pytest.nodeid import NodeId

    spec = importlib.util.spec_from_file_location("root_conftest_under_test", E2E.parent / "conftest.py")
    assert spec is not None and spec.loader is not None
    root = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(root)

    class Item:
        def __init__(self, nodeid: str, *groups: str) -> None:
            self._id = NodeId.parse(nodeid)
            self._marks = [pytest.mark.xdist_group(group).mark for group in groups]

        @property
        def nodeid(self) -> str:
            return str(self._id)

        def iter_markers(self, name: str):
            return iter(self._marks if name == "xdist_group" else [])

    items = [Item("tests/e2e/test_a.py::test_one", "e2e"), Item("tests/unit/test_b.py::test_two"),
             Item("tests/e2e/test_c.py::test_three[x]", "chaos")]
    root.pytest_collection_modifyitems(SimpleNamespace(option=SimpleNamespace(loadgroup=False)), items)
    assert [item.nodeid for item in items] == ["tests/e2e/test_a.py::test_one", "tests/unit/test_b.py::test_two",
                                               "tests/e2e/test_c.py::test_three[x]"]

    root.pytest_collection_modifyitems(SimpleNamespace(option=SimpleNamespace(loadgroup=True)), items)
    root.pytest_collection_modifyitems(SimpleNamespace(option=SimpleNamespace(loadgroup=True)), items)  # once

    assert [item.nodeid for item in items] == ["tests/e2e/test_a.py::test_one@e2e", "tests/unit/test_b.py::test_two",
                                               "tests/e2e/test_c.py::test_three[x]@chaos"]
