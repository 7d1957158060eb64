"""The end-to-end modules get their local stack from tests/e2e/conftest.py (``stack`` shared, ``own_stack``
fresh): moto's backends are process-wide, so a module that starts a stack of its own beside the shared one
finds that stack's resources and fails every later module of its worker."""

from __future__ import annotations

from pathlib import Path

E2E = Path(__file__).resolve().parents[1] / "e2e"


def test_no_e2e_module_starts_a_local_stack_of_its_own():
    offenders = [path.name for path in sorted(E2E.glob("test_*.py")) if "LocalStack(" in path.read_text()]
    assert offenders == [], f"use the conftest's stack or own_stack fixture in {offenders}"
