"""The CLI ships with the package (``pip install switchyard[cli]``), with its dependencies declared, apart from
the local stack (a development extra) and outside the Lambda layer."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from infra.layer import SharedLibraryBundler

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def pins(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[name.split("[", 1)[0].lower().replace("_", "-")] = version
    return found


def test_the_package_declares_the_library_dependencies_the_layer_pins() -> None:
    layer = pins((ROOT / "requirements" / "lambda.txt").read_text().splitlines())
    assert pins(PYPROJECT["dependencies"]) == layer


def test_the_cli_extra_pins_what_the_dev_lock_installs() -> None:
    cli = pins(PYPROJECT["optional-dependencies"]["cli"])
    lock = pins((ROOT / "requirements" / "dev.lock").read_text().splitlines())
    assert {"typer", "rich", "boto3"} <= set(cli)
    assert {name: lock.get(name) for name in cli} == cli
    assert PYPROJECT["scripts"]["switchyard"] == "switchyard_cli.main:main"
    assert PYPROJECT["license"] == "Apache-2.0" and (ROOT / "LICENSE").read_text().count("Apache License") >= 1


def test_the_layer_bundles_the_library_without_the_cli(tmp_path: Path) -> None:
    SharedLibraryBundler(requirements=None).try_bundle(str(tmp_path))
    assert (tmp_path / "python" / "switchyard" / "worker.py").is_file()
    assert sorted(p.name for p in (tmp_path / "python").iterdir()) == ["switchyard"]


def test_the_cli_runs_without_the_local_stack_or_moto() -> None:
    # Given an install without the development extra: switchyard_local and moto cannot be imported
    script = ("import sys; sys.modules.update(switchyard_local=None, moto=None); "
              "from switchyard_cli.main import main; "
              "assert main(['--help']) == 0; assert main(['--version']) == 0; "
              "sys.exit(main(['local', 'up']))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert "Usage: switchyard" in result.stdout and "switchyard 0." in result.stdout
    # Then the local stack is refused in one line, with exit code 3 (configuration)
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip().startswith("error: the local stack is a development extra")
    assert "Traceback" not in result.stderr


def documented_commands() -> list[tuple[str, str]]:
    """Every ``switchyard ...`` command quoted in the operator docs: (file, command)."""
    import re

    found = []
    for name in ("README.md", "docs/runbooks.md", "docs/local-stack.md", "docs/infrastructure.md"):
        text = (ROOT / name).read_text()
        for match in re.finditer(r"`((?:\.venv/bin/)?switchyard [^`]+)`", text.replace("\n", " ")):
            found.append((name, re.sub(r"\s+", " ", match.group(1))))
    return found


def parse(words: list[str]) -> None:
    """Resolve a command line as ``switchyard`` would, without running it: an unknown command, option or a
    missing argument raises."""
    import typer
    from switchyard_cli.main import app

    group = typer.main.get_command(app)
    context = group.make_context("switchyard", list(words))
    rest = [*getattr(context, "_protected_args", []), *context.args]
    while hasattr(group, "get_command") and rest:
        name, *rest = rest
        command = group.get_command(context, name)
        assert command is not None, f"no command {name!r}"
        group, context = command, command.make_context(name, rest, parent=context)
        rest = [*getattr(context, "_protected_args", []), *context.args] if hasattr(group, "get_command") else []


def test_parse_refuses_what_switchyard_refuses() -> None:
    import pytest
    import typer

    parse(["dlq", "list", "FLOW", "--stack", "S", "--order", "1"])
    for words in (["dlq", "frobnicate"], ["dlq", "list", "--bogus"], ["dlq", "show"]):
        with pytest.raises((AssertionError, typer.TyperException)):
            parse(words)


def test_every_documented_switchyard_command_exists_with_its_options() -> None:
    import shlex

    import typer

    commands = documented_commands()
    assert len(commands) > 10
    for doc, command in commands:
        words = shlex.split(re.sub(r"<[^>]+>", "X", command.split(" | ")[-1]))[1:]
        try:
            parse(words)
        except typer.Exit as done:  # --help, --version
            assert done.exit_code == 0, f"{doc}: `{command}`"
        except Exception as exc:
            raise AssertionError(f"{doc}: `{command}`: {exc}") from exc
