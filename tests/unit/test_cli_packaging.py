"""The CLI ships with the package (``pip install switchyard[cli]``), with its dependencies declared, apart from
the local stack (a development extra) and outside the Lambda layer."""

from __future__ import annotations

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
