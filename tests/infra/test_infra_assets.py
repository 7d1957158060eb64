"""What goes into the Lambda assets: the layer layout, and never development-only code."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest

# One xdist worker runs all infra tests, so the session fixtures synthesize each stage once.
pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

DEV_ONLY = {"local", "tests", "infra", "bench", "switchyard_local", "__pycache__"}


def asset_dir(synth, resource) -> Path:
    """The staged folder of a Lambda function's or layer's code asset."""
    content = resource.properties.get("Code") or resource.properties["Content"]
    asset_hash = content["S3Key"].removesuffix(".zip")
    return synth.assembly_dir / synth.assets_manifest["files"][asset_hash]["source"]["path"]


def test_layer_asset_holds_switchyard_under_python_with_package_data(dev_synth, dev):
    (layer,) = dev.tagged(role="shared-layer")
    root = asset_dir(dev_synth, layer)
    assert sorted(p.name for p in root.iterdir()) == ["python"]
    assert (root / "python/switchyard/catalog.py").is_file()
    assert (root / "python/switchyard/config/flows.yaml").is_file()


def test_assets_of_every_function_and_layer_contain_no_development_folders(dev_synth, dev):
    resources = [*dev.of_type("AWS::Lambda::Function"), *dev.tagged(role="shared-layer")]
    for resource in resources:
        root = asset_dir(dev_synth, resource)
        found = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir() and p.name in DEV_ONLY}
        assert not found, f"{resource.logical_id} bundles {sorted(found)}"
        assert not list(root.rglob("*.pyc"))


def test_function_assets_come_from_their_code_folder(dev_synth, dev):
    from infra.paths import REPO_ROOT

    for function in dev.of_type("AWS::Lambda::Function"):
        source = REPO_ROOT / function.metadata["switchyard:code"]
        staged = {p.relative_to(asset_dir(dev_synth, function)) for p in asset_dir(dev_synth, function).rglob("*.py")}
        assert staged == {p.relative_to(source) for p in source.rglob("*.py") if "__pycache__" not in p.parts}


def test_layer_bundler_with_requirements_pip_installs_aarch64_wheels_for_runtime(tmp_path, monkeypatch):
    from infra import layer
    from infra.functions import RUNTIME

    commands = []

    def fake_run(command, **_kwargs):
        commands.append(command)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(layer.subprocess, "run", fake_run)
    requirements = tmp_path / "lambda.txt"
    requirements.write_text("pydantic==2.14.4\n")

    assert layer.SharedLibraryBundler(requirements=requirements).try_bundle(str(tmp_path / "out"))

    (command,) = commands
    assert command[:4] == [sys.executable, "-m", "pip", "install"]
    options = dict(itertools.pairwise(command))
    assert options["--target"] == str(tmp_path / "out" / "python")
    assert options["--platform"] == "manylinux2014_aarch64"
    assert options["--implementation"] == "cp"
    assert options["--python-version"] == RUNTIME.name.removeprefix("python")
    assert options["-r"] == str(requirements)
    assert "--only-binary=:all:" in command
    assert "--no-deps" in command  # the lock pins every transitive dependency: pip adds none of its own
    assert (tmp_path / "out/python/switchyard/catalog.py").is_file()


def test_the_layer_installs_the_lock_which_pins_every_dependency_of_lambda_txt():
    from infra.layer import SharedLibraryBundler
    from infra.paths import LAMBDA_LOCK, LAMBDA_REQUIREMENTS

    def pins(path):
        return {line.split("==")[0].lower().replace("_", "-"): line.split("==")[1].strip()
                for line in path.read_text().splitlines() if "==" in line and not line.startswith("#")}

    lock, direct = pins(LAMBDA_LOCK), pins(LAMBDA_REQUIREMENTS)
    assert SharedLibraryBundler().requirements == LAMBDA_LOCK
    assert {name: lock.get(name) for name in direct} == direct  # the direct pins, unchanged
    assert {"pydantic-core", "httpcore", "anyio", "jmespath"} <= set(lock)  # and what they pull in
    assert all(line.count("==") == 1 for line in LAMBDA_LOCK.read_text().splitlines()
               if line and not line.startswith("#"))
    dev = pins(LAMBDA_LOCK.parent / "dev.lock")
    assert {name: dev.get(name) for name in lock} == lock  # tests run what the layer ships


def test_layer_bundler_without_requirements_copies_library_only(tmp_path, monkeypatch):
    from infra import layer

    monkeypatch.setattr(layer.subprocess, "run", lambda *a, **k: pytest.fail("pip must not run"))
    assert layer.SharedLibraryBundler(requirements=None).try_bundle(str(tmp_path))
    assert sorted(p.name for p in (tmp_path / "python").iterdir()) == ["switchyard"]


def test_layer_fingerprint_ignores_bytecode_but_tracks_sources_and_requirements(tmp_path):
    from infra.layer import SharedLibraryBundler

    library = tmp_path / "switchyard"
    (library / "__pycache__").mkdir(parents=True)
    (library / "catalog.py").write_text("A = 1\n")
    requirements = tmp_path / "lambda.txt"
    requirements.write_text("httpx==0.28.1\n")
    bundler = SharedLibraryBundler(library=library, requirements=requirements)
    before = bundler.fingerprint()

    (library / "__pycache__" / "catalog.cpython-311.pyc").write_bytes(b"\0")
    assert bundler.fingerprint() == before
    (library / "catalog.py").write_text("A = 2\n")
    after_source = bundler.fingerprint()
    assert after_source != before
    requirements.write_text("httpx==0.28.2\n")
    assert bundler.fingerprint() != after_source
    assert SharedLibraryBundler(library=library, requirements=None).fingerprint() != bundler.fingerprint()
