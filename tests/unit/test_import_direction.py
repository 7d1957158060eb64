"""Dependencies point inward: functions → shared library; the library never reaches for
development-only code (local stack, sandboxes, CLI), the CDK app, or test tooling."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_IN_LIBRARY = {"switchyard_local", "switchyard_cli", "infra", "functions", "moto", "aws_cdk", "constructs",
                        "cdk_nag", "pytest", "werkzeug", "boto3"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", sorted((ROOT / "shared" / "switchyard").rglob("*.py")), ids=str)
def test_library_module_imports_nothing_dev_only(path):
    assert not imported_roots(path) & FORBIDDEN_IN_LIBRARY


@pytest.mark.parametrize("path", sorted((ROOT / "functions").rglob("*.py")), ids=str)
def test_handler_imports_only_library_and_powertools(path):
    assert imported_roots(path) <= {"switchyard", "aws_lambda_powertools", "os", "json", "base64", "functools"}
