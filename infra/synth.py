"""Synthesize a stage in-process: the one code path shared by ``app.py``, the tests and the local stack.

Usage::

    result = synthesize("dev")           # layer without dependencies, temporary cloud assembly
    result.template["Resources"]         # the CloudFormation template as a dict
    result.assets_manifest["files"]      # file assets (Lambda code, layer): staged folder, S3 key
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import App, cx_api

from infra.application import build_app
from infra.settings import BUNDLE_DEPENDENCIES_CONTEXT

VALIDATION_REPORT = "validation-report.json"


@dataclass(frozen=True)
class SynthResult:
    stack_name: str
    template: dict[str, Any]
    assembly_dir: Path
    # ``<stack>.assets.json``: file assets with their staged folder and S3 object key.
    assets_manifest: dict[str, Any] | None


class SynthesisError(RuntimeError):
    """Synthesis failed; ``violations`` lists ``rule: construct path`` for each policy finding."""

    def __init__(self, message: str, violations: list[str]) -> None:
        super().__init__("\n".join([message, *violations]))
        self.violations = violations


def synth_assembly(app: App, outdir: str | Path) -> cx_api.CloudAssembly:
    """``app.synth()``, turning a failed policy validation (cdk-nag) into a readable :class:`SynthesisError`."""
    try:
        return app.synth()
    except RuntimeError as exc:
        report = Path(outdir) / VALIDATION_REPORT
        if "ValidationFailed" not in str(exc) or not report.is_file():
            raise
        violations = [
            f"{violation['ruleName']}: {construct['constructPath']} ({violation['description']})"
            for plugin in json.loads(report.read_text())["pluginReports"]
            for violation in plugin.get("violations", [])
            for construct in violation.get("violatingConstructs", [])
        ]
        raise SynthesisError(f"policy validation failed ({report})", violations) from exc


def synthesize(stage: str = "dev", *, bundle_dependencies: bool = False, outdir: str | None = None) -> SynthResult:
    """Synthesize the stack of ``stage`` into ``outdir`` (a new temporary folder if not given).

    ``bundle_dependencies=False`` (tests, local stack) builds the layer from ``shared/switchyard``
    alone; ``True`` also pip-installs ``requirements/lambda.lock`` for the Lambda platform, as
    ``cdk synth`` does.
    """
    outdir = outdir or tempfile.mkdtemp(prefix=f"switchyard-{stage}-cdk-")
    app = build_app(stages=[stage], context={BUNDLE_DEPENDENCIES_CONTEXT: bundle_dependencies}, outdir=outdir)
    assembly = synth_assembly(app, outdir)
    (artifact,) = assembly.stacks
    assembly_dir = Path(assembly.directory)
    assets = assembly_dir / f"{artifact.id}.assets.json"
    return SynthResult(
        stack_name=artifact.stack_name,
        template=json.loads(Path(artifact.template_full_path).read_text()),
        assembly_dir=assembly_dir,
        assets_manifest=json.loads(assets.read_text()) if assets.is_file() else None,
    )
