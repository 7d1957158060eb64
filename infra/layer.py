"""The shared library ``shared/switchyard`` (plus its pinned dependencies) as one Lambda layer.

Bundled locally, without Docker: :class:`SharedLibraryBundler` copies the package to
``python/switchyard`` and, when dependencies are wanted (``cdk synth`` / deploy), pip-installs
``requirements/lambda.lock`` (``lambda.txt`` with every transitive dependency pinned) with ``--no-deps`` as
manylinux aarch64 wheels for the Lambda runtime's Python version: the same layer from every build.
Tests and the local stack skip the dependencies: the host venv already has them.

The asset hash is computed here from exactly what goes in (library files, requirements, target
platform, whether dependencies are bundled), so an unchanged layer is not rebuilt: CDK skips
bundling when ``cdk.out/asset.<hash>`` already exists.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.functions import ARCHITECTURE, RUNTIME
from infra.metadata import annotate
from infra.paths import LAMBDA_LOCK, SHARED_LIBRARY

PLATFORM = "manylinux2014_aarch64"  # matches ARCHITECTURE (arm64)
_IGNORED = ("__pycache__", "*.pyc", "*.pyo")


def runtime_python_version(runtime: lambda_.Runtime = RUNTIME) -> str:
    """``python3.14`` -> ``3.14``."""
    return runtime.name.removeprefix("python")


@jsii.implements(ILocalBundling)
class SharedLibraryBundler:
    """Builds the layer's ``python/`` folder on the host (jsii ``ILocalBundling``)."""

    def __init__(
        self,
        *,
        library: Path = SHARED_LIBRARY,
        requirements: Path | None = LAMBDA_LOCK,
        python_version: str | None = None,
        platform: str = PLATFORM,
    ) -> None:
        self.library = library
        self.requirements = requirements
        self.python_version = python_version or runtime_python_version()
        self.platform = platform

    # jsii calls this with the BundlingOptions struct as a second argument; it is not needed here.
    def try_bundle(self, output_dir: str, *_options: Any, **_kwargs: Any) -> bool:
        site = Path(output_dir) / "python"
        shutil.copytree(
            self.library, site / self.library.name, ignore=shutil.ignore_patterns(*_IGNORED), dirs_exist_ok=True
        )
        if self.requirements is not None:
            self._pip_install(site)
        return True

    def _pip_install(self, site: Path) -> None:
        command = [
            sys.executable, "-m", "pip", "install",
            "--target", str(site),
            "--platform", self.platform,
            "--implementation", "cp",
            "--python-version", self.python_version,
            "--only-binary=:all:",
            "--no-deps",  # the lock lists every package: nothing unpinned comes in
            "--no-compile",  # host .pyc files would not match the runtime's Python
            "--disable-pip-version-check",
            "--quiet",
            "-r", str(self.requirements),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"layer dependencies failed to install ({' '.join(command)}):\n{result.stderr}")
        # Console scripts point at the host interpreter; useless (and misleading) inside Lambda.
        shutil.rmtree(site / "bin", ignore_errors=True)

    def fingerprint(self) -> str:
        """A hash of everything that determines the bundle's content."""
        digest = hashlib.sha256()
        digest.update(f"{self.platform}|{self.python_version}|".encode())
        for path in sorted(self.library.rglob("*")):
            relative = path.relative_to(self.library)
            # The same names shutil.ignore_patterns skips at any depth in try_bundle.
            ignored = any(fnmatch(part, pattern) for part in relative.parts for pattern in _IGNORED)
            if path.is_file() and not ignored:
                digest.update(relative.as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
        if self.requirements is not None:
            digest.update(b"requirements\0" + self.requirements.read_bytes())
        return digest.hexdigest()


class SharedLayer(Construct):
    """The ``switchyard`` library layer every function gets (see :mod:`infra.functions`)."""

    def __init__(self, scope: Construct, construct_id: str, *, bundle_dependencies: bool) -> None:
        super().__init__(scope, construct_id)
        bundler = SharedLibraryBundler(requirements=LAMBDA_LOCK if bundle_dependencies else None)
        self.layer = lambda_.LayerVersion(
            self,
            "Layer",
            description="switchyard shared library"
            + (" and its dependencies (requirements/lambda.lock)" if bundle_dependencies else " only"),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            code=lambda_.Code.from_asset(
                str(SHARED_LIBRARY.parent),
                asset_hash_type=AssetHashType.CUSTOM,
                asset_hash=bundler.fingerprint(),
                bundling=BundlingOptions(image=DockerImage.from_registry("scratch"), local=bundler),
            ),
        )
        annotate(self.layer, role="shared-layer")
