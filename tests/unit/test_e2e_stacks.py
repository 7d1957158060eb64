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
