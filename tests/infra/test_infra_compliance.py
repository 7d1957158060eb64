"""cdk-nag, cfn-lint and the dependency rule ``infra -> switchyard``, never ``infra -> functions``."""

from __future__ import annotations

import ast
import json
import re

import pytest

# One xdist worker runs all infra tests, so the session fixtures synthesize each stage once.
pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def test_cdk_nag_dev_stack_no_unacknowledged_findings(dev_synth):
    # Synth would have raised; the report proves the plugin actually ran.
    report = json.loads((dev_synth.assembly_dir / "validation-report.json").read_text())
    (nag,) = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    assert nag["conclusion"] == "success"
    assert nag["violations"] == []


def test_cdk_nag_acknowledged_findings_all_listed_in_infrastructure_doc(dev_synth):
    from infra.paths import REPO_ROOT

    report = json.loads((dev_synth.assembly_dir / "validation-report.json").read_text())
    acknowledged = {
        violation["ruleName"]
        for plugin in report["pluginReports"]
        for violation in plugin.get("suppressedViolations", [])
    }
    assert acknowledged, "expected the documented acknowledgements"
    doc = (REPO_ROOT / "docs/infrastructure.md").read_text()
    assert {rule for rule in acknowledged if f"`{rule}`" not in doc} == set()


def test_cdk_nag_unencrypted_queue_without_ssl_fails_synth(tmp_path):
    from aws_cdk import App, Stack
    from aws_cdk import aws_sqs as sqs

    from infra.nag import add_compliance_checks
    from infra.synth import SynthesisError, synth_assembly

    # Given the same validation plugin as the real app, and a stack with a non-compliant queue
    app = App(outdir=str(tmp_path))
    add_compliance_checks(app)
    stack = Stack(app, "NonCompliant")
    sqs.Queue(stack, "Queue", encryption=sqs.QueueEncryption.UNENCRYPTED)

    # When it is synthesized, then synth fails and names the findings
    with pytest.raises(SynthesisError) as failure:
        synth_assembly(app, tmp_path)
    rules = {violation.split(":")[0] for violation in failure.value.violations}
    assert {"AwsSolutions-SQS2", "AwsSolutions-SQS4"} <= rules


def test_cfn_lint_dev_template_reports_no_errors(dev_synth):
    from pathlib import Path

    from cfnlint.api import lint_file

    template = Path(dev_synth.assembly_dir) / f"{dev_synth.stack_name}.template.json"
    errors = [str(match) for match in lint_file(template) if match.rule.id.startswith("E")]
    assert errors == []


def test_infra_modules_import_nothing_from_functions():
    from infra.paths import REPO_ROOT

    offenders = []
    for path in [*sorted((REPO_ROOT / "infra").rglob("*.py")), REPO_ROOT / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(REPO_ROOT)}: {name}" for name in names if re.match(r"functions(\.|$)", name)
            ]
    assert offenders == []
