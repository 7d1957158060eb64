"""The local stack keeps a synthesis on disk, keyed by every file synthesis reads: a second process (a test
worker, the demo after the tests) starts without synthesizing, and a changed input never reuses an old one."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from switchyard_local import stack as local_stack


@dataclasses.dataclass(frozen=True)
class FakeSynth:
    stage: str
    template: dict[str, Any]
    assembly_dir: Path


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("infra/app.py", "shared/switchyard/config/flows.yaml", "functions/worker/handler.py",
                 "requirements/lambda.lock"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    (tmp_path / "cdk.json").write_text("{}")
    monkeypatch.setattr(local_stack, "ROOT", tmp_path)
    monkeypatch.setattr(local_stack, "SYNTH_CACHE", tmp_path / ".local-stack" / "synth")
    return tmp_path


def synthesizer(calls: list[str]):
    def synthesize(stage: str, *, bundle_dependencies: bool, outdir: str) -> FakeSynth:
        assert bundle_dependencies is False
        calls.append(stage)
        Path(outdir).mkdir(parents=True)
        return FakeSynth(stage, {"flows": (local_stack.ROOT / "shared/switchyard/config/flows.yaml").read_text()},
                         Path(outdir))
    return synthesize


def test_a_second_process_reads_the_kept_synthesis_instead_of_synthesizing(checkout: Path) -> None:
    calls: list[str] = []
    first = local_stack._synthesized_on_disk("dev", synthesizer(calls))
    again = local_stack._synthesized_on_disk("dev", synthesizer(calls))  # as a new process would
    assert calls == ["dev"]
    assert again == first and again.assembly_dir.is_dir()


@pytest.mark.parametrize("changed", ["infra/app.py", "shared/switchyard/config/flows.yaml",
                                     "functions/worker/handler.py", "requirements/lambda.lock", "cdk.json"])
def test_any_changed_input_synthesizes_again_and_drops_the_old_one(checkout: Path, changed: str) -> None:
    calls: list[str] = []
    old = local_stack._synthesized_on_disk("dev", synthesizer(calls))
    (checkout / changed).write_text("changed")
    new = local_stack._synthesized_on_disk("dev", synthesizer(calls))
    assert calls == ["dev", "dev"]
    assert not old.assembly_dir.exists() and new.assembly_dir.is_dir()


def test_each_stage_is_kept_apart_and_bytecode_is_no_input(checkout: Path) -> None:
    assert local_stack.synth_inputs_digest("dev") != local_stack.synth_inputs_digest("prod")
    before = local_stack.synth_inputs_digest("dev")
    (checkout / "shared/switchyard/__pycache__").mkdir(parents=True)
    (checkout / "shared/switchyard/__pycache__/config.cpython-311.pyc").write_bytes(b"\0")
    assert local_stack.synth_inputs_digest("dev") == before


def test_a_failed_synthesis_keeps_nothing(checkout: Path) -> None:
    def broken(stage: str, **_: Any) -> FakeSynth:
        raise RuntimeError("cdk-nag found something")

    with pytest.raises(RuntimeError):
        local_stack._synthesized_on_disk("dev", broken)
    calls: list[str] = []
    local_stack._synthesized_on_disk("dev", synthesizer(calls))
    assert calls == ["dev"]


def test_a_kept_synthesis_whose_assembly_is_gone_is_made_again(checkout: Path) -> None:
    calls: list[str] = []
    first = local_stack._synthesized_on_disk("dev", synthesizer(calls))
    import shutil
    shutil.rmtree(first.assembly_dir)
    again = local_stack._synthesized_on_disk("dev", synthesizer(calls))
    assert calls == ["dev", "dev"] and again.assembly_dir.is_dir()
