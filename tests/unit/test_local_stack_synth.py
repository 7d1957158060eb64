"""A process synthesizes each stage once for all the local stacks it starts (synthesis is the slowest part of a
start); every stack still gets a template of its own to change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from switchyard_local import stack as local_stack

from infra.synth import SynthResult


def test_a_stage_is_synthesized_once_per_process_and_each_stack_gets_its_own_template(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(local_stack, "_SYNTHESIZED", {})
    monkeypatch.setattr(local_stack, "SYNTH_CACHE", tmp_path)  # not the checkout's kept synthesis
    calls: list[tuple[str, dict[str, Any]]] = []

    def synthesize(stage: str, **options: Any) -> SynthResult:
        calls.append((stage, options))
        Path(options["outdir"]).mkdir()
        return SynthResult(stack_name=f"Switchyard-{stage}", template={"Resources": {"Queue": {"Type": "q"}}},
                           assembly_dir=Path(options["outdir"]), assets_manifest=None)

    first = local_stack._synthesized("dev", synthesize)
    first.template["Resources"].clear()  # one stack changing its copy
    second = local_stack._synthesized("dev", synthesize)
    other = local_stack._synthesized("prod", synthesize)

    assert [stage for stage, _ in calls] == ["dev", "prod"]
    assert all(options["bundle_dependencies"] is False for _, options in calls)
    assert second.template == {"Resources": {"Queue": {"Type": "q"}}}
    assert second.assembly_dir == first.assembly_dir and second.assembly_dir.is_dir()
    assert other.stack_name == "Switchyard-prod"
