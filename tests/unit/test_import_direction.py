"""Dependencies point inward: functions → shared library; the library never reaches for development-only code
(local stack, sandboxes, CLI), the CDK app, or test tooling; the core names no external system.

The layer contracts themselves (core ↛ systems and pairs, systems ↛ each other, clients ↛ AWS adapters) are
import-linter's, in pyproject.toml, run by ``make lint``; these tests keep them honest about what is core."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest
from switchyard import registry

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "shared" / "switchyard"
FORBIDDEN_IN_LIBRARY = {"switchyard_local", "switchyard_cli", "infra", "functions", "moto", "aws_cdk", "constructs",
                        "cdk_nag", "pytest", "werkzeug", "boto3"}
# today's systems and the next ones: none may be named by the core, in code (comments and docstrings may
# give an example)
SYSTEM_NAMES = {"streak", "clarity", "quickbooks", "nopcommerce", "bng", "salesforce"}
# not core: the systems' and pairs' own packages, and the ingest validators generated from their models
NOT_CORE = ("systems", "pairs", "validators", "config")


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def core_modules() -> list[Path]:
    return sorted(path for path in LIBRARY.rglob("*.py") if path.relative_to(LIBRARY).parts[0] not in NOT_CORE)


def code_words(source: str) -> list[str]:
    """Every identifier and every string literal of a module that is not a docstring."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant) and isinstance(node.body[0].value.value, str)}
    words: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words.append(node.value)
        elif isinstance(node, ast.Name):
            words.append(node.id)
        elif isinstance(node, ast.Attribute):
            words.append(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            words.append(node.name)
        elif isinstance(node, ast.arg):
            words.append(node.arg)
        elif isinstance(node, ast.alias):
            words += [node.name, node.asname or ""]
        elif isinstance(node, ast.ImportFrom):
            words.append(node.module or "")
        elif isinstance(node, ast.keyword):
            words.append(node.arg or "")
    return words


def system_names_in(source: str) -> set[str]:
    pattern = re.compile("|".join(sorted(SYSTEM_NAMES | set(registry.systems()))), re.IGNORECASE)
    return {match.group(0).lower() for word in code_words(source) for match in pattern.finditer(word)}


@pytest.mark.parametrize("path", sorted(LIBRARY.rglob("*.py")), ids=str)
def test_library_module_imports_nothing_dev_only(path):
    assert not imported_roots(path) & FORBIDDEN_IN_LIBRARY


@pytest.mark.parametrize("path", sorted((ROOT / "functions").rglob("*.py")), ids=str)
def test_handler_imports_only_library_and_powertools(path):
    assert imported_roots(path) <= {"switchyard", "aws_lambda_powertools", "os", "json", "base64", "functools"}


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(LIBRARY)))
def test_core_module_names_no_system(path):
    assert system_names_in(path.read_text()) == set()


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(LIBRARY)))
def test_core_module_prose_names_no_system_either(path):
    """Comments and docstrings too: the core reads as a description of any system (examples say "a shop",
    "an accounting system"), so a reader never takes one system's rule for the core's."""
    text = path.read_text().lower()
    assert {name for name in SYSTEM_NAMES if re.search(rf"\b{name}", text)} == set()


def test_system_name_check_sees_code_not_comments_or_docstrings():
    assert system_names_in('"""Like Streak."""\n# QuickBooks\nx = 1\n') == set()
    assert system_names_in('x = "quickbooks"\n') == {"quickbooks"}
    assert system_names_in("from switchyard.systems.salesforce import client\n") == {"salesforce"}
    assert system_names_in("def f(bng_client):\n    '''doc'''\n    return bng_client\n") == {"bng"}
    assert system_names_in("NOPCOMMERCE_ORDER = 1\n") == {"nopcommerce"}


def test_import_contract_covers_every_core_module():
    """A new core module is under the "core imports no system" contract (pyproject.toml) as soon as it exists."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    core_contract = next(c for c in contracts if c["forbidden_modules"] == ["switchyard.systems", "switchyard.pairs"]
                         if c["type"] == "forbidden")
    top_level = {f"switchyard.{path.relative_to(LIBRARY).parts[0].removesuffix('.py')}" for path in core_modules()}
    assert top_level - {"switchyard.__init__"} <= set(core_contract["source_modules"])


def test_every_system_package_registers_itself():
    packages = {path.parent.name for path in (LIBRARY / "systems").glob("*/__init__.py")}
    assert set(registry.systems()) == packages
    assert all(name == entry.name for name, entry in registry.systems().items())
