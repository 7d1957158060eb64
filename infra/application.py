"""Builds the CDK app: one stack per stage from ``cdk.json`` context, under cdk-nag's AwsSolutions checks.

``app.py`` (the CDK CLI's entry point) and :func:`infra.synth.synthesize` (tests, the local stack)
both call :func:`build_app`, so what is tested and run locally is what gets deployed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from aws_cdk import App
from switchyard.catalog import load_catalog
from switchyard.errors import MappingError
from switchyard.mapping import mapping_problems

from infra.nag import add_compliance_checks
from infra.paths import CDK_JSON
from infra.settings import (
    BUNDLE_DEPENDENCIES_CONTEXT,
    STAGES_CONTEXT,
    SettingsError,
    flag_from_context,
    stages_from_context,
)
from infra.stack import SwitchyardStack


def project_context() -> dict[str, Any]:
    """The ``context`` of ``cdk.json`` (stages, feature flags): the CLI passes it, in-process we read it."""
    return json.loads(CDK_JSON.read_text())["context"]


def build_app(
    *,
    stages: Iterable[str] | None = None,
    context: Mapping[str, Any] | None = None,
    outdir: str | None = None,
) -> App:
    """The app with one stack per stage (all stages in context unless ``stages`` names some).

    ``context`` overrides everything else (``cdk.json`` and ``-c`` values alike).
    """
    app = App(context=project_context(), post_cli_context=dict(context or {}), outdir=outdir)
    add_compliance_checks(app)
    settings = stages_from_context(app.node.try_get_context(STAGES_CONTEXT))
    bundle_dependencies = flag_from_context(app.node.try_get_context(BUNDLE_DEPENDENCIES_CONTEXT), default=True)
    catalog = load_catalog()
    problems = mapping_problems(catalog)  # e.g. a stage the document names that the pipeline copy lacks
    if problems:
        raise MappingError("mapping documents that would fail in their workers:\n" + "\n".join(problems))
    for name in stages if stages is not None else settings:
        if name not in settings:
            raise SettingsError(f"unknown stage {name!r}; {STAGES_CONTEXT} declares {sorted(settings)}")
        stage = settings[name]
        SwitchyardStack(app, stage.stack_name, stage=stage, catalog=catalog, bundle_dependencies=bundle_dependencies)
    return app
